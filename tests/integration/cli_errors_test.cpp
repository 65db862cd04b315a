// Bad input to enclavefs-mount and enclavefs-hostd: each mistake gives one clear error line that
// names what is wrong, a non-zero exit, and leaves nothing behind: no mount, no socket, no
// running process.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "support/harness.h"
#include "support/require_root.h"

using namespace enclavefs::test;

namespace {

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// Checks the program failed with exactly one error line of its own, naming every one of
// `mentions`. Returns that line.
std::string expectOneErrorLine(const RunResult& r, const std::string& program,
                               const std::vector<std::string>& mentions) {
  INFO("output: [" << r.output << "]");
  CHECK(r.exitCode > 0);  // an exit status, not a signal (-1) or a hang
  auto lines = linesOf(r.output);
  REQUIRE(lines.size() == 1);
  const std::string& line = lines.front();
  CHECK(line.rfind(program + ": error: ", 0) == 0);
  for (const auto& m : mentions) {
    CAPTURE(m);
    CHECK(line.find(m) != std::string::npos);
  }
  return line;
}

struct MountSetup {
  TempDir dir;
  std::string exportDir = dir / "export";
  std::string mnt = dir / "mnt";
  MountSetup() {
    ::mkdir(exportDir.c_str(), 0755);
    ::mkdir(mnt.c_str(), 0755);
    writeFile(exportDir + "/f", "data");
  }
};

// enclavefs-mount with `args`; the mount points the tests make are empty directories (or
// files), so forceMount allows those unless the test gives its own --force-mount.
RunResult mountRun(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {mountPath()};
  if (std::find(args.begin(), args.end(), "--force-mount") == args.end()) {
    argv.insert(argv.end(), {"--force-mount", "empty,file"});
  }
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, std::chrono::seconds(20));
}

RunResult hostdRun(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {hostdPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, std::chrono::seconds(20));
}

const std::string kMount = "enclavefs-mount";
const std::string kHostd = "enclavefs-hostd";

}  // namespace

// ---- enclavefs-mount ------------------------------------------------------------------------

TEST_CASE("mount: an export the host does not have is one error naming the export") {
  MountSetup s;
  HostServer server(s.dir / "sock", {"--export", "data=" + s.exportDir});
  auto r = mountRun({"--host", server.address(), "--export", "no-such-export", s.mnt});
  expectOneErrorLine(r, kMount, {"no-such-export"});
  CHECK_FALSE(isMountPoint(s.mnt));
  // The server shrugged it off: a good mount still works, and it stops cleanly.
  {
    Mount mount(server.address(), "data", s.mnt);
    CHECK(readFile(mount / "f") == "data");
  }
  CHECK_FALSE(isMountPoint(s.mnt));
  CHECK(server.stop() == 0);
}

TEST_CASE("mount: an unreachable host is one error naming the address") {
  MountSetup s;
  std::string sock = s.dir / "nobody-here.sock";
  auto r = mountRun({"--host", "unix:" + sock, "--export", "data", s.mnt});
  expectOneErrorLine(r, kMount, {sock});
  CHECK_FALSE(isMountPoint(s.mnt));
  CHECK_FALSE(exists(sock));
}

TEST_CASE("mount: an existing mount point without --force-mount is one error naming it and "
          "the flag, checked before connecting") {
  MountSetup s;
  HostServer server(s.dir / "sock", {"--export", "data=" + s.exportDir});
  auto r = run({mountPath(), "--host", server.address(), "--export", "data", s.mnt});
  expectOneErrorLine(r, kMount, {s.mnt, "an empty directory", "forceMount none", "'empty' or 'all'"});
  CHECK_FALSE(isMountPoint(s.mnt));
  // Without a host at all the mount point is still what is reported.
  auto r2 = run({mountPath(), "--host", "unix:" + (s.dir / "absent.sock"), "--export", "data", s.mnt});
  expectOneErrorLine(r2, kMount, {s.mnt, "forceMount none"});
}

