// POSIX conformance of basic mounts. Every behaviour is performed twice with the same system
// calls and the same credentials: once on a plain "reference" directory on the host (outside
// the export, on the same file system) and once through the enclavefs mount. The test asserts
// the same result and errno, and where the behaviour changes state, the same state as the
// host's own stat sees it in the export and in the reference.
//
// Most behaviours need an unprivileged caller: those steps run in a forked child that takes
// another uid, gid and supplementary groups (asUser) and sends its results back through a pipe.
// The test itself runs as root, as does the server, which is told to create files with the
// caller's uid/gid ("passthrough" ownership), as the host does for each caller.
//
// The mount in this suite does not cache attributes or entries (attr_timeout=0,
// entry_timeout=0), so every stat shows the host's state right after a call; one test shows
// that a mount with the default timeouts catches up with host changes within about a second.
#include <dirent.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/harness.h"
#include "support/require_root.h"

using namespace enclavefs::test;
using namespace std::chrono_literals;

namespace {

// ---- users ---------------------------------------------------------------------------------

struct User {
  const char* name;
  uid_t uid;
  gid_t gid;
  std::vector<gid_t> groups;  // supplementary groups
};

const User kRoot{"root", 0, 0, {0}};
const User kAlice{"alice", 1000, 1000, {}};      // owns most test files
const User kBob{"bob", 1001, 1001, {}};          // in no group of interest: "other"
const User kCarol{"carol", 1002, 1002, {2000}};  // in group 2000 as a supplementary group
const User kDave{"dave", 1003, 2000, {}};        // in group 2000 as the primary group
const User kErin{"erin", 1004, 1004, {}};        // owns shared directories
constexpr gid_t kShared = 2000;                  // the group carol and dave are in
constexpr gid_t kForeign = 3000;                 // nobody's group

// ---- small helpers -------------------------------------------------------------------------

std::string errName(int err) {
  if (err == 0) return "OK";
  const char* name = ::strerrorname_np(err);
  return name != nullptr ? name : "errno " + std::to_string(err);
}

// The errno of a call that returned `rc`, or 0 if it succeeded.
int errnoOf(long rc) {
  return rc < 0 ? errno : 0;
}

int openErrno(const std::string& path, int flags, mode_t mode = 0644) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return errno;
  ::close(fd);
  return 0;
}

// Opens `path`, writes `data`, closes: the errno of the first failing step, or 0.
int writeErrno(const std::string& path, const std::string& data, int flags = O_WRONLY | O_APPEND) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  int err = 0;
  if (::write(fd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) err = errno;
  if (::close(fd) != 0 && err == 0) err = errno;
  return err;
}

// Opens `path` and reads it to the end: the errno of the first failing step, or 0.
int readErrno(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  char buf[4096];
  int err = 0;
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) err = errno;
    if (n <= 0) break;
  }
  ::close(fd);
  return err;
}

// Runs `path` in a grandchild: 0 if the exec worked, else the errno of execve.
int execErrno(const std::string& path) {
  pid_t pid = ::fork();
  if (pid < 0) return errno;
  if (pid == 0) {
    char* argv[] = {const_cast<char*>(path.c_str()), nullptr};
    char* envp[] = {nullptr};
    ::execve(path.c_str(), argv, envp);
    _exit(100 + (errno & 0x7f));
  }
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return EINTR;
  int code = WEXITSTATUS(status);
  return code >= 100 ? code - 100 : 0;
}

std::string made(const std::string& path, mode_t mode = 0755) {
  if (::mkdir(path.c_str(), mode) != 0) {
    throw std::runtime_error("mkdir " + path + ": " + std::strerror(errno));
  }
  if (::chmod(path.c_str(), mode) != 0) throw std::runtime_error("chmod " + path);
  return path;
}

struct stat lstatOf(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    throw std::runtime_error("lstat " + path + ": " + std::strerror(errno));
  }
  return st;
}

void must(int rc, const std::string& what) {
  if (rc != 0) throw std::runtime_error(what + ": " + std::strerror(errno));
}

// A file owned by uid:gid with exactly `mode`, made by root on the host.
void ownedFile(const std::string& path, uid_t uid, gid_t gid, mode_t mode,
               const std::string& content = "content\n") {
  writeFile(path, content);
  must(::chown(path.c_str(), uid, gid), "chown " + path);
  must(::chmod(path.c_str(), mode), "chmod " + path);
}

void ownedDir(const std::string& path, uid_t uid, gid_t gid, mode_t mode) {
  made(path, 0755);
  must(::chown(path.c_str(), uid, gid), "chown " + path);
  must(::chmod(path.c_str(), mode), "chmod " + path);
}

long long ns(const timespec& t) {
  return static_cast<long long>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

std::set<std::string> namesIn(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    out.insert(entry.path().filename().string());
  }
  return out;
}

// "0604" for 0604: names of the permission test's files.
std::string modeName(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

std::string modeText(mode_t mode) {
  std::ostringstream s;
  s << std::oct << mode;
  return s.str();
}

// The part of a host tree that POSIX calls decide: names, types, modes, owners, link
// counts, sizes and content, one line per entry (timestamps and inode numbers differ between
// the export and the reference by nature).
// The one place the export deliberately differs from the host (docs/security.md): the
// server never lets an enclave leave a set-user-ID file, or a set-group-ID file that the group
// may execute, on the host. What the host would do, less those bits.
mode_t asTheServerAllows(mode_t mode) {
  if (S_ISDIR(mode)) return mode & ~static_cast<mode_t>(S_ISUID);
  mode &= ~static_cast<mode_t>(S_ISUID);
  if (mode & S_IXGRP) mode &= ~static_cast<mode_t>(S_ISGID);
  return mode;
}

// `policy`: give the reference's modes as the server allows them (see asTheServerAllows).
std::string shape(const std::string& root, bool policy = false) {
  std::set<std::string> paths;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    paths.insert(entry.path().string());
  }
  std::ostringstream out;
  for (const auto& path : paths) {
    struct stat st = lstatOf(path);
    mode_t mode = policy ? asTheServerAllows(st.st_mode) : st.st_mode;
    out << path.substr(root.size()) << " mode=" << modeText(mode) << " uid=" << st.st_uid
        << " gid=" << st.st_gid << " nlink=" << st.st_nlink << " size=" << st.st_size;
    if (S_ISREG(st.st_mode)) out << " content=" << readFile(path);
    out << "\n";
  }
  return out.str();
}

// ---- running steps as another user ---------------------------------------------------------

// Runs `steps` in a forked child with the credentials of `user` (supplementary groups, then
// gid, then uid, all of real, effective and saved) and returns the numbers it returned. The
// child only makes system calls and never touches doctest.
std::vector<int> asUserMany(const User& user, const std::function<std::vector<int>()>& steps) {
  int fds[2];
  must(::pipe2(fds, O_CLOEXEC), "pipe");
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::close(fds[0]);
    if (::setgroups(user.groups.size(), user.groups.data()) != 0 ||
        ::setresgid(user.gid, user.gid, user.gid) != 0 ||
        ::setresuid(user.uid, user.uid, user.uid) != 0) {
      _exit(2);
    }
    std::vector<int> results;
    try {
      results = steps();
    } catch (...) {
      _exit(3);
    }
    const char* at = reinterpret_cast<const char*>(results.data());
    std::size_t left = results.size() * sizeof(int);
    while (left > 0) {
      ssize_t n = ::write(fds[1], at, left);
      if (n <= 0) _exit(4);
      at += n;
      left -= static_cast<std::size_t>(n);
    }
    _exit(0);
  }
  ::close(fds[1]);
  std::string bytes;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    bytes.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw std::runtime_error(std::string("the child running as ") + user.name + " failed (status " +
                             std::to_string(status) + ")");
  }
  std::vector<int> out(bytes.size() / sizeof(int));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(int));
  return out;
}

// One step as `user`: what it returned (by convention an errno, 0 for success).
int asUser(const User& user, const std::function<int()>& step) {
  return asUserMany(user, [&] { return std::vector<int>{step()}; }).at(0);
}

// ---- the fixture ---------------------------------------------------------------------------

const TempDir& openToAll(const TempDir& dir) {
  // Other users must reach the reference directory and the mount point below it.
  must(::chmod(dir.path().c_str(), 0755), "chmod " + dir.path());
  return dir;
}

const std::vector<std::string> kNoCaching = {"-o", "attr_timeout=0,entry_timeout=0"};

