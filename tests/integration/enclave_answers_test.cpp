// What the enclave answers without asking the host, and that those answers stay true.
//
// With the host pushing changes (the default), the mount answers four kinds of request
// itself: a directory's attributes (the host sends them with every change), a lookup that
// failed before (a negative entry, until the host reports the name), the flush of a close
// on a file no process here ever locked, and the first read of a file opened to be read
// (its first bytes come with the open). Each test counts the requests the host served
// (enclavefs-inspect status) to show the round trip is gone, and compares what the mount
// answers with what the host's own system calls say, also after changes made on the host and
// through a second mount.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "support/harness.h"
#include "support/require_root.h"

using namespace enclavefs::test;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

struct Rig {
  TempDir dir;
  std::string control = "unix:" + (dir / "control.sock");
  HostServer server{dir / "sock", {"--export", "data=" + made("export"), "--control", control}};
  Mount a{server.address(), "data", made("a")};
  Mount b{server.address(), "data", made("b")};

  std::string made(const std::string& name) {
    std::filesystem::create_directories(dir / name);
    return dir / name;
  }
  std::string host(const std::string& name) const { return dir / ("export/" + name); }

  // Requests of each kind the host has served, over both mounts.
  std::map<std::string, std::uint64_t> served() {
    auto r = run({inspectToolPath(), "--control", control, "status", "--json"});
    REQUIRE_MESSAGE(r.exitCode == 0, r.output);
    const json status = json::parse(r.output);
    std::map<std::string, std::uint64_t> counts;
    for (const json& client : status["clients"]) {
      for (const json& op : client.value("latency", json::array())) {
        counts[op["op"].get<std::string>()] += op["count"].get<std::uint64_t>();
      }
    }
    return counts;
  }

  // Changed names the host pushed to each client, in the order the clients connected.
  std::vector<std::uint64_t> pushedEntries() {
    auto r = run({inspectToolPath(), "--control", control, "status", "--json"});
    REQUIRE_MESSAGE(r.exitCode == 0, r.output);
    const json status = json::parse(r.output);
    std::map<std::uint64_t, std::uint64_t> byClient;
    for (const json& client : status["clients"]) {
      byClient[client["id"].get<std::uint64_t>()] =
          client["totals"]["changedEntriesPushed"].get<std::uint64_t>();
    }
    std::vector<std::uint64_t> out;
    for (const auto& [id, count] : byClient) out.push_back(count);
    return out;
  }
};

struct stat statOf(const std::string& path) {
  struct stat st {};
  REQUIRE_MESSAGE(::stat(path.c_str(), &st) == 0, path << ": " << std::strerror(errno));
  return st;
}

bool sameTime(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

// The attributes a directory listing or `ls -ld` shows, as the mount and the host see them.
void checkSameDirectory(const std::string& mounted, const std::string& onHost) {
  struct stat m = statOf(mounted), h = statOf(onHost);
  CHECK(m.st_nlink == h.st_nlink);
  CHECK(m.st_size == h.st_size);
  CHECK(m.st_mode == h.st_mode);
  CHECK(sameTime(m.st_mtim, h.st_mtim));
  CHECK(sameTime(m.st_ctim, h.st_ctim));
}

void createFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644);
  REQUIRE_MESSAGE(fd >= 0, path << ": " << std::strerror(errno));
  REQUIRE(::write(fd, "data", 4) == 4);
  REQUIRE(::close(fd) == 0);
}

// Polls `seen` every 200 µs for up to 100 ms, the coherence bound of coherence_test.cpp.
bool seenWithin100ms(const std::function<bool()>& seen) {
  auto until = std::chrono::steady_clock::now() + 100ms;
  while (!seen()) {
    if (std::chrono::steady_clock::now() > until) return false;
    ::usleep(200);
  }
  return true;
}

