#include "tools/inspect/volume_map.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace enclavefs::inspect {
namespace {

constexpr std::uint64_t kSignatureBytes = 1 << 20;
// The ext2/3/4 superblock starts 1024 bytes into the file system; its magic 0xEF53 is at
// byte 56 of it, little-endian.
constexpr std::size_t kExtMagicAt = 1024 + 56;

std::string failure(const host::VolumeFile& volume, const char* what) {
  return "cannot " + std::string(what) + " volume " + volume.path() + ": " + std::strerror(errno);
}

}  // namespace

Result<ExtentMap, std::string> mapExtents(const host::VolumeFile& volume, std::size_t cap) {
  const std::uint64_t start = volume.header().dataOffset;
  const std::uint64_t end = start + volume.header().size;
  ExtentMap map;
  auto add = [&](std::uint64_t from, std::uint64_t to, bool data) {
    if (to <= from) return;
    ++map.count;
    (data ? map.dataBytes : map.sparseBytes) += to - from;
    if (data) ++map.dataCount;
    if (map.extents.size() < cap) map.extents.push_back({from - start, to - from, data});
  };
  std::uint64_t pos = start;
  while (pos < end) {
    off_t data = ::lseek(volume.fd(), static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0) {
      if (errno != ENXIO) return Fail{failure(volume, "map the allocated ranges of")};
      data = static_cast<off_t>(end);  // nothing but a hole up to the end of the file
    }
    const std::uint64_t dataStart = std::min<std::uint64_t>(data, end);
    add(pos, dataStart, false);
    if (dataStart == end) break;
    off_t hole = ::lseek(volume.fd(), data, SEEK_HOLE);
    if (hole < 0) return Fail{failure(volume, "map the allocated ranges of")};
    const std::uint64_t dataEnd = std::min<std::uint64_t>(hole, end);
    if (dataEnd <= dataStart) {  // a file system breaking lseek's contract: do not spin
      return Fail{"cannot map the allocated ranges of volume " + volume.path() +
                  ": the host file system reports an empty data range"};
    }
    add(dataStart, dataEnd, true);
    pos = dataEnd;
  }
  return map;
}

Result<Signature, std::string> readSignature(const host::VolumeFile& volume) {
  std::vector<unsigned char> bytes(std::min(kSignatureBytes, volume.header().size));
  std::size_t got = 0;
  while (got < bytes.size()) {
    ssize_t n = ::pread(volume.fd(), bytes.data() + got, bytes.size() - got,
                        static_cast<off_t>(volume.header().dataOffset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Fail{failure(volume, "read")};
    if (n == 0) break;  // open() checked the length; a shorter file now is read as it is
    got += static_cast<std::size_t>(n);
  }
  bytes.resize(got);
  if (bytes.size() > kExtMagicAt + 1 && bytes[kExtMagicAt] == 0x53 &&
      bytes[kExtMagicAt + 1] == 0xEF) {
    return Signature::ext;
  }
  bool zeros = std::all_of(bytes.begin(), bytes.end(), [](unsigned char b) { return b == 0; });
  return zeros ? Signature::zeros : Signature::other;
}

}  // namespace enclavefs::inspect