TEST_CASE("mount: a mount point of the wrong kind is one error naming it") {
  MountSetup s;
  HostServer server(s.dir / "sock", {"--export", "data=" + s.exportDir});
  std::string file = s.dir / "file";
  writeFile(file, "x");
  auto r = mountRun({"--host", server.address(), "--export", "data", file});
  expectOneErrorLine(r, kMount, {file, "is a regular file, but export 'data' needs a directory"});
  CHECK_FALSE(isMountPoint(file));
  CHECK(readFile(file) == "x");
}

TEST_CASE("mount: an unknown --force-mount flag is one error naming it") {
  MountSetup s;
  auto r = mountRun({"--host", "unix:" + (s.dir / "sock"), "--export", "data", "--force-mount",
                     "empty,everything", s.mnt});
  expectOneErrorLine(r, kMount, {"everything"});
}

TEST_CASE("mount: a malformed address is one error quoting it") {
  MountSetup s;
  for (const char* address : {"tcp:1", "vsock:x:1", "unix:", "vsock:3", "/tmp/sock"}) {
    CAPTURE(address);
    auto r = mountRun({"--host", address, "--export", "data", s.mnt});
    expectOneErrorLine(r, kMount, {"'" + std::string(address) + "'"});
    CHECK_FALSE(isMountPoint(s.mnt));
  }
}

TEST_CASE("mount: an unknown or refused -o option is one error naming the option") {
  MountSetup s;
  HostServer server(s.dir / "sock", {"--export", "data=" + s.exportDir});
  for (const char* option : {"bogus", "suid", "dev", "entry_timeout=forever", "max_threads=0",
                             "busy_poll=2000"}) {
    CAPTURE(option);
    auto r = mountRun({"--host", server.address(), "--export", "data", "-o",
                       std::string("ro,") + option, s.mnt});
    expectOneErrorLine(r, kMount, {option});
    CHECK_FALSE(isMountPoint(s.mnt));
  }
  CHECK(server.stop() == 0);
}

TEST_CASE("mount: a missing required option is one error naming it") {
  MountSetup s;
  std::string address = "unix:" + (s.dir / "sock");
  SUBCASE("no --export") {
    expectOneErrorLine(mountRun({"--host", address, s.mnt}), kMount, {"--export"});
  }
  SUBCASE("no --host") {
    expectOneErrorLine(mountRun({"--export", "data", s.mnt}), kMount, {"--host"});
  }
  SUBCASE("no mount point") {
    expectOneErrorLine(mountRun({"--host", address, "--export", "data"}), kMount,
                       {"mountpoint"});
  }
  SUBCASE("an option that is not one") {
    expectOneErrorLine(mountRun({"--host", address, "--export", "data", "--bogus", s.mnt}),
                       kMount, {"--bogus"});
  }
  SUBCASE("an unknown log level") {
    expectOneErrorLine(
        mountRun({"--host", address, "--export", "data", "--log-level", "loud", s.mnt}), kMount,
        {"loud"});
  }
  CHECK_FALSE(isMountPoint(s.mnt));
}

// ---- enclavefs-hostd ------------------------------------------------------------------------

TEST_CASE("hostd: a malformed --listen is one error quoting it, and no socket is made") {
  MountSetup s;
  for (const char* address : {"tcp:1", "vsock:x:1", "unix:", "vsock:3:", "sock"}) {
    CAPTURE(address);
    auto r = hostdRun({"--listen", address, "--export", "data=" + s.exportDir});
    expectOneErrorLine(r, kHostd, {"'" + std::string(address) + "'"});
  }
  CHECK_FALSE(exists(s.dir / "sock"));
}

TEST_CASE("hostd: an --export without '=' is one error quoting it") {
  MountSetup s;
  std::string sock = s.dir / "sock";
  auto r = hostdRun({"--listen", "unix:" + sock, "--export", s.exportDir});
  expectOneErrorLine(r, kHostd, {"'" + s.exportDir + "'", "NAME=PATH"});
  CHECK_FALSE(exists(sock));
}

TEST_CASE("hostd: an export of a directory that does not exist is one error naming both") {
  MountSetup s;
  std::string sock = s.dir / "sock";
  std::string missing = s.dir / "no-such-dir";
  auto r = hostdRun({"--listen", "unix:" + sock, "--export", "data=" + s.exportDir,
                     "--export-ro", "other=" + missing});
  expectOneErrorLine(r, kHostd, {"'other'", missing});
  CHECK_FALSE(exists(sock));
  CHECK_FALSE(exists(missing));
}