// A host directory served by a fresh enclavefs-hostd under the export name "data" and mounted
// by enclavefs-mount, plus a reference directory outside the export. Destruction unmounts,
// stops the server and removes everything.
struct Exported {
  explicit Exported(const std::vector<std::string>& mountArgs = kNoCaching)
      : oldUmask(::umask(022)),
        host(made(openToAll(dir) / "export")),
        ref(made(dir / "reference")),
        mnt(made(dir / "mnt")),
        server(dir / "sock", serverArguments()),
        mount(server.address(), "data", mnt, mountArgs) {}
  ~Exported() { ::umask(oldUmask); }

  // On the host, inside the export.
  std::string h(const std::string& name) const { return host + "/" + name; }
  // On the host, in the reference directory outside the export.
  std::string r(const std::string& name) const { return ref + "/" + name; }
  // Through the mount.
  std::string m(const std::string& name) const { return mount / name; }

  // Makes the same starting state in the export and in the reference (as root, on the host).
  void prepare(const std::function<void(const std::string& root)>& make) const {
    make(host);
    make(ref);
  }

  // The two roots a behaviour is performed on, named for failure messages.
  std::vector<std::pair<std::string, std::string>> roots() const {
    return {{"reference", ref}, {"mount", mnt}};
  }

  mode_t oldUmask;
  TempDir dir;
  std::string host;
  std::string ref;
  std::string mnt;
  HostServer server;
  Mount mount;

 private:
  // Everything the server is started with, in one place. Ownership is compared with what the
  // host itself does for each caller, so files must be made with the caller's ids
  // (passthrough); when a --config with an ownership mapping replaces --owner, it goes here.
  std::vector<std::string> serverArguments() const {
    return {"--export", "data=" + host, "--owner", "passthrough"};
  }
};

// Runs `step` as `user` on the reference and through the mount; checks that both give the
// same result and returns the reference's.
int same(const Exported& e, const User& user, const std::string& what,
         const std::function<int(const std::string& root)>& step) {
  int onRef = asUser(user, [&] { return step(e.ref); });
  int onMnt = asUser(user, [&] { return step(e.mnt); });
  INFO(user.name << ": " << what);
  CHECK_MESSAGE(errName(onMnt) == errName(onRef), user.name << ": " << what << ": mount "
                                                            << errName(onMnt) << ", host "
                                                            << errName(onRef));
  return onRef;
}

// Compares the stat of `name` in the export and in the reference, and through the mount with
// the export.
void sameState(const Exported& e, const std::string& name) {
  struct stat h = lstatOf(e.h(name));
  struct stat r = lstatOf(e.r(name));
  struct stat m = lstatOf(e.m(name));
  INFO("state of " << name);
  // Identical, or identical less the bits the server refuses to set (for modes the enclave set)
  // or clears (for files the enclave wrote to as root); files prepared on the host keep theirs.
  CHECK_MESSAGE((h.st_mode == r.st_mode || h.st_mode == asTheServerAllows(r.st_mode)),
                name << ": mode " << modeText(h.st_mode) << " on the export, "
                     << modeText(r.st_mode) << " on the reference");
  CHECK_MESSAGE(h.st_uid == r.st_uid, name << ": uid " << h.st_uid << " vs " << r.st_uid);
  CHECK_MESSAGE(h.st_gid == r.st_gid, name << ": gid " << h.st_gid << " vs " << r.st_gid);
  CHECK(h.st_nlink == r.st_nlink);
  CHECK(h.st_size == r.st_size);
  CHECK(m.st_mode == h.st_mode);
  CHECK(m.st_uid == h.st_uid);
  CHECK(m.st_gid == h.st_gid);
  CHECK(m.st_nlink == h.st_nlink);
  CHECK(m.st_size == h.st_size);
}

}  // namespace

// ---- 1. permission checks ------------------------------------------------------------------

TEST_CASE(
    "read, write, exec and search permissions follow the mode bits for owner, group and other as "
    "on the host") {
  // noexec is a secure default of basic mounts; the exec permission of the mode bits can only
  // be compared on a mount that allows exec at all.
  Exported e({"-o", "attr_timeout=0,entry_timeout=0,exec"});
  const std::vector<mode_t> fileModes = {0000, 0400, 0200, 0100, 0040, 0020, 0010, 0004, 0002,
                                         0001, 0604, 0460, 0046, 0755, 0711, 0077, 0707, 0770};
  const std::vector<mode_t> dirModes = {0000, 0700, 0070, 0007, 0500, 0300, 0100,
                                        0400, 0750, 0705, 0075, 0111, 0333, 0555};
  e.prepare([&](const std::string& root) {
    for (mode_t mode : fileModes) {
      // A script that /bin/true runs, so an allowed exec ends with status 0.
      ownedFile(root + "/f" + modeName(mode), kAlice.uid, kShared, mode, "#!/bin/true\n");
    }
    for (mode_t mode : dirModes) {
      const std::string dir = root + "/d" + modeName(mode);
      ownedDir(dir, kAlice.uid, kShared, 0755);
      ownedFile(dir + "/x", kAlice.uid, kShared, 0644);
      must(::chmod(dir.c_str(), mode), "chmod");
    }
  });

  for (const User* user : {&kAlice, &kCarol, &kDave, &kBob, &kRoot}) {
    // All checks of one user in one child per root, in the same order.
    auto checks = [&](const std::string& root) {
      std::vector<int> out;
      for (mode_t mode : fileModes) {
        const std::string f = root + "/f" + modeName(mode);
        out.push_back(openErrno(f, O_RDONLY));
        out.push_back(openErrno(f, O_WRONLY));
        out.push_back(errnoOf(::access(f.c_str(), R_OK)));
        out.push_back(errnoOf(::access(f.c_str(), W_OK)));
        out.push_back(errnoOf(::access(f.c_str(), X_OK)));
        out.push_back(execErrno(f));
      }
      for (mode_t mode : dirModes) {
        const std::string d = root + "/d" + modeName(mode);
        out.push_back(openErrno(d, O_RDONLY | O_DIRECTORY));  // read (list)
        struct stat st;
        out.push_back(errnoOf(::stat((d + "/x").c_str(), &st)));  // search
        const std::string created = d + "/new-" + std::to_string(::getuid());
        int err = openErrno(created, O_CREAT | O_EXCL | O_WRONLY);  // write + search
        out.push_back(err);
        out.push_back(err == 0 ? errnoOf(::unlink(created.c_str())) : -1);  // -1: nothing made
        out.push_back(errnoOf(::access(d.c_str(), X_OK)));
        out.push_back(errnoOf(::access(d.c_str(), W_OK)));
      }
      return out;
    };
    std::vector<int> onRef = asUserMany(*user, [&] { return checks(e.ref); });
    std::vector<int> onMnt = asUserMany(*user, [&] { return checks(e.mnt); });
    REQUIRE(onRef.size() == onMnt.size());
    // Name every check so a difference says which one.
    std::vector<std::string> labels;
    for (mode_t mode : fileModes) {
      for (const char* op : {"open O_RDONLY", "open O_WRONLY", "access R_OK", "access W_OK",
                             "access X_OK", "execve"}) {
        labels.push_back(std::string(op) + " file mode " + modeName(mode));
      }
    }
    std::size_t at = 0;
    for (std::size_t i = 0; i < labels.size(); ++i, ++at) {
      CHECK_MESSAGE(errName(onMnt[at]) == errName(onRef[at]),
                    user->name << ": " << labels[i] << ": mount " << errName(onMnt[at]) << ", host "
                               << errName(onRef[at]));
    }
    for (mode_t mode : dirModes) {
      const std::string d = "dir mode " + modeName(mode);
      const std::vector<std::string> ops = {"opendir",      "stat entry",
                                            "create entry", "unlink created entry",
                                            "access X_OK",  "access W_OK"};
      for (const auto& op : ops) {
        REQUIRE(at < onRef.size());
        CHECK_MESSAGE(errName(onMnt[at]) == errName(onRef[at]),
                      user->name << ": " << op << " " << d << ": mount " << errName(onMnt[at])
                                 << ", host " << errName(onRef[at]));
        ++at;
      }
    }
  }
  // Spot checks that the reference itself behaves as POSIX says, so equality means something.
  CHECK(asUser(kBob, [&] { return openErrno(e.r("f0604"), O_RDONLY); }) == 0);
  CHECK(asUser(kBob, [&] { return openErrno(e.r("f0460"), O_RDONLY); }) == EACCES);
  CHECK(asUser(kCarol, [&] { return openErrno(e.r("f0460"), O_RDONLY); }) == 0);
  CHECK(asUser(kAlice, [&] { return openErrno(e.r("f0046"), O_RDONLY); }) == EACCES);
  CHECK(asUser(kRoot, [&] { return openErrno(e.r("f0000"), O_RDWR); }) == 0);
  CHECK(asUser(kRoot, [&] { return execErrno(e.r("f0000")); }) == EACCES);
  CHECK(asUser(kBob, [&] { return execErrno(e.r("f0755")); }) == 0);
  CHECK(asUser(kBob, [&] { return execErrno(e.m("f0755")); }) == 0);
  CHECK(asUser(kBob, [&] { return openErrno(e.r("d0750/x"), O_RDONLY); }) == EACCES);
  CHECK(asUser(kDave, [&] { return openErrno(e.r("d0750/x"), O_RDONLY); }) == 0);
  CHECK(shape(e.host) == shape(e.ref, true));
}