// The FUSE requests the kernel sends one mount, by name ("FUSE_WRITE"), counted from the
// kernel's fuse:fuse_request_send tracepoint in a tracing instance of the test's own, which
// sees only that mount's connection.
class KernelRequests {
 public:
  static constexpr const char* kTracing = "/sys/kernel/tracing";
  static bool available() {
    return ::access((std::string(kTracing) + "/events/fuse/fuse_request_send").c_str(), F_OK) == 0;
  }

  explicit KernelRequests(const std::string& mountPoint)
      : instance_(std::string(kTracing) + "/instances/enclavefs-test-" + std::to_string(::getpid())) {
    REQUIRE_MESSAGE(::mkdir(instance_.c_str(), 0700) == 0, instance_ << ": " << std::strerror(errno));
    // The kernel names a connection by its device number in the kernel's own encoding.
    const dev_t dev = statOf(mountPoint).st_dev;
    const std::uint64_t connection = (std::uint64_t{major(dev)} << 20) | minor(dev);
    writeFile(event() + "/filter", "connection == " + std::to_string(connection));
    writeFile(event() + "/enable", "1");
  }
  ~KernelRequests() { ::rmdir(instance_.c_str()); }

  std::map<std::string, int> stop() {
    writeFile(event() + "/enable", "0");
    std::map<std::string, int> counts;
    std::istringstream trace(readFile(instance_ + "/trace"));
    for (std::string line; std::getline(trace, line);) {
      auto open = line.find("(FUSE_");
      auto close = line.find(')', open);
      if (open != std::string::npos && close != std::string::npos) {
        ++counts[line.substr(open + 1, close - open - 1)];
      }
    }
    return counts;
  }

 private:
  std::string event() const { return instance_ + "/events/fuse/fuse_request_send"; }
  std::string instance_;
};

}  // namespace

TEST_CASE("writes leave set-ID bits to the host: the kernel asks nothing else before each write") {
  if (!KernelRequests::available()) {
    std::fprintf(stderr, "SKIPPED (this case): the kernel has no fuse:fuse_request_send "
                         "tracepoint to count its FUSE requests with\n");
    return;
  }
  Rig rig;
  writeFile(rig.host("written"), std::string(64 * 4096, 'o'));
  std::string expected = readFile(rig.host("written"));
  int fd = ::open((rig.a / "written").c_str(), O_WRONLY);
  REQUIRE(fd >= 0);
  KernelRequests requests(rig.a.path());
  for (int i = 0; i < 200; ++i) {
    const std::string block(4096, static_cast<char>('a' + i % 26));
    const off_t offset = static_cast<off_t>((i * 37) % 64) * 4096;
    REQUIRE(::pwrite(fd, block.data(), block.size(), offset) == 4096);
    expected.replace(static_cast<std::size_t>(offset), block.size(), block);
  }
  auto counts = requests.stop();
  REQUIRE(::close(fd) == 0);
  CHECK(counts["FUSE_WRITE"] == 200);
  // Without FUSE_HANDLE_KILLPRIV_V2 the kernel asks for security.capability before every
  // write (200 getxattr); with it at most once, until it has seen the file has none.
  CHECK(counts["FUSE_GETXATTR"] <= 1);
  CHECK(readFile(rig.host("written")) == expected);
}

