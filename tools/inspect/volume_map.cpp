#include "tools/inspect/volume_map.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/volume_contents.h"

namespace enclavefs::inspect {
namespace {

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
  std::vector<std::byte> bytes(std::min<std::uint64_t>(kVolumeProbeBytes, volume.header().size));
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
  switch (identifyVolume(bytes).kind) {
    case VolumeContents::Kind::blank: return Signature::zeros;
    case VolumeContents::Kind::ext4: return Signature::ext;
    case VolumeContents::Kind::unknown: return Signature::other;
  }
  return Signature::other;
}

}  // namespace enclavefs::inspect
