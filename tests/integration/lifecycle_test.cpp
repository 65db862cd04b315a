// Starting, stopping and losing the pieces: the mount comes up and goes away cleanly, the
// server cleans up on SIGTERM, an enclave whose host disappears gets errors, not hangs, and
// an idle mount sits still.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <thread>

#include "support/harness.h"
#include "support/require_root.h"

using namespace enclavefs::test;
using namespace std::chrono_literals;

TEST_CASE("a mount is live when enclavefs-mount returns and gone after umount") {
  TempDir dir;
  ::mkdir((dir / "export").c_str(), 0755);
  ::mkdir((dir / "mnt").c_str(), 0755);
  writeFile(dir / "export/hello.txt", "hello\n");
  HostServer server(dir / "sock", {"--export", "data=" + (dir / "export")});
  {
    Mount mount(server.address(), "data", dir / "mnt");
    CHECK(readFile(mount / "hello.txt") == "hello\n");
    mount.unmount();
    CHECK_FALSE(isMountPoint(dir / "mnt"));
  }
  CHECK(server.stop() == 0);
}

TEST_CASE("SIGTERM stops the server cleanly and removes its socket") {
  TempDir dir;
  ::mkdir((dir / "export").c_str(), 0755);
  HostServer server(dir / "sock", {"--export", "data=" + (dir / "export")});
  CHECK(server.stop() == 0);
  struct stat st;
  CHECK(::stat((dir / "sock").c_str(), &st) != 0);
}

TEST_CASE("when the host goes away, calls fail with an error instead of hanging") {
  TempDir dir;
  ::mkdir((dir / "export").c_str(), 0755);
  ::mkdir((dir / "mnt").c_str(), 0755);
  writeFile(dir / "export/f", "data");
  HostServer server(dir / "sock", {"--export", "data=" + (dir / "export")});
  Mount mount(server.address(), "data", dir / "mnt");
  REQUIRE(readFile(mount / "f") == "data");
  server.kill();
  auto start = std::chrono::steady_clock::now();
  struct stat st;
  int rc = ::stat((mount / "new-name").c_str(), &st);
  int err = errno;
  CHECK(rc == -1);
  CHECK(err == ENOTCONN);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  int fd = ::open((mount / "other").c_str(), O_CREAT | O_WRONLY, 0644);
  CHECK(fd == -1);
}

TEST_CASE("an idle mount uses no CPU, however long it busy-polls") {
  // The receiver polls for the host's next answer (connection.h), and a FUSE worker for the
  // kernel's next request (fuse_device.h), before they sleep: that may cost CPU while
  // messages follow each other, never once they stop.
  for (const char* busyPoll : {"busy_poll=0", "busy_poll=1000"}) {
    CAPTURE(busyPoll);
    TempDir dir;
    ::mkdir((dir / "export").c_str(), 0755);
    ::mkdir((dir / "mnt").c_str(), 0755);
    HostServer server(dir / "sock", {"--export", "data=" + (dir / "export")});
    Mount mount(server.address(), "data", dir / "mnt", {"-o", busyPoll});
    for (int i = 0; i < 100; ++i) writeFile(mount / ("f" + std::to_string(i)), std::to_string(i));
    for (int i = 0; i < 100; ++i) CHECK(readFile(mount / ("f" + std::to_string(i))) == std::to_string(i));
    const pid_t daemon = mountDaemon(dir / "mnt");
    REQUIRE(daemon > 0);
    const auto before = cpuTime(daemon);
    std::this_thread::sleep_for(1s);
    CHECK(cpuTime(daemon) - before <= 50ms);
    mount.unmount();
    CHECK(server.stop() == 0);
  }
}
