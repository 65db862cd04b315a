// Write-behind: a basic mount answers write() once the request is sent, and the host runs
// every later request of that mount after the write. These tests check what that promises
// (docs/consistency.md): the host has a write before it answers any later request, a file
// is whole on the host when close() returns, an error the host meets reaches the next close
// or fsync, and writers that asked for each outcome (O_DSYNC, -o write_through) get it from
// write() itself.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "support/harness.h"
#include "support/require_root.h"

using namespace enclavefs::test;

namespace {

// An export and a mount of it. `small`: the export is a tmpfs of 256 KiB, so the host's
// writes run out of space.
struct Exported {
  explicit Exported(bool small = false, const std::vector<std::string>& mountOptions = {}) {
    std::filesystem::create_directories(dir / "export");
    std::filesystem::create_directories(dir / "m");
    if (small) REQUIRE(::mount("tmpfs", (dir / "export").c_str(), "tmpfs", 0, "size=256k") == 0);
    server.emplace(dir / "sock", std::vector<std::string>{"--export", "data=" + (dir / "export")});
    std::vector<std::string> extra;
    for (const auto& o : mountOptions) extra.insert(extra.end(), {"-o", o});
    mount.emplace(server->address(), "data", dir / "m", extra);
  }
  ~Exported() {
    mount.reset();
    server.reset();
    ::umount2((dir / "export").c_str(), MNT_DETACH);  // the small tmpfs, if any
  }
  TempDir dir;
  std::optional<HostServer> server;
  std::optional<Mount> mount;
};

// Writes 4 KiB blocks to `fd` until `bytes` are written or a write fails; the failing
// write's errno, or 0.
int writeBlocks(int fd, std::size_t bytes) {
  const std::string block(4096, 'b');
  for (std::size_t done = 0; done < bytes; done += block.size()) {
    if (::write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size())) return errno;
  }
  return 0;
}

int errnoOf(const std::function<int()>& call) { return call() == 0 ? 0 : errno; }

}  // namespace

TEST_CASE("the host has a write before it answers the mount's next request") {
  Exported e;
  const Mount& m = *e.mount;
  int fd = ::open((m / "log").c_str(), O_CREAT | O_WRONLY, 0644);
  REQUIRE(fd >= 0);
  for (int i = 0; i < 200; ++i) {
    const std::string line = "line " + std::to_string(i) + "\n";
    REQUIRE(::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()));
    // Any later request is answered only after the write: a mkdir is one the kernel
    // cannot answer from its caches.
    const std::string marker = m / ("marker" + std::to_string(i));
    REQUIRE(::mkdir(marker.c_str(), 0755) == 0);
    const std::string onHost = readFile(e.dir / "export/log");
    REQUIRE(onHost.size() >= line.size());
    CHECK(onHost.substr(onHost.size() - line.size()) == line);
  }
  ::close(fd);
}

TEST_CASE("a file written in many pieces is whole on the host when close() returns") {
  Exported e;
  const Mount& m = *e.mount;
  for (int i = 0; i < 20; ++i) {
    const std::string name = "f" + std::to_string(i);
    int fd = ::open((m / name).c_str(), O_CREAT | O_WRONLY, 0644);
    REQUIRE(fd >= 0);
    std::string expected;
    for (int piece = 0; piece < 50; ++piece) {
      const std::string data = std::to_string(i) + ":" + std::to_string(piece) + ";";
      REQUIRE(::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()));
      expected += data;
    }
    REQUIRE(::close(fd) == 0);
    CHECK(readFile(e.dir / ("export/" + name)) == expected);
  }
}

TEST_CASE("a write error met on the host after write() returned is reported by close()") {
  Exported small(true);
  int fd = ::open((*small.mount / "big").c_str(), O_CREAT | O_WRONLY, 0644);
  REQUIRE(fd >= 0);
  const int failedWrite = writeBlocks(fd, 1 << 20);
  const int closed = ::close(fd) == 0 ? 0 : errno;
  CHECK(failedWrite == 0);  // answered before the host ran it
  CHECK(closed == ENOSPC);
  // Space freed, the file system works again, and an fsync reports a later failure.
  REQUIRE(::unlink((*small.mount / "big").c_str()) == 0);
  fd = ::open((*small.mount / "again").c_str(), O_CREAT | O_WRONLY, 0644);
  REQUIRE(fd >= 0);
  const int failedAgain = writeBlocks(fd, 1 << 20);
  const int synced = ::fsync(fd) == 0 ? 0 : errno;
  CHECK(failedAgain == 0);
  CHECK(synced == ENOSPC);
  ::close(fd);
}

TEST_CASE("close() of a locked file reports a write error too, and ends the lock") {
  Exported small(true);
  int fd = ::open((*small.mount / "locked").c_str(), O_CREAT | O_RDWR, 0644);
  REQUIRE(fd >= 0);
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  REQUIRE(::fcntl(fd, F_SETLK, &lock) == 0);
  CHECK(writeBlocks(fd, 1 << 20) == 0);
  CHECK(errnoOf([&] { return ::close(fd); }) == ENOSPC);
  // The lock ended with the close: a host process can take it.
  int onHost = ::open((small.dir / "export/locked").c_str(), O_RDWR);
  REQUIRE(onHost >= 0);
  CHECK(::fcntl(onHost, F_SETLK, &lock) == 0);
  ::close(onHost);
}

TEST_CASE("O_DSYNC writers and write_through mounts get each write's error from write()") {
  SUBCASE("O_DSYNC") {
    Exported small(true);
    int fd = ::open((*small.mount / "big").c_str(), O_CREAT | O_WRONLY | O_DSYNC, 0644);
    REQUIRE(fd >= 0);
    CHECK(writeBlocks(fd, 1 << 20) == ENOSPC);
    CHECK(::close(fd) == 0);
  }
  SUBCASE("-o write_through") {
    Exported small(true, {"write_through"});
    int fd = ::open((*small.mount / "big").c_str(), O_CREAT | O_WRONLY, 0644);
    REQUIRE(fd >= 0);
    CHECK(writeBlocks(fd, 1 << 20) == ENOSPC);
    CHECK(::close(fd) == 0);
  }
}
