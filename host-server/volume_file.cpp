// Volume image files: header, lease record, lock. The header's layout is in volume_file.h;
// the lease record, 64 bytes at offset 512, is (little-endian):
//
//   offset  bytes  field
//   0       1      kind: 1 unix socket peer, 2 vsock peer (0: no record)
//   1       3      zero
//   4       4      CID (vsock)
//   8       4      uid (unix)
//   12      4      gid (unix)
//   16      4      pid (unix)
//   20      4      pid of the enclavefs-hostd serving the volume
//   24      8      since, seconds since the epoch (signed)
//   32      8      that server's client id
//   40      16     zero
//   56      8      xxh64 of bytes 0..55
//
// A cleared record is all zeros, which fails its checksum and so reads as "no record".
//
// Every field is encoded byte by byte, never by copying a struct, so the format does not
// depend on the compiler's padding or the host's byte order.
#include "host-server/volume_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <string_view>
#include <utility>

#include "common/log.h"

namespace enclavefs::host {
namespace {

constexpr std::uint32_t kFormatVersion = 1;
constexpr std::size_t kHeaderBytes = 64;  // fields and checksum; the rest of 4 KiB is zero
constexpr std::size_t kChecksummed = 56;  // bytes 0..55
constexpr std::uint64_t kKnownFlags = 0;  // none defined yet
constexpr off_t kLeaseOffset = 512;
constexpr std::size_t kLeaseBytes = 64;
constexpr std::uint8_t kLeaseUnix = 1;
constexpr std::uint8_t kLeaseVsock = 2;

using Status = Result<void, std::string>;
using Bytes = std::array<unsigned char, 64>;

void put32(unsigned char* at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) at[i] = static_cast<unsigned char>(v >> (8 * i));
}
void put64(unsigned char* at, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) at[i] = static_cast<unsigned char>(v >> (8 * i));
}
std::uint32_t get32(const unsigned char* at) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | at[i];
  return v;
}
std::uint64_t get64(const unsigned char* at) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | at[i];
  return v;
}

std::uint64_t checksum(const unsigned char* bytes, std::size_t length) {
  return XXH64(bytes, length, 0);
}

std::string errnoText(int error) {
  return std::strerror(error);
}

Bytes encodeHeader(const VolumeHeader& h) {
  Bytes b{};
  std::memcpy(b.data(), kVolumeMagic.data(), kVolumeMagic.size());
  put32(&b[16], h.version);
  put32(&b[20], h.sectorSize);
  put64(&b[24], h.dataOffset);
  put64(&b[32], h.size);
  put64(&b[40], static_cast<std::uint64_t>(h.created));
  put64(&b[48], h.flags);
  put64(&b[56], checksum(b.data(), kChecksummed));
  return b;
}

Bytes encodeLease(const Lease& lease) {
  Bytes b{};
  b[0] = lease.peer.kind == Peer::Kind::vsock ? kLeaseVsock : kLeaseUnix;
  put32(&b[4], lease.peer.cid);
  put32(&b[8], lease.peer.uid);
  put32(&b[12], lease.peer.gid);
  put32(&b[16], lease.peer.pid);
  put32(&b[20], lease.serverPid);
  put64(&b[24], static_cast<std::uint64_t>(lease.since));
  put64(&b[32], lease.clientId);
  put64(&b[56], checksum(b.data(), kChecksummed));
  return b;
}

std::optional<Lease> decodeLease(const Bytes& b) {
  if (get64(&b[56]) != checksum(b.data(), kChecksummed)) return std::nullopt;
  if (b[0] != kLeaseUnix && b[0] != kLeaseVsock) return std::nullopt;
  Lease lease;
  lease.peer.kind = b[0] == kLeaseVsock ? Peer::Kind::vsock : Peer::Kind::unix_socket;
  lease.peer.cid = get32(&b[4]);
  lease.peer.uid = get32(&b[8]);
  lease.peer.gid = get32(&b[12]);
  lease.peer.pid = get32(&b[16]);
  lease.serverPid = get32(&b[20]);
  lease.since = static_cast<std::int64_t>(get64(&b[24]));
  lease.clientId = get64(&b[32]);
  return lease;
}