// ---- 2. sticky directories -----------------------------------------------------------------

TEST_CASE(
    "in a sticky directory only the owner of a file or of the directory may unlink or rename it, "
    "as on the host") {
  Exported e;
  e.prepare([](const std::string& root) { ownedDir(root + "/tmp", kErin.uid, kErin.gid, 01777); });
  for (const std::string name : {"a1", "a2", "a3", "a4", "a5"}) {
    same(e, kAlice, "create tmp/" + name, [&](const std::string& root) {
      return openErrno(root + "/tmp/" + name, O_CREAT | O_EXCL | O_WRONLY);
    });
  }
  same(e, kBob, "create tmp/b1", [](const std::string& root) {
    return openErrno(root + "/tmp/b1", O_CREAT | O_EXCL | O_WRONLY);
  });

  CHECK(same(e, kBob, "unlink alice's tmp/a1", [](const std::string& root) {
          return errnoOf(::unlink((root + "/tmp/a1").c_str()));
        }) == EPERM);
  CHECK(same(e, kBob, "rename alice's tmp/a1 away", [](const std::string& root) {
          return errnoOf(::rename((root + "/tmp/a1").c_str(), (root + "/tmp/mine").c_str()));
        }) == EPERM);
  CHECK(same(e, kBob, "rename own tmp/b1 over alice's tmp/a1", [](const std::string& root) {
          return errnoOf(::rename((root + "/tmp/b1").c_str(), (root + "/tmp/a1").c_str()));
        }) == EPERM);
  CHECK(same(e, kBob, "write into alice's tmp/a1 (mode 0644)", [](const std::string& root) {
          return openErrno(root + "/tmp/a1", O_WRONLY);
        }) == EACCES);
  CHECK(same(e, kAlice, "unlink own tmp/a1", [](const std::string& root) {
          return errnoOf(::unlink((root + "/tmp/a1").c_str()));
        }) == 0);
  CHECK(same(e, kAlice, "rename own tmp/a2", [](const std::string& root) {
          return errnoOf(::rename((root + "/tmp/a2").c_str(), (root + "/tmp/a2x").c_str()));
        }) == 0);
  CHECK(same(e, kErin, "directory owner unlinks tmp/a3", [](const std::string& root) {
          return errnoOf(::unlink((root + "/tmp/a3").c_str()));
        }) == 0);
  CHECK(same(e, kErin, "directory owner renames tmp/a4", [](const std::string& root) {
          return errnoOf(::rename((root + "/tmp/a4").c_str(), (root + "/tmp/a4x").c_str()));
        }) == 0);
  CHECK(same(e, kRoot, "root unlinks bob's tmp/b1", [](const std::string& root) {
          return errnoOf(::unlink((root + "/tmp/b1").c_str()));
        }) == 0);
  CHECK(same(e, kBob, "unlink alice's tmp/a5 (still refused)", [](const std::string& root) {
          return errnoOf(::unlink((root + "/tmp/a5").c_str()));
        }) == EPERM);
  CHECK(namesIn(e.h("tmp")) == namesIn(e.r("tmp")));
  CHECK(namesIn(e.h("tmp")) == std::set<std::string>{"a2x", "a4x", "a5"});
  CHECK(shape(e.host) == shape(e.ref, true));
}

// ---- 3. set-group-ID directories -----------------------------------------------------------

TEST_CASE(
    "files and directories made in a set-group-ID directory take its group, directories its "
    "set-group-ID bit, as on the host") {
  Exported e;
  e.prepare([](const std::string& root) { ownedDir(root + "/sg", kErin.uid, kShared, 02777); });
  auto create = [](const std::string& rel, mode_t mode) {
    return [rel, mode](const std::string& root) {
      return openErrno(root + "/" + rel, O_CREAT | O_EXCL | O_WRONLY, mode);
    };
  };
  auto mkdirIn = [](const std::string& rel, mode_t mode) {
    return [rel, mode](const std::string& root) {
      return errnoOf(::mkdir((root + "/" + rel).c_str(), mode));
    };
  };
  // alice is not in the directory's group, carol is (as a supplementary group).
  same(e, kAlice, "create sg/file", create("sg/file", 0666));
  same(e, kAlice, "mkdir sg/dir", mkdirIn("sg/dir", 0777));
  same(e, kAlice, "mkdir sg/dir755", mkdirIn("sg/dir755", 0755));
  same(e, kAlice, "create sg/dir/inner", create("sg/dir/inner", 0644));
  same(e, kAlice, "mkdir sg/dir/sub", mkdirIn("sg/dir/sub", 0755));
  same(e, kAlice, "create sg/dir/sub/deep", create("sg/dir/sub/deep", 0644));
  same(e, kAlice, "mkfifo sg/fifo", [](const std::string& root) {
    return errnoOf(::mkfifo((root + "/sg/fifo").c_str(), 0644));
  });
  same(e, kAlice, "symlink sg/link", [](const std::string& root) {
    return errnoOf(::symlink("file", (root + "/sg/link").c_str()));
  });
  same(e, kCarol, "create sg/carol", create("sg/carol", 0644));
  same(e, kCarol, "mkdir sg/caroldir", mkdirIn("sg/caroldir", 0750));
  for (const std::string name :
       {"sg/file", "sg/dir", "sg/dir755", "sg/dir/inner", "sg/dir/sub", "sg/dir/sub/deep",
        "sg/fifo", "sg/link", "sg/carol", "sg/caroldir"}) {
    CAPTURE(name);
    sameState(e, name);
    CHECK(lstatOf(e.h(name)).st_gid == kShared);
  }
  for (const std::string dir : {"sg/dir", "sg/dir755", "sg/dir/sub", "sg/caroldir"}) {
    CAPTURE(dir);
    CHECK((lstatOf(e.h(dir)).st_mode & S_ISGID) != 0);
  }
  CHECK(lstatOf(e.h("sg/file")).st_uid == kAlice.uid);
  CHECK(shape(e.host) == shape(e.ref, true));
}

TEST_CASE(
    "a file created with the set-group-ID bit in a set-group-ID directory keeps it only for "
    "members of the group, as on the host") {
  Exported e;
  e.prepare([](const std::string& root) { ownedDir(root + "/sg", kErin.uid, kShared, 02777); });
  // alice is not in group 2000: the kernel drops the bit. carol is: the host keeps it.
  same(e, kAlice, "create sg/alice mode 02755", [](const std::string& root) {
    return openErrno(root + "/sg/alice", O_CREAT | O_EXCL | O_WRONLY, 02755);
  });
  same(e, kCarol, "create sg/carol mode 02755", [](const std::string& root) {
    return openErrno(root + "/sg/carol", O_CREAT | O_EXCL | O_WRONLY, 02755);
  });
  same(e, kCarol, "mkdir sg/caroldir mode 02755", [](const std::string& root) {
    return errnoOf(::mkdir((root + "/sg/caroldir").c_str(), 02755));
  });
  for (const std::string name : {"sg/alice", "sg/carol", "sg/caroldir"}) {
    CAPTURE(name);
    sameState(e, name);
  }
  CHECK((lstatOf(e.r("sg/alice")).st_mode & S_ISGID) == 0);
  CHECK((lstatOf(e.r("sg/carol")).st_mode & S_ISGID) != 0);
}

// ---- 4. ownership and group changes --------------------------------------------------------