TEST_CASE("hostd: an export name given twice is one error naming it") {
  MountSetup s;
  std::string sock = s.dir / "sock";
  SUBCASE("both read-write") {
    auto r = hostdRun({"--listen", "unix:" + sock, "--export", "data=" + s.exportDir,
                       "--export", "data=" + s.exportDir});
    expectOneErrorLine(r, kHostd, {"'data'"});
  }
  SUBCASE("once read-write, once read-only") {
    auto r = hostdRun({"--listen", "unix:" + sock, "--export", "data=" + s.exportDir,
                       "--export-ro", "data=" + s.dir.path()});
    expectOneErrorLine(r, kHostd, {"'data'"});
  }
  CHECK_FALSE(exists(sock));
}

TEST_CASE("hostd: an export name that is not a plain name is one error") {
  MountSetup s;
  std::string sock = s.dir / "sock";
  for (const char* name : {"..", "a/b", ""}) {
    CAPTURE(name);
    auto r = hostdRun({"--listen", "unix:" + sock, "--export", std::string(name) + "=" +
                       s.exportDir});
    expectOneErrorLine(r, kHostd, {"export"});
  }
  CHECK_FALSE(exists(sock));
}

TEST_CASE("hostd: no exports at all is one error saying what to give") {
  MountSetup s;
  std::string sock = s.dir / "sock";
  auto r = hostdRun({"--listen", "unix:" + sock});
  expectOneErrorLine(r, kHostd, {"--export"});
  CHECK_FALSE(exists(sock));
}

TEST_CASE("hostd: an unknown option is one error naming it") {
  MountSetup s;
  std::string sock = s.dir / "sock";
  auto r = hostdRun({"--listen", "unix:" + sock, "--export", "data=" + s.exportDir, "--bogus"});
  expectOneErrorLine(r, kHostd, {"--bogus"});
  CHECK_FALSE(exists(sock));
}

TEST_CASE("hostd: a missing --listen or an out-of-range limit is one error naming the option") {
  MountSetup s;
  std::string sock = s.dir / "sock";
  expectOneErrorLine(hostdRun({"--export", "data=" + s.exportDir}), kHostd, {"--listen"});
  expectOneErrorLine(hostdRun({"--listen", "unix:" + sock, "--export", "data=" + s.exportDir,
                               "--max-nodes", "5"}),
                     kHostd, {"--max-nodes"});
  expectOneErrorLine(hostdRun({"--listen", "unix:" + sock, "--export", "data=" + s.exportDir,
                               "--pool-threads", "many"}),
                     kHostd, {"--pool-threads"});
  CHECK_FALSE(exists(sock));
}

TEST_CASE("hostd: a --listen path that is not a socket is refused and left alone") {
  MountSetup s;
  std::string path = s.dir / "not-a-socket";
  writeFile(path, "precious");
  auto r = hostdRun({"--listen", "unix:" + path, "--export", "data=" + s.exportDir});
  expectOneErrorLine(r, kHostd, {path});
  CHECK(readFile(path) == "precious");
}

TEST_CASE("hostd: a second server on a live server's socket is refused and the first keeps it") {
  MountSetup s;
  HostServer first(s.dir / "sock", {"--export", "data=" + s.exportDir});
  auto r = hostdRun({"--listen", first.address(), "--export", "data=" + s.exportDir});
  expectOneErrorLine(r, kHostd, {first.socketPath()});
  CHECK(exists(first.socketPath()));
  {
    Mount mount(first.address(), "data", s.mnt);
    CHECK(readFile(mount / "f") == "data");
  }
  CHECK(first.stop() == 0);
}

TEST_CASE("hostd: a --listen socket in a directory that does not exist is one error") {
  MountSetup s;
  std::string sock = s.dir / "no-such-dir/sock";
  auto r = hostdRun({"--listen", "unix:" + sock, "--export", "data=" + s.exportDir});
  expectOneErrorLine(r, kHostd, {sock});
  CHECK_FALSE(exists(sock));
}
