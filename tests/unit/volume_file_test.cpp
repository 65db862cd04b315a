// host-server/volume_file.h: sizes as the operator writes them, the image file's header and
// what open() refuses, and the lock that keeps two users off one volume. The locks are OFD
// locks, which conflict between two opens of the file even inside one process, so one test
// process can play both the holder and the one refused.
#include "host-server/volume_file.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "support/harness.h"

using namespace enclavefs;
using namespace enclavefs::host;
using enclavefs::test::TempDir;

namespace {

constexpr std::uint64_t kMiB = 1ull << 20;
constexpr std::uint64_t kGiB = 1ull << 30;
constexpr std::int64_t kThen = 1795714205;  // 2026-11-26T17:30:05Z

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

struct stat statOf(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st;
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// A fresh volume of `size` in `dir`, at the path returned.
std::string makeVolume(const TempDir& dir, std::uint64_t size = 16 * kMiB,
                       const std::string& name = "db.img") {
  std::string path = dir / name;
  auto created = VolumeFile::create(path, size, std::nullopt);
  REQUIRE_MESSAGE(created.ok(), created.error());
  return path;
}

std::vector<unsigned char> readBytes(const std::string& path, std::size_t length, off_t offset) {
  std::vector<unsigned char> bytes(length);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(::pread(fd, bytes.data(), length, offset) == static_cast<ssize_t>(length));
  ::close(fd);
  return bytes;
}

void writeBytes(const std::string& path, const std::vector<unsigned char>& bytes, off_t offset) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(::pwrite(fd, bytes.data(), bytes.size(), offset) == static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

void putLe(std::vector<unsigned char>& bytes, std::size_t at, std::uint64_t value, int width) {
  for (int i = 0; i < width; ++i) bytes[at + i] = static_cast<unsigned char>(value >> (8 * i));
}

// Rewrites header field(s) through `edit`, then a valid checksum, so that open() gets past
// the checksum to the rule under test.
template <class Edit>
void rewriteHeader(const std::string& path, Edit edit) {
  auto header = readBytes(path, 64, 0);
  edit(header);
  putLe(header, 56, XXH64(header.data(), 56, 0), 8);
  writeBytes(path, header, 0);
}

// The error VolumeFile::open gives for `path`; fails the test if it opens.
std::string openError(const std::string& path) {
  auto opened = VolumeFile::open(path, false);
  REQUIRE_FALSE(opened.ok());
  INFO("error: ", opened.error());
  CHECK(contains(opened.error(), path));
  CHECK_FALSE(contains(opened.error(), "\n"));
  return opened.error();
}

VolumeFile openVolume(const std::string& path, bool writable = true) {
  auto opened = VolumeFile::open(path, writable);
  REQUIRE_MESSAGE(opened.ok(), opened.error());
  return std::move(opened).value();
}

Lease vsockLease(std::uint32_t cid) {
  Lease lease;
  lease.peer.kind = Peer::Kind::vsock;
  lease.peer.cid = cid;
  lease.since = kThen;
  lease.serverPid = 4242;
  lease.clientId = 7;
  return lease;
}

}  // namespace

// ---- sizes ------------------------------------------------------------------------------------

TEST_CASE("sizes are bytes or a number with K, M, G or T, powers of 1024") {
  struct Case {
    const char* text;
    std::uint64_t bytes;
  };
  for (const Case& c : {
           Case{"16777216", 16 * kMiB},
           Case{"16384K", 16 * kMiB},
           Case{"16M", 16 * kMiB},
           Case{"16m", 16 * kMiB},
           Case{"16MiB", 16 * kMiB},
           Case{"512M", 512 * kMiB},
           Case{"2G", 2 * kGiB},
           Case{"2g", 2 * kGiB},
           Case{"2GiB", 2 * kGiB},
           Case{"1T", 1ull << 40},
           Case{"16T", kMaxVolumeSize},
           Case{"16TiB", kMaxVolumeSize},
           Case{"017M", 17 * kMiB},
       }) {
    CAPTURE(c.text);
    auto parsed = parseVolumeSize(c.text);
    REQUIRE_MESSAGE(parsed.ok(), parsed.error());
    CHECK(*parsed == c.bytes);
  }
}

TEST_CASE("a size that breaks a rule is refused, naming the text and the rule") {
  struct Case {
    const char* text;
    const char* rule;
  };
  for (const Case& c : {
           Case{"", "the size is empty"},
           Case{"-1G", "is negative"},
           Case{"-0", "is negative"},
           Case{"12X", "is not a size (use bytes or a number with K, M, G or T, as in 512M)"},
           Case{"G", "is not a size"},
           Case{"1.5G", "is not a size"},
           Case{"+1G", "is not a size"},
           Case{" 1G", "is not a size"},
           Case{"1G ", "is not a size"},
           Case{"1 G", "is not a size"},
           Case{"64MB", "is not a size"},
           Case{"1Gi", "is not a size"},
           Case{"1GG", "is not a size"},
           Case{"0", "is zero"},
           Case{"0G", "is zero"},
           Case{"1000", "is not a multiple of the 4096-byte sector size"},
           Case{"16777217", "is not a multiple of the 4096-byte sector size"},
           Case{"4096", "is below the smallest volume, 16 MiB"},
           Case{"1M", "is below the smallest volume, 16 MiB"},
           Case{"17T", "is above the largest volume, 16 TiB"},
           Case{"99999999999999999999999", "is above the largest volume"},
           Case{"18446744073709551615", "is not a multiple"},
           Case{"16777216T", "is above the largest volume"},  // overflows 64 bits
       }) {
    CAPTURE(c.text);
    auto parsed = parseVolumeSize(c.text);
    REQUIRE_FALSE(parsed.ok());
    INFO("error: ", parsed.error());
    CHECK(contains(parsed.error(), c.rule));
    if (*c.text != '\0') CHECK(contains(parsed.error(), "size '" + std::string(c.text) + "'"));
  }
}

TEST_CASE("byte counts are shown in the largest unit, with one decimal at most") {
  CHECK(formatBytes(0) == "0 B");
  CHECK(formatBytes(100) == "100 B");
  CHECK(formatBytes(1023) == "1023 B");
  CHECK(formatBytes(1024) == "1 KiB");
  CHECK(formatBytes(1536) == "1.5 KiB");
  CHECK(formatBytes(4096) == "4 KiB");
  CHECK(formatBytes(512 * kMiB) == "512 MiB");
  CHECK(formatBytes(16 * kMiB + 4096) == "16 MiB");
  CHECK(formatBytes(kMiB - 1) == "1 MiB");
  CHECK(formatBytes(3 * kGiB / 2) == "1.5 GiB");
  CHECK(formatBytes(kMaxVolumeSize) == "16 TiB");
  CHECK(formatBytes(UINT64_MAX) == "16 EiB");
}

TEST_CASE("a lease names the enclave by CID, or the unix peer by uid and pid, and since when") {
  CHECK(vsockLease(16).describe() == "CID 16 since 2026-11-26T17:30:05Z");
  Lease local;
  local.peer.kind = Peer::Kind::unix_socket;
  local.peer.uid = 0;
  local.peer.pid = 123;
  local.since = kThen;
  CHECK(local.describe() == "uid 0 pid 123 since 2026-11-26T17:30:05Z");
  CHECK(Lease{}.empty());
  CHECK_FALSE(local.empty());
  CHECK(Lease{}.describe() == "another process (no lease record)");
}

// ---- create and open --------------------------------------------------------------------------

TEST_CASE("create makes a sparse image that opens with the size it was given") {
  TempDir dir;
  std::string path = makeVolume(dir, kGiB);
  struct stat st = statOf(path);
  CHECK(static_cast<std::uint64_t>(st.st_size) == kVolumeDataOffset + kGiB);
  CHECK(static_cast<std::uint64_t>(st.st_blocks) * 512 <= 64 * 1024);
  CHECK((st.st_mode & 07777) == 0600);

  auto header = readBytes(path, 16, 0);
  CHECK(std::string(header.begin(), header.end()) == kVolumeMagic);

  VolumeFile volume = openVolume(path, false);
  CHECK(volume.path() == path);
  CHECK(volume.header().version == 1u);
  CHECK(volume.header().sectorSize == kVolumeSectorSize);
  CHECK(volume.header().dataOffset == kVolumeDataOffset);
  CHECK(volume.header().size == kGiB);
  CHECK(volume.header().flags == 0u);
  CHECK(volume.header().created > 0);
  CHECK(volume.allocatedBytes() <= 64 * 1024);
  CHECK_FALSE(volume.holder().has_value());
}

TEST_CASE("create refuses a path that exists and leaves that file alone") {
  TempDir dir;
  std::string path = dir / "db.img";
  test::writeFile(path, "precious");
  auto created = VolumeFile::create(path, 16 * kMiB, std::nullopt);
  REQUIRE_FALSE(created.ok());
  CHECK(created.error() == "volume " + path + " already exists; refusing to overwrite it");
  CHECK(test::readFile(path) == "precious");
}

TEST_CASE("create refuses a size that breaks the rules, and leaves nothing behind") {
  TempDir dir;
  std::string path = dir / "db.img";
  for (std::uint64_t size : {std::uint64_t{0}, 16 * kMiB + 1, kMiB, kMaxVolumeSize + 4096}) {
    CAPTURE(size);
    auto created = VolumeFile::create(path, size, std::nullopt);
    REQUIRE_FALSE(created.ok());
    CHECK(contains(created.error(), "cannot create volume " + path));
    CHECK_FALSE(exists(path));
  }
}

TEST_CASE("create in a missing directory fails naming the path and leaves nothing") {
  TempDir dir;
  std::string path = dir / "missing/db.img";
  auto created = VolumeFile::create(path, 16 * kMiB, std::nullopt);
  REQUIRE_FALSE(created.ok());
  CHECK(created.error() == "cannot create volume " + path + ": No such file or directory");
}

TEST_CASE("open refuses a file that is not a volume") {
  TempDir dir;
  test::writeFile(dir / "notes.txt", "hello\n");
  CHECK(openError(dir / "notes.txt") == dir / "notes.txt" + " is not an enclavefs volume");
  test::writeFile(dir / "empty", "");
  CHECK(contains(openError(dir / "empty"), "is not an enclavefs volume"));
  CHECK(openError(dir.path()) == dir.path() + " is not an enclavefs volume (not a regular file)");
  CHECK(openError(dir / "missing") ==
        "cannot open volume " + dir / "missing" + ": No such file or directory");
}

TEST_CASE("open refuses each kind of damaged header, saying what is wrong") {
  TempDir dir;
  std::string path = makeVolume(dir);

  SUBCASE("bad magic") {
    writeBytes(path, {'E'}, 0);
    CHECK(openError(path) == path + " is not an enclavefs volume");
  }
  SUBCASE("a flipped checksum byte") {
    auto byte = readBytes(path, 1, 60);
    byte[0] ^= 0x01;
    writeBytes(path, byte, 60);
    CHECK(openError(path) == "volume " + path + ": header is corrupt (checksum mismatch)");
  }
  SUBCASE("a flipped size byte") {
    auto byte = readBytes(path, 1, 35);
    byte[0] ^= 0x10;
    writeBytes(path, byte, 35);
    CHECK(openError(path) == "volume " + path + ": header is corrupt (checksum mismatch)");
  }
  SUBCASE("a file shorter than its header claims") {
    REQUIRE(::truncate(path.c_str(), static_cast<off_t>(kVolumeDataOffset + 16 * kMiB - 4096)) ==
            0);
    std::string error = openError(path);
    CHECK(contains(error, "shorter than the " + std::to_string(kVolumeDataOffset + 16 * kMiB)));
  }
  SUBCASE("a file cut inside its header") {
    REQUIRE(::truncate(path.c_str(), 40) == 0);
    CHECK(contains(openError(path), "header is cut short"));
  }
  SUBCASE("an unknown flag") {
    rewriteHeader(path, [](auto& h) { putLe(h, 48, 1, 8); });
    CHECK(openError(path) ==
          "volume " + path + ": unknown flags 0x1 (written by a newer enclavefs?)");
  }
  SUBCASE("a sector size other than 4096") {
    rewriteHeader(path, [](auto& h) { putLe(h, 20, 512, 4); });
    CHECK(openError(path) == "volume " + path + ": sector size 512 is not supported (only 4096)");
  }
  SUBCASE("another format version") {
    rewriteHeader(path, [](auto& h) { putLe(h, 16, 2, 4); });
    CHECK(contains(openError(path), "format version 2 is not supported"));
  }
  SUBCASE("another data offset") {
    rewriteHeader(path, [](auto& h) { putLe(h, 24, 8192, 8); });
    CHECK(contains(openError(path), "data offset 8192 is not supported"));
  }
  SUBCASE("a size that is not whole sectors") {
    rewriteHeader(path, [](auto& h) { putLe(h, 32, 16 * kMiB - 512, 8); });
    CHECK(contains(openError(path), "is not a multiple of the 4096-byte sector size"));
  }
  SUBCASE("a size beyond the limit") {
    rewriteHeader(path, [](auto& h) { putLe(h, 32, kMaxVolumeSize + 4096, 8); });
    CHECK(contains(openError(path), "is above the largest volume"));
  }
}

TEST_CASE("a file longer than its header says (an interrupted grow) opens with the header's size") {
  TempDir dir;
  std::string path = makeVolume(dir);
  REQUIRE(::truncate(path.c_str(), static_cast<off_t>(kVolumeDataOffset + 32 * kMiB)) == 0);
  CHECK(openVolume(path, false).header().size == 16 * kMiB);
}

// ---- the lock ---------------------------------------------------------------------------------

TEST_CASE("a volume acquired through one open is refused to every other, naming the holder") {
  TempDir dir;
  std::string path = makeVolume(dir);
  const std::string inUse = "volume db is in use by CID 16 since 2026-11-26T17:30:05Z";
  {
    VolumeFile first = openVolume(path);
    auto acquired = first.acquire(vsockLease(16), "volume db");
    REQUIRE_MESSAGE(acquired.ok(), acquired.error());
    CHECK(first.locked());
    CHECK_FALSE(first.holder().has_value());  // its own lock is no conflict

    VolumeFile second = openVolume(path);
    auto refused = second.acquire(vsockLease(17), "volume db");
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error() == inUse);
    auto maintenance = second.lockForMaintenance("volume db");
    REQUIRE_FALSE(maintenance.ok());
    CHECK(maintenance.error() == inUse);
    CHECK_FALSE(second.locked());

    // Anyone may ask, also through a read-only open.
    auto holder = openVolume(path, false).holder();
    REQUIRE(holder.has_value());
    CHECK(holder->peer.kind == Peer::Kind::vsock);
    CHECK(holder->peer.cid == 16u);
    CHECK(holder->since == kThen);
    CHECK(holder->serverPid == 4242u);
    CHECK(holder->clientId == 7u);
  }
  // The first is gone: the lock is free and its record cleared.
  VolumeFile next = openVolume(path);
  CHECK_FALSE(next.holder().has_value());
  CHECK(readBytes(path, 64, 512) == std::vector<unsigned char>(64, 0));
  auto acquired = next.acquire(vsockLease(17), "volume db");
  CHECK_MESSAGE(acquired.ok(), acquired.error());
}

TEST_CASE("a unix peer's lease names its uid and pid") {
  TempDir dir;
  std::string path = makeVolume(dir);
  Lease lease;
  lease.peer.kind = Peer::Kind::unix_socket;
  lease.peer.uid = 1000;
  lease.peer.gid = 1001;
  lease.peer.pid = 321;
  lease.since = kThen;
  VolumeFile first = openVolume(path);
  REQUIRE(first.acquire(lease, "volume db").ok());
  auto refused = openVolume(path).lockForMaintenance("volume db");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error() == "volume db is in use by uid 1000 pid 321 since 2026-11-26T17:30:05Z");
  auto holder = openVolume(path, false).holder();
  REQUIRE(holder.has_value());
  CHECK(holder->peer.gid == 1001u);
}

