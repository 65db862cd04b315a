// A block volume as it lies on the host: one sparse image file, a 4 KiB header, then the
// volume's sectors. The enclave never sees the header; it sees sectors 0..N of the data area.
//
//   offset  bytes  field (little-endian)
//   0       16     magic "enclavefs-volume"
//   16      4      format version (1)
//   20      4      sector size (4096)
//   24      8      data offset (4096)
//   32      8      volume size in bytes (a multiple of the sector size)
//   40      8      created, seconds since the epoch
//   48      8      flags (none defined yet; a volume with unknown flags is refused)
//   56      8      xxh64 of bytes 0..55
//   512     64     lease record: who holds the volume (see Lease below), with its own xxh64
//                  (layout in volume_file.cpp)
//
// Exclusive use is an OFD write lock over the header bytes, taken by enclavefs-hostd for as
// long as one client holds the volume and by enclavefs-volume while it resizes or deletes.
// The kernel drops the lock with the last descriptor, so a crashed holder leaves no stale
// lease. The lease record only says who holds the lock, for error messages; the lock is the
// truth, and a record without a lock means nothing.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/hard_limits.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "host-server/access.h"

namespace enclavefs::host {

inline constexpr std::uint32_t kVolumeSectorSize = limits::kSectorBytes;
inline constexpr std::uint64_t kVolumeDataOffset = 4096;
inline constexpr std::uint64_t kMinVolumeSize = limits::kMinVolumeBytes;
inline constexpr std::uint64_t kMaxVolumeSize = limits::kMaxVolumeBytes;
// The first bytes of every volume, whether or not the rest of its header is sound.
inline constexpr std::string_view kVolumeMagic = "enclavefs-volume";

// Parses a size as the volume tool takes it: bytes, or a number with K, M, G or T (powers of
// 1024; either case, optionally followed by "iB": 512M, 512m, 512MiB). It must be a multiple
// of the sector size and within the volume limits; the error names the text and the rule it
// breaks.
Result<std::uint64_t, std::string> parseVolumeSize(const std::string& text);

// "1.5 GiB", "512 MiB", "4 KiB", "100 B": the largest unit that fits, one decimal at most
// (rounded, so 16 MiB + 4 KiB reads "16 MiB").
std::string formatBytes(std::uint64_t bytes);

// Seconds since the epoch in UTC, ISO 8601: "2026-11-26T17:30:05Z".
std::string formatUtc(std::int64_t seconds);

// Who holds a volume, as its holder recorded it.
struct Lease {
  Peer peer;                    // the enclave: CID, or the unix peer's uid and pid
  std::int64_t since = 0;       // seconds since the epoch
  std::uint32_t serverPid = 0;  // the enclavefs-hostd serving it
  std::uint64_t clientId = 0;   // that server's client id

  // "CID 16 since 2026-11-26T17:30:05Z" / "uid 0 pid 123 since ...". An empty Lease (what
  // holder() reports for a holder without a readable record) is "another process (no lease
  // record)".
  std::string describe() const;
  // True for that empty Lease: no record to name the holder by.
  bool empty() const;
};

struct VolumeHeader {
  std::uint32_t version = 1;
  std::uint32_t sectorSize = kVolumeSectorSize;
  std::uint64_t dataOffset = kVolumeDataOffset;
  std::uint64_t size = 0;
  std::int64_t created = 0;
  std::uint64_t flags = 0;
};

class VolumeFile {
 public:
  // Makes a sparse image of `size` bytes at `path`, which must not exist (O_EXCL); owned by
  // `owner` if given. On any failure nothing is left behind.
  static Result<void, std::string> create(const std::string& path, std::uint64_t size,
                                          std::optional<std::pair<uid_t, gid_t>> owner);

  // Opens an image and checks its header against the file: magic, version, checksum, sector
  // size, data offset, flags, and a file long enough for the size it claims. Errors name
  // the path and what is wrong.
  static Result<VolumeFile, std::string> open(const std::string& path, bool writable);

  VolumeFile(VolumeFile&& other) noexcept;
  VolumeFile& operator=(VolumeFile&& other) noexcept;
  // Releases (see release()) and closes.
  ~VolumeFile();

  const std::string& path() const { return path_; }
  const VolumeHeader& header() const { return header_; }
  int fd() const { return fd_.get(); }
  // Bytes the host file system has allocated to the image (header included).
  std::uint64_t allocatedBytes() const;

  // Takes the exclusive lock without waiting and records `lease`. `what` names the volume
  // in the error: "volume db is in use by CID 16 since 2026-11-26T17:30:05Z". Needs a
  // VolumeFile opened writable.
  Result<void, std::string> acquire(const Lease& lease, const std::string& what);
  // Takes the exclusive lock for the volume tool. No lease is recorded, but a record left by
  // a holder that crashed is cleared, so that nobody is told the crashed holder has it.
  Result<void, std::string> lockForMaintenance(const std::string& what);
  // Clears the lease record if acquire() wrote it, then drops the lock. Best effort: the
  // record is only a name for the lock, and the lock goes with the descriptor anyway.
  void release();
  bool locked() const { return locked_; }
  // Who holds the lock now, if anyone, through another open of the file (in this or any
  // other process; a lock held through this VolumeFile is not reported). A holder whose
  // record is unreadable is reported with an empty Lease.
  std::optional<Lease> holder() const;

  // Grows the volume to `newSize` (with the lock held): extends the file, then rewrites the
  // header. Shrinking is refused; the same size changes nothing.
  Result<void, std::string> grow(std::uint64_t newSize);

 private:
  VolumeFile(std::string path, UniqueFd fd, VolumeHeader header, bool writable)
      : path_(std::move(path)), fd_(std::move(fd)), header_(header), writable_(writable) {}
  Result<void, std::string> lockOrName(const std::string& what);
  Result<void, std::string> writeLeaseRecord(const std::optional<Lease>& lease);

  std::string path_;
  UniqueFd fd_;
  VolumeHeader header_;
  bool writable_ = false;
  bool locked_ = false;
  bool leaseWritten_ = false;  // acquire() wrote the record, so release() clears it
};

}  // namespace enclavefs::host
