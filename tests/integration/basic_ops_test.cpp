// Basic operations through a real mount. Every operation the enclave serves is driven by
// ordinary system calls on an enclavefs mount, and what the application sees (content,
// attributes, errno) is compared with the same calls on a plain host directory, or with what
// the exported host directory holds afterwards.
//
// Each test case starts its own enclavefs-hostd and enclavefs-mount (the Exported fixture), so
// a failure in one cannot leak state into the next. Where an errno is compared, the same call
// is made on a "reference" directory outside the export that holds the same tree, so a call
// that wrongly succeeds through the mount cannot change what the host call sees.
#include <dirent.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
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

constexpr off_t kGiB = off_t{1} << 30;

std::string made(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0) {
    throw std::runtime_error("mkdir " + path + ": " + std::strerror(errno));
  }
  return path;
}

// A host directory served by a fresh enclavefs-hostd under the export name "data" and
// mounted by enclavefs-mount. Destruction unmounts, stops the server and removes everything.
struct Exported {
  explicit Exported(bool readOnly = false, const std::vector<std::string>& serverArgs = {},
                    const std::vector<std::string>& mountArgs = {})
      : host(made(dir / "export")),
        ref(made(dir / "reference")),
        mnt(made(dir / "mnt")),
        server(dir / "sock", serverArguments(readOnly, serverArgs)),
        mount(server.address(), "data", mnt, withFreshAttributes(mountArgs)) {}

  // On the host, inside the export.
  std::string h(const std::string& name) const { return host + "/" + name; }
  // On the host, in the reference directory outside the export.
  std::string r(const std::string& name) const { return ref + "/" + name; }
  // Through the mount.
  std::string m(const std::string& name) const { return mount / name; }

  TempDir dir;
  std::string host;
  std::string ref;
  std::string mnt;
  HostServer server;
  Mount mount;

 private:
  // These tests change the host directory and at once compare it with the mount. Changes
  // pushed by the host arrive within milliseconds, not at once (coherence_test measures
  // that), so here the kernel is told to ask the host every time.
  static std::vector<std::string> withFreshAttributes(std::vector<std::string> args) {
    args.insert(args.begin(), {"-o", "attr_timeout=0,entry_timeout=0"});
    return args;
  }

  std::vector<std::string> serverArguments(bool readOnly, const std::vector<std::string>& extra) {
    // Ownership is compared with what the host itself does for each caller: passthrough.
    std::vector<std::string> args = {readOnly ? "--export-ro" : "--export", "data=" + host,
                                     "--owner", "passthrough"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
};

// An owned descriptor.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  int close() {
    int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

Fd openOrThrow(const std::string& path, int flags, mode_t mode = 0644) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) throw std::runtime_error("open " + path + ": " + std::strerror(errno));
  return Fd(fd);
}

// The errno of a call that returned `rc`, or 0 if it succeeded. errno is read after the call,
// since the argument is evaluated first.
int errnoOf(long rc) { return rc < 0 ? errno : 0; }

int openErrno(const std::string& path, int flags, mode_t mode = 0644) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) return errno;
  ::close(fd);
  return 0;
}

struct stat lstatOf(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    throw std::runtime_error("lstat " + path + ": " + std::strerror(errno));
  }
  return st;
}

long long ns(const timespec& t) { return static_cast<long long>(t.tv_sec) * 1'000'000'000 + t.tv_nsec; }

// Deterministic, position-dependent bytes, so a block written at the wrong offset shows.
std::string pattern(std::size_t size, std::uint64_t seed) {
  std::string out(size, '\0');
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (std::size_t i = 0; i < size; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(out.data() + i, &x, std::min<std::size_t>(8, size - i));
  }
  return out;
}

// Offset of the first differing byte, or -1 if equal (never prints megabytes on failure).
long long firstDifference(const std::string& a, const std::string& b) {
  std::size_t n = std::min(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return static_cast<long long>(i);
  }
  return a.size() == b.size() ? -1 : static_cast<long long>(n);
}

std::string preadString(int fd, std::size_t size, off_t offset) {
  std::string out(size, '\0');
  ssize_t n = ::pread(fd, out.data(), size, offset);
  if (n < 0) throw std::runtime_error(std::string("pread: ") + std::strerror(errno));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

void pwriteAll(int fd, const std::string& data, off_t offset) {
  ssize_t n = ::pwrite(fd, data.data(), data.size(), offset);
  if (n != static_cast<ssize_t>(data.size())) {
    throw std::runtime_error(std::string("pwrite: ") + (n < 0 ? std::strerror(errno) : "short"));
  }
}


// lstat that waits out ENFILE: forgets reach the host asynchronously after a cache drop.
struct stat lstatRetryingEnfile(const std::string& path) {
  auto deadline = std::chrono::steady_clock::now() + 5s;
  for (;;) {
    struct stat st;
    if (::lstat(path.c_str(), &st) == 0) return st;
    if (errno != ENFILE || std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("lstat " + path + ": " + std::strerror(errno));
    }
    std::this_thread::sleep_for(10ms);
  }
}

// Runs `call` (returning an errno) until it stops failing with a table-full error, which can
// happen while forgets and releases are still on their way to the host.
int retryingTableFull(const std::function<int()>& call) {
  auto deadline = std::chrono::steady_clock::now() + 5s;
  for (;;) {
    int err = call();
    if ((err != ENFILE && err != EMFILE) || std::chrono::steady_clock::now() > deadline) return err;
    std::this_thread::sleep_for(10ms);
  }
}

struct Listing {
  std::map<std::string, std::pair<ino_t, unsigned char>> entries;  // name -> (d_ino, d_type)
  int duplicates = 0;
  bool sawDot = false;
  bool sawDotDot = false;
};

// Lists a directory with raw getdents64 calls of `bufferSize` bytes.
Listing listWithGetdents(const std::string& dir, std::size_t bufferSize) {
  Fd fd = openOrThrow(dir, O_RDONLY | O_DIRECTORY);
  std::vector<char> buffer(bufferSize);
  Listing out;
  for (;;) {
    ssize_t n = ::getdents64(fd.get(), buffer.data(), buffer.size());
    if (n < 0) throw std::runtime_error("getdents64 " + dir + ": " + std::strerror(errno));
    if (n == 0) return out;
    for (ssize_t at = 0; at < n;) {
      auto* d = reinterpret_cast<dirent64*>(buffer.data() + at);
      at += d->d_reclen;
      std::string name = d->d_name;
      if (name == ".") {
        out.sawDot = true;
      } else if (name == "..") {
        out.sawDotDot = true;
      } else if (!out.entries.emplace(name, std::pair{d->d_ino, d->d_type}).second) {
        ++out.duplicates;
      }
    }
  }
}

std::string getxattrString(const std::string& path, const std::string& name) {
  std::string value(65536, '\0');
  ssize_t n = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
  if (n < 0) throw std::runtime_error("getxattr " + path + " " + name + ": " + std::strerror(errno));
  value.resize(static_cast<std::size_t>(n));
  return value;
}

std::set<std::string> xattrNames(const std::string& path) {
  std::string names(65536, '\0');
  ssize_t n = ::llistxattr(path.c_str(), names.data(), names.size());
  if (n < 0) throw std::runtime_error("listxattr " + path + ": " + std::strerror(errno));
  std::set<std::string> out;
  for (std::size_t at = 0; at < static_cast<std::size_t>(n);) {
    std::string name(names.c_str() + at);
    at += name.size() + 1;
    out.insert(name);
  }
  return out;
}

// Everything observable about a host tree, one line per entry, to compare before and after.
std::string snapshot(const std::string& root) {
  std::ostringstream out;
  std::set<std::string> paths;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(root)) {
    paths.insert(entry.path().string());
  }
  paths.insert(root);
  for (const auto& path : paths) {
    struct stat st = lstatOf(path);
    out << path.substr(root.size()) << " mode=" << std::oct << st.st_mode << std::dec
        << " uid=" << st.st_uid << " gid=" << st.st_gid << " size=" << st.st_size
        << " mtime=" << ns(st.st_mtim) << " nlink=" << st.st_nlink;
    if (S_ISREG(st.st_mode)) out << " content=" << readFile(path);
    if (S_ISLNK(st.st_mode)) out << " target=" << std::filesystem::read_symlink(path).string();
    if (!S_ISLNK(st.st_mode)) {
      for (const auto& name : xattrNames(path)) out << " " << name << "=" << getxattrString(path, name);
    }
    out << "\n";
  }
  return out.str();
}

// The same small tree in `root`: file, dir/inner, emptydir, link -> file.
void populate(const std::string& root) {
  writeFile(root + "/file", "file content\n");
  made(root + "/dir");
  writeFile(root + "/dir/inner", "inner\n");
  made(root + "/emptydir");
  if (::symlink("file", (root + "/link").c_str()) != 0) throw std::runtime_error("symlink");
}

}  // namespace

// ---- lookup / forget / getattr -------------------------------------------------------------

