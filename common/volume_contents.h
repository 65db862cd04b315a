// What a volume holds, from its first MiB: never written (all zeros), an ext2/3/4 file
// system, or something else. The enclave formats only a blank volume and mounts only an ext4
// one; the operator's inspect tool reports the same verdict from the host.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace enclavefs {

// How much of the volume's start is looked at: it covers partition tables, LUKS headers and
// the superblocks of the common file systems.
inline constexpr std::size_t kVolumeProbeBytes = 1 << 20;

struct VolumeContents {
  enum class Kind { blank, ext4, unknown } kind = Kind::unknown;
  std::uint64_t fileSystemBytes = 0;  // ext4: blocks × block size, as its superblock says
};

// Judges the first bytes of a volume (kVolumeProbeBytes, or the whole volume if smaller).
VolumeContents identifyVolume(std::span<const std::byte> head);

}  // namespace enclavefs
