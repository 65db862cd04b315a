// Block mounts end to end: enclavefs-volume makes an image, enclavefs-hostd serves it, and
// enclavefs-mount puts an ext4 file system on it through FUSE and a loop device. Every check
// goes through real system calls on the real mount and on the host's image file.
//
// ENCLAVEFS_RUN_DIR gives each simulated enclave its own run directory (its block-mount lock
// and FUSE file), so two "enclaves" on this machine can contend for one volume.
#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <xxhash.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <thread>

#include "support/harness.h"
#include "support/require_root.h"

using namespace enclavefs::test;
using namespace std::chrono_literals;

namespace {

struct RequireLoopDevices {
  RequireLoopDevices() {
    if (::access("/dev/loop-control", R_OK | W_OK) != 0 || ::access("/sbin/mkfs.ext4", X_OK) != 0) {
      std::fprintf(stderr,
                   "SKIPPED: block mounts need /dev/loop-control and mkfs.ext4 (e2fsprogs); "
                   "CI has both\n");
      std::exit(77);
    }
  }
} const requireLoopDevices;

constexpr std::uint64_t kMiB = 1 << 20;

std::string runDirEnv(const std::string& runDir) { return "ENCLAVEFS_RUN_DIR=" + runDir; }

// enclavefs-mount for a volume, as one enclave (its run directory) runs it.
RunResult mountVolume(const std::string& runDir, const std::string& address,
                      const std::string& volume, const std::string& mountPoint,
                      const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv = {"/usr/bin/env", runDirEnv(runDir), mountPath(), "--host",
                                   address,        "--volume",         volume,      "--force-mount",
                                   "empty",        mountPoint};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return run(argv, 120s);
}

RunResult unmountVolume(const std::string& runDir, const std::string& mountPoint) {
  return run({"/usr/bin/env", runDirEnv(runDir), mountPath(), "--unmount", mountPoint});
}

RunResult volumeTool(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {volumeToolPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv);
}

std::uint64_t allocatedBytes(const std::string& path) {
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return static_cast<std::uint64_t>(st.st_blocks) * 512;
}

// The loop device whose backing file is `file`, if one is attached.
std::optional<std::string> loopDeviceOf(const std::string& file) {
  for (const auto& entry : std::filesystem::directory_iterator("/sys/block")) {
    std::ifstream backing(entry.path() / "loop" / "backing_file");
    std::string path;
    if (backing && std::getline(backing, path) && path == file) return entry.path().filename();
  }
  return std::nullopt;
}

std::string mountOptionsOf(const std::string& mountPoint) {
  std::ifstream mounts("/proc/self/mounts");
  std::string device, target, type, options, rest;
  while (mounts >> device >> target >> type >> options && std::getline(mounts, rest)) {
    if (target == mountPoint) return type + " " + options;
  }
  return "";
}

bool volumeIsFree(const std::string& image) {
  auto info = volumeTool({"info", image});
  return info.exitCode == 0 && info.output.find("state        free") != std::string::npos;
}

std::uint64_t hashOf(const std::string& content) { return XXH3_64bits(content.data(), content.size()); }

// One enclave and one host with one volume: the fixture of most tests.
struct Rig {
  TempDir dir;
  std::string image;
  std::string enclave = dir / "enclave";  // run directory of the simulated enclave
  std::string mnt = dir / "mnt";
  std::optional<HostServer> server;