TEST_CASE("files looked up, forgotten after a cache drop, and looked up again keep their identity") {
  // The host holds at most 64 nodes for this client: three rounds of 40 lookups only fit if
  // the kernel's forgets (sent when drop_caches evicts the inodes) reach the host.
  Exported e(false, {"--max-nodes", "64"});
  constexpr int kRounds = 3;
  constexpr int kPerRound = 40;
  for (int i = 0; i < kRounds * kPerRound; ++i) {
    writeFile(e.h("f" + std::to_string(i)), "content " + std::to_string(i));
  }
  for (int round = 0; round < kRounds; ++round) {
    for (int i = round * kPerRound; i < (round + 1) * kPerRound; ++i) {
      const std::string name = "f" + std::to_string(i);
      CAPTURE(name);
      struct stat m = lstatRetryingEnfile(e.m(name));
      struct stat h = lstatOf(e.h(name));
      CHECK(m.st_ino == h.st_ino);
      CHECK(m.st_mode == h.st_mode);
      CHECK(m.st_size == h.st_size);
    }
    dropKernelCaches();
  }
  // The first round was forgotten; its names resolve again to the same files.
  for (int i = 0; i < kPerRound; ++i) {
    const std::string name = "f" + std::to_string(i);
    CAPTURE(name);
    struct stat m = lstatRetryingEnfile(e.m(name));
    CHECK(m.st_ino == lstatOf(e.h(name)).st_ino);
    CHECK(readFile(e.m(name)) == "content " + std::to_string(i));
  }
}

TEST_CASE("names made by create, mkdir, mknod, symlink and link are forgotten by the host after a cache drop") {
  // As above: 40 new names per round only fit into 64 host nodes if each round is forgotten.
  Exported e(false, {"--max-nodes", "64"});
  for (int round = 0; round < 4; ++round) {
    for (int i = 0; i < 8; ++i) {
      const std::string n = std::to_string(round) + "-" + std::to_string(i);
      CAPTURE(n);
      CHECK(retryingTableFull([&] { return openErrno(e.m("file" + n), O_CREAT | O_WRONLY); }) == 0);
      CHECK(retryingTableFull([&] { return errnoOf(::mkdir(e.m("dir" + n).c_str(), 0755)); }) == 0);
      CHECK(retryingTableFull([&] { return errnoOf(::mkfifo(e.m("fifo" + n).c_str(), 0644)); }) == 0);
      CHECK(retryingTableFull([&] { return errnoOf(::symlink("x", e.m("sym" + n).c_str())); }) == 0);
      // A hard link names a node the host already holds; it counts one more lookup of it.
      CHECK(retryingTableFull([&] {
              return errnoOf(::link(e.m("file" + n).c_str(), e.m("hard" + n).c_str()));
            }) == 0);
      CHECK(retryingTableFull([&] { return openErrno(e.m("late" + n), O_CREAT | O_WRONLY); }) == 0);
    }
    dropKernelCaches();
  }
  CHECK(S_ISFIFO(lstatOf(e.h("fifo3-7")).st_mode));
  CHECK(lstatOf(e.h("hard3-7")).st_ino == lstatOf(e.h("file3-7")).st_ino);
}

TEST_CASE("entries listed by readdirplus are forgotten by the host after a cache drop") {
  Exported e(false, {"--max-nodes", "64"});
  for (int dir = 0; dir < 4; ++dir) {
    made(e.h("d" + std::to_string(dir)));
    for (int i = 0; i < 45; ++i) {
      writeFile(e.h("d" + std::to_string(dir) + "/f" + std::to_string(i)), std::to_string(i));
    }
  }
  for (int dir = 0; dir < 4; ++dir) {
    const std::string name = "d" + std::to_string(dir);
    CAPTURE(name);
    // The first batch of a listing is a readdirplus, which hands the kernel a node per entry.
    Listing listing = listWithGetdents(e.m(name), 65536);
    CHECK(listing.entries.size() == 45);
    for (int i = 0; i < 45; ++i) {
      const std::string path = name + "/f" + std::to_string(i);
      CAPTURE(path);
      CHECK(lstatRetryingEnfile(e.m(path)).st_ino == lstatOf(e.h(path)).st_ino);
    }
    dropKernelCaches();
  }
}

TEST_CASE("closing files and directories releases their host handles") {
  // 16 handles at most: 100 open/close cycles only work if every close releases one.
  Exported e(false, {"--max-handles", "16"});
  writeFile(e.h("file"), "x");
  made(e.h("dir"));
  for (int i = 0; i < 100; ++i) {
    CAPTURE(i);
    REQUIRE(retryingTableFull([&] { return openErrno(e.m("file"), O_RDONLY); }) == 0);
    REQUIRE(retryingTableFull([&] { return openErrno(e.m("dir"), O_RDONLY | O_DIRECTORY); }) == 0);
    REQUIRE(retryingTableFull([&] {
              DIR* d = ::opendir(e.m("dir").c_str());
              if (d == nullptr) return errno;
              errno = 0;
              while (::readdir(d) != nullptr) {
              }
              int err = errno;
              ::closedir(d);
              return err;
            }) == 0);
  }
  // While 10 stay open, the others still fit.
  std::vector<Fd> held;
  for (int i = 0; i < 10; ++i) held.push_back(openOrThrow(e.m("file"), O_RDONLY));
  for (int i = 0; i < 20; ++i) {
    REQUIRE(retryingTableFull([&] { return openErrno(e.m("file"), O_RDONLY); }) == 0);
  }
}