// Reads exactly `length` bytes at `offset`, or fewer at the end of the file: how many, or
// the errno.
Result<std::size_t> readAt(int fd, unsigned char* into, std::size_t length, off_t offset) {
  std::size_t done = 0;
  while (done < length) {
    ssize_t n = ::pread(fd, into + done, length - done, offset + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno{errno};
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return done;
}

Result<void> writeAt(int fd, const unsigned char* from, std::size_t length, off_t offset) {
  std::size_t done = 0;
  while (done < length) {
    ssize_t n = ::pwrite(fd, from + done, length - done, offset + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno{errno};
    done += static_cast<std::size_t>(n);
  }
  return {};
}

// The lock every user of a volume takes: the header bytes, so that the data area stays free
// for whatever byte-range locking a future block server does.
struct flock headerLock(short type) {
  struct flock lock {};
  lock.l_type = type;
  lock.l_whence = SEEK_SET;
  lock.l_start = 0;
  lock.l_len = static_cast<off_t>(kVolumeDataOffset);
  return lock;
}

// Whether another open of the file holds the lock.
bool lockedElsewhere(int fd) {
  struct flock probe = headerLock(F_WRLCK);
  if (::fcntl(fd, F_OFD_GETLK, &probe) != 0) return false;
  return probe.l_type != F_UNLCK;
}

std::optional<Lease> readLease(int fd) {
  Bytes b{};
  auto n = readAt(fd, b.data(), b.size(), kLeaseOffset);
  if (!n || *n != b.size()) return std::nullopt;
  return decodeLease(b);
}

// Which size rule `size` breaks, as the end of a sentence about it ("... is not a multiple
// of the 4096-byte sector size"), or nothing.
std::optional<std::string> sizeProblem(std::uint64_t size) {
  if (size % kVolumeSectorSize != 0) {
    return "is not a multiple of the " + std::to_string(kVolumeSectorSize) + "-byte sector size";
  }
  if (size < kMinVolumeSize) return "is below the smallest volume, " + formatBytes(kMinVolumeSize);
  if (size > kMaxVolumeSize) return "is above the largest volume, " + formatBytes(kMaxVolumeSize);
  return std::nullopt;
}

Status syncDirectoryOf(const std::string& path) {
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  std::string dir = parent.empty() ? "." : parent.string();
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd || ::fsync(fd.get()) != 0) {
    return Fail{"cannot sync directory " + dir + " of volume " + path + ": " + errnoText(errno)};
  }
  return {};
}

}  // namespace

Result<std::uint64_t, std::string> parseVolumeSize(const std::string& text) {
  const std::string quoted = "size '" + printable(text) + "'";
  const std::string usage = " (use bytes or a number with K, M, G or T, as in 512M)";
  if (text.empty()) return Fail{"the size is empty" + usage};
  if (text.front() == '-') return Fail{quoted + " is negative"};

  std::uint64_t number = 0;
  const char* end = text.data() + text.size();
  auto [rest, ec] = std::from_chars(text.data(), end, number);
  if (ec == std::errc::invalid_argument) return Fail{quoted + " is not a size" + usage};

  std::string_view suffix(rest, static_cast<std::size_t>(end - rest));
  unsigned shift = 0;
  if (!suffix.empty()) {
    constexpr std::string_view kLetters = "KMGT", kLower = "kmgt";
    std::size_t power = kLetters.find(suffix.front());
    if (power == std::string_view::npos) power = kLower.find(suffix.front());
    if (power == std::string_view::npos) return Fail{quoted + " is not a size" + usage};
    shift = 10 * static_cast<unsigned>(power + 1);
    std::string_view unit = suffix.substr(1);
    if (!unit.empty() && unit != "iB") return Fail{quoted + " is not a size" + usage};
  }
  const std::string tooLarge =
      quoted + " is above the largest volume, " + formatBytes(kMaxVolumeSize);
  if (ec == std::errc::result_out_of_range || number > (UINT64_MAX >> shift)) {
    return Fail{tooLarge};
  }
  std::uint64_t bytes = number << shift;
  if (bytes == 0) return Fail{quoted + " is zero"};
  if (auto problem = sizeProblem(bytes)) return Fail{quoted + " " + *problem};
  return bytes;
}

std::string formatBytes(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  unsigned unit = 0;
  while (unit + 1 < std::size(kUnits) && bytes >= (std::uint64_t{1} << (10 * (unit + 1)))) ++unit;
  if (unit == 0) return std::to_string(bytes) + " B";
  for (;;) {
    const std::uint64_t scale = std::uint64_t{1} << (10 * unit);
    std::uint64_t whole = bytes / scale;
    // remainder < scale <= 2^60, so ten times it still fits.
    std::uint64_t tenths = ((bytes % scale) * 10 + scale / 2) / scale;
    if (tenths == 10) {
      ++whole;
      tenths = 0;
    }
    if (whole >= 1024 && unit + 1 < std::size(kUnits)) {
      ++unit;  // 1023.96 MiB reads "1 GiB", not "1024 MiB"
      continue;
    }
    std::string text = std::to_string(whole);
    if (tenths != 0) text += "." + std::to_string(tenths);
    return text + " " + kUnits[unit];
  }
}

std::string formatUtc(std::int64_t seconds) {
  std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  char text[64];
  if (::gmtime_r(&t, &tm) == nullptr ||
      std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
    return std::to_string(seconds) + " seconds after the epoch";
  }
  return text;
}

bool Lease::empty() const {
  return since == 0 && serverPid == 0 && clientId == 0 && peer.kind == Peer::Kind::unix_socket &&
         peer.cid == 0 && peer.uid == 0 && peer.gid == 0 && peer.pid == 0;
}

std::string Lease::describe() const {
  if (empty()) return "another process (no lease record)";
  std::string who =
      peer.kind == Peer::Kind::vsock ? "CID " + std::to_string(peer.cid) : peer.describe();
  return who + " since " + formatUtc(since);
}

Status VolumeFile::create(const std::string& path, std::uint64_t size,
                          std::optional<std::pair<uid_t, gid_t>> owner) {
  if (auto problem = sizeProblem(size)) {
    return Fail{"cannot create volume " + path + ": its size of " + std::to_string(size) +
                " bytes " + *problem};
  }
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) {
    if (errno == EEXIST) {
      return Fail{"volume " + path + " already exists; refusing to overwrite it"};
    }
    return Fail{"cannot create volume " + path + ": " + errnoText(errno)};
  }
  // From here on the file is ours: any failure removes it.
  auto undo = [&](std::string message) -> Status {
    fd.reset();
    ::unlink(path.c_str());
    return Fail{std::move(message)};
  };

  VolumeHeader header;
  header.size = size;
  header.created = static_cast<std::int64_t>(::time(nullptr));
  Bytes bytes = encodeHeader(header);
  if (auto written = writeAt(fd.get(), bytes.data(), bytes.size(), 0); !written) {
    return undo("cannot write the header of volume " + path + ": " +
                errnoText(written.error().value));
  }
  if (::ftruncate(fd.get(), static_cast<off_t>(kVolumeDataOffset + size)) != 0) {
    return undo("cannot extend volume " + path + " to " + formatBytes(size) + ": " +
                errnoText(errno));
  }
  if (owner && ::fchown(fd.get(), owner->first, owner->second) != 0) {
    return undo("cannot give volume " + path + " to " + std::to_string(owner->first) + ":" +
                std::to_string(owner->second) + ": " + errnoText(errno));
  }
  if (::fsync(fd.get()) != 0) return undo("cannot sync volume " + path + ": " + errnoText(errno));
  if (auto synced = syncDirectoryOf(path); !synced) return undo(synced.error());
  return {};
}

