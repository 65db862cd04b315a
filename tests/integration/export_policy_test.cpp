// Per-export policy on the host: whose files the enclave creates (owner mapping), and the
// ids the enclave may give them.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <string>

#include "support/harness.h"
#include "support/require_root.h"

using namespace enclavefs::test;

namespace {

// Runs `step` in a child with the given ids; returns its exit code (0 = success).
int asUser(uid_t uid, gid_t gid, const std::function<int()>& step) {
  pid_t child = ::fork();
  if (child == 0) {
    if (::setresgid(gid, gid, gid) != 0 || ::setresuid(uid, uid, uid) != 0) _exit(100);
    _exit(step());
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Creates a file, a directory, a fifo and a symlink in `dir`; 0 or the step that failed.
int createEntries(const std::string& dir) {
  int fd = ::open((dir + "/file").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) return 1;
  ::close(fd);
  if (::mkdir((dir + "/dir").c_str(), 0755) != 0) return 2;
  if (::mkfifo((dir + "/fifo").c_str(), 0644) != 0) return 3;
  if (::symlink("file", (dir + "/link").c_str()) != 0) return 4;
  return 0;
}

struct stat lstatOf(const std::string& path) {
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st;
}

struct Served {
  explicit Served(const std::vector<std::string>& serverArgs)
      : server(dir / "sock", withExport(serverArgs)), mount(server.address(), "data", mnt()) {
    REQUIRE(::chmod(dir.path().c_str(), 0755) == 0);
    made(dir / "export/open");
    REQUIRE(::chmod((dir / "export/open").c_str(), 0777) == 0);
  }
  std::string mnt() {
    made(dir / "mnt");
    return dir / "mnt";
  }
  std::vector<std::string> withExport(std::vector<std::string> args) {
    made(dir / "export");
    args.insert(args.begin(), {"--export", "data=" + (dir / "export")});
    return args;
  }
  static void made(const std::string& path) { ::mkdir(path.c_str(), 0755); }

  TempDir dir;
  HostServer server;
  Mount mount;
};

}  // namespace

TEST_CASE("by default what an enclave user creates belongs to the server's own ids") {
  Served s({});
  REQUIRE(asUser(1234, 1234, [&] { return createEntries(s.mount / "open"); }) == 0);
  for (const char* name : {"file", "dir", "fifo", "link"}) {
    CAPTURE(name);
    struct stat host = lstatOf(s.dir / "export/open/" + name);
    CHECK(host.st_uid == ::geteuid());
    CHECK(host.st_gid == ::getegid());
    struct stat seen = lstatOf(s.mount / "open/" + name);
    CHECK(seen.st_uid == host.st_uid);
    CHECK(seen.st_gid == host.st_gid);
  }
}

TEST_CASE("squash:UID:GID gives everything the enclave creates to those ids") {
  Served s({"--owner", "squash:4321:4322"});
  REQUIRE(createEntries(s.mount / "open") == 0);
  REQUIRE(asUser(1234, 1234, [&] {
            int fd = ::open((s.mount / "open/by-user").c_str(), O_CREAT | O_WRONLY, 0644);
            return fd < 0 ? 1 : (::close(fd), 0);
          }) == 0);
  for (const char* name : {"file", "dir", "fifo", "link", "by-user"}) {
    CAPTURE(name);
    struct stat host = lstatOf(s.dir / "export/open/" + name);
    CHECK(host.st_uid == 4321u);
    CHECK(host.st_gid == 4322u);
  }
}

TEST_CASE("under squash the enclave may not give a file to other ids") {
  Served s({"--owner", "squash:4321:4322"});
  REQUIRE(createEntries(s.mount / "open") == 0);
  const std::string file = s.mount / "open/file";
  errno = 0;
  CHECK(::chown(file.c_str(), 1234, static_cast<gid_t>(-1)) == -1);
  CHECK(errno == EPERM);
  errno = 0;
  CHECK(::chown(file.c_str(), static_cast<uid_t>(-1), 1234) == -1);
  CHECK(errno == EPERM);
  CHECK(lstatOf(s.dir / "export/open/file").st_uid == 4321u);
  // Giving it the ids it already has is allowed.
  CHECK(::chown(file.c_str(), 4321, 4322) == 0);
}

TEST_CASE("squash keeps the group of a set-group-ID directory, as the kernel does") {
  Served s({"--owner", "squash:4321:4322"});
  const std::string sgid = s.dir / "export/open/sgid";
  REQUIRE(::mkdir(sgid.c_str(), 0777) == 0);
  REQUIRE(::chown(sgid.c_str(), 0, 777) == 0);
  REQUIRE(::chmod(sgid.c_str(), 02777) == 0);
  REQUIRE(createEntries(s.mount / "open/sgid") == 0);
  struct stat file = lstatOf(sgid + "/file");
  CHECK(file.st_uid == 4321u);
  CHECK(file.st_gid == 777u);
  CHECK((lstatOf(sgid + "/dir").st_mode & S_ISGID) != 0);
}

TEST_CASE("passthrough stores the enclave caller's ids") {
  Served s({"--owner", "passthrough"});
  REQUIRE(asUser(1234, 1235, [&] { return createEntries(s.mount / "open"); }) == 0);
  struct stat host = lstatOf(s.dir / "export/open/file");
  CHECK(host.st_uid == 1234u);
  CHECK(host.st_gid == 1235u);
}

TEST_CASE("a malformed --owner is refused with one line naming it") {
  TempDir dir;
  ::mkdir((dir / "export").c_str(), 0755);
  auto r = run({hostdPath(), "--listen", "unix:" + (dir / "sock"), "--export",
                "data=" + (dir / "export"), "--owner", "squash:12"});
  CHECK(r.exitCode == 1);
  CHECK(r.output.find("owner 'squash:12'") != std::string::npos);
  CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);
}