TEST_CASE("files created by another user belong to that user on the host, as on the host") {
  Exported e;
  // The other user must reach the mount point and the reference directory.
  REQUIRE(::chmod(e.dir.path().c_str(), 0755) == 0);
  // World-writable directories, one of them set-group-ID with its own group.
  for (const std::string& root : {e.host, e.ref}) {
    made(root + "/open");
    REQUIRE(::chmod((root + "/open").c_str(), 0777) == 0);
    made(root + "/sgid");
    REQUIRE(::chown((root + "/sgid").c_str(), 0, 777) == 0);
    REQUIRE(::chmod((root + "/sgid").c_str(), 02777) == 0);
  }
  pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    if (::setresgid(1234, 1234, 1234) != 0 || ::setresuid(1234, 1234, 1234) != 0) _exit(2);
    for (const std::string& root : {e.mnt, e.ref}) {
      for (const std::string dir : {"/open", "/sgid"}) {
        const std::string base = root + dir;
        int fd = ::open((base + "/file").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        if (fd < 0) {
          std::fprintf(stderr, "open %s/file as uid 1234: %s\n", base.c_str(), std::strerror(errno));
          _exit(3);
        }
        ::close(fd);
        if (::mkdir((base + "/dir").c_str(), 0755) != 0) _exit(4);
        if (::mkfifo((base + "/fifo").c_str(), 0644) != 0) _exit(5);
        if (::symlink("file", (base + "/link").c_str()) != 0) _exit(6);
      }
    }
    _exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  for (const std::string dir : {"open", "sgid"}) {
    for (const std::string name : {"file", "dir", "fifo", "link"}) {
      const std::string path = dir + "/" + name;
      CAPTURE(path);
      struct stat h = lstatOf(e.h(path));
      struct stat r = lstatOf(e.r(path));
      CHECK(h.st_uid == r.st_uid);
      CHECK(h.st_gid == r.st_gid);
      CHECK(h.st_mode == r.st_mode);
      CHECK(h.st_uid == 1234);
      struct stat m = lstatOf(e.m(path));
      CHECK(m.st_uid == h.st_uid);
      CHECK(m.st_gid == h.st_gid);
    }
  }
}

TEST_CASE("stat through the mount reports the host's attributes of files, directories and links") {
  Exported e;
  writeFile(e.h("file"), std::string(10000, 'x'));
  REQUIRE(::chmod(e.h("file").c_str(), 0640) == 0);
  REQUIRE(::lchown(e.h("file").c_str(), 1001, 1002) == 0);
  timespec times[2] = {{1'600'000'000, 111'111'111}, {1'650'000'000, 222'222'222}};
  REQUIRE(::utimensat(AT_FDCWD, e.h("file").c_str(), times, 0) == 0);
  made(e.h("dir"));
  REQUIRE(::chmod(e.h("dir").c_str(), 0751) == 0);
  REQUIRE(::symlink("file", e.h("link").c_str()) == 0);

  for (const std::string name : {"file", "dir", "link", ""}) {
    CAPTURE(name);
    struct stat m = lstatOf(name.empty() ? e.mnt : e.m(name));
    struct stat h = lstatOf(name.empty() ? e.host : e.h(name));
    CHECK(m.st_ino == h.st_ino);
    CHECK(m.st_mode == h.st_mode);
    CHECK(m.st_nlink == h.st_nlink);
    CHECK(m.st_uid == h.st_uid);
    CHECK(m.st_gid == h.st_gid);
    CHECK(m.st_size == h.st_size);
    CHECK(m.st_blocks == h.st_blocks);
    CHECK(m.st_blksize == h.st_blksize);
    CHECK(ns(m.st_atim) == ns(h.st_atim));
    CHECK(ns(m.st_mtim) == ns(h.st_mtim));
    CHECK(ns(m.st_ctim) == ns(h.st_ctim));
  }
  // fstat on an open descriptor asks the same host node.
  Fd fd = openOrThrow(e.m("file"), O_RDONLY);
  struct stat viaFd;
  REQUIRE(::fstat(fd.get(), &viaFd) == 0);
  CHECK(viaFd.st_ino == lstatOf(e.h("file")).st_ino);
  CHECK(viaFd.st_size == 10000);
}

// ---- setattr -------------------------------------------------------------------------------

TEST_CASE("chmod through the mount changes the host file's mode") {
  Exported e;
  writeFile(e.h("file"), "x");
  made(e.h("dir"));
  REQUIRE(::chmod(e.m("file").c_str(), 0604) == 0);
  CHECK(lstatOf(e.h("file")).st_mode == (S_IFREG | 0604));
  CHECK(lstatOf(e.m("file")).st_mode == (S_IFREG | 0604));
  REQUIRE(::chmod(e.m("dir").c_str(), 01710) == 0);
  CHECK(lstatOf(e.h("dir")).st_mode == (S_IFDIR | 01710));
  CHECK(lstatOf(e.m("dir")).st_mode == (S_IFDIR | 01710));
  Fd fd = openOrThrow(e.m("file"), O_RDONLY);
  REQUIRE(::fchmod(fd.get(), 0460) == 0);
  CHECK(lstatOf(e.h("file")).st_mode == (S_IFREG | 0460));
  struct stat viaFd;
  REQUIRE(::fstat(fd.get(), &viaFd) == 0);
  CHECK(viaFd.st_mode == (S_IFREG | 0460));
}

TEST_CASE("chown through the mount gives the host file to another uid and gid") {
  Exported e;
  writeFile(e.h("file"), "x");
  REQUIRE(::symlink("file", e.h("link").c_str()) == 0);
  REQUIRE(::chown(e.m("file").c_str(), 1234, 5678) == 0);
  CHECK(lstatOf(e.h("file")).st_uid == 1234);
  CHECK(lstatOf(e.h("file")).st_gid == 5678);
  CHECK(lstatOf(e.m("file")).st_uid == 1234);
  CHECK(lstatOf(e.m("file")).st_gid == 5678);
  // Only the group; the owner stays.
  REQUIRE(::chown(e.m("file").c_str(), static_cast<uid_t>(-1), 4321) == 0);
  CHECK(lstatOf(e.h("file")).st_uid == 1234);
  CHECK(lstatOf(e.h("file")).st_gid == 4321);
  // lchown changes the link itself, not its target.
  REQUIRE(::lchown(e.m("link").c_str(), 2222, 3333) == 0);
  CHECK(lstatOf(e.h("link")).st_uid == 2222);
  CHECK(lstatOf(e.h("link")).st_gid == 3333);
  CHECK(lstatOf(e.h("file")).st_uid == 1234);
}

TEST_CASE("truncate grows the host file with zeros and shrinks it") {
  Exported e;
  writeFile(e.h("file"), "abcdef");
  REQUIRE(::truncate(e.m("file").c_str(), 100000) == 0);
  CHECK(lstatOf(e.h("file")).st_size == 100000);
  CHECK(lstatOf(e.m("file")).st_size == 100000);
  CHECK(readFile(e.h("file")) == "abcdef" + std::string(100000 - 6, '\0'));
  REQUIRE(::truncate(e.m("file").c_str(), 3) == 0);
  CHECK(readFile(e.h("file")) == "abc");
  CHECK(readFile(e.m("file")) == "abc");
  // ftruncate on an open descriptor.
  Fd fd = openOrThrow(e.m("file"), O_RDWR);
  REQUIRE(::ftruncate(fd.get(), 1) == 0);
  CHECK(readFile(e.h("file")) == "a");
  REQUIRE(::ftruncate(fd.get(), 5 * kGiB) == 0);
  CHECK(lstatOf(e.h("file")).st_size == 5 * kGiB);
  REQUIRE(::ftruncate(fd.get(), 0) == 0);
  CHECK(lstatOf(e.h("file")).st_size == 0);
  CHECK(lstatOf(e.m("file")).st_size == 0);
}

TEST_CASE("utimensat sets nanosecond timestamps, and honours UTIME_NOW and UTIME_OMIT") {
  Exported e;
  writeFile(e.h("file"), "x");
  timespec times[2] = {{1'000'000'000, 123'456'789}, {1'500'000'000, 987'654'321}};
  REQUIRE(::utimensat(AT_FDCWD, e.m("file").c_str(), times, 0) == 0);
  CHECK(ns(lstatOf(e.h("file")).st_atim) == 1'000'000'000'123'456'789LL);
  CHECK(ns(lstatOf(e.h("file")).st_mtim) == 1'500'000'000'987'654'321LL);
  CHECK(ns(lstatOf(e.m("file")).st_atim) == 1'000'000'000'123'456'789LL);
  CHECK(ns(lstatOf(e.m("file")).st_mtim) == 1'500'000'000'987'654'321LL);

  // atime omitted, mtime now.
  timespec before;
  ::clock_gettime(CLOCK_REALTIME, &before);
  timespec nowOmit[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  REQUIRE(::utimensat(AT_FDCWD, e.m("file").c_str(), nowOmit, 0) == 0);
  timespec after;
  ::clock_gettime(CLOCK_REALTIME, &after);
  struct stat h = lstatOf(e.h("file"));
  CHECK(ns(h.st_atim) == 1'000'000'000'123'456'789LL);
  // File system clocks are coarse: allow them to lag the precise clock a little.
  CHECK(ns(h.st_mtim) >= ns(before) - 1'000'000'000LL);
  CHECK(ns(h.st_mtim) <= ns(after));
  CHECK(ns(lstatOf(e.m("file")).st_mtim) == ns(h.st_mtim));

  // atime now, mtime omitted, through a descriptor.
  Fd fd = openOrThrow(e.m("file"), O_RDWR);
  timespec omitNow[2] = {{0, UTIME_NOW}, {0, UTIME_OMIT}};
  REQUIRE(::futimens(fd.get(), omitNow) == 0);
  struct stat h2 = lstatOf(e.h("file"));
  CHECK(ns(h2.st_mtim) == ns(h.st_mtim));
  CHECK(ns(h2.st_atim) >= ns(before) - 1'000'000'000LL);

  // Timestamps of a symbolic link itself.
  REQUIRE(::symlink("file", e.h("link").c_str()) == 0);
  REQUIRE(::utimensat(AT_FDCWD, e.m("link").c_str(), times, AT_SYMLINK_NOFOLLOW) == 0);
  CHECK(ns(lstatOf(e.h("link")).st_mtim) == 1'500'000'000'987'654'321LL);
  CHECK(ns(lstatOf(e.h("file")).st_mtim) == ns(h.st_mtim));
}

// ---- readdir / readdirplus ----------------------------------------------------------------

namespace {

// 2000 entries of many name lengths up to 255 bytes, some with bytes that are not text:
// files, some directories and symlinks.
void makeBigDirectory(const std::string& dir) {
  made(dir);
  for (int i = 0; i < 2000; ++i) {
    std::string name = "e" + std::to_string(i) + "-";
    if (i % 100 == 99) name += "\n\xff \t\\*?\x01\xc3\xa9";
    std::size_t length = i % 50 == 0 ? 255 : 8 + static_cast<std::size_t>(i * 37) % 248;
    name.resize(std::max(length, name.size()), static_cast<char>('a' + i % 26));
    const std::string path = dir + "/" + name;
    if (i % 10 == 3) {
      made(path);
    } else if (i % 10 == 7) {
      if (::symlink("target", path.c_str()) != 0) throw std::runtime_error("symlink " + path);
    } else {
      Fd fd = openOrThrow(path, O_CREAT | O_WRONLY);
    }
  }
}

}  // namespace

TEST_CASE("readdir lists a directory of 2000 entries completely, like the host") {
  Exported e;
  makeBigDirectory(e.h("big"));
  Listing host = listWithGetdents(e.h("big"), 32768);
  REQUIRE(host.entries.size() == 2000);
  // Small buffers make the kernel resume from the host's offsets many times; large ones
  // take many entries per request.
  for (std::size_t bufferSize : {std::size_t{512}, std::size_t{4096}, std::size_t{65536}}) {
    CAPTURE(bufferSize);
    dropKernelCaches();
    Listing mount = listWithGetdents(e.m("big"), bufferSize);
    CHECK(mount.duplicates == 0);
    CHECK(mount.sawDot);
    CHECK(mount.sawDotDot);
    CHECK(mount.entries.size() == host.entries.size());
    int mismatched = 0;
    for (const auto& [name, inoType] : host.entries) {
      auto it = mount.entries.find(name);
      if (it == mount.entries.end() || it->second != inoType) ++mismatched;
    }
    CHECK(mismatched == 0);
  }

  // Seeking back to an offset the listing handed out resumes right after that entry.
  {
    Fd fd = openOrThrow(e.m("big"), O_RDONLY | O_DIRECTORY);
    std::vector<char> buffer(8192);
    std::vector<std::pair<std::string, off_t>> order;  // name, offset of the next entry
    for (;;) {
      ssize_t n = ::getdents64(fd.get(), buffer.data(), buffer.size());
      REQUIRE(n >= 0);
      if (n == 0) break;
      for (ssize_t at = 0; at < n;) {
        auto* d = reinterpret_cast<dirent64*>(buffer.data() + at);
        at += d->d_reclen;
        order.emplace_back(d->d_name, d->d_off);
      }
    }
    REQUIRE(order.size() == 2002);
    const std::size_t k = 1234;
    REQUIRE(::lseek(fd.get(), order[k].second, SEEK_SET) == order[k].second);
    std::vector<std::string> rest;
    for (;;) {
      ssize_t n = ::getdents64(fd.get(), buffer.data(), buffer.size());
      REQUIRE(n >= 0);
      if (n == 0) break;
      for (ssize_t at = 0; at < n;) {
        auto* d = reinterpret_cast<dirent64*>(buffer.data() + at);
        at += d->d_reclen;
        rest.emplace_back(d->d_name);
      }
    }
    std::vector<std::string> expected;
    for (std::size_t i = k + 1; i < order.size(); ++i) expected.push_back(order[i].first);
    CHECK(rest.size() == expected.size());
    CHECK((rest == expected));
  }

  // Entries removed and added on the host show in the next listing.
  auto it = host.entries.begin();
  for (int i = 0; i < 10; ++i, ++it) {
    const std::string path = e.h("big/" + it->first);
    if (S_ISDIR(lstatOf(path).st_mode)) {
      REQUIRE(::rmdir(path.c_str()) == 0);
    } else {
      REQUIRE(::unlink(path.c_str()) == 0);
    }
  }
  writeFile(e.h("big/added-on-host"), "");
  Listing after = listWithGetdents(e.m("big"), 32768);
  Listing hostAfter = listWithGetdents(e.h("big"), 32768);
  CHECK(after.entries.size() == 1991);
  CHECK((after.entries == hostAfter.entries));
}

TEST_CASE("readdirplus (listing while stat'ing every entry) gives each entry the host's attributes") {
  Exported e;
  makeBigDirectory(e.h("big"));
  dropKernelCaches();
  // Stat'ing children while listing makes the kernel use readdirplus for every batch.
  DIR* d = ::opendir(e.m("big").c_str());
  REQUIRE(d != nullptr);
  std::set<std::string> seen;
  int duplicates = 0;
  int mismatched = 0;
  std::string firstMismatch;
  errno = 0;
  while (dirent* entry = ::readdir(d)) {
    std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    if (!seen.insert(name).second) ++duplicates;
    struct stat m;
    if (::fstatat(::dirfd(d), entry->d_name, &m, AT_SYMLINK_NOFOLLOW) != 0) {
      if (mismatched++ == 0) firstMismatch = name + ": " + std::strerror(errno);
      errno = 0;
      continue;
    }
    struct stat h = lstatOf(e.h("big/" + name));
    bool same = m.st_ino == h.st_ino && m.st_mode == h.st_mode && m.st_size == h.st_size &&
                m.st_nlink == h.st_nlink && ns(m.st_mtim) == ns(h.st_mtim) &&
                entry->d_ino == h.st_ino && entry->d_type == IFTODT(h.st_mode);
    if (!same && mismatched++ == 0) firstMismatch = name;
  }
  CHECK(errno == 0);
  ::closedir(d);
  CHECK(duplicates == 0);
  CAPTURE(firstMismatch);
  CHECK(mismatched == 0);
  CHECK(seen.size() == 2000);
}

TEST_CASE("names of 255 bytes work through the mount, and 256 bytes fail like on the host") {
  Exported e;
  const std::string longest(255, 'n');
  const std::string tooLong(256, 'n');
  writeFile(e.m(longest), "long");
  CHECK(readFile(e.h(longest)) == "long");
  CHECK(readFile(e.m(longest)) == "long");
  REQUIRE(::mkdir(e.m(std::string(255, 'd')).c_str(), 0755) == 0);
  CHECK(S_ISDIR(lstatOf(e.h(std::string(255, 'd'))).st_mode));
  int hostErr = openErrno(e.r(tooLong), O_CREAT | O_WRONLY);
  CHECK(hostErr == ENAMETOOLONG);
  CHECK(openErrno(e.m(tooLong), O_CREAT | O_WRONLY) == hostErr);
  CHECK(errnoOf(::mkdir(e.m(tooLong).c_str(), 0755)) == hostErr);
  // Any byte but '/' and NUL may be in a name.
  const std::string odd = "new\nline \xff\xfe\t\\*?\x01\x7f";
  writeFile(e.m(odd), "odd");
  CHECK(readFile(e.h(odd)) == "odd");
  CHECK(listWithGetdents(e.mnt, 4096).entries.count(odd) == 1);
}

// ---- open / create / read / write / flush / release / fsync --------------------------------

TEST_CASE("create, write, read, flush, fsync and release carry data to and from the host") {
  Exported e;
  Fd fd(::open(e.m("new").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0640));
  REQUIRE(fd.get() >= 0);
  Fd refFd = openOrThrow(e.r("new"), O_CREAT | O_RDWR, 0640);
  CHECK(lstatOf(e.h("new")).st_mode == lstatOf(e.r("new")).st_mode);
  CHECK(lstatOf(e.h("new")).st_uid == ::geteuid());

  pwriteAll(fd.get(), "hello, world", 0);
  pwriteAll(fd.get(), "HELLO", 0);
  pwriteAll(fd.get(), "!", 20);
  // The host runs the writes before any later request of the mount, such as an fsync.
  REQUIRE(::fsync(fd.get()) == 0);
  CHECK(readFile(e.h("new")) == std::string("HELLO, world") + std::string(8, '\0') + "!");
  CHECK(preadString(fd.get(), 100, 0) == std::string("HELLO, world") + std::string(8, '\0') + "!");
  CHECK(preadString(fd.get(), 4, 7) == "worl");
  CHECK(preadString(fd.get(), 10, 100).empty());
  CHECK(::fsync(fd.get()) == 0);
  CHECK(::fdatasync(fd.get()) == 0);

  // Closing a duplicate flushes without releasing; the original still works.
  int dup = ::dup(fd.get());
  REQUIRE(dup >= 0);
  CHECK(::close(dup) == 0);
  CHECK(::write(fd.get(), "tail", 4) == 4);
  CHECK(fd.close() == 0);
  // write() used the descriptor's own offset (0), untouched by the pwrites.
  CHECK(readFile(e.h("new")) == std::string("tailO, world") + std::string(8, '\0') + "!");

  // Content written on the host is read through the mount.
  const std::string data = pattern(300000, 3);
  writeFile(e.h("from-host"), data);
  CHECK(firstDifference(readFile(e.m("from-host")), data) == -1);
  Fd reader = openOrThrow(e.m("from-host"), O_RDONLY);
  CHECK(firstDifference(preadString(reader.get(), 1000, 123457), data.substr(123457, 1000)) == -1);
}

TEST_CASE("fsync and fdatasync on a directory descriptor succeed") {
  Exported e;
  made(e.h("dir"));
  writeFile(e.h("dir/f"), "x");
  Fd dir = openOrThrow(e.m("dir"), O_RDONLY | O_DIRECTORY);
  CHECK(::fsync(dir.get()) == 0);
  CHECK(::fdatasync(dir.get()) == 0);
  Fd root = openOrThrow(e.mnt, O_RDONLY | O_DIRECTORY);
  CHECK(::fsync(root.get()) == 0);
  CHECK(dir.close() == 0);
}

TEST_CASE("O_APPEND writes from two descriptors all land at the end of the host file") {
  Exported e;
  writeFile(e.h("log"), "start\n");
  writeFile(e.r("log"), "start\n");
  for (const std::string& path : {e.m("log"), e.r("log")}) {
    Fd a = openOrThrow(path, O_WRONLY | O_APPEND);
    Fd b = openOrThrow(path, O_WRONLY | O_APPEND);
    CHECK(::write(a.get(), "one\n", 4) == 4);
    CHECK(::write(b.get(), "two\n", 4) == 4);
    CHECK(::write(a.get(), "three\n", 6) == 6);
    // pwrite on an O_APPEND descriptor appends too (Linux).
    CHECK(::pwrite(b.get(), "four\n", 5, 0) == 5);
  }
  CHECK(readFile(e.h("log")) == readFile(e.r("log")));
  CHECK(readFile(e.h("log")) == "start\none\ntwo\nthree\nfour\n");
  CHECK(readFile(e.m("log")) == "start\none\ntwo\nthree\nfour\n");
}

TEST_CASE("O_EXCL creation of an existing name fails with EEXIST") {
  Exported e;
  writeFile(e.h("exists"), "keep");
  writeFile(e.r("exists"), "keep");
  int hostErr = openErrno(e.r("exists"), O_CREAT | O_EXCL | O_WRONLY);
  CHECK(hostErr == EEXIST);
  CHECK(openErrno(e.m("exists"), O_CREAT | O_EXCL | O_WRONLY) == hostErr);
  CHECK(readFile(e.h("exists")) == "keep");
  CHECK(openErrno(e.m("fresh"), O_CREAT | O_EXCL | O_WRONLY, 0600) == 0);
  CHECK(lstatOf(e.h("fresh")).st_mode == (S_IFREG | 0600));
  // A name made on the host behind the mount's back is found too.
  writeFile(e.h("late"), "late");
  CHECK(openErrno(e.m("late"), O_CREAT | O_EXCL | O_WRONLY) == EEXIST);
}

TEST_CASE("O_TRUNC empties the host file when it is opened") {
  Exported e;
  writeFile(e.h("file"), "old content that is long");
  Fd fd = openOrThrow(e.m("file"), O_WRONLY | O_TRUNC);
  CHECK(lstatOf(e.h("file")).st_size == 0);
  CHECK(::write(fd.get(), "new", 3) == 3);
  CHECK(fd.close() == 0);
  CHECK(readFile(e.h("file")) == "new");
  CHECK(readFile(e.m("file")) == "new");
  // O_CREAT|O_TRUNC on an existing name truncates as well.
  writeFile(e.m("file"), "x");
  CHECK(readFile(e.h("file")) == "x");
}

TEST_CASE("a shared writable mapping reaches the host file after msync") {
  Exported e;
  const std::size_t size = 3 * 4096 + 100;
  writeFile(e.h("mapped"), std::string(size, '.'));
  Fd fd = openOrThrow(e.m("mapped"), O_RDWR);
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  REQUIRE(p != MAP_FAILED);
  const std::string host = std::string(static_cast<const char*>(p), size);
  CHECK(host == std::string(size, '.'));
  const std::string data = pattern(size, 7);
  std::memcpy(p, data.data(), size);
  CHECK(::msync(p, size, MS_SYNC) == 0);
  CHECK(::munmap(p, size) == 0);
  CHECK(firstDifference(readFile(e.h("mapped")), data) == -1);
  CHECK(fd.close() == 0);
  CHECK(firstDifference(readFile(e.h("mapped")), data) == -1);
}

TEST_CASE("a sparse file written at 5 GiB has the host's size, few blocks, and its data and holes") {
  Exported e;
  const std::string data = pattern(4096, 11);
  const off_t at = 5 * kGiB;
  Fd fd = openOrThrow(e.m("sparse"), O_CREAT | O_RDWR);
  pwriteAll(fd.get(), data, at);
  // An offset past 4 GiB that is not block aligned.
  pwriteAll(fd.get(), "beyond", 4 * kGiB + 12345);
  CHECK(::fsync(fd.get()) == 0);

  struct stat h = lstatOf(e.h("sparse"));
  CHECK(h.st_size == at + 4096);
  CHECK(h.st_blocks < 256);  // two 4 KiB blocks and perhaps extent blocks, not gigabytes
  struct stat m;
  REQUIRE(::fstat(fd.get(), &m) == 0);
  CHECK(m.st_size == h.st_size);
  CHECK(m.st_blocks == h.st_blocks);

  Fd hostFd = openOrThrow(e.h("sparse"), O_RDONLY);
  CHECK(firstDifference(preadString(hostFd.get(), 4096, at), data) == -1);
  CHECK(preadString(hostFd.get(), 6, 4 * kGiB + 12345) == "beyond");
  CHECK(firstDifference(preadString(fd.get(), 4096, at), data) == -1);
  CHECK(preadString(fd.get(), 6, 4 * kGiB + 12345) == "beyond");
  CHECK(preadString(fd.get(), 4096, kGiB) == std::string(4096, '\0'));

  // SEEK_DATA / SEEK_HOLE through the mount give what the host file gives.
  for (off_t from : {off_t{0}, kGiB, 4 * kGiB + 20000, at, at + 100}) {
    for (int whence : {SEEK_DATA, SEEK_HOLE}) {
      CAPTURE(from);
      CAPTURE(whence);
      off_t hostResult = ::lseek(hostFd.get(), from, whence);
      off_t mountResult = ::lseek(fd.get(), from, whence);
      CHECK(mountResult == hostResult);
    }
  }
  CHECK(::lseek(fd.get(), 0, SEEK_DATA) == (4 * kGiB + 12345) / 4096 * 4096);
  CHECK(::lseek(fd.get(), 4 * kGiB + 20000, SEEK_DATA) == at);
  CHECK(::lseek(fd.get(), at, SEEK_HOLE) == at + 4096);
  errno = 0;
  CHECK(::lseek(fd.get(), at + 4096, SEEK_DATA) == -1);
  CHECK(errno == ENXIO);
}

TEST_CASE("64 MiB written and read in 1 MiB blocks arrive byte for byte") {
  Exported e;
  constexpr std::size_t kBlock = std::size_t{1} << 20;
  constexpr std::size_t kTotal = 64 * kBlock;

  // Enclave to host.
  const std::string out = pattern(kTotal, 21);
  {
    Fd fd = openOrThrow(e.m("to-host"), O_CREAT | O_WRONLY | O_TRUNC);
    for (std::size_t off = 0; off < kTotal; off += kBlock) {
      ssize_t n = ::write(fd.get(), out.data() + off, kBlock);
      REQUIRE(n == static_cast<ssize_t>(kBlock));
    }
    CHECK(fd.close() == 0);
  }
  CHECK(lstatOf(e.h("to-host")).st_size == static_cast<off_t>(kTotal));
  CHECK(firstDifference(readFile(e.h("to-host")), out) == -1);

  // Host to enclave, in 1 MiB reads.
  const std::string in = pattern(kTotal, 22);
  writeFile(e.h("from-host"), in);
  std::string got;
  got.reserve(kTotal);
  {
    Fd fd = openOrThrow(e.m("from-host"), O_RDONLY);
    std::string block(kBlock, '\0');
    for (;;) {
      ssize_t n = ::read(fd.get(), block.data(), kBlock);
      REQUIRE(n >= 0);
      if (n == 0) break;
      got.append(block.data(), static_cast<std::size_t>(n));
    }
  }
  CHECK(got.size() == kTotal);
  CHECK(firstDifference(got, in) == -1);
}

// The host's pipes: large reads are spliced through them (host-server/pipes.h).
int pipesOf(pid_t pid) {
  int pipes = 0;
  const auto dir = std::filesystem::path("/proc") / std::to_string(pid) / "fd";
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::error_code ignored;
    if (std::filesystem::read_symlink(entry.path(), ignored).string().starts_with("pipe:")) ++pipes;
  }
  return pipes;
}

TEST_CASE("large reads at any offset, over holes and past the end, return the host's bytes") {
  Exported e;
  // 3 MiB and a bit, with a 1 MiB hole after the first MiB.
  constexpr std::size_t kMiB = std::size_t{1} << 20;
  std::string content = pattern(3 * kMiB + 123, 41);
  std::fill(content.begin() + kMiB, content.begin() + 2 * kMiB, '\0');
  {
    Fd fd = openOrThrow(e.h("big"), O_CREAT | O_WRONLY | O_TRUNC);
    REQUIRE(::pwrite(fd.get(), content.data(), kMiB, 0) == static_cast<ssize_t>(kMiB));
    const std::size_t tail = content.size() - 2 * kMiB;
    REQUIRE(::pwrite(fd.get(), content.data() + 2 * kMiB, tail, 2 * kMiB) ==
            static_cast<ssize_t>(tail));
  }
  const int pipesBefore = pipesOf(e.server.pid());
  // O_DIRECT: each read reaches the host as it is made, at its own offset.
  Fd fd = openOrThrow(e.m("big"), O_RDONLY | O_DIRECT);
  struct Read {
    std::size_t offset, size;
  };
  for (const Read& r : {Read{0, kMiB}, Read{4095, kMiB - 4096}, Read{1, kMiB}, Read{kMiB - 100, 300000},
                        Read{2 * kMiB - 7, 65536}, Read{content.size() - 500000, kMiB},
                        Read{content.size() - 10, 65536}, Read{content.size() + 5, 65536}}) {
    CAPTURE(r.offset);
    CAPTURE(r.size);
    std::string got(r.size, 'x');
    const ssize_t n = ::pread(fd.get(), got.data(), r.size, static_cast<off_t>(r.offset));
    const std::size_t expected =
        r.offset >= content.size() ? 0 : std::min(r.size, content.size() - r.offset);
    REQUIRE(n == static_cast<ssize_t>(expected));
    got.resize(expected);
    CHECK(firstDifference(got, content.substr(std::min(r.offset, content.size()), expected)) == -1);
  }
  // Those reads went through pipes, which the host keeps for the next ones.
  CHECK(pipesOf(e.server.pid()) > pipesBefore);
}

TEST_CASE("reads and writes from several threads at once each get their own bytes") {
  Exported e;
  constexpr std::size_t kChunk = 64 * 1024;
  constexpr std::size_t kChunks = 256;  // 16 MiB
  const std::string content = pattern(kChunk * kChunks, 31);
  writeFile(e.h("shared"), content);
  const std::string fresh = pattern(kChunk * kChunks, 32);
  Fd writeFd = openOrThrow(e.m("written"), O_CREAT | O_RDWR);
  REQUIRE(::ftruncate(writeFd.get(), static_cast<off_t>(fresh.size())) == 0);

  constexpr int kThreads = 6;
  std::vector<int> readErrors(kThreads, 0), writeErrors(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Fd fd(::open(e.m("shared").c_str(), O_RDONLY | O_CLOEXEC));
      if (fd.get() < 0) {
        readErrors[t] = -1;
        return;
      }
      for (std::size_t i = 0; i < kChunks; ++i) {
        // Every thread walks the chunks in its own order, so requests interleave.
        std::size_t chunk = (i * 7 + static_cast<std::size_t>(t) * 37) % kChunks;
        std::string got(kChunk, '\0');
        ssize_t n = ::pread(fd.get(), got.data(), kChunk, static_cast<off_t>(chunk * kChunk));
        if (n != static_cast<ssize_t>(kChunk) ||
            std::memcmp(got.data(), content.data() + chunk * kChunk, kChunk) != 0) {
          ++readErrors[t];
        }
        // Threads write disjoint chunks of the other file.
        if (chunk % kThreads == static_cast<std::size_t>(t)) {
          ssize_t w = ::pwrite(writeFd.get(), fresh.data() + chunk * kChunk, kChunk,
                               static_cast<off_t>(chunk * kChunk));
          if (w != static_cast<ssize_t>(kChunk)) ++writeErrors[t];
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) {
    CAPTURE(t);
    CHECK(readErrors[t] == 0);
    CHECK(writeErrors[t] == 0);
  }
  CHECK(firstDifference(readFile(e.h("written")), fresh) == -1);
}

// ---- directories and names -----------------------------------------------------------------

TEST_CASE("mkdir makes a host directory, rmdir removes it, and a non-empty one fails with ENOTEMPTY") {
  Exported e;
  REQUIRE(::mkdir(e.m("d").c_str(), 0750) == 0);
  REQUIRE(::mkdir(e.r("d").c_str(), 0750) == 0);
  CHECK(lstatOf(e.h("d")).st_mode == lstatOf(e.r("d")).st_mode);
  REQUIRE(::mkdir(e.m("d/sub").c_str(), 0755) == 0);
  writeFile(e.m("d/sub/f"), "x");
  CHECK(readFile(e.h("d/sub/f")) == "x");
  REQUIRE(::mkdir(e.r("d/sub").c_str(), 0755) == 0);

  int hostErr = errnoOf(::rmdir(e.r("d").c_str()));
  CHECK(hostErr == ENOTEMPTY);
  CHECK(errnoOf(::rmdir(e.m("d").c_str())) == hostErr);
  CHECK(S_ISDIR(lstatOf(e.h("d")).st_mode));

  // A file made on the host behind the mount's back: only the host can tell it is not empty.
  made(e.h("quiet"));
  CHECK(S_ISDIR(lstatOf(e.m("quiet")).st_mode));
  writeFile(e.h("quiet/f"), "x");
  CHECK(errnoOf(::rmdir(e.m("quiet").c_str())) == ENOTEMPTY);

  REQUIRE(::unlink(e.m("d/sub/f").c_str()) == 0);
  CHECK(::rmdir(e.m("d/sub").c_str()) == 0);
  CHECK(::rmdir(e.m("d").c_str()) == 0);
  CHECK(errnoOf(::access(e.h("d").c_str(), F_OK)) == ENOENT);
  CHECK(errnoOf(::rmdir(e.m("d").c_str())) == ENOENT);
}

TEST_CASE("unlink removes the host file, and an open descriptor keeps working") {
  Exported e;
  writeFile(e.h("file"), "still here");
  Fd fd = openOrThrow(e.m("file"), O_RDWR);
  REQUIRE(::unlink(e.m("file").c_str()) == 0);
  CHECK(errnoOf(::access(e.h("file").c_str(), F_OK)) == ENOENT);
  CHECK(errnoOf(::access(e.m("file").c_str(), F_OK)) == ENOENT);
  CHECK(preadString(fd.get(), 100, 0) == "still here");
  pwriteAll(fd.get(), "STILL", 0);
  CHECK(preadString(fd.get(), 100, 0) == "STILL here");
  struct stat st;
  REQUIRE(::fstat(fd.get(), &st) == 0);
  CHECK(st.st_nlink == 0);
  CHECK(errnoOf(::unlink(e.m("file").c_str())) == ENOENT);
}

TEST_CASE("rename moves and replaces entries on the host, within and across directories") {
  Exported e;
  writeFile(e.h("a"), "A");
  writeFile(e.h("b"), "B");
  made(e.h("dir"));
  const ino_t aIno = lstatOf(e.h("a")).st_ino;
  REQUIRE(::rename(e.m("a").c_str(), e.m("moved").c_str()) == 0);
  CHECK(errnoOf(::access(e.h("a").c_str(), F_OK)) == ENOENT);
  CHECK(readFile(e.h("moved")) == "A");
  CHECK(lstatOf(e.m("moved")).st_ino == aIno);
  // Replacing an existing target.
  REQUIRE(::rename(e.m("moved").c_str(), e.m("b").c_str()) == 0);
  CHECK(readFile(e.h("b")) == "A");
  CHECK(readFile(e.m("b")) == "A");
  CHECK(lstatOf(e.m("b")).st_ino == aIno);
  // Into another directory, and a directory itself.
  REQUIRE(::rename(e.m("b").c_str(), e.m("dir/b").c_str()) == 0);
  CHECK(readFile(e.h("dir/b")) == "A");
  REQUIRE(::rename(e.m("dir").c_str(), e.m("dir2").c_str()) == 0);
  CHECK(readFile(e.h("dir2/b")) == "A");
  CHECK(readFile(e.m("dir2/b")) == "A");
  CHECK(errnoOf(::access(e.m("dir").c_str(), F_OK)) == ENOENT);
}

TEST_CASE("rename with RENAME_NOREPLACE fails with EEXIST and leaves both entries") {
  Exported e;
  for (const std::string& root : {e.host, e.ref}) {
    writeFile(root + "/a", "A");
    writeFile(root + "/b", "B");
  }
  int hostErr = errnoOf(::renameat2(AT_FDCWD, e.r("a").c_str(), AT_FDCWD, e.r("b").c_str(),
                                    RENAME_NOREPLACE));
  CHECK(hostErr == EEXIST);
  CHECK(errnoOf(::renameat2(AT_FDCWD, e.m("a").c_str(), AT_FDCWD, e.m("b").c_str(),
                            RENAME_NOREPLACE)) == hostErr);
  CHECK(readFile(e.h("a")) == "A");
  CHECK(readFile(e.h("b")) == "B");
  // To a free name it renames.
  CHECK(::renameat2(AT_FDCWD, e.m("a").c_str(), AT_FDCWD, e.m("c").c_str(), RENAME_NOREPLACE) == 0);
  CHECK(readFile(e.h("c")) == "A");
  CHECK(errnoOf(::access(e.h("a").c_str(), F_OK)) == ENOENT);
  // A target made on the host behind the mount's back counts as well.
  CHECK(errnoOf(::access(e.m("d").c_str(), F_OK)) == ENOENT);
  writeFile(e.h("d"), "D");
  CHECK(errnoOf(::renameat2(AT_FDCWD, e.m("c").c_str(), AT_FDCWD, e.m("d").c_str(),
                            RENAME_NOREPLACE)) == EEXIST);
  CHECK(readFile(e.h("d")) == "D");
}

TEST_CASE("rename with RENAME_EXCHANGE swaps two entries") {
  Exported e;
  writeFile(e.h("file"), "F");
  made(e.h("dir"));
  writeFile(e.h("dir/inner"), "I");
  const ino_t fileIno = lstatOf(e.h("file")).st_ino;
  const ino_t dirIno = lstatOf(e.h("dir")).st_ino;
  // Let the kernel know both first, so stale cached entries would show.
  CHECK(lstatOf(e.m("file")).st_ino == fileIno);
  CHECK(lstatOf(e.m("dir")).st_ino == dirIno);
  REQUIRE(::renameat2(AT_FDCWD, e.m("file").c_str(), AT_FDCWD, e.m("dir").c_str(),
                      RENAME_EXCHANGE) == 0);
  CHECK(S_ISDIR(lstatOf(e.h("file")).st_mode));
  CHECK(readFile(e.h("file/inner")) == "I");
  CHECK(readFile(e.h("dir")) == "F");
  CHECK(lstatOf(e.m("file")).st_ino == dirIno);
  CHECK(lstatOf(e.m("dir")).st_ino == fileIno);
  CHECK(readFile(e.m("file/inner")) == "I");
  CHECK(readFile(e.m("dir")) == "F");
  // Exchanging with a missing name fails like on the host.
  writeFile(e.r("x"), "x");
  int hostErr = errnoOf(::renameat2(AT_FDCWD, e.r("x").c_str(), AT_FDCWD, e.r("missing").c_str(),
                                    RENAME_EXCHANGE));
  CHECK(hostErr == ENOENT);
  CHECK(errnoOf(::renameat2(AT_FDCWD, e.m("dir").c_str(), AT_FDCWD, e.m("missing").c_str(),
                            RENAME_EXCHANGE)) == hostErr);
}

TEST_CASE("symlink makes a host symbolic link and readlink returns its target") {
  Exported e;
  writeFile(e.h("file"), "through the link");
  REQUIRE(::symlink("file", e.m("rel").c_str()) == 0);
  REQUIRE(::symlink("no/such/target", e.m("dangling").c_str()) == 0);
  CHECK(std::filesystem::read_symlink(e.h("rel")).string() == "file");
  CHECK(std::filesystem::read_symlink(e.h("dangling")).string() == "no/such/target");
  CHECK(S_ISLNK(lstatOf(e.h("rel")).st_mode));
  CHECK(S_ISLNK(lstatOf(e.m("rel")).st_mode));
  CHECK(lstatOf(e.m("dangling")).st_size == 14);
  char buf[256];
  ssize_t n = ::readlink(e.m("dangling").c_str(), buf, sizeof buf);
  CHECK(std::string(buf, static_cast<std::size_t>(std::max<ssize_t>(n, 0))) == "no/such/target");
  CHECK(readFile(e.m("rel")) == "through the link");
  // A link made on the host that stays inside.
  REQUIRE(::symlink("sub/target", e.h("hostlink").c_str()) == 0);
  n = ::readlink(e.m("hostlink").c_str(), buf, sizeof buf);
  CHECK(std::string(buf, static_cast<std::size_t>(std::max<ssize_t>(n, 0))) == "sub/target");
  // The longest target Linux allows (4095 bytes).
  std::string longTarget;
  while (longTarget.size() < 4095) longTarget += "abcdefg/";
  longTarget.resize(4095);
  REQUIRE(::symlink(longTarget.c_str(), e.m("longlink").c_str()) == 0);
  CHECK(std::filesystem::read_symlink(e.h("longlink")).string() == longTarget);
  std::string longBuf(8192, '\0');
  n = ::readlink(e.m("longlink").c_str(), longBuf.data(), longBuf.size());
  CHECK(n == 4095);
  CHECK(longBuf.substr(0, 4095) == longTarget);
  CHECK(lstatOf(e.m("longlink")).st_size == 4095);
  // Following a dangling link fails like on the host.
  REQUIRE(::symlink("no/such/target", e.r("dangling").c_str()) == 0);
  int hostErr = openErrno(e.r("dangling"), O_RDONLY);
  CHECK(openErrno(e.m("dangling"), O_RDONLY) == hostErr);
}

TEST_CASE("symlinks leading out of the mount are refused unless the mount opts in") {
  for (bool follow : {false, true}) {
    CAPTURE(follow);
    Exported e(false, {}, follow ? std::vector<std::string>{"-o", "symlinks=follow"}
                                 : std::vector<std::string>{});
    REQUIRE(::symlink("../x/y", e.h("up").c_str()) == 0);
    REQUIRE(::symlink("/etc/hostname", e.h("abs").c_str()) == 0);
    REQUIRE(::symlink("a/../b", e.h("climb").c_str()) == 0);
    for (const char* name : {"up", "abs", "climb"}) {
      CAPTURE(name);
      CHECK(S_ISLNK(lstatOf(e.m(name)).st_mode));  // listed and stat'able either way
      char buf[256];
      errno = 0;
      ssize_t n = ::readlink(e.m(name).c_str(), buf, sizeof buf);
      if (follow) {
        CHECK(std::string(buf, static_cast<std::size_t>(std::max<ssize_t>(n, 0))) ==
              std::filesystem::read_symlink(e.h(name)).string());
      } else {
        CHECK(n == -1);
        CHECK(errno == EACCES);
      }
    }
    // Following the absolute link reaches the enclave's own file only when allowed.
    errno = 0;
    int fd = ::open(e.m("abs").c_str(), O_RDONLY | O_CLOEXEC);
    int err = errno;
    if (fd >= 0) ::close(fd);
    CHECK((fd >= 0) == follow);
    if (!follow) CHECK(err == EACCES);
  }
}

TEST_CASE("link makes a hard link: link count 2 and the same inode number") {
  Exported e;
  writeFile(e.h("a"), "shared");
  REQUIRE(::link(e.m("a").c_str(), e.m("b").c_str()) == 0);
  struct stat ha = lstatOf(e.h("a"));
  struct stat hb = lstatOf(e.h("b"));
  CHECK(ha.st_nlink == 2);
  CHECK(ha.st_ino == hb.st_ino);
  struct stat ma = lstatOf(e.m("a"));
  struct stat mb = lstatOf(e.m("b"));
  CHECK(ma.st_nlink == 2);
  CHECK(mb.st_nlink == 2);
  CHECK(ma.st_ino == mb.st_ino);
  CHECK(ma.st_ino == ha.st_ino);
  // Written through one name, read through the other.
  writeFile(e.m("b"), "changed");
  CHECK(readFile(e.m("a")) == "changed");
  CHECK(readFile(e.h("a")) == "changed");
  REQUIRE(::unlink(e.m("a").c_str()) == 0);
  CHECK(lstatOf(e.h("b")).st_nlink == 1);
  CHECK(lstatOf(e.m("b")).st_nlink == 1);
}

TEST_CASE("mknod of a fifo makes a fifo on the host") {
  Exported e;
  REQUIRE(::mkfifo(e.m("fifo").c_str(), 0640) == 0);
  REQUIRE(::mkfifo(e.r("fifo").c_str(), 0640) == 0);
  struct stat h = lstatOf(e.h("fifo"));
  CHECK(S_ISFIFO(h.st_mode));
  CHECK(h.st_mode == lstatOf(e.r("fifo")).st_mode);
  CHECK(S_ISFIFO(lstatOf(e.m("fifo")).st_mode));
  CHECK(lstatOf(e.m("fifo")).st_ino == h.st_ino);
  // A regular file through mknod.
  REQUIRE(::mknod(e.m("plain").c_str(), S_IFREG | 0600, 0) == 0);
  CHECK(lstatOf(e.h("plain")).st_mode == (S_IFREG | 0600));
  int hostErr = errnoOf(::mkfifo(e.r("fifo").c_str(), 0640));
  CHECK(hostErr == EEXIST);
  CHECK(errnoOf(::mkfifo(e.m("fifo").c_str(), 0640)) == hostErr);
}

// ---- statfs / fallocate / xattrs -----------------------------------------------------------

TEST_CASE("statfs through the mount reports the host file system's geometry") {
  Exported e;
  made(e.h("sub"));
  struct statvfs h;
  REQUIRE(::statvfs(e.host.c_str(), &h) == 0);
  for (const std::string& path : {e.mnt, e.m("sub")}) {
    CAPTURE(path);
    struct statvfs m;
    REQUIRE(::statvfs(path.c_str(), &m) == 0);
    CHECK(m.f_bsize == h.f_bsize);
    CHECK(m.f_frsize == h.f_frsize);
    CHECK(m.f_blocks == h.f_blocks);
    CHECK(m.f_files == h.f_files);
    CHECK(m.f_namemax == h.f_namemax);
    CHECK(m.f_bfree <= m.f_blocks);
    CHECK(m.f_bavail <= m.f_bfree);
    // Free space moves with other activity on the machine; it must be in the same region.
    CHECK(static_cast<double>(m.f_bfree) >= 0.9 * static_cast<double>(h.f_bfree));
    CHECK(static_cast<double>(m.f_bfree) <= 1.1 * static_cast<double>(h.f_bfree));
  }
}

TEST_CASE("fallocate reserves host blocks, and punching a hole frees them without changing the size") {
  Exported e;
  constexpr off_t kMiB = 1 << 20;
  Fd fd = openOrThrow(e.m("file"), O_CREAT | O_RDWR);
  REQUIRE(::fallocate(fd.get(), 0, 0, kMiB) == 0);
  struct stat h = lstatOf(e.h("file"));
  CHECK(h.st_size == kMiB);
  CHECK(h.st_blocks >= kMiB / 512);

  const std::string data = pattern(kMiB, 5);
  pwriteAll(fd.get(), data, 0);
  REQUIRE(::fsync(fd.get()) == 0);  // the writes are on the host before it is looked at
  const blkcnt_t before = lstatOf(e.h("file")).st_blocks;
  REQUIRE(::fallocate(fd.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 256 * 1024, 512 * 1024) == 0);
  h = lstatOf(e.h("file"));
  CHECK(h.st_size == kMiB);
  CHECK(h.st_blocks <= before - 512 * 1024 / 512);
  struct stat m;
  REQUIRE(::fstat(fd.get(), &m) == 0);
  CHECK(m.st_size == kMiB);
  CHECK(m.st_blocks == h.st_blocks);
  std::string expected = data;
  std::fill(expected.begin() + 256 * 1024, expected.begin() + 768 * 1024, '\0');
  CHECK(firstDifference(readFile(e.h("file")), expected) == -1);
  CHECK(firstDifference(preadString(fd.get(), kMiB, 0), expected) == -1);
  CHECK(::lseek(fd.get(), 0, SEEK_HOLE) == 256 * 1024);

  // KEEP_SIZE past the end reserves blocks but keeps the size.
  REQUIRE(::fallocate(fd.get(), FALLOC_FL_KEEP_SIZE, kMiB, kMiB) == 0);
  h = lstatOf(e.h("file"));
  CHECK(h.st_size == kMiB);
  CHECK(h.st_blocks >= 2 * kMiB / 512 - 512 * 1024 / 512);
  // Without KEEP_SIZE it grows the file.
  REQUIRE(::fallocate(fd.get(), 0, 3 * kMiB, kMiB) == 0);
  CHECK(lstatOf(e.h("file")).st_size == 4 * kMiB);
  REQUIRE(::fstat(fd.get(), &m) == 0);
  CHECK(m.st_size == 4 * kMiB);
}

TEST_CASE("file capabilities the host set are not shown: a basic mount is nosuid, they never apply") {
  Exported e;
  writeFile(e.h("tool"), "x");
  // A capability set (cap_net_raw+ep, version 2), as setcap would write it on the host.
  const unsigned char caps[20] = {0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x20,
                                  0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  REQUIRE(::setxattr(e.h("tool").c_str(), "security.capability", caps, sizeof caps, 0) == 0);
  CHECK(errnoOf(::getxattr(e.m("tool").c_str(), "security.capability", nullptr, 0)) == ENODATA);
  // Writing (which makes the kernel look for capabilities to drop) works and reaches the host.
  writeFile(e.m("tool"), "rewritten");
  CHECK(readFile(e.h("tool")) == "rewritten");
}

TEST_CASE("user extended attributes are set, read, listed and removed on the host file") {
  Exported e;
  writeFile(e.h("file"), "x");
  writeFile(e.r("file"), "x");
  made(e.h("dir"));
  const std::string f = e.m("file");

  REQUIRE(::setxattr(f.c_str(), "user.color", "blue", 4, 0) == 0);
  CHECK(getxattrString(e.h("file"), "user.color") == "blue");
  CHECK(getxattrString(f, "user.color") == "blue");
  CHECK(::getxattr(f.c_str(), "user.color", nullptr, 0) == 4);  // size probe
  char small[2];
  CHECK(errnoOf(::getxattr(f.c_str(), "user.color", small, sizeof small)) == ERANGE);

  // A binary value with NULs, and one made on the host.
  std::string binary = pattern(1000, 9);
  binary[10] = '\0';
  REQUIRE(::setxattr(f.c_str(), "user.binary", binary.data(), binary.size(), 0) == 0);
  CHECK(getxattrString(e.h("file"), "user.binary") == binary);
  CHECK(getxattrString(f, "user.binary") == binary);
  REQUIRE(::setxattr(e.h("file").c_str(), "user.from-host", "h", 1, 0) == 0);
  CHECK(getxattrString(f, "user.from-host") == "h");

  CHECK(xattrNames(f) == xattrNames(e.h("file")));
  CHECK(xattrNames(f).count("user.color") == 1);
  CHECK(xattrNames(f).count("user.from-host") == 1);
  CHECK(::listxattr(f.c_str(), nullptr, 0) == ::listxattr(e.h("file").c_str(), nullptr, 0));

  // An empty value.
  REQUIRE(::setxattr(f.c_str(), "user.empty", "", 0, 0) == 0);
  CHECK(xattrNames(e.h("file")).count("user.empty") == 1);
  CHECK(::getxattr(f.c_str(), "user.empty", nullptr, 0) == 0);
  char one[1];
  CHECK(::getxattr(f.c_str(), "user.empty", one, sizeof one) == 0);

  // Flags and missing names fail like on the host.
  REQUIRE(::setxattr(e.r("file").c_str(), "user.color", "blue", 4, 0) == 0);
  int hostErr = errnoOf(::setxattr(e.r("file").c_str(), "user.color", "red", 3, XATTR_CREATE));
  CHECK(hostErr == EEXIST);
  CHECK(errnoOf(::setxattr(f.c_str(), "user.color", "red", 3, XATTR_CREATE)) == hostErr);
  hostErr = errnoOf(::setxattr(e.r("file").c_str(), "user.none", "x", 1, XATTR_REPLACE));
  CHECK(hostErr == ENODATA);
  CHECK(errnoOf(::setxattr(f.c_str(), "user.none", "x", 1, XATTR_REPLACE)) == hostErr);
  REQUIRE(::setxattr(f.c_str(), "user.color", "red", 3, XATTR_REPLACE) == 0);
  CHECK(getxattrString(e.h("file"), "user.color") == "red");
  char buf[16];
  hostErr = errnoOf(::getxattr(e.r("file").c_str(), "user.missing", buf, sizeof buf));
  CHECK(hostErr == ENODATA);
  CHECK(errnoOf(::getxattr(f.c_str(), "user.missing", buf, sizeof buf)) == hostErr);
  CHECK(errnoOf(::getxattr(f.c_str(), "user.missing", nullptr, 0)) == hostErr);

  REQUIRE(::removexattr(f.c_str(), "user.color") == 0);
  CHECK(xattrNames(e.h("file")).count("user.color") == 0);
  CHECK(errnoOf(::getxattr(f.c_str(), "user.color", buf, sizeof buf)) == ENODATA);
  hostErr = errnoOf(::removexattr(e.r("file").c_str(), "user.missing"));
  CHECK(errnoOf(::removexattr(f.c_str(), "user.missing")) == hostErr);

  // A file without any attributes lists none.
  writeFile(e.h("bare"), "");
  CHECK(::listxattr(e.m("bare").c_str(), nullptr, 0) == ::listxattr(e.h("bare").c_str(), nullptr, 0));
  CHECK(xattrNames(e.m("bare")) == xattrNames(e.h("bare")));

  // Directories carry them too.
  REQUIRE(::setxattr(e.m("dir").c_str(), "user.d", "dv", 2, 0) == 0);
  CHECK(getxattrString(e.h("dir"), "user.d") == "dv");
  CHECK(xattrNames(e.m("dir")) == xattrNames(e.h("dir")));
}

// ---- errors --------------------------------------------------------------------------------

TEST_CASE("host errors reach the application as the same errno") {
  Exported e;
  populate(e.host);
  populate(e.ref);
  const std::string before = snapshot(e.host);
  const std::string tooLong(256, 'x');
  struct Case {
    const char* what;
    int expected;
    std::function<int(const std::string&)> call;  // root -> errno
  };
  const std::vector<Case> cases = {
      {"stat missing", ENOENT,
       [](const std::string& root) {
         struct stat st;
         return errnoOf(::lstat((root + "/missing").c_str(), &st));
       }},
      {"open missing", ENOENT, [](const std::string& root) { return openErrno(root + "/missing", O_RDONLY); }},
      {"open in missing dir", ENOENT,
       [](const std::string& root) { return openErrno(root + "/nodir/f", O_CREAT | O_WRONLY); }},
      {"stat below a file", ENOTDIR,
       [](const std::string& root) {
         struct stat st;
         return errnoOf(::lstat((root + "/file/x").c_str(), &st));
       }},
      {"create below a file", ENOTDIR,
       [](const std::string& root) { return openErrno(root + "/file/x", O_CREAT | O_WRONLY); }},
      {"open file as directory", ENOTDIR,
       [](const std::string& root) { return openErrno(root + "/file", O_RDONLY | O_DIRECTORY); }},
      {"open dir for writing", EISDIR, [](const std::string& root) { return openErrno(root + "/dir", O_WRONLY); }},
      {"truncate dir", EISDIR, [](const std::string& root) { return errnoOf(::truncate((root + "/dir").c_str(), 0)); }},
      {"unlink dir", EISDIR, [](const std::string& root) { return errnoOf(::unlink((root + "/dir").c_str())); }},
      {"rmdir file", ENOTDIR, [](const std::string& root) { return errnoOf(::rmdir((root + "/file").c_str())); }},
      {"rmdir non-empty", ENOTEMPTY, [](const std::string& root) { return errnoOf(::rmdir((root + "/dir").c_str())); }},
      {"rename over non-empty dir", ENOTEMPTY,
       [](const std::string& root) {
         return errnoOf(::rename((root + "/emptydir").c_str(), (root + "/dir").c_str()));
       }},
      {"rename dir over file", ENOTDIR,
       [](const std::string& root) {
         return errnoOf(::rename((root + "/emptydir").c_str(), (root + "/file").c_str()));
       }},
      {"rename file over dir", EISDIR,
       [](const std::string& root) {
         return errnoOf(::rename((root + "/file").c_str(), (root + "/emptydir").c_str()));
       }},
      {"rename dir into itself", EINVAL,
       [](const std::string& root) {
         return errnoOf(::rename((root + "/dir").c_str(), (root + "/dir/sub").c_str()));
       }},
      {"mkdir existing file", EEXIST,
       [](const std::string& root) { return errnoOf(::mkdir((root + "/file").c_str(), 0755)); }},
      {"mkdir existing dir", EEXIST,
       [](const std::string& root) { return errnoOf(::mkdir((root + "/dir").c_str(), 0755)); }},
      {"symlink existing", EEXIST,
       [](const std::string& root) { return errnoOf(::symlink("t", (root + "/file").c_str())); }},
      {"link to existing", EEXIST,
       [](const std::string& root) {
         return errnoOf(::link((root + "/file").c_str(), (root + "/dir/inner").c_str()));
       }},
      {"link a directory", EPERM,
       [](const std::string& root) {
         return errnoOf(::link((root + "/dir").c_str(), (root + "/dir2").c_str()));
       }},
      {"readlink of a file", EINVAL,
       [](const std::string& root) {
         char buf[16];
         return errnoOf(::readlink((root + "/file").c_str(), buf, sizeof buf));
       }},
      {"name too long", ENAMETOOLONG,
       [&](const std::string& root) { return openErrno(root + "/" + tooLong, O_CREAT | O_WRONLY); }},
      {"getxattr missing", ENODATA,
       [](const std::string& root) {
         char buf[16];
         return errnoOf(::getxattr((root + "/file").c_str(), "user.none", buf, sizeof buf));
       }},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    int hostErr = c.call(e.ref);
    int mountErr = c.call(e.mnt);
    CHECK(hostErr == c.expected);
    CHECK(mountErr == hostErr);
  }
  // Nothing failed half-way on the host.
  CHECK(snapshot(e.host) == before);
  CHECK(readFile(e.h("file")) == "file content\n");
  CHECK(readFile(e.h("dir/inner")) == "inner\n");
  CHECK(S_ISDIR(lstatOf(e.h("emptydir")).st_mode));
}

// ---- read-only export ----------------------------------------------------------------------

TEST_CASE("a read-only export refuses every change with EROFS and the host stays unchanged") {
  Exported e(true);
  populate(e.host);
  REQUIRE(::setxattr(e.h("file").c_str(), "user.k", "v", 1, 0) == 0);
  const std::string before = snapshot(e.host);

  struct Case {
    const char* what;
    std::function<int()> call;  // -> errno
  };
  const std::vector<Case> cases = {
      {"open for writing", [&] { return openErrno(e.m("file"), O_WRONLY); }},
      {"open read-write", [&] { return openErrno(e.m("file"), O_RDWR); }},
      {"open with O_TRUNC", [&] { return openErrno(e.m("file"), O_WRONLY | O_TRUNC); }},
      {"create", [&] { return openErrno(e.m("new"), O_CREAT | O_WRONLY); }},
      {"mkdir", [&] { return errnoOf(::mkdir(e.m("newdir").c_str(), 0755)); }},
      {"unlink", [&] { return errnoOf(::unlink(e.m("file").c_str())); }},
      {"rmdir", [&] { return errnoOf(::rmdir(e.m("emptydir").c_str())); }},
      {"rename", [&] { return errnoOf(::rename(e.m("file").c_str(), e.m("renamed").c_str())); }},
      {"symlink", [&] { return errnoOf(::symlink("file", e.m("newlink").c_str())); }},
      {"link", [&] { return errnoOf(::link(e.m("file").c_str(), e.m("hard").c_str())); }},
      {"mkfifo", [&] { return errnoOf(::mkfifo(e.m("fifo").c_str(), 0644)); }},
      {"chmod", [&] { return errnoOf(::chmod(e.m("file").c_str(), 0600)); }},
      {"chown", [&] { return errnoOf(::chown(e.m("file").c_str(), 1, 1)); }},
      {"truncate", [&] { return errnoOf(::truncate(e.m("file").c_str(), 0)); }},
      {"utimensat", [&] { return errnoOf(::utimensat(AT_FDCWD, e.m("file").c_str(), nullptr, 0)); }},
      {"setxattr", [&] { return errnoOf(::setxattr(e.m("file").c_str(), "user.x", "y", 1, 0)); }},
      {"removexattr", [&] { return errnoOf(::removexattr(e.m("file").c_str(), "user.k")); }},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    CHECK(c.call() == EROFS);
  }
  // Reading still works.
  CHECK(readFile(e.m("file")) == "file content\n");
  CHECK(getxattrString(e.m("file"), "user.k") == "v");
  CHECK(listWithGetdents(e.mnt, 4096).entries.size() == 4);
  CHECK(snapshot(e.host) == before);
}