TEST_CASE(
    "chown and chgrp are allowed and refused and clear set-user-ID and set-group-ID bits as on the "
    "host") {
  Exported e;
  e.prepare([](const std::string& root) {
    ownedDir(root + "/own", kErin.uid, kErin.gid, 0777);
    ownedFile(root + "/own/plain", kAlice.uid, kAlice.gid, 0644);
    ownedFile(root + "/own/carol", kCarol.uid, kCarol.gid, 0644);
    ownedFile(root + "/own/suidsgid", kCarol.uid, kCarol.gid, 06755);       // sgid with group exec
    ownedFile(root + "/own/suid-sgid-nox", kCarol.uid, kCarol.gid, 06745);  // sgid without it
    ownedFile(root + "/own/self", kAlice.uid, kAlice.gid, 06755);
    ownedFile(root + "/own/rootchown", kAlice.uid, kAlice.gid, 06755);
    ownedFile(root + "/own/rootchown-nox", kAlice.uid, kAlice.gid, 06745);
    ownedDir(root + "/own/sgdir", kCarol.uid, kCarol.gid, 02775);
  });
  auto chownTo = [](const std::string& rel, uid_t uid, gid_t gid) {
    return [=](const std::string& root) {
      return errnoOf(::chown((root + "/" + rel).c_str(), uid, gid));
    };
  };
  const uid_t keepU = static_cast<uid_t>(-1);
  const gid_t keepG = static_cast<gid_t>(-1);

  CHECK(same(e, kAlice, "chown own file to bob", chownTo("own/plain", kBob.uid, keepG)) == EPERM);
  CHECK(same(e, kAlice, "chown own file to herself", chownTo("own/plain", kAlice.uid, keepG)) == 0);
  CHECK(same(e, kBob, "chgrp alice's file", chownTo("own/plain", keepU, kBob.gid)) == EPERM);
  CHECK(same(e, kAlice, "chgrp own file to a group she is not in",
             chownTo("own/plain", keepU, kShared)) == EPERM);
  CHECK(same(e, kCarol, "chgrp own file to her supplementary group",
             chownTo("own/carol", keepU, kShared)) == 0);
  CHECK(same(e, kCarol, "chgrp own file to a foreign group",
             chownTo("own/carol", keepU, kForeign)) == EPERM);
  CHECK(same(e, kCarol, "chgrp set-ID file to her group (clears bits)",
             chownTo("own/suidsgid", keepU, kShared)) == 0);
  CHECK(same(e, kCarol, "chgrp set-ID file without group exec to her group",
             chownTo("own/suid-sgid-nox", keepU, kShared)) == 0);
  CHECK(same(e, kAlice, "chown set-ID file to her own ids",
             chownTo("own/self", kAlice.uid, kAlice.gid)) == 0);
  CHECK(same(e, kCarol, "chgrp set-group-ID directory to her group",
             chownTo("own/sgdir", keepU, kShared)) == 0);
  CHECK(same(e, kRoot, "root chowns a file to bob", chownTo("own/plain", kBob.uid, kBob.gid)) == 0);
  CHECK(same(e, kRoot, "root chowns a set-ID file", chownTo("own/rootchown", kBob.uid, kForeign)) ==
        0);
  CHECK(same(e, kRoot, "root chowns a set-ID file without group exec",
             chownTo("own/rootchown-nox", kBob.uid, kForeign)) == 0);
  for (const std::string name : {"own/plain", "own/carol", "own/suidsgid", "own/suid-sgid-nox",
                                 "own/self", "own/sgdir", "own/rootchown", "own/rootchown-nox"}) {
    CAPTURE(name);
    sameState(e, name);
  }
  CHECK(lstatOf(e.h("own/plain")).st_uid == kBob.uid);
  CHECK(lstatOf(e.h("own/carol")).st_gid == kShared);
  CHECK(shape(e.host) == shape(e.ref, true));
}

TEST_CASE(
    "writing to, truncating or allocating in a set-user-ID or set-group-ID file clears the bits "
    "as on the host, and for root as well") {
  Exported e;
  e.prepare([](const std::string& root) {
    ownedDir(root + "/w", kErin.uid, kErin.gid, 0777);
    ownedFile(root + "/w/owner", kAlice.uid, kShared, 06775);
    ownedFile(root + "/w/member", kAlice.uid, kShared, 06775);
    ownedFile(root + "/w/root", kAlice.uid, kShared, 06775);
    ownedFile(root + "/w/nox", kAlice.uid, kShared, 06765);  // set-group-ID without group exec
    ownedFile(root + "/w/nox-member", kAlice.uid, kShared, 06765);
    ownedFile(root + "/w/sgidonly", kAlice.uid, kShared, 02775);
    ownedFile(root + "/w/truncate", kAlice.uid, kShared, 06775);
    ownedFile(root + "/w/otrunc", kAlice.uid, kShared, 06775);
    ownedFile(root + "/w/root-truncate", kAlice.uid, kShared, 06775);
    ownedFile(root + "/w/root-otrunc", kAlice.uid, kShared, 06775);
    ownedFile(root + "/w/fallocate", kAlice.uid, kShared, 06775);
    ownedFile(root + "/w/root-fallocate", kAlice.uid, kShared, 06775);
  });
  auto fallocateErrno = [](const std::string& path) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return errno;
    int err = ::fallocate(fd, 0, 0, 8192) == 0 ? 0 : errno;
    ::close(fd);
    return err;
  };
  CHECK(same(e, kAlice, "owner writes",
             [](const std::string& root) { return writeErrno(root + "/w/owner", "more"); }) == 0);
  CHECK(same(e, kCarol, "group member writes",
             [](const std::string& root) { return writeErrno(root + "/w/member", "more"); }) == 0);
  CHECK(same(e, kRoot, "root writes",
             [](const std::string& root) { return writeErrno(root + "/w/root", "more"); }) == 0);
  CHECK(same(e, kAlice, "owner writes a file set-group-ID without group exec",
             [](const std::string& root) { return writeErrno(root + "/w/nox", "more"); }) == 0);
  CHECK(same(e, kCarol, "group member writes a file set-group-ID without group exec",
             [](const std::string& root) { return writeErrno(root + "/w/nox-member", "more"); }) ==
        0);
  CHECK(same(e, kCarol, "group member writes a set-group-ID file", [](const std::string& root) {
          return writeErrno(root + "/w/sgidonly", "more");
        }) == 0);
  CHECK(same(e, kAlice, "owner truncates", [](const std::string& root) {
          return errnoOf(::truncate((root + "/w/truncate").c_str(), 2));
        }) == 0);
  CHECK(same(e, kCarol, "group member opens with O_TRUNC", [](const std::string& root) {
          return writeErrno(root + "/w/otrunc", "x", O_WRONLY | O_TRUNC);
        }) == 0);
  CHECK(same(e, kRoot, "root truncates", [](const std::string& root) {
          return errnoOf(::truncate((root + "/w/root-truncate").c_str(), 2));
        }) == 0);
  CHECK(same(e, kRoot, "root opens with O_TRUNC", [](const std::string& root) {
          return writeErrno(root + "/w/root-otrunc", "x", O_WRONLY | O_TRUNC);
        }) == 0);
  CHECK(same(e, kAlice, "owner allocates", [&](const std::string& root) {
          return fallocateErrno(root + "/w/fallocate");
        }) == 0);
  CHECK(same(e, kRoot, "root allocates", [&](const std::string& root) {
          return fallocateErrno(root + "/w/root-fallocate");
        }) == 0);
  for (const std::string name : {"w/owner", "w/member", "w/root", "w/nox-member", "w/sgidonly",
                                 "w/truncate", "w/otrunc", "w/root-truncate", "w/root-otrunc",
                                 "w/fallocate", "w/root-fallocate"}) {
    CAPTURE(name);
    sameState(e, name);
  }
  CHECK((lstatOf(e.r("w/owner")).st_mode & (S_ISUID | S_ISGID)) == 0);
  CHECK((lstatOf(e.h("w/fallocate")).st_mode & (S_ISUID | S_ISGID)) == 0);
  // The other difference is the server's: root keeps the bits on the host (CAP_FSETID), but
  // the server clears them whoever the enclave's caller was. The enclave is not trusted to
  // say who its caller is, and a set-user-ID program an enclave rewrote and left set-user-ID
  // would run its code with the owner's rights on the host (docs/security.md).
  for (const std::string name :
       {"w/root", "w/root-truncate", "w/root-otrunc", "w/root-fallocate"}) {
    CAPTURE(name);
    CHECK((lstatOf(e.r(name)).st_mode & (S_ISUID | S_ISGID)) == (S_ISUID | S_ISGID));
    CHECK((lstatOf(e.h(name)).st_mode & (S_ISUID | S_ISGID)) == 0);
    CHECK(lstatOf(e.m(name)).st_mode == lstatOf(e.h(name)).st_mode);
  }
  // A difference that is the enclave kernel's, not ours: FUSE clears set-group-ID on
  // a write only when the group may execute the file (fs/fuse/dir.c), while a local file
  // system also clears it for a writer outside the file's group. Set-user-ID goes either way.
  struct stat nox = lstatOf(e.h("w/nox"));
  CHECK((nox.st_mode & S_ISUID) == 0);
  CHECK((lstatOf(e.r("w/nox")).st_mode & (S_ISUID | S_ISGID)) == 0);
  CHECK(lstatOf(e.m("w/nox")).st_mode == nox.st_mode);
}