TEST_CASE("a maintenance lock is named as a holder without a record") {
  TempDir dir;
  std::string path = makeVolume(dir);
  VolumeFile tool = openVolume(path);
  REQUIRE(tool.lockForMaintenance("volume db").ok());
  auto refused = openVolume(path).acquire(vsockLease(16), "volume db");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error() == "volume db is in use by another process (no lease record)");
  auto holder = openVolume(path, false).holder();
  REQUIRE(holder.has_value());
  CHECK(holder->empty());
}

TEST_CASE("the record of a holder that died is never taken for the current holder") {
  TempDir dir;
  std::string path = makeVolume(dir);
  // A child takes the volume and dies without cleaning up: the kernel drops its lock, its
  // record stays.
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    auto volume = VolumeFile::open(path, true);
    bool ok = volume.ok() && volume->acquire(vsockLease(16), "volume db").ok();
    ::_exit(ok ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  CHECK(readBytes(path, 64, 512) != std::vector<unsigned char>(64, 0));
  CHECK_FALSE(openVolume(path, false).holder().has_value());

  VolumeFile tool = openVolume(path);
  REQUIRE(tool.lockForMaintenance("volume db").ok());
  auto refused = openVolume(path).acquire(vsockLease(17), "volume db");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error() == "volume db is in use by another process (no lease record)");
}

