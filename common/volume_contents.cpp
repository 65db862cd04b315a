#include "common/volume_contents.h"

#include <algorithm>

namespace enclavefs {
namespace {

std::uint64_t littleEndian(std::span<const std::byte> bytes, std::size_t at, std::size_t width) {
  std::uint64_t value = 0;
  for (std::size_t i = 0; i < width; ++i) {
    value |= static_cast<std::uint64_t>(bytes[at + i]) << (8 * i);
  }
  return value;
}

}  // namespace

VolumeContents identifyVolume(std::span<const std::byte> head) {
  // The ext2/3/4 superblock starts 1024 bytes in; the fields read are within its first 344.
  constexpr std::size_t kSuper = 1024;
  constexpr std::uint64_t kExtMagic = 0xEF53;
  constexpr std::uint64_t kIncompat64Bit = 0x80;
  if (head.size() >= kSuper + 0x154 && littleEndian(head, kSuper + 0x38, 2) == kExtMagic) {
    std::uint64_t blocks = littleEndian(head, kSuper + 0x04, 4);
    if (littleEndian(head, kSuper + 0x60, 4) & kIncompat64Bit) {
      blocks |= littleEndian(head, kSuper + 0x150, 4) << 32;
    }
    const std::uint64_t logBlockSize = littleEndian(head, kSuper + 0x18, 4);
    if (logBlockSize > 6) return {};  // a block size above 64 KiB: not a superblock we know
    return {VolumeContents::Kind::ext4, blocks * (1024ull << logBlockSize)};
  }
  const bool zeros = std::all_of(head.begin(), head.end(), [](std::byte b) { return b == std::byte{0}; });
  return zeros ? VolumeContents{VolumeContents::Kind::blank, 0} : VolumeContents{};
}

}  // namespace enclavefs