TEST_CASE("chmod by the owner sets the set-user-ID and set-group-ID bits as on the host") {
  Exported e;
  e.prepare([](const std::string& root) {
    ownedDir(root + "/c", kErin.uid, kErin.gid, 0777);
    ownedFile(root + "/c/suid", kAlice.uid, kAlice.gid, 0755);
    ownedFile(root + "/c/sgid", kAlice.uid, kAlice.gid, 0755);
    ownedFile(root + "/c/sgid-foreign", kAlice.uid, kShared, 0755);  // not alice's group
    ownedFile(root + "/c/sticky", kAlice.uid, kAlice.gid, 0755);
    ownedDir(root + "/c/dir", kAlice.uid, kAlice.gid, 0755);
  });
  auto chmodTo = [](const std::string& rel, mode_t mode) {
    return
        [=](const std::string& root) { return errnoOf(::chmod((root + "/" + rel).c_str(), mode)); };
  };
  CHECK(same(e, kAlice, "chmod 04755", chmodTo("c/suid", 04755)) == 0);
  CHECK(same(e, kAlice, "chmod 02755", chmodTo("c/sgid", 02755)) == 0);
  CHECK(same(e, kAlice, "chmod 02755 on a file of a group she is not in",
             chmodTo("c/sgid-foreign", 02755)) == 0);
  CHECK(same(e, kAlice, "chmod 01755 on a file", chmodTo("c/sticky", 01755)) == 0);
  CHECK(same(e, kAlice, "chmod 03755 on a directory", chmodTo("c/dir", 03755)) == 0);
  CHECK(same(e, kBob, "chmod someone else's file", chmodTo("c/suid", 0777)) == EPERM);
  for (const std::string name : {"c/suid", "c/sgid", "c/sgid-foreign", "c/sticky", "c/dir"}) {
    CAPTURE(name);
    sameState(e, name);
  }
}

// ---- 5. timestamps -------------------------------------------------------------------------

namespace {

struct Advanced {
  bool atime, mtime, ctime;
  std::string text() const {
    return std::string("atime ") + (atime ? "advanced" : "kept") + ", mtime " +
           (mtime ? "advanced" : "kept") + ", ctime " + (ctime ? "advanced" : "kept");
  }
  bool operator==(const Advanced&) const = default;
};

// For every path in `watched` (relative to the root): which timestamps `action` advanced.
std::vector<Advanced> advancedBy(const std::string& root, const std::vector<std::string>& watched,
                                 const std::function<void(const std::string& root)>& action,
                                 const std::vector<std::string>& watchedAfter = {}) {
  std::vector<struct stat> before;
  for (const auto& w : watched) before.push_back(lstatOf(root + "/" + w));
  std::this_thread::sleep_for(20ms);
  action(root);
  std::vector<Advanced> out;
  for (std::size_t i = 0; i < watched.size(); ++i) {
    const std::string& now = watchedAfter.empty() ? watched[i] : watchedAfter[i];
    struct stat after = lstatOf(root + "/" + now);
    out.push_back({ns(after.st_atim) > ns(before[i].st_atim),
                   ns(after.st_mtim) > ns(before[i].st_mtim),
                   ns(after.st_ctim) > ns(before[i].st_ctim)});
  }
  return out;
}

// Performs `action` on the reference and through the mount and checks that the same
// timestamps advanced; `expected` is what POSIX and the host say, checked on the reference.
void sameTimes(const Exported& e, const std::string& what, const std::vector<std::string>& watched,
               const std::function<void(const std::string& root)>& action,
               const std::vector<Advanced>& expected,
               const std::vector<std::string>& watchedAfter = {}) {
  auto onRef = advancedBy(e.ref, watched, action, watchedAfter);
  auto onMnt = advancedBy(e.mnt, watched, action, watchedAfter);
  for (std::size_t i = 0; i < watched.size(); ++i) {
    CHECK_MESSAGE(onMnt[i] == onRef[i], what << ": " << watched[i] << ": mount " << onMnt[i].text()
                                             << "; host " << onRef[i].text());
    if (i < expected.size()) {
      CHECK_MESSAGE(onRef[i] == expected[i], what << ": " << watched[i]
                                                  << " on the reference: " << onRef[i].text()
                                                  << "; expected " << expected[i].text());
    }
  }
}

}  // namespace

TEST_CASE(
    "timestamps advance on create, write, read, chmod, rename, link and unlink as on the host") {
  Exported e;
  e.prepare([](const std::string& root) {
    made(root + "/t");
    writeFile(root + "/t/f", "content\n");
    made(root + "/t/a");
    made(root + "/t/b");
    writeFile(root + "/t/a/moved", "moved\n");
    writeFile(root + "/t/gone", "gone\n");
    writeFile(root + "/t/linked", "linked\n");
  });
  const Advanced none{false, false, false};
  const Advanced mc{false, true, true};
  const Advanced c{false, false, true};
  const Advanced a{true, false, false};
  const Advanced all{true, true, true};

  sameTimes(e, "create t/new", {"t"},
            [](const std::string& root) {
              must(openErrno(root + "/t/new", O_CREAT | O_EXCL | O_WRONLY), "create");
            },
            {mc});
  sameTimes(
      e, "mkdir t/newdir", {"t"},
      [](const std::string& root) { must(::mkdir((root + "/t/newdir").c_str(), 0755), "mkdir"); },
      {mc});
  sameTimes(e, "write t/f", {"t/f", "t"},
            [](const std::string& root) { must(writeErrno(root + "/t/f", "more\n"), "write"); },
            {mc, none});
  sameTimes(e, "open t/f without writing", {"t/f"},
            [](const std::string& root) { must(openErrno(root + "/t/f", O_WRONLY), "open"); },
            {none});
  sameTimes(
      e, "truncate t/f", {"t/f"},
      [](const std::string& root) { must(::truncate((root + "/t/f").c_str(), 3), "truncate"); },
      {mc});

  // Reading: under relatime an atime older than the mtime advances on the first read and not
  // on the next one; under strictatime both advance. Whatever the host does, the mount must.
  e.prepare([](const std::string& root) {
    struct stat st = lstatOf(root + "/t/f");
    timespec times[2] = {{st.st_mtim.tv_sec - 100, 0}, {0, UTIME_OMIT}};
    must(::utimensat(AT_FDCWD, (root + "/t/f").c_str(), times, 0), "utimensat");
  });
  sameTimes(e, "first read of t/f", {"t/f"},
            [](const std::string& root) { must(readErrno(root + "/t/f"), "read"); }, {a});
  sameTimes(e, "second read of t/f", {"t/f"},
            [](const std::string& root) { must(readErrno(root + "/t/f"), "read"); }, {});
  sameTimes(e, "listing t", {"t"},
            [](const std::string& root) {
              for (const auto& entry : std::filesystem::directory_iterator(root + "/t"))
                (void)entry;
            },
            {});

  sameTimes(e, "chmod t/f", {"t/f", "t"},
            [](const std::string& root) { must(::chmod((root + "/t/f").c_str(), 0600), "chmod"); },
            {c, none});
  sameTimes(e, "chown t/f", {"t/f"},
            [](const std::string& root) {
              must(::chown((root + "/t/f").c_str(), kAlice.uid, kAlice.gid), "chown");
            },
            {c});
  sameTimes(e, "rename t/a/moved to t/b/moved", {"t/a/moved", "t/a", "t/b", "t"},
            [](const std::string& root) {
              must(::rename((root + "/t/a/moved").c_str(), (root + "/t/b/moved").c_str()),
                   "rename");
            },
            {c, mc, mc, none}, {"t/b/moved", "t/a", "t/b", "t"});
  sameTimes(e, "link t/linked to t/b/hard", {"t/linked", "t", "t/b"},
            [](const std::string& root) {
              must(::link((root + "/t/linked").c_str(), (root + "/t/b/hard").c_str()), "link");
            },
            {c, none, mc});
  sameTimes(e, "unlink t/b/hard", {"t/linked", "t/b"},
            [](const std::string& root) { must(::unlink((root + "/t/b/hard").c_str()), "unlink"); },
            {c, mc});
  sameTimes(e, "unlink t/gone", {"t"},
            [](const std::string& root) { must(::unlink((root + "/t/gone").c_str()), "unlink"); },
            {mc});
  sameTimes(e, "utimensat(UTIME_NOW) on t/f", {"t/f"},
            [](const std::string& root) {
              must(::utimensat(AT_FDCWD, (root + "/t/f").c_str(), nullptr, 0), "utimensat");
            },
            {all});
  sameTimes(e, "utimensat to a time in the past on t/f", {"t/f"},
            [](const std::string& root) {
              timespec times[2] = {{1'000'000'000, 0}, {1'000'000'000, 0}};
              must(::utimensat(AT_FDCWD, (root + "/t/f").c_str(), times, 0), "utimensat");
            },
            {c});
}