  // The image goes into `imageDir`, or else into the rig's own directory.
  explicit Rig(const std::string& size = "256M", const std::string& imageDir = "")
      : image((imageDir.empty() ? std::string(dir.path()) : imageDir) + "/db.img") {
    ::mkdir(mnt.c_str(), 0755);
    ::mkdir(enclave.c_str(), 0755);
    auto made = volumeTool({"create", "--size", size, "--volume", image});
    REQUIRE_MESSAGE(made.exitCode == 0, made.output);
    startServer();
  }
  ~Rig() {
    if (isMountPoint(mnt)) unmountVolume(enclave, mnt);
  }
  std::string control = "unix:" + (dir / "control.sock");
  void startServer() {
    ::unlink((dir / "control.sock").c_str());
    server.emplace(dir / "sock", std::vector<std::string>{"--volume", "db=" + image, "--control", control});
  }
  // Sector reads the host has served.
  std::uint64_t sectorReads() {
    auto r = run({inspectToolPath(), "--control", control, "status", "--json"});
    REQUIRE_MESSAGE(r.exitCode == 0, r.output);
    const nlohmann::json status = nlohmann::json::parse(r.output);
    std::uint64_t count = 0;
    for (const auto& client : status["clients"]) {
      for (const auto& op : client["latency"]) {
        if (op["op"] == "sectorRead") count += op["count"].get<std::uint64_t>();
      }
    }
    return count;
  }
  void mount(const std::vector<std::string>& extra = {}) {
    auto r = mountVolume(enclave, server->address(), "db", mnt, extra);
    REQUIRE_MESSAGE(r.exitCode == 0, r.output);
    REQUIRE(isMountPoint(mnt));
  }
  void unmount() {
    auto r = unmountVolume(enclave, mnt);
    REQUIRE_MESSAGE(r.exitCode == 0, r.output);
    CHECK_FALSE(isMountPoint(mnt));
  }
};

// A tree of files with sizes from empty to 300 KiB and one of 20 MiB, and their hashes.
std::map<std::string, std::uint64_t> writeTree(const std::string& root) {
  std::mt19937_64 random(42);
  std::map<std::string, std::uint64_t> hashes;
  for (int d = 0; d < 4; ++d) {
    std::string dir = "dir" + std::to_string(d) + "/sub";
    std::filesystem::create_directories(root + "/" + dir);
    for (int f = 0; f < 40; ++f) {
      std::string content(random() % (300 * 1024), '\0');
      for (auto& c : content) c = static_cast<char>(random());
      std::string name = dir + "/file" + std::to_string(f);
      writeFile(root + "/" + name, content);
      hashes[name] = hashOf(content);
    }
  }
  std::string big(20 * kMiB, '\0');
  for (std::size_t i = 0; i < big.size(); i += 8) {
    std::uint64_t v = random();
    std::memcpy(&big[i], &v, 8);
  }
  writeFile(root + "/big", big);
  hashes["big"] = hashOf(big);
  return hashes;
}

void verifyTree(const std::string& root, const std::map<std::string, std::uint64_t>& hashes) {
  for (const auto& [name, hash] : hashes) {
    CAPTURE(name);
    CHECK(hashOf(readFile(root + "/" + name)) == hash);
  }
}

}  // namespace

TEST_CASE("a new volume is formatted on first mount and keeps every file across remounts") {
  Rig rig;
  rig.mount();
  const std::string fuseFile = rig.enclave + "/block/volume";
  auto loop = loopDeviceOf(fuseFile);
  REQUIRE_MESSAGE(loop.has_value(), "no loop device over " << fuseFile);
  std::ifstream dio("/sys/block/" + *loop + "/loop/dio");
  int directIo = 0;
  dio >> directIo;
  CHECK_MESSAGE(directIo == 1, "the loop device should use direct I/O");
  std::ifstream readAhead("/sys/block/" + *loop + "/queue/read_ahead_kb");
  int readAheadKiB = 0;
  readAhead >> readAheadKiB;
  CHECK(readAheadKiB == 1024);
  std::string options = mountOptionsOf(rig.mnt);
  CHECK(options.rfind("ext4 ", 0) == 0);
  CHECK(options.find("nosuid") != std::string::npos);
  CHECK(options.find("nodev") != std::string::npos);
  CHECK(options.find("noexec") == std::string::npos);

  auto hashes = writeTree(rig.mnt);
  rig.unmount();
  CHECK(volumeIsFree(rig.image));
  CHECK_FALSE(loopDeviceOf(fuseFile).has_value());
  CHECK_FALSE(isMountPoint(rig.enclave + "/block"));

  rig.mount();  // the same file system, not a new one
  verifyTree(rig.mnt, hashes);
  rig.unmount();
  auto fsck = run({"/sbin/fsck.ext4", "-n", rig.image + "?offset=4096"});
  CHECK_MESSAGE(fsck.exitCode == 0, fsck.output);
}