TEST_CASE("release clears the record and frees the lock") {
  TempDir dir;
  std::string path = makeVolume(dir);
  VolumeFile first = openVolume(path);
  REQUIRE(first.acquire(vsockLease(16), "volume db").ok());
  first.release();
  CHECK_FALSE(first.locked());
  CHECK(readBytes(path, 64, 512) == std::vector<unsigned char>(64, 0));
  VolumeFile second = openVolume(path);
  CHECK(second.acquire(vsockLease(17), "volume db").ok());
}

TEST_CASE("a moved volume keeps its lock, and assigning over a holder releases it") {
  TempDir dir;
  std::string path = makeVolume(dir);
  std::string other = makeVolume(dir, 16 * kMiB, "other.img");
  VolumeFile first = openVolume(path);
  REQUIRE(first.acquire(vsockLease(16), "volume db").ok());
  VolumeFile moved = std::move(first);
  CHECK(moved.locked());
  CHECK(openVolume(path, false).holder().has_value());
  moved = openVolume(other);
  CHECK_FALSE(openVolume(path, false).holder().has_value());
}

TEST_CASE("a read-only open cannot take the lock") {
  TempDir dir;
  std::string path = makeVolume(dir);
  auto refused = openVolume(path, false).lockForMaintenance("volume db");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error() == "cannot lock volume db: it was opened read-only");
}