TEST_CASE("a mount with the default cache timeouts shows host changes within about a second") {
  Exported e(std::vector<std::string>{});  // the default cache timeouts
  writeFile(e.h("file"), "short");
  made(e.h("dir"));
  struct stat st;
  REQUIRE(::stat(e.m("file").c_str(), &st) == 0);
  REQUIRE(st.st_size == 5);
  REQUIRE(::stat(e.m("dir").c_str(), &st) == 0);
  REQUIRE(::stat(e.m("late").c_str(), &st) == -1);
  REQUIRE(errno == ENOENT);

  auto start = std::chrono::steady_clock::now();
  writeFile(e.h("file"), "a longer content");
  REQUIRE(::chmod(e.h("file").c_str(), 0600) == 0);
  writeFile(e.h("late"), "late");
  REQUIRE(::rmdir(e.h("dir").c_str()) == 0);
  auto seen = [&] {
    struct stat m, l, d;
    return ::stat(e.m("file").c_str(), &m) == 0 && m.st_size == 16 && (m.st_mode & 07777) == 0600 &&
           ::stat(e.m("late").c_str(), &l) == 0 && ::stat(e.m("dir").c_str(), &d) == -1 &&
           errno == ENOENT;
  };
  while (!seen() && std::chrono::steady_clock::now() - start < 3s)
    std::this_thread::sleep_for(20ms);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  CHECK(seen());
  CHECK_MESSAGE(took < 1500ms, "host changes took " << took.count() << " ms to show");
  CHECK(readFile(e.m("file")) == "a longer content");
}

// ---- 6. link counts ------------------------------------------------------------------------

TEST_CASE("link counts follow link, unlink, mkdir and rmdir as on the host") {
  Exported e;
  e.prepare([](const std::string& root) { made(root + "/n"); });
  auto counts = [&](const std::string& root, const std::vector<std::string>& names) {
    std::vector<nlink_t> out;
    for (const auto& name : names) {
      struct stat st;
      out.push_back(::lstat((root + "/" + name).c_str(), &st) == 0 ? st.st_nlink : 0);
    }
    return out;
  };
  struct Step {
    std::string what;
    std::function<int(const std::string&)> call;
    std::vector<std::string> watched;
  };
  auto p = [](const std::string& root, const char* rel) { return root + "/" + rel; };
  const std::vector<Step> steps = {
      {"create n/f",
       [&](const std::string& r) { return openErrno(p(r, "n/f"), O_CREAT | O_WRONLY); },
       {"n/f", "n"}},
      {"link n/f n/g",
       [&](const std::string& r) {
         return errnoOf(::link(p(r, "n/f").c_str(), p(r, "n/g").c_str()));
       },
       {"n/f", "n/g"}},
      {"link n/f n/h",
       [&](const std::string& r) {
         return errnoOf(::link(p(r, "n/f").c_str(), p(r, "n/h").c_str()));
       },
       {"n/f", "n/h"}},
      {"unlink n/g",
       [&](const std::string& r) { return errnoOf(::unlink(p(r, "n/g").c_str())); },
       {"n/f", "n/h"}},
      {"mkdir n/d",
       [&](const std::string& r) { return errnoOf(::mkdir(p(r, "n/d").c_str(), 0755)); },
       {"n", "n/d"}},
      {"mkdir n/d/s",
       [&](const std::string& r) { return errnoOf(::mkdir(p(r, "n/d/s").c_str(), 0755)); },
       {"n", "n/d", "n/d/s"}},
      {"mkdir n/d/t",
       [&](const std::string& r) { return errnoOf(::mkdir(p(r, "n/d/t").c_str(), 0755)); },
       {"n/d"}},
      {"link into n/d",
       [&](const std::string& r) {
         return errnoOf(::link(p(r, "n/f").c_str(), p(r, "n/d/f").c_str()));
       },
       {"n/d", "n/f"}},
      {"rename n/d/t to n/t",
       [&](const std::string& r) {
         return errnoOf(::rename(p(r, "n/d/t").c_str(), p(r, "n/t").c_str()));
       },
       {"n", "n/d"}},
      {"rmdir n/d/s",
       [&](const std::string& r) { return errnoOf(::rmdir(p(r, "n/d/s").c_str())); },
       {"n", "n/d"}},
      {"unlink n/d/f",
       [&](const std::string& r) { return errnoOf(::unlink(p(r, "n/d/f").c_str())); },
       {"n/f"}},
      {"rmdir n/d",
       [&](const std::string& r) { return errnoOf(::rmdir(p(r, "n/d").c_str())); },
       {"n"}},
      {"link a directory",
       [&](const std::string& r) {
         return errnoOf(::link(p(r, "n/t").c_str(), p(r, "n/t2").c_str()));
       },
       {"n", "n/t"}},
      {"unlink n/h and n/f",
       [&](const std::string& r) {
         int err = errnoOf(::unlink(p(r, "n/h").c_str()));
         return err != 0 ? err : errnoOf(::unlink(p(r, "n/f").c_str()));
       },
       {"n"}},
  };
  for (const auto& step : steps) {
    CAPTURE(step.what);
    int onRef = step.call(e.ref);
    int onMnt = step.call(e.mnt);
    CHECK(errName(onMnt) == errName(onRef));
    auto ref = counts(e.ref, step.watched);
    auto mnt = counts(e.mnt, step.watched);
    auto host = counts(e.host, step.watched);
    CHECK(mnt == ref);
    CHECK(host == ref);
  }
  CHECK(lstatOf(e.r("n")).st_nlink == 3);  // n, n/., n/t/..
}

// ---- 7. rename over existing entries -------------------------------------------------------