TEST_CASE("an idle block mount uses no CPU, however long it busy-polls") {
  // As for basic mounts (lifecycle_test): the receiver and a FUSE worker poll only while
  // messages follow each other.
  Rig rig("64M");
  rig.mount({"-o", "busy_poll=1000"});
  for (int i = 0; i < 100; ++i) writeFile(rig.mnt + "/f" + std::to_string(i), std::to_string(i));
  ::sync();  // so that no write-back reaches the mount in the idle second
  for (int i = 0; i < 100; ++i) {
    CHECK(readFile(rig.mnt + "/f" + std::to_string(i)) == std::to_string(i));
  }
  const pid_t daemon = mountDaemon(rig.mnt);
  REQUIRE(daemon > 0);
  const auto before = cpuTime(daemon);
  std::this_thread::sleep_for(1s);
  CHECK(cpuTime(daemon) - before <= 50ms);
  rig.unmount();
}

TEST_CASE("small files read one after another take a host read per window, and stay right "
          "through rewrites") {
  Rig rig;
  rig.mount();
  const std::string dir = rig.mnt + "/small";
  REQUIRE(::mkdir(dir.c_str(), 0755) == 0);
  auto content = [](int i, int round) {
    std::string text(4096, static_cast<char>('a' + (i + round) % 26));
    std::memcpy(text.data(), &i, sizeof i);
    return text;
  };
  auto path = [&](int i) { return dir + "/f" + std::to_string(i); };
  constexpr int kFiles = 600;
  for (int i = 0; i < kFiles; ++i) writeFile(path(i), content(i, 0));
  ::sync();

  dropKernelCaches();
  const std::uint64_t before = rig.sectorReads();
  for (int i = 0; i < kFiles; ++i) CHECK(readFile(path(i)) == content(i, 0));
  const std::uint64_t reads = rig.sectorReads() - before;
  // One read per file (and the directory's and inodes' blocks) without windows; ext4 lays
  // the files out one after another, so a 128 KiB window serves about 30 of them.
  CHECK_MESSAGE(reads < kFiles / 4, reads << " host reads for " << kFiles << " files");

  // Rewrites go to the host and drop the windows they touch: what the kernel reads next is
  // what was written, also after it forgets its own pages.
  for (int i = 0; i < kFiles; i += 3) writeFileSynced(path(i), content(i, 1));
  dropKernelCaches();
  for (int i = 0; i < kFiles; ++i) CHECK(readFile(path(i)) == content(i, i % 3 == 0 ? 1 : 0));
  rig.unmount();
  rig.mount();
  for (int i = 0; i < kFiles; ++i) CHECK(readFile(path(i)) == content(i, i % 3 == 0 ? 1 : 0));
}

TEST_CASE("a volume holding something that is not ext4 is refused, and nothing is left behind") {
  Rig rig;
  {
    int fd = ::open(rig.image.c_str(), O_WRONLY);
    REQUIRE(fd >= 0);
    std::string junk(8192, 'X');
    REQUIRE(::pwrite(fd, junk.data(), junk.size(), 4096 + 65536) == 8192);
    ::close(fd);
  }
  auto r = mountVolume(rig.enclave, rig.server->address(), "db", rig.mnt);
  CHECK(r.exitCode == 1);
  CHECK(r.output.find("holds data that is not an ext4 file system; refusing to format it") !=
        std::string::npos);
  CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);
  CHECK_FALSE(isMountPoint(rig.mnt));
  CHECK_FALSE(isMountPoint(rig.enclave + "/block"));
  CHECK_FALSE(loopDeviceOf(rig.enclave + "/block/volume").has_value());
  CHECK(waitUntil([&] { return volumeIsFree(rig.image); }, 5s));
  // The junk is still there: nothing was formatted.
  std::ifstream image(rig.image, std::ios::binary);
  image.seekg(4096 + 65536);
  char c = 0;
  image.get(c);
  CHECK(c == 'X');
}

