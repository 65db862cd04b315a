// Hard limits that both sides enforce before allocating anything a peer asked for.
#pragma once

#include <cstddef>
#include <cstdint>

namespace enclavefs::limits {

// Frame sizes. A message holds metadata only; data goes in the payload.
constexpr std::uint32_t kMaxMessageBytes = 256 * 1024;
constexpr std::uint32_t kMaxPayloadBytes = 1024 * 1024;

// Largest read or write in one request (the FUSE max_read / max_write we ask for).
constexpr std::uint32_t kMaxIoBytes = kMaxPayloadBytes;

// Most file bytes an open's reply may carry: one read-ahead window of the enclave kernel.
constexpr std::uint32_t kMaxOpenDataBytes = 128 * 1024;

// Largest readdir buffer a client may ask the host to fill.
constexpr std::uint32_t kMaxReadDirBytes = 128 * 1024;

// Names and paths, as Linux limits them.
constexpr std::size_t kMaxNameBytes = 255;
constexpr std::size_t kMaxPathBytes = 4096;

// Extended attributes (XATTR_NAME_MAX, XATTR_SIZE_MAX).
constexpr std::size_t kMaxXattrNameBytes = 255;
constexpr std::uint32_t kMaxXattrValueBytes = 64 * 1024;

// Nodes in one forget batch.
constexpr std::size_t kMaxForgetItems = 4096;

// Invalidations in one notify frame (each list).
constexpr std::size_t kMaxNotifyItems = 4096;

// Block volumes: every request is aligned to the sector size; a volume's size lies within
// these bounds (mkfs.ext4 needs room; ext4 with 4 KiB blocks ends at 16 TiB).
constexpr std::uint32_t kSectorBytes = 4096;
constexpr std::uint64_t kMinVolumeBytes = 16ull << 20;
constexpr std::uint64_t kMaxVolumeBytes = 16ull << 40;

// Cap'n Proto traversal limits for hostile input: a message can never make the reader walk
// more than a few times its own size.
constexpr std::uint64_t kTraversalLimitWords = 4 * (kMaxMessageBytes / 8);
constexpr int kNestingLimit = 16;

}  // namespace enclavefs::limits