TEST_CASE("rename over files and directories succeeds and fails as on the host") {
  Exported e;
  e.prepare([](const std::string& root) {
    writeFile(root + "/src", "source\n");
    writeFile(root + "/dst", "destination\n");
    made(root + "/emptySrc");
    writeFile(root + "/emptySrc/inside", "moves along\n");
    made(root + "/emptyDst");
    made(root + "/full");
    writeFile(root + "/full/keep", "keep\n");
    made(root + "/other");
    writeFile(root + "/file", "file\n");
    made(root + "/dir");
    made(root + "/dir/sub");
    made(root + "/xa");
    writeFile(root + "/ya", "y\n");
    writeFile(root + "/nr1", "1\n");
    writeFile(root + "/nr2", "2\n");
    writeFile(root + "/hard", "hard\n");
    must(::link((root + "/hard").c_str(), (root + "/hard2").c_str()), "link");
  });
  auto renameOf = [](const std::string& from, const std::string& to, unsigned flags = 0) {
    return [=](const std::string& root) {
      return errnoOf(::renameat2(AT_FDCWD, (root + "/" + from).c_str(), AT_FDCWD,
                                 (root + "/" + to).c_str(), flags));
    };
  };
  CHECK(same(e, kRoot, "file over an existing file", renameOf("src", "dst")) == 0);
  CHECK(same(e, kRoot, "directory over an empty directory", renameOf("emptySrc", "emptyDst")) == 0);
  int notEmpty = same(e, kRoot, "directory over a non-empty directory", renameOf("other", "full"));
  CHECK((notEmpty == ENOTEMPTY || notEmpty == EEXIST));
  CHECK(same(e, kRoot, "file over a directory", renameOf("file", "dir")) == EISDIR);
  CHECK(same(e, kRoot, "directory over a file", renameOf("dir", "file")) == ENOTDIR);
  CHECK(same(e, kRoot, "directory into its own subdirectory", renameOf("dir", "dir/sub/dir")) ==
        EINVAL);
  CHECK(same(e, kRoot, "directory onto its own subdirectory", renameOf("dir", "dir/sub")) ==
        EINVAL);
  CHECK(same(e, kRoot, "file onto itself", renameOf("file", "file")) == 0);
  CHECK(same(e, kRoot, "onto another name of the same file", renameOf("hard", "hard2")) == 0);
  CHECK(same(e, kRoot, "a missing source", renameOf("missing", "file2")) == ENOENT);
  CHECK(same(e, kRoot, "into a missing directory", renameOf("file", "missing/file")) == ENOENT);
  CHECK(same(e, kRoot, "through a file as a directory", renameOf("file", "ya/file")) == ENOTDIR);
  CHECK(same(e, kRoot, "RENAME_NOREPLACE over a file", renameOf("nr1", "nr2", RENAME_NOREPLACE)) ==
        EEXIST);
  CHECK(same(e, kRoot, "RENAME_NOREPLACE to a new name",
             renameOf("nr1", "nr3", RENAME_NOREPLACE)) == 0);
  CHECK(same(e, kRoot, "RENAME_EXCHANGE of a directory and a file",
             renameOf("xa", "ya", RENAME_EXCHANGE)) == 0);
  CHECK(same(e, kRoot, "RENAME_EXCHANGE with a missing name",
             renameOf("nr3", "nothing", RENAME_EXCHANGE)) == ENOENT);
  CHECK(readFile(e.h("dst")) == "source\n");
  CHECK(readFile(e.h("emptyDst/inside")) == "moves along\n");
  CHECK(shape(e.host) == shape(e.ref, true));
}

// ---- 8. unlinked open files ----------------------------------------------------------------

TEST_CASE(
    "an unlinked open file stays readable and writable until the last close, with link count 0, as "
    "on the host") {
  Exported e;
  e.prepare([](const std::string& root) { writeFile(root + "/f", "hello"); });
  struct Seen {
    int unlinkErr = -1, statErr = -1, reopenErr = -1, writeN = -1, nlink = -1, otherNlink = -1;
    long long size = -1;
    std::string first, second, afterClose;
    bool operator==(const Seen&) const = default;
  };
  auto run = [](const std::string& root) {
    Seen s;
    const std::string path = root + "/f";
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    int other = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    REQUIRE(fd >= 0);
    REQUIRE(other >= 0);
    s.unlinkErr = errnoOf(::unlink(path.c_str()));
    struct stat st;
    s.statErr = errnoOf(::stat(path.c_str(), &st));
    s.reopenErr = openErrno(path, O_RDONLY);
    char buf[64] = {};
    ssize_t n = ::pread(fd, buf, sizeof buf, 0);
    s.first.assign(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
    s.writeN = static_cast<int>(::pwrite(fd, " world", 6, 5));
    n = ::pread(fd, buf, sizeof buf, 0);
    s.second.assign(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
    if (::fstat(fd, &st) == 0) {
      s.nlink = static_cast<int>(st.st_nlink);
      s.size = st.st_size;
    }
    ::close(fd);
    // The other descriptor still reaches the data, including what was written after unlink.
    n = ::pread(other, buf, sizeof buf, 0);
    s.afterClose.assign(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
    if (::fstat(other, &st) == 0) s.otherNlink = static_cast<int>(st.st_nlink);
    ::close(other);
    return s;
  };
  Seen onRef = run(e.ref);
  Seen onMnt = run(e.mnt);
  CHECK(onMnt.unlinkErr == onRef.unlinkErr);
  CHECK(errName(onMnt.statErr) == errName(onRef.statErr));
  CHECK(errName(onMnt.reopenErr) == errName(onRef.reopenErr));
  CHECK(onMnt.first == onRef.first);
  CHECK(onMnt.writeN == onRef.writeN);
  CHECK(onMnt.second == onRef.second);
  CHECK(onMnt.nlink == onRef.nlink);
  CHECK(onMnt.size == onRef.size);
  CHECK(onMnt.afterClose == onRef.afterClose);
  CHECK(onMnt.otherNlink == onRef.otherNlink);
  CHECK(onRef.second == "hello world");
  CHECK(onRef.nlink == 0);
  // Nothing is left behind on the host (no hidden renamed copies).
  CHECK(namesIn(e.host) == namesIn(e.ref));
  CHECK(namesIn(e.host).empty());
}

// ---- 9. O_TMPFILE --------------------------------------------------------------------------

TEST_CASE("O_TMPFILE fails cleanly with EOPNOTSUPP where the host would give an unnamed file") {
  Exported e;
  e.prepare([](const std::string& root) { made(root + "/d"); });
  struct Seen {
    int openErr = -1, writeErr = -1, nlinkBefore = -1, linkErr = -1, nlinkAfter = -1,
        exclOpenErr = -1, exclLinkErr = -1;
    std::string content;
  };
  auto run = [](const std::string& root) {
    Seen s;
    const std::string dir = root + "/d";
    int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0640);
    s.openErr = fd < 0 ? errno : 0;
    if (fd >= 0) {
      s.writeErr = ::write(fd, "unnamed", 7) == 7 ? 0 : errno;
      struct stat st;
      if (::fstat(fd, &st) == 0) s.nlinkBefore = static_cast<int>(st.st_nlink);
      const std::string proc = "/proc/self/fd/" + std::to_string(fd);
      s.linkErr = errnoOf(
          ::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, (dir + "/named").c_str(), AT_SYMLINK_FOLLOW));
      if (::fstat(fd, &st) == 0) s.nlinkAfter = static_cast<int>(st.st_nlink);
      ::close(fd);
      if (s.linkErr == 0) s.content = readFile(dir + "/named");
    }
    // O_EXCL: the file can never be linked.
    int excl = ::open(dir.c_str(), O_TMPFILE | O_EXCL | O_RDWR | O_CLOEXEC, 0640);
    s.exclOpenErr = excl < 0 ? errno : 0;
    if (excl >= 0) {
      const std::string proc = "/proc/self/fd/" + std::to_string(excl);
      s.exclLinkErr = errnoOf(
          ::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, (dir + "/never").c_str(), AT_SYMLINK_FOLLOW));
      ::close(excl);
    }
    return s;
  };
  Seen onRef = run(e.ref);
  Seen onMnt = run(e.mnt);
  CHECK(onRef.openErr == 0);
  CHECK(onRef.linkErr == 0);
  CHECK(onRef.content == "unnamed");
  // libfuse 3.14 (Debian 12) has no tmpfile operation, so the enclave kernel answers
  // EOPNOTSUPP and leaves nothing behind; programs fall back to a named temporary file.
  CHECK_MESSAGE(onMnt.openErr == EOPNOTSUPP, "open(O_TMPFILE): " << errName(onMnt.openErr));
  CHECK(onMnt.exclOpenErr == EOPNOTSUPP);
  CHECK(namesIn(e.h("d")).empty());
}

// ---- 10. large directories -----------------------------------------------------------------