TEST_CASE("a leased volume: another enclave is refused by name and time, the tool may not "
          "resize or delete it, and one enclave has one block mount") {
  Rig rig;
  rig.mount();
  std::string other = rig.dir / "other-enclave";
  std::string otherMnt = rig.dir / "other-mnt";
  ::mkdir(other.c_str(), 0755);
  ::mkdir(otherMnt.c_str(), 0755);

  auto second = mountVolume(other, rig.server->address(), "db", otherMnt);
  CHECK(second.exitCode == 1);
  CHECK_MESSAGE(second.output.find("refused volume 'db': volume db is in use by uid 0 pid") !=
                    std::string::npos,
                second.output);
  CHECK(second.output.find(" since 20") != std::string::npos);
  CHECK_FALSE(isMountPoint(otherMnt));
  CHECK_FALSE(isMountPoint(other + "/block"));

  const std::uint64_t sizeBefore = std::filesystem::file_size(rig.image);
  auto resize = volumeTool({"resize", "--size", "512M", "--volume", rig.image});
  CHECK(resize.exitCode == 1);
  CHECK(resize.output.find("is in use by uid 0 pid") != std::string::npos);
  auto remove = volumeTool({"delete", rig.image});
  CHECK(remove.exitCode == 1);
  CHECK(remove.output.find("is in use by uid 0 pid") != std::string::npos);
  CHECK(std::filesystem::file_size(rig.image) == sizeBefore);

  // The same enclave cannot hold a second block mount, whatever the volume.
  auto again = mountVolume(rig.enclave, rig.server->address(), "db", otherMnt);
  CHECK(again.exitCode == 1);
  CHECK(again.output.find("only one block mount per enclave: volume 'db' is mounted on " +
                          rig.mnt) != std::string::npos);

  rig.unmount();
  auto now = mountVolume(other, rig.server->address(), "db", otherMnt);
  CHECK_MESSAGE(now.exitCode == 0, now.output);
  CHECK(unmountVolume(other, otherMnt).exitCode == 0);
}

TEST_CASE("umount alone takes the chain down in order and gives the lease back") {
  Rig rig;
  rig.mount();
  writeFile(rig.mnt + "/kept", "written before umount");
  REQUIRE(::umount2(rig.mnt.c_str(), 0) == 0);
  CHECK(waitUntil([&] { return volumeIsFree(rig.image); }, 10s));
  CHECK(waitUntil([&] { return !isMountPoint(rig.enclave + "/block"); }, 10s));
  CHECK_FALSE(loopDeviceOf(rig.enclave + "/block/volume").has_value());
  CHECK(rig.server->log().find("client 1 released volume 'db'") != std::string::npos);
  rig.mount();
  CHECK(readFile(rig.mnt + "/kept") == "written before umount");
}

TEST_CASE("deleted files go back to the host as holes after fstrim") {
  Rig rig;
  rig.mount();
  std::string data(64 * kMiB, 'z');
  writeFileSynced(rig.mnt + "/big", data);
  const std::uint64_t full = allocatedBytes(rig.image);
  CHECK(full >= 64 * kMiB);
  REQUIRE(::unlink((rig.mnt + "/big").c_str()) == 0);
  ::sync();
  auto trim = run({"/sbin/fstrim", rig.mnt});
  REQUIRE_MESSAGE(trim.exitCode == 0, trim.output);
  const std::uint64_t trimmed = allocatedBytes(rig.image);
  CHECK_MESSAGE(trimmed + 56 * kMiB <= full,
                "allocated " << full << " bytes before, " << trimmed << " after fstrim");
}