Result<VolumeFile, std::string> VolumeFile::open(const std::string& path, bool writable) {
  UniqueFd fd(::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC));
  if (!fd) return Fail{"cannot open volume " + path + ": " + errnoText(errno)};
  struct stat st;
  if (::fstat(fd.get(), &st) != 0)
    return Fail{"cannot stat volume " + path + ": " + errnoText(errno)};
  if (!S_ISREG(st.st_mode)) return Fail{path + " is not an enclavefs volume (not a regular file)"};

  Bytes b{};
  auto n = readAt(fd.get(), b.data(), b.size(), 0);
  if (!n) return Fail{"cannot read volume " + path + ": " + errnoText(n.error().value)};
  if (*n < kVolumeMagic.size() ||
      std::memcmp(b.data(), kVolumeMagic.data(), kVolumeMagic.size()) != 0) {
    return Fail{path + " is not an enclavefs volume"};
  }
  const std::string where = "volume " + path + ": ";
  if (*n < kHeaderBytes)
    return Fail{where + "header is cut short (the file is " + std::to_string(*n) + " bytes)"};

  VolumeHeader h;
  h.version = get32(&b[16]);
  h.sectorSize = get32(&b[20]);
  h.dataOffset = get64(&b[24]);
  h.size = get64(&b[32]);
  h.created = static_cast<std::int64_t>(get64(&b[40]));
  h.flags = get64(&b[48]);
  if (h.version != kFormatVersion) {
    return Fail{where + "format version " + std::to_string(h.version) +
                " is not supported (this enclavefs knows version " +
                std::to_string(kFormatVersion) + ")"};
  }
  if (get64(&b[56]) != checksum(b.data(), kChecksummed)) {
    return Fail{where + "header is corrupt (checksum mismatch)"};
  }
  if (h.sectorSize != kVolumeSectorSize) {
    return Fail{where + "sector size " + std::to_string(h.sectorSize) + " is not supported (only " +
                std::to_string(kVolumeSectorSize) + ")"};
  }
  if (h.dataOffset != kVolumeDataOffset) {
    return Fail{where + "data offset " + std::to_string(h.dataOffset) + " is not supported (only " +
                std::to_string(kVolumeDataOffset) + ")"};
  }
  if (std::uint64_t unknown = h.flags & ~kKnownFlags; unknown != 0) {
    char hex[32];
    std::snprintf(hex, sizeof hex, "0x%llx", static_cast<unsigned long long>(unknown));
    return Fail{where + "unknown flags " + hex + " (written by a newer enclavefs?)"};
  }
  if (auto problem = sizeProblem(h.size)) {
    return Fail{where + "size " + std::to_string(h.size) + " bytes " + *problem};
  }
  // A longer file is a grow that stopped before it rewrote the header: the header's size wins.
  const std::uint64_t needed = h.dataOffset + h.size;
  if (static_cast<std::uint64_t>(st.st_size) < needed) {
    return Fail{where + "the file is " + std::to_string(st.st_size) + " bytes, shorter than the " +
                std::to_string(needed) + " its header claims (truncated?)"};
  }
  return VolumeFile(path, std::move(fd), h, writable);
}