TEST_CASE("a directory of 20000 entries is created, listed completely and emptied as on the host") {
  Exported e;
  constexpr int kEntries = 20000;
  e.prepare([](const std::string& root) { made(root + "/big"); });
  auto name = [](int i) {
    return "entry-" + std::to_string(i) + "-" + std::string(static_cast<std::size_t>(i % 37), 'x');
  };
  std::vector<std::string> failedOnMount;
  auto fill = [&](const std::string& root) {
    int failures = 0;
    int first = 0;
    for (int i = 0; i < kEntries; ++i) {
      // mknod makes a regular file in one round trip (open+close takes three), which keeps
      // this test's run time modest.
      int err = errnoOf(::mknod((root + "/big/" + name(i)).c_str(), S_IFREG | 0644, 0));
      if (err != 0 && failures++ == 0) first = err;
      if (err != 0 && root == e.mnt) failedOnMount.push_back(name(i));
    }
    return std::pair{failures, first};
  };
  auto list = [](const std::string& root, int& duplicates) {
    std::set<std::string> out;
    duplicates = 0;
    DIR* d = ::opendir((root + "/big").c_str());
    REQUIRE(d != nullptr);
    errno = 0;
    while (dirent* entry = ::readdir(d)) {
      std::string n = entry->d_name;
      if (n == "." || n == "..") continue;
      if (!out.insert(n).second) ++duplicates;
    }
    CHECK(errno == 0);
    ::closedir(d);
    return out;
  };
  auto start = std::chrono::steady_clock::now();
  auto [refFailures, refFirst] = fill(e.ref);
  auto [mntFailures, mntFirst] = fill(e.mnt);
  CHECK(refFailures == 0);
  CHECK_MESSAGE(mntFailures == 0, mntFailures << " mknods failed through the mount, the first with "
                                              << errName(mntFirst));
  // A create that failed must not have made the file: the application was told it did not.
  std::vector<std::string> leftBehind;
  for (const auto& n : failedOnMount) {
    if (::access(e.h("big/" + n).c_str(), F_OK) == 0) leftBehind.push_back(n);
  }
  CHECK_MESSAGE(leftBehind.empty(),
                leftBehind.size() << " mknods that failed left their file on the host, e.g. big/"
                                  << (leftBehind.empty() ? "" : leftBehind.front()));
  MESSAGE("20000 mknods took " << std::chrono::duration_cast<std::chrono::milliseconds>(
                                      std::chrono::steady_clock::now() - start)
                                      .count()
                               << " ms (both roots)");

  int refDup = 0, mntDup = 0;
  std::set<std::string> onRef = list(e.ref, refDup);
  std::set<std::string> onMnt = list(e.mnt, mntDup);
  CHECK(onRef.size() == kEntries);
  // Listed completely: everything the host holds, which is what the reference holds.
  CHECK(onMnt.size() == namesIn(e.h("big")).size());
  CHECK(onMnt == namesIn(e.h("big")));
  CHECK(onMnt == onRef);
  CHECK(mntDup == 0);
  struct stat m = lstatOf(e.m("big"));
  CHECK(m.st_size == lstatOf(e.h("big")).st_size);

  int mntUnlinkFailures = 0, refUnlinkFailures = 0;
  for (const auto& n : onMnt) {
    if (::unlink((e.m("big/" + n)).c_str()) != 0) ++mntUnlinkFailures;
  }
  for (const auto& n : onRef) {
    if (::unlink((e.r("big/" + n)).c_str()) != 0) ++refUnlinkFailures;
  }
  CHECK(mntUnlinkFailures == refUnlinkFailures);
  CHECK(list(e.mnt, mntDup).empty());
  CHECK(namesIn(e.h("big")).empty());
  CHECK(errName(errnoOf(::rmdir(e.m("big").c_str()))) ==
        errName(errnoOf(::rmdir(e.r("big").c_str()))));
  MESSAGE("the whole test took " << std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::steady_clock::now() - start)
                                        .count()
                                 << " ms");
}

// ---- 11. name and path lengths -------------------------------------------------------------

TEST_CASE(
    "names of up to 255 bytes and paths of up to PATH_MAX work, longer ones fail with "
    "ENAMETOOLONG, as on the host") {
  Exported e;
  const std::string name255(255, 'n');
  const std::string name256(256, 'n');
  const std::string other255 = std::string(254, 'o') + "2";
  auto path = [](const std::string& root, const std::string& name) { return root + "/" + name; };

  CHECK(same(e, kRoot, "create a 255-byte name", [&](const std::string& root) {
          return openErrno(path(root, name255), O_CREAT | O_EXCL | O_WRONLY);
        }) == 0);
  CHECK(same(e, kRoot, "stat a 255-byte name", [&](const std::string& root) {
          struct stat st;
          return errnoOf(::stat(path(root, name255).c_str(), &st));
        }) == 0);
  CHECK(same(e, kRoot, "rename to another 255-byte name", [&](const std::string& root) {
          return errnoOf(::rename(path(root, name255).c_str(), path(root, other255).c_str()));
        }) == 0);
  CHECK(same(e, kRoot, "mkdir a 255-byte name", [&](const std::string& root) {
          return errnoOf(::mkdir(path(root, name255).c_str(), 0755));
        }) == 0);
  CHECK(same(e, kRoot, "symlink at a 255-byte name", [&](const std::string& root) {
          return errnoOf(::symlink("target", path(root, name255 + "/" + name255).c_str()));
        }) == 0);
  CHECK(namesIn(e.m("")) == namesIn(e.r("")));
  CHECK(same(e, kRoot, "create a 256-byte name", [&](const std::string& root) {
          return openErrno(path(root, name256), O_CREAT | O_EXCL | O_WRONLY);
        }) == ENAMETOOLONG);
  CHECK(same(e, kRoot, "stat a 256-byte name", [&](const std::string& root) {
          struct stat st;
          return errnoOf(::stat(path(root, name256).c_str(), &st));
        }) == ENAMETOOLONG);
  CHECK(same(e, kRoot, "mkdir a 256-byte name", [&](const std::string& root) {
          return errnoOf(::mkdir(path(root, name256).c_str(), 0755));
        }) == ENAMETOOLONG);
  CHECK(same(e, kRoot, "rename to a 256-byte name", [&](const std::string& root) {
          return errnoOf(::rename(path(root, other255).c_str(), path(root, name256).c_str()));
        }) == ENAMETOOLONG);
  CHECK(same(e, kRoot, "symlink at a 256-byte name", [&](const std::string& root) {
          return errnoOf(::symlink("target", path(root, name256).c_str()));
        }) == ENAMETOOLONG);
  CHECK(same(e, kRoot, "link to a 256-byte name", [&](const std::string& root) {
          return errnoOf(::link(path(root, other255).c_str(), path(root, name256).c_str()));
        }) == ENAMETOOLONG);
  CHECK(namesIn(e.h("")) == namesIn(e.r("")));

  // A deep tree of 254-byte directory names, reached by relative paths from a descriptor of
  // the root, so the path strings are the same on both sides: 16 levels of 255 bytes
  // ("name/") and a 15-byte file name make 4095 bytes, the longest path PATH_MAX allows.
  static_assert(PATH_MAX == 4096);
  std::string dirs;
  for (int level = 0; level < 16; ++level) {
    dirs += std::string(253, static_cast<char>('a' + level)) + "d/";
  }
  REQUIRE(dirs.size() == 16 * 255);
  const std::string longest = dirs + std::string(15, 'f');
  const std::string tooLong = dirs + std::string(16, 'f');
  REQUIRE(longest.size() == PATH_MAX - 1);
  auto build = [&](const std::string& root) {
    int fd = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno;
    for (std::size_t at = 0; at < dirs.size(); at += 255) {
      const std::string component = dirs.substr(at, 254);
      if (::mkdirat(fd, component.c_str(), 0755) != 0) return errno;
      int next = ::openat(fd, component.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
      int err = errno;
      ::close(fd);
      if (next < 0) return err;
      fd = next;
    }
    int err = 0;
    for (const std::string& name : {std::string(15, 'f'), std::string(16, 'f')}) {
      int file = ::openat(fd, name.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
      if (file < 0 && err == 0) err = errno;
      if (file >= 0) ::close(file);
    }
    ::close(fd);
    return err;
  };
  auto openRelative = [&](const std::string& rel) {
    return [&, rel](const std::string& root) {
      int dir = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
      if (dir < 0) return errno;
      int fd = ::openat(dir, rel.c_str(), O_RDONLY | O_CLOEXEC);
      int err = fd < 0 ? errno : 0;
      if (fd >= 0) ::close(fd);
      ::close(dir);
      return err;
    };
  };
  CHECK(same(e, kRoot, "build a tree 16 levels of 254-byte names deep", build) == 0);
  CHECK(same(e, kRoot, "open a path of 4095 bytes", openRelative(longest)) == 0);
  CHECK(same(e, kRoot, "open a path of 4096 bytes", openRelative(tooLong)) == ENAMETOOLONG);
  CHECK(same(e, kRoot, "stat a path of 4095 bytes", [&](const std::string& root) {
          int dir = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
          struct stat st;
          int err = errnoOf(::fstatat(dir, longest.c_str(), &st, AT_SYMLINK_NOFOLLOW));
          ::close(dir);
          return err;
        }) == 0);
  // The absolute path through the mount is longer than PATH_MAX: ENAMETOOLONG like the
  // reference's, which is longer still.
  CHECK(same(e, kRoot, "open the absolute path of the deepest file", [&](const std::string& root) {
          return openErrno(root + "/" + longest, O_RDONLY);
        }) == ENAMETOOLONG);
  // (No shape() here: the deep tree's absolute paths are longer than PATH_MAX.)
  CHECK(namesIn(e.h("")) == namesIn(e.r("")));
}