TEST_CASE("names made or removed through one mount are pushed to the others, not back to it") {
  Rig rig;
  REQUIRE(::mkdir((rig.a / "own").c_str(), 0755) == 0);
  // The other mount holds the directory open, so the host watches it for that client too
  // (an open descriptor keeps its kernel from forgetting the directory when the mkdir's
  // notification drops the entry).
  const int held = ::open((rig.b / "own").c_str(), O_RDONLY | O_DIRECTORY);
  REQUIRE(held >= 0);
  struct stat st;
  ::usleep(20'000);  // the mkdir's own batch has passed
  const auto before = rig.pushedEntries();
  REQUIRE(before.size() == 2);

  for (int i = 0; i < 20; ++i) writeFile(rig.a / ("own/f" + std::to_string(i)), "x");
  for (int i = 0; i < 5; ++i) REQUIRE(::mkdir((rig.a / ("own/d" + std::to_string(i))).c_str(), 0755) == 0);
  REQUIRE(::symlink("f0", (rig.a / "own/link").c_str()) == 0);
  for (int i = 0; i < 10; ++i) REQUIRE(::unlink((rig.a / ("own/f" + std::to_string(i))).c_str()) == 0);
  for (int i = 0; i < 5; ++i) REQUIRE(::rmdir((rig.a / ("own/d" + std::to_string(i))).c_str()) == 0);

  // The other mount sees every change, within the coherence bound.
  CHECK(seenWithin100ms([&] { return ::stat((rig.b / "own/f19").c_str(), &st) == 0; }));
  CHECK(seenWithin100ms([&] { return ::lstat((rig.b / "own/link").c_str(), &st) == 0; }));
  CHECK(seenWithin100ms([&] { return ::stat((rig.b / "own/f0").c_str(), &st) == -1; }));
  CHECK(seenWithin100ms([&] { return ::stat((rig.b / "own/d4").c_str(), &st) == -1; }));
  ::usleep(20'000);
  const auto after = rig.pushedEntries();
  // 26 names changed: the other mount was told of each (some more than once); this one
  // learnt of them from the replies. Only an event that comes later than the batch of a read
  // armed after its change is pushed back, harmlessly: 0 of 41 in ten runs beside a busy
  // test, against 41 of 41 without the rule.
  const std::uint64_t toOther = after[1] - before[1];
  const std::uint64_t toSelf = after[0] - before[0];
  CHECK(toOther >= 26);
  CHECK_MESSAGE(toSelf * 10 <= toOther,
                toSelf << " names pushed back, " << toOther << " to the other mount");

  // A name removed here and made again at once on the host is seen here: the making is
  // pushed even though the removal was this mount's own.
  REQUIRE(::unlink((rig.a / "own/f10").c_str()) == 0);
  writeFile(rig.host("own/f10"), "host");
  CHECK(seenWithin100ms([&] { return ::stat((rig.a / "own/f10").c_str(), &st) == 0; }));
  CHECK(readFile(rig.a / "own/f10") == "host");
  // And one made here and removed at once on the host is gone here.
  writeFile(rig.a / "own/new", "enclave");
  REQUIRE(::unlink(rig.host("own/new").c_str()) == 0);
  CHECK(seenWithin100ms([&] { return ::stat((rig.a / "own/new").c_str(), &st) == -1; }));
  ::close(held);
}

TEST_CASE("creating and removing files asks the host for no directory attributes and no flush, "
          "and the directory's attributes stay exact") {
  Rig rig;
  REQUIRE(::mkdir((rig.a / "d").c_str(), 0755) == 0);
  checkSameDirectory(rig.a / "d", rig.host("d"));
  auto before = rig.served();
  for (int i = 0; i < 20; ++i) createFile(rig.a / ("d/f" + std::to_string(i)));
  for (int i = 0; i < 10; ++i) REQUIRE(::unlink((rig.a / ("d/f" + std::to_string(i))).c_str()) == 0);
  REQUIRE(::mkdir((rig.a / "d/sub").c_str(), 0755) == 0);
  REQUIRE(::rmdir((rig.a / "d/sub").c_str()) == 0);
  REQUIRE(::mkdir((rig.a / "d/kept").c_str(), 0700) == 0);
  auto after = rig.served();
  CHECK(after["create"] - before["create"] == 20);
  CHECK(after["unlink"] - before["unlink"] == 10);
  CHECK(after["getattr"] - before["getattr"] == 0);
  CHECK(after["flush"] - before["flush"] == 0);
  checkSameDirectory(rig.a / "d", rig.host("d"));
  CHECK(statOf(rig.a / "d").st_nlink == 3);  // ".", "kept/.." and its name in the root
  checkSameDirectory(rig.a / "d/kept", rig.host("d/kept"));
}

TEST_CASE("a directory's attributes changed on the host or through another mount are seen "
          "within 100 ms") {
  Rig rig;
  REQUIRE(::mkdir((rig.a / "d").c_str(), 0755) == 0);
  checkSameDirectory(rig.a / "d", rig.host("d"));  // cached in mount a

  REQUIRE(::mkdir(rig.host("d/by-host").c_str(), 0755) == 0);
  CHECK(seenWithin100ms([&] { return statOf(rig.a / "d").st_nlink == 3; }));
  checkSameDirectory(rig.a / "d", rig.host("d"));

  createFile(rig.b / "d/by-b");
  CHECK(seenWithin100ms(
      [&] { return sameTime(statOf(rig.a / "d").st_mtim, statOf(rig.host("d")).st_mtim); }));
  checkSameDirectory(rig.a / "d", rig.host("d"));

  REQUIRE(::chmod(rig.host("d").c_str(), 0711) == 0);
  CHECK(seenWithin100ms([&] { return (statOf(rig.a / "d").st_mode & 07777) == 0711; }));

  // A directory moved through the mount: its ctime changed though no reply names it.
  REQUIRE(::mkdir((rig.a / "d/moved").c_str(), 0755) == 0);
  checkSameDirectory(rig.a / "d/moved", rig.host("d/moved"));
  ::usleep(10'000);  // a later ctime, even on a coarse clock
  REQUIRE(::rename((rig.a / "d/moved").c_str(), (rig.a / "d/by-host/moved").c_str()) == 0);
  checkSameDirectory(rig.a / "d/by-host/moved", rig.host("d/by-host/moved"));
  checkSameDirectory(rig.a / "d/by-host", rig.host("d/by-host"));
  checkSameDirectory(rig.a / "d", rig.host("d"));
}

TEST_CASE("a failed lookup is answered in the enclave until the name is made, wherever") {
  Rig rig;
  struct stat st;
  auto before = rig.served();
  for (int i = 0; i < 5; ++i) CHECK(::stat((rig.a / "missing").c_str(), &st) == -1);
  auto after = rig.served();
  CHECK(after["lookup"] - before["lookup"] == 1);

  writeFile(rig.host("missing"), "made on the host");
  CHECK(seenWithin100ms([&] { return ::stat((rig.a / "missing").c_str(), &st) == 0; }));
  CHECK(readFile(rig.a / "missing") == "made on the host");

  CHECK(::stat((rig.a / "later").c_str(), &st) == -1);
  writeFile(rig.b / "later", "made by the other mount");
  CHECK(seenWithin100ms([&] { return ::stat((rig.a / "later").c_str(), &st) == 0; }));

  // The mount's own creation replaces its negative entry at once.
  CHECK(::stat((rig.a / "own").c_str(), &st) == -1);
  createFile(rig.a / "own");
  CHECK(::stat((rig.a / "own").c_str(), &st) == 0);
}

TEST_CASE("close asks the host to end locks only for a file some process here locked") {
  Rig rig;
  writeFile(rig.a / "f", "x");
  auto before = rig.served();
  for (int i = 0; i < 10; ++i) CHECK(readFile(rig.a / "f") == "x");
  CHECK(rig.served()["flush"] - before["flush"] == 0);

  // Once locked, every close of the file ends the closing process's locks on the host, so
  // the other mount can lock it at once.
  int fd = ::open((rig.a / "f").c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  REQUIRE(::fcntl(fd, F_SETLK, &lock) == 0);
  int other = ::open((rig.a / "f").c_str(), O_RDONLY);
  REQUIRE(other >= 0);
  before = rig.served();
  REQUIRE(::close(other) == 0);  // drops the lock taken through `fd`
  CHECK(rig.served()["flush"] - before["flush"] >= 1);
  int fromB = ::open((rig.b / "f").c_str(), O_RDWR);
  REQUIRE(fromB >= 0);
  CHECK(::fcntl(fromB, F_SETLK, &lock) == 0);
  ::close(fromB);
  ::close(fd);
}

TEST_CASE("a lookup in a directory this mount made is answered in the enclave, until the name "
          "is made anywhere") {
  Rig rig;
  REQUIRE(::mkdir((rig.a / "d").c_str(), 0755) == 0);
  struct stat st;
  auto before = rig.served();
  for (int i = 0; i < 20; ++i) createFile(rig.a / ("d/f" + std::to_string(i)));
  for (const char* name : {"x", "y", "z"}) CHECK(::stat((rig.a / "d/" + name).c_str(), &st) == -1);
  auto after = rig.served();
  // At most the directory's own name again: the notification of the mkdir drops it.
  CHECK(after["lookup"] - before["lookup"] <= 1);
  CHECK(after["create"] - before["create"] == 20);
  for (int i = 0; i < 20; ++i) CHECK(::stat((rig.a / ("d/f" + std::to_string(i))).c_str(), &st) == 0);

  writeFile(rig.host("d/x"), "host");
  CHECK(seenWithin100ms([&] { return ::stat((rig.a / "d/x").c_str(), &st) == 0; }));
  writeFile(rig.b / "d/y", "other mount");
  CHECK(seenWithin100ms([&] { return ::stat((rig.a / "d/y").c_str(), &st) == 0; }));
  REQUIRE(::mkdir(rig.host("d/z").c_str(), 0755) == 0);
  CHECK(seenWithin100ms([&] { return ::stat((rig.a / "d/z").c_str(), &st) == 0; }));
  // Names removed and made again through the mount are found too.
  REQUIRE(::unlink((rig.a / "d/f0").c_str()) == 0);
  CHECK(::stat((rig.a / "d/f0").c_str(), &st) == -1);
  createFile(rig.a / "d/f0");
  CHECK(::stat((rig.a / "d/f0").c_str(), &st) == 0);
  REQUIRE(::rename((rig.a / "d/f1").c_str(), (rig.a / "d/renamed").c_str()) == 0);
  CHECK(::stat((rig.a / "d/renamed").c_str(), &st) == 0);
  CHECK(::stat((rig.a / "d/f1").c_str(), &st) == -1);
}

// pread of `size` bytes at `offset`, as a string.
std::string preadString(int fd, std::size_t size, off_t offset) {
  std::string out(size, '\0');
  ssize_t n = ::pread(fd, out.data(), size, offset);
  REQUIRE_MESSAGE(n >= 0, std::strerror(errno));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

TEST_CASE("a file opened to be read comes with its first bytes, which stand only while nothing "
          "changed the file") {
  Rig rig;
  std::vector<std::string> contents;
  for (int i = 0; i < 10; ++i) {
    contents.push_back(std::string(3000 + i, static_cast<char>('a' + i)));
    writeFile(rig.host("small" + std::to_string(i)), contents.back());
  }
  std::string large(300 * 1024, '\0');
  for (std::size_t i = 0; i < large.size(); ++i) large[i] = static_cast<char>('0' + i % 37);
  writeFile(rig.host("large"), large);

  auto before = rig.served();
  for (int i = 0; i < 10; ++i) CHECK(readFile(rig.a / ("small" + std::to_string(i))) == contents[i]);
  auto after = rig.served();
  CHECK(after["open"] - before["open"] == 10);
  CHECK(after["read"] - before["read"] == 0);
  // Beyond the first 128 KiB, reads go to the host.
  CHECK(readFile(rig.a / "large") == large);
  CHECK(rig.served()["read"] - after["read"] >= 1);

  SUBCASE("changed on the host between the open and the read") {
    writeFile(rig.host("f"), "before");
    int fd = ::open((rig.a / "f").c_str(), O_RDONLY);
    REQUIRE(fd >= 0);
    writeFile(rig.host("f"), "after the open");
    CHECK(seenWithin100ms([&] { return statOf(rig.a / "f").st_size == 14; }));
    CHECK(preadString(fd, 100, 0) == "after the open");
    ::close(fd);
  }
  SUBCASE("changed through the other mount between the open and the read") {
    writeFile(rig.host("f"), "before");
    int fd = ::open((rig.a / "f").c_str(), O_RDONLY);
    REQUIRE(fd >= 0);
    writeFile(rig.b / "f", "from the other mount");
    CHECK(seenWithin100ms([&] { return statOf(rig.a / "f").st_size == 20; }));
    CHECK(preadString(fd, 100, 0) == "from the other mount");
    ::close(fd);
  }
  SUBCASE("changed through this mount between the open and the read") {
    writeFile(rig.host("f"), "0123456789");
    int reader = ::open((rig.a / "f").c_str(), O_RDONLY);
    REQUIRE(reader >= 0);
    int writer = ::open((rig.a / "f").c_str(), O_WRONLY);
    REQUIRE(writer >= 0);
    // Part of a page: the kernel caches no page of it and reads the page from the host.
    REQUIRE(::pwrite(writer, "XY", 2, 3) == 2);
    CHECK(preadString(reader, 100, 0) == "012XY56789");
    REQUIRE(::ftruncate(writer, 4) == 0);
    CHECK(preadString(reader, 100, 0) == "012X");
    ::close(writer);
    ::close(reader);
  }
}

TEST_CASE("lookups in a directory the mount listed are answered by it, and names made or "
          "removed anywhere are seen") {
  Rig rig;
  REQUIRE(::mkdir(rig.host("many").c_str(), 0755) == 0);
  auto content = [](int i) { return std::string(static_cast<std::size_t>(i % 50), 'c'); };
  for (int i = 0; i < 200; ++i) writeFile(rig.host("many/f" + std::to_string(i)), content(i));
  auto path = [&](int i) { return rig.a / ("many/f" + std::to_string(i)); };
  const struct stat hostDir = statOf(rig.host("many"));

  // Lookups keep missing: the mount lists the directory (opendir, readdirplus, releasedir).
  auto before = rig.served();
  for (int i = 0; i < 4; ++i) CHECK(statOf(path(i)).st_size == i % 50);
  REQUIRE(waitUntil([&] { return rig.served()["releasedir"] > before["releasedir"]; }, 5000ms));
  auto listed = rig.served();
  CHECK(listed["opendir"] - before["opendir"] == 1);
  CHECK(listed["lookup"] - before["lookup"] == 5);  // "many", then four names in it
  for (int i = 4; i < 200; ++i) CHECK(statOf(path(i)).st_size == i % 50);
  CHECK(rig.served()["lookup"] - listed["lookup"] == 0);
  // The listing left the directory's access time as it was.
  CHECK(sameTime(statOf(rig.host("many")).st_atim, hostDir.st_atim));
  // A name it does not hold is asked of the host.
  struct stat st;
  CHECK(::stat((rig.a / "many/none").c_str(), &st) == -1);
  CHECK(rig.served()["lookup"] - listed["lookup"] == 1);

  // Names made and removed on the host, through the other mount and through this one.
  writeFile(rig.host("many/new"), "host");
  CHECK(seenWithin100ms([&] { return ::stat((rig.a / "many/new").c_str(), &st) == 0; }));
  REQUIRE(::unlink(rig.host("many/f150").c_str()) == 0);
  CHECK(seenWithin100ms([&] { return ::stat(path(150).c_str(), &st) == -1; }));
  writeFile(rig.b / "many/x", "other mount");
  CHECK(seenWithin100ms([&] { return ::stat((rig.a / "many/x").c_str(), &st) == 0; }));
  REQUIRE(::unlink(path(151).c_str()) == 0);
  CHECK(::stat(path(151).c_str(), &st) == -1);
  writeFile(path(152), "changed here");
  CHECK(statOf(path(152)).st_size == 12);

  // Listed again, then the kernel forgets everything: each name still leads to its own
  // file, whether the listing or the host answers (a lookup counted wrong would make the
  // host forget a node the kernel still uses).
  for (int round = 0; round < 2; ++round) {
    dropKernelCaches();
    for (int i = 0; i < 150; ++i) CHECK(readFile(path(i)) == content(i));
    CHECK(readFile(path(152)) == "changed here");
    CHECK(readFile(rig.a / "many/new") == "host");
    CHECK(::stat(path(150).c_str(), &st) == -1);
    CHECK(::stat(path(151).c_str(), &st) == -1);
  }
}