VolumeFile::VolumeFile(VolumeFile&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::move(other.fd_)),
      header_(other.header_),
      writable_(other.writable_),
      locked_(std::exchange(other.locked_, false)),
      leaseWritten_(std::exchange(other.leaseWritten_, false)) {}

VolumeFile& VolumeFile::operator=(VolumeFile&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    fd_ = std::move(other.fd_);
    header_ = other.header_;
    writable_ = other.writable_;
    locked_ = std::exchange(other.locked_, false);
    leaseWritten_ = std::exchange(other.leaseWritten_, false);
  }
  return *this;
}

VolumeFile::~VolumeFile() {
  release();
}

std::uint64_t VolumeFile::allocatedBytes() const {
  struct stat st;
  if (::fstat(fd_.get(), &st) != 0) return 0;
  return static_cast<std::uint64_t>(st.st_blocks) * 512;
}

Status VolumeFile::lockOrName(const std::string& what) {
  if (locked_) return {};
  if (!writable_) return Fail{"cannot lock " + what + ": it was opened read-only"};
  struct flock lock = headerLock(F_WRLCK);
  if (::fcntl(fd_.get(), F_OFD_SETLK, &lock) == 0) {
    locked_ = true;
    return {};
  }
  int error = errno;
  if (error != EAGAIN && error != EACCES)
    return Fail{"cannot lock " + what + ": " + errnoText(error)};
  // The holder may let go between the two calls; it is only named, never trusted.
  std::optional<Lease> lease = readLease(fd_.get());
  return Fail{what + " is in use by " + lease.value_or(Lease{}).describe()};
}

