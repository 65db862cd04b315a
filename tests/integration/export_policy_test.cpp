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
#include <vector>

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

// ---- the host configuration file --------------------------------------------------------------

namespace {

// A server configured by a YAML file; `exportsYaml` is the text under `exports:`.
struct Configured {
  explicit Configured(const std::string& exportsYaml, const std::vector<std::string>& extra = {})
      : server(dir / "sock", arguments(exportsYaml, extra)) {}

  std::vector<std::string> arguments(const std::string& exportsYaml,
                                     const std::vector<std::string>& extra) {
    ::mkdir((dir / "export").c_str(), 0755);
    std::string yaml = "version: 1\nexports:\n" + exportsYaml;
    size_t at;
    while ((at = yaml.find("EXPORT")) != std::string::npos) yaml.replace(at, 6, dir / "export");
    writeFile(dir / "hostd.yaml", yaml);
    std::vector<std::string> args = {"--config", dir / "hostd.yaml"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
  std::string mountPoint(const std::string& name) {
    ::mkdir((dir / name).c_str(), 0755);
    return dir / name;
  }
  RunResult tryMount(const std::string& name) {
    return run({mountPath(), "--host", server.address(), "--export", "data", "--force-mount", "empty",
                mountPoint(name)});
  }

  TempDir dir;
  HostServer server;
};

}  // namespace

TEST_CASE("a peer the export's policy does not allow is refused with an error naming the export") {
  Configured c("  - name: data\n    path: EXPORT\n    allow:\n      uids: [12345]\n");
  auto r = c.tryMount("mnt");
  CHECK(r.exitCode == 1);
  CHECK(r.output.find("may not mount export 'data'") != std::string::npos);
  CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);
  CHECK_FALSE(isMountPoint(c.dir / "mnt"));
  CHECK(c.server.log().find("may not mount export 'data'") != std::string::npos);
}

TEST_CASE("a peer the export's policy allows mounts it") {
  Configured c("  - name: data\n    path: EXPORT\n    allow:\n      uids: [" +
               std::to_string(::geteuid()) + "]\n");
  Mount mount(c.server.address(), "data", c.mountPoint("mnt"));
  writeFile(mount / "hello", "hi");
  CHECK(readFile(c.dir / "export/hello") == "hi");
}

TEST_CASE("connections per peer are capped per export") {
  Configured c("  - name: data\n    path: EXPORT\n    maxConnectionsPerPeer: 1\n");
  Mount first(c.server.address(), "data", c.mountPoint("one"));
  auto second = c.tryMount("two");
  CHECK(second.exitCode == 1);
  CHECK(second.output.find("already has 1 connections") != std::string::npos);
  CHECK_FALSE(isMountPoint(c.dir / "two"));
  first.unmount();
  // The slot is free again once the first client is gone (its session ends asynchronously).
  RunResult again;
  for (int i = 0; i < 100; ++i) {
    again = c.tryMount("two");
    if (again.exitCode == 0) break;
    ::usleep(20000);
  }
  CHECK(again.exitCode == 0);
}

TEST_CASE("open handles per peer are capped across its connections") {
  Configured c("  - name: data\n    path: EXPORT\n    maxHandlesPerPeer: 16\n");
  Mount a(c.server.address(), "data", c.mountPoint("a"));
  Mount b(c.server.address(), "data", c.mountPoint("b"));
  std::vector<int> fds;
  int lastErr = 0;
  for (int i = 0; i < 20; ++i) {
    const Mount& m = i % 2 == 0 ? a : b;
    int fd = ::open((m / ("f" + std::to_string(i))).c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    if (fd < 0) {
      lastErr = errno;
      break;
    }
    fds.push_back(fd);
  }
  CHECK(fds.size() == 16);
  CHECK(lastErr == EMFILE);
  for (int fd : fds) ::close(fd);
}

TEST_CASE("an export read-only in the config refuses writes, and the command line adds exports") {
  Configured c("  - name: data\n    path: EXPORT\n    readOnly: true\n",
               {"--export-ro", "extra=/usr/share"});
  Mount mount(c.server.address(), "data", c.mountPoint("mnt"));
  errno = 0;
  CHECK(::open((mount / "new").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644) == -1);
  CHECK(errno == EROFS);
  Mount extra(c.server.address(), "extra", c.mountPoint("extra"));
  CHECK(isMountPoint(c.dir / "extra"));
}

TEST_CASE("a broken config stops the server with one line naming the file, line and key") {
  TempDir dir;
  writeFile(dir / "bad.yaml", "version: 1\nlisten: unix:/tmp/x\nlimits:\n  maxClient: 3\n");
  auto r = run({hostdPath(), "--config", dir / "bad.yaml"});
  CHECK(r.exitCode == 1);
  CHECK(r.output.find(dir / "bad.yaml:4") != std::string::npos);
  CHECK(r.output.find("maxClient") != std::string::npos);
  CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);
}