TEST_CASE("a grown volume mounts with a grown file system and its files intact") {
  Rig rig;
  rig.mount();
  writeFile(rig.mnt + "/before-growing", "still here");
  struct statvfs small;
  REQUIRE(::statvfs(rig.mnt.c_str(), &small) == 0);
  rig.unmount();

  auto grow = volumeTool({"resize", "--size", "1G", "--volume", rig.image});
  REQUIRE_MESSAGE(grow.exitCode == 0, grow.output);
  rig.mount();
  struct statvfs large;
  REQUIRE(::statvfs(rig.mnt.c_str(), &large) == 0);
  const double before = static_cast<double>(small.f_blocks) * small.f_frsize;
  const double after = static_cast<double>(large.f_blocks) * large.f_frsize;
  CHECK_MESSAGE(after > 3.5 * before, "file system of " << before << " bytes grew to " << after);
  CHECK(readFile(rig.mnt + "/before-growing") == "still here");
  rig.unmount();
  auto fsck = run({"/sbin/fsck.ext4", "-n", rig.image + "?offset=4096"});
  CHECK_MESSAGE(fsck.exitCode == 0, fsck.output);
}

TEST_CASE("kill -9 of the host during heavy writes loses nothing that was fsynced") {
  Rig rig;
  rig.mount();
  std::filesystem::create_directories(rig.mnt + "/synced");
  std::mutex mutex;
  std::map<std::string, std::uint64_t> durable;  // written and fsynced, file and directory
  std::atomic<bool> stop{false};

  std::thread syncer([&] {
    std::mt19937_64 random(7);
    int dirFd = ::open((rig.mnt + "/synced").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    for (int i = 0; !stop && dirFd >= 0; ++i) {
      std::string content(64 * 1024 + random() % (512 * 1024), static_cast<char>('a' + i % 26));
      std::string name = "synced/f" + std::to_string(i);
      int fd = ::open((rig.mnt + "/" + name).c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
      if (fd < 0) break;
      bool ok = ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()) &&
                ::fsync(fd) == 0;
      ::close(fd);
      if (!ok || ::fsync(dirFd) != 0) break;
      std::lock_guard lock(mutex);
      durable[name] = hashOf(content);
    }
    if (dirFd >= 0) ::close(dirFd);
  });
  std::thread bulk([&] {  // unsynced bulk writes keep the volume busy
    std::string chunk(kMiB, 'b');
    for (int i = 0; !stop; ++i) {
      int fd = ::open((rig.mnt + "/bulk" + std::to_string(i % 8)).c_str(),
                      O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
      if (fd < 0) break;
      bool ok = true;
      for (int j = 0; j < 8 && ok; ++j) ok = ::write(fd, chunk.data(), chunk.size()) > 0;
      ::close(fd);
      if (!ok) break;
    }
  });
  std::this_thread::sleep_for(2s);
  // A loaded machine (sanitizers, a parallel build) fsyncs fewer files in that time: the
  // kill waits for enough of them to make the check below mean something.
  waitUntil([&] {
    std::lock_guard lock(mutex);
    return durable.size() >= 5;
  }, 30s);
  rig.server->kill();
  std::this_thread::sleep_for(300ms);
  stop = true;
  syncer.join();
  bulk.join();
  {
    std::lock_guard lock(mutex);
    MESSAGE(durable.size() << " files were fsynced before the kill");
    REQUIRE(durable.size() >= 5);
  }
  // The enclave side sees I/O errors now; the file system still unmounts.
  auto down = unmountVolume(rig.enclave, rig.mnt);
  CHECK_MESSAGE(down.exitCode == 0, down.output);

  rig.startServer();
  rig.mount();
  verifyTree(rig.mnt, durable);
  rig.unmount();
  auto fsck = run({"/sbin/fsck.ext4", "-n", rig.image + "?offset=4096"});
  CHECK_MESSAGE(fsck.exitCode == 0, fsck.output);
}

// A tmpfs of `size`, mounted for the life of this object.
struct SmallTmpfs {
  explicit SmallTmpfs(const std::string& size) {
    ::mkdir(path.c_str(), 0755);
    REQUIRE(::mount("tmpfs", path.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0);
  }
  ~SmallTmpfs() { ::umount2(path.c_str(), MNT_DETACH); }
  TempDir dir;
  std::string path = dir / "tmpfs";
};

TEST_CASE("writes the host fails after they were answered make the next fsync fail") {
  // The image may grow to 128 MiB, but the host's file system holds 40 MiB: the host fails
  // the writes past that with ENOSPC, after the mount has answered them.
  SmallTmpfs hostDisk("40m");
  Rig rig("128M", hostDisk.path);
  rig.mount();
  {
    const std::string chunk(kMiB, 'w');
    const int fd = ::open((rig.mnt + "/big").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    for (int i = 0; i < 64; ++i) {
      REQUIRE(::write(fd, chunk.data(), chunk.size()) == static_cast<ssize_t>(chunk.size()));
    }
    const int synced = ::fsync(fd);
    const int error = errno;
    ::close(fd);
    CHECK(synced == -1);
    CHECK(error == EIO);
  }
  struct statvfs host{};
  REQUIRE(::statvfs(hostDisk.path.c_str(), &host) == 0);
  CHECK(host.f_bavail == 0);
  // The file system saw the error; the chain still comes down and gives the volume back.
  auto down = unmountVolume(rig.enclave, rig.mnt);
  CHECK_MESSAGE(down.exitCode == 0, down.output);
  CHECK_FALSE(loopDeviceOf(rig.enclave + "/block/volume").has_value());
}

TEST_CASE("bad volume sizes, names and options get one clear error line") {
  TempDir dir;
  auto oneLine = [](const RunResult& r, const std::string& needle) {
    CAPTURE(r.output);
    CHECK(r.exitCode == 1);
    CHECK(r.output.find(needle) != std::string::npos);
    CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);
  };
  for (std::string size : {"12X", "0", "1M", "4095", "-1G", "17T"}) {
    oneLine(volumeTool({"create", "--size", size, "--volume", dir / "v.img"}), "size '" + size + "'");
    CHECK_FALSE(std::filesystem::exists(dir / "v.img"));
  }
  oneLine(volumeTool({"create", "--size", "", "--volume", dir / "v.img"}), "the size is empty");
  REQUIRE(volumeTool({"create", "--size", "64M", "--volume", dir / "v.img"}).exitCode == 0);
  oneLine(volumeTool({"create", "--size", "64M", "--volume", dir / "v.img"}), "already exists");

  auto hostd = [&](const std::vector<std::string>& args) {
    std::vector<std::string> argv = {hostdPath(), "--listen", "unix:" + (dir / "sock")};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
  };
  oneLine(hostd({"--volume", "db"}), "volume 'db' is not NAME=PATH");
  oneLine(hostd({"--volume", "a/b=" + (dir / "v.img")}), "volume name 'a/b' must be");
  oneLine(hostd({"--volume", "db=" + (dir / "missing.img")}), "volume 'db': ");
  writeFile(dir / "plain", std::string(8192, 'p'));
  oneLine(hostd({"--volume", "db=" + (dir / "plain")}), "is not an enclavefs volume");

  HostServer server(dir / "sock", {"--volume", "db=" + (dir / "v.img")});
  ::mkdir((dir / "mnt").c_str(), 0755);
  ::mkdir((dir / "enclave").c_str(), 0755);
  oneLine(mountVolume(dir / "enclave", server.address(), "nosuch", dir / "mnt"),
          "refused volume 'nosuch': no volume named 'nosuch'");
  oneLine(mountVolume(dir / "enclave", server.address(), "db", dir / "mnt", {"-o", "symlinks=follow"}),
          "mount option 'symlinks=follow' applies to basic mounts only");
  oneLine(mountVolume(dir / "enclave", server.address(), "db", dir / "v.img"),
          "mount path " + (dir / "v.img") + " is a regular file, which forceMount [empty] does not allow");
  oneLine(run({mountPath(), "--host", server.address(), "--volume", "db", "--export", "x", dir / "mnt"}),
          "excludes");
  CHECK_FALSE(isMountPoint(dir / "mnt"));
  CHECK(waitUntil([&] { return volumeIsFree(dir / "v.img"); }, 5s));
}