// ---- grow -------------------------------------------------------------------------------------

TEST_CASE("grow extends the file and then the header; it never shrinks") {
  TempDir dir;
  std::string path = makeVolume(dir, 32 * kMiB);
  VolumeFile volume = openVolume(path);

  auto unlocked = volume.grow(64 * kMiB);
  REQUIRE_FALSE(unlocked.ok());
  CHECK(contains(unlocked.error(), "without holding its lock"));

  REQUIRE(volume.lockForMaintenance("volume db").ok());
  auto shrink = volume.grow(16 * kMiB);
  REQUIRE_FALSE(shrink.ok());
  CHECK(shrink.error() == "cannot resize volume " + path +
                              " from 32 MiB to 16 MiB: that would shrink it; volumes only grow");
  CHECK(volume.header().size == 32 * kMiB);
  CHECK(static_cast<std::uint64_t>(statOf(path).st_size) == kVolumeDataOffset + 32 * kMiB);

  auto tooLarge = volume.grow(kMaxVolumeSize + 4096);
  REQUIRE_FALSE(tooLarge.ok());
  CHECK(contains(tooLarge.error(), "is above the largest volume"));
  auto ragged = volume.grow(64 * kMiB + 512);
  REQUIRE_FALSE(ragged.ok());
  CHECK(contains(ragged.error(), "is not a multiple"));

  CHECK(volume.grow(32 * kMiB).ok());
  auto grown = volume.grow(kGiB);
  REQUIRE_MESSAGE(grown.ok(), grown.error());
  CHECK(volume.header().size == kGiB);
  struct stat st = statOf(path);
  CHECK(static_cast<std::uint64_t>(st.st_size) == kVolumeDataOffset + kGiB);
  CHECK(static_cast<std::uint64_t>(st.st_blocks) * 512 <= 64 * 1024);

  VolumeFile reopened = openVolume(path, false);
  CHECK(reopened.header().size == kGiB);
  CHECK(reopened.header().created == volume.header().created);
}
