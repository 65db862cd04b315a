// What lies in a volume's data area, seen from the host without mounting anything: which
// ranges the host file system has allocated to the image (SEEK_DATA / SEEK_HOLE) and what its
// first MiB looks like. Offsets are the volume's own, counted from the start of the data area
// (image offset minus the header), the way the enclave sees its sectors.
//
// "Allocated" is what lseek(SEEK_DATA) calls data. Host file systems report space reserved
// by fallocate but never written (mkfs zeroes inode tables that way) as a hole, since it
// reads as zeros: so the data ranges can add up to less than the image's allocated blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "host-server/volume_file.h"

namespace enclavefs::inspect {

struct Extent {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  bool data = false;  // allocated on the host; otherwise a hole, which reads as zeros
};

struct ExtentMap {
  std::vector<Extent> extents;  // in order, at most the cap given to mapExtents()
  std::uint64_t count = 0;      // all extents, including those past the cap
  std::uint64_t dataCount = 0;  // of which allocated
  std::uint64_t dataBytes = 0;
  std::uint64_t sparseBytes = 0;
  bool truncated() const { return count > extents.size(); }
};

// Walks the whole data area; keeps the first `cap` extents and counts the rest.
Result<ExtentMap, std::string> mapExtents(const host::VolumeFile& volume, std::size_t cap);

// What the start of the data area says it holds.
enum class Signature {
  zeros,  // the first MiB (or the whole volume, if smaller) is all zeros
  ext,    // an ext2/3/4 superblock magic where it belongs
  other,
};
Result<Signature, std::string> readSignature(const host::VolumeFile& volume);

}  // namespace enclavefs::inspect