Status VolumeFile::writeLeaseRecord(const std::optional<Lease>& lease) {
  Bytes b = lease ? encodeLease(*lease) : Bytes{};
  // Not synced: the record only names the holder for error messages, and the lock (which no
  // crash can leave behind) is what excludes others. The server writes it on its loop.
  if (auto written = writeAt(fd_.get(), b.data(), b.size(), kLeaseOffset); !written) {
    return Fail{"cannot write the lease record of volume " + path_ + ": " +
                errnoText(written.error().value)};
  }
  return {};
}

Status VolumeFile::acquire(const Lease& lease, const std::string& what) {
  if (auto locked = lockOrName(what); !locked) return locked;
  if (auto written = writeLeaseRecord(lease); !written) {
    release();
    return written;
  }
  leaseWritten_ = true;
  return {};
}

Status VolumeFile::lockForMaintenance(const std::string& what) {
  if (auto locked = lockOrName(what); !locked) return locked;
  if (readLease(fd_.get())) {
    if (auto cleared = writeLeaseRecord(std::nullopt); !cleared) {
      release();
      return cleared;
    }
  }
  return {};
}

void VolumeFile::release() {
  if (!locked_ || !fd_) return;
  if (leaseWritten_) {
    Bytes zero{};
    (void)writeAt(fd_.get(), zero.data(), zero.size(), kLeaseOffset);
    leaseWritten_ = false;
  }
  struct flock unlock = headerLock(F_UNLCK);
  ::fcntl(fd_.get(), F_OFD_SETLK, &unlock);
  locked_ = false;
}

std::optional<Lease> VolumeFile::holder() const {
  if (!lockedElsewhere(fd_.get())) return std::nullopt;
  return readLease(fd_.get()).value_or(Lease{});
}

Status VolumeFile::grow(std::uint64_t newSize) {
  const std::string current = formatBytes(header_.size);
  const std::string wanted = formatBytes(newSize);
  if (newSize < header_.size) {
    return Fail{"cannot resize volume " + path_ + " from " + current + " to " + wanted +
                ": that would shrink it; volumes only grow"};
  }
  if (auto problem = sizeProblem(newSize)) {
    return Fail{"cannot resize volume " + path_ + " to " + std::to_string(newSize) +
                " bytes: that size " + *problem};
  }
  if (!locked_) return Fail{"cannot resize volume " + path_ + " without holding its lock"};
  if (newSize == header_.size) return {};

  // Extend first and make the length durable, then claim it in the header: a crash in
  // between leaves a longer file under the old header, which open() accepts.
  if (::ftruncate(fd_.get(), static_cast<off_t>(header_.dataOffset + newSize)) != 0 ||
      ::fdatasync(fd_.get()) != 0) {
    return Fail{"cannot extend volume " + path_ + " to " + wanted + ": " + errnoText(errno)};
  }
  VolumeHeader grown = header_;
  grown.size = newSize;
  Bytes b = encodeHeader(grown);
  if (auto written = writeAt(fd_.get(), b.data(), b.size(), 0); !written) {
    return Fail{"cannot write the header of volume " + path_ + ": " +
                errnoText(written.error().value)};
  }
  if (::fdatasync(fd_.get()) != 0) {
    return Fail{"cannot sync the header of volume " + path_ + ": " + errnoText(errno)};
  }
  header_ = grown;
  return {};
}

}  // namespace enclavefs::host
