// enclavefs-inspect volume, the real binary, on real volume images: a blank one, one with an
// ext4 file system made and filled by e2fsprogs (mkfs.ext4 and debugfs at offset 4096, the
// way the enclave's own ext4 lies in the data area, without mounting anything), one with data
// it cannot name, and one with more ranges than the JSON lists. A volume held through
// VolumeFile::acquire (as enclavefs-hostd holds it) is refused by name of its holder. Also the
// control commands' one-line failure when no server answers.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "host-server/volume_file.h"
#include "support/harness.h"
#include "support/require_root.h"

using namespace enclavefs::test;
using enclavefs::host::Lease;
using enclavefs::host::Peer;
using enclavefs::host::VolumeFile;
using nlohmann::json;

namespace {

constexpr std::uint64_t kMiB = 1ull << 20;
constexpr const char* kOffset = "offset=4096";  // the data area of every volume

RunResult inspect(std::vector<std::string> args) {
  args.insert(args.begin(), inspectToolPath());
  return run(args);
}

// Runs a command that must succeed: its output.
std::string succeed(const std::vector<std::string>& argv) {
  RunResult r = run(argv);
  INFO("command: " << argv.front() << ", output: [" << r.output << "]");
  REQUIRE(r.exitCode == 0);
  return r.output;
}

json inspectJson(const std::vector<std::string>& args) {
  RunResult r = inspect(args);
  INFO("output: [" << r.output << "]");
  REQUIRE(r.exitCode == 0);
  json parsed = json::parse(r.output, nullptr, false);
  REQUIRE_FALSE(parsed.is_discarded());
  return parsed;
}

// A failing run: exit status 1 and a single line, "enclavefs-inspect: error: ...", that
// names each of `mentions`.
void expectRefusal(const std::vector<std::string>& args, const std::vector<std::string>& mentions) {
  RunResult r = inspect(args);
  INFO("output: [" << r.output << "]");
  CHECK(r.exitCode == 1);
  CHECK(r.output.starts_with("enclavefs-inspect: error: "));
  CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);
  CHECK(r.output.ends_with("\n"));
  for (const std::string& m : mentions) {
    CAPTURE(m);
    CHECK(r.output.find(m) != std::string::npos);
  }
}

std::string newVolume(const TempDir& dir, const std::string& name, const std::string& size) {
  std::string path = dir / name;
  succeed({volumeToolPath(), "create", "--size", size, "--volume", path});
  return path;
}

// Runs debugfs commands, writable, on the file system in the volume's data area.
void debugfs(const TempDir& dir, const std::string& image, const std::string& commands) {
  writeFile(dir / "debugfs.cmds", commands);
  succeed({"/usr/sbin/debugfs", "-w", "-f", dir / "debugfs.cmds", image + "?" + kOffset});
}

// A 64 MiB volume holding ext4 (label "inspect-test") with /file, /dir/{small.txt, big.bin,
// sub/, link -> small.txt}.
std::string ext4Volume(const TempDir& dir) {
  std::string image = newVolume(dir, "fs.img", "64M");
  succeed({"/usr/sbin/mkfs.ext4", "-q", "-F", "-L", "inspect-test", "-E",
           std::string(kOffset) + ",nodiscard", image, "64M"});
  writeFile(dir / "small.txt", "hello\n");
  writeFile(dir / "big.bin", std::string(200'000, 'x'));
  debugfs(dir, image,
          "mkdir /dir\n"
          "mkdir /dir/sub\n"
          "write " +
              (dir / "small.txt") + " /dir/small.txt\n" + "write " + (dir / "big.bin") +
              " /dir/big.bin\n" + "write " + (dir / "small.txt") + " /file\n" +
              "symlink /dir/link small.txt\n");
  return image;
}

std::vector<std::string> namesOf(const json& entries) {
  std::vector<std::string> names;
  for (const json& e : entries) names.push_back(e["name"]);
  return names;
}

const json& entryNamed(const json& entries, const std::string& name) {
  for (const json& e : entries) {
    if (e["name"] == name) return e;
  }
  FAIL("no entry " << name);
  return entries;
}

// The ranges cover the data area in order, without gaps, starting at volume offset 0.
void checkRangesCover(const json& report) {
  std::uint64_t next = 0, data = 0;
  for (const json& range : report["ranges"]) {
    CHECK(range["offset"] == next);
    next += range["length"].get<std::uint64_t>();
    if (range["kind"] == "data") data += range["length"].get<std::uint64_t>();
  }
  if (!report["rangesTruncated"].get<bool>()) {
    CHECK(next == report["header"]["size"]);
    CHECK(data == report["dataBytes"]);
  }
}

}  // namespace

TEST_CASE("a blank volume: its header, one sparse range and no data") {
  TempDir dir;
  std::string image = newVolume(dir, "blank.img", "16M");

  json report = inspectJson({"volume", image, "--json"});
  CHECK(report["path"] == image);
  CHECK(report["header"]["formatVersion"] == 1);
  CHECK(report["header"]["sectorSize"] == 4096);
  CHECK(report["header"]["dataOffset"] == 4096);
  CHECK(report["header"]["size"] == 16 * kMiB);
  CHECK(report["header"]["created"].get<std::string>().ends_with("Z"));
  CHECK(report["header"]["flags"] == 0);
  CHECK(report["header"]["encrypted"] == false);
  CHECK(report["content"]["kind"] == "blank");
  CHECK(report["dataRangeCount"] == 0);
  CHECK(report["dataBytes"] == 0);
  CHECK(report["rangesTruncated"] == false);
  REQUIRE(report["ranges"].size() == 1);
  CHECK(report["ranges"][0] == json{{"offset", 0}, {"length", 16 * kMiB}, {"kind", "sparse"}});

  std::string table = succeed({inspectToolPath(), "volume", image});
  CHECK(table.starts_with("volume     " + image + "\n"));
  CHECK(table.find("\ncontent    blank\n") != std::string::npos);
  CHECK(table.find("\nencrypted  no\n") != std::string::npos);
  CHECK(table.find("nothing allocated, 16 MiB sparse") != std::string::npos);

  expectRefusal({"volume", image, "--ls", "/"}, {image, "no ext4 file system", "it is blank"});
}

TEST_CASE("an ext4 volume: the file system, its data ranges, and a directory listed inside") {
  TempDir dir;
  std::string image = ext4Volume(dir);

  json report = inspectJson({"volume", image, "--ls", "/dir", "--json"});
  CHECK(report["content"]["kind"] == "ext4");
  CHECK(report["content"]["fileSystem"]["label"] == "inspect-test");
  CHECK(report["content"]["fileSystem"]["clean"] == true);
  CHECK(report["allocated"].get<std::uint64_t>() > 0);
  CHECK(report["dataRangeCount"].get<std::uint64_t>() > 0);
  CHECK(report["dataBytes"].get<std::uint64_t>() > 0);
  // The superblock is in the first block of the data area: data at volume offset 0.
  REQUIRE_FALSE(report["ranges"].empty());
  CHECK(report["ranges"][0]["kind"] == "data");
  CHECK(report["ranges"][0]["offset"] == 0);
  checkRangesCover(report);

  const json& listing = report["listing"];
  CHECK(listing["directory"] == "/dir");
  const json& entries = listing["entries"];
  CHECK(namesOf(entries) == std::vector<std::string>{"big.bin", "link", "small.txt", "sub"});
  CHECK(entryNamed(entries, "small.txt")["type"] == "file");
  CHECK(entryNamed(entries, "small.txt")["size"] == 6);
  CHECK(entryNamed(entries, "big.bin")["type"] == "file");
  CHECK(entryNamed(entries, "big.bin")["size"] == 200'000);
  CHECK(entryNamed(entries, "sub")["type"] == "directory");
  CHECK(entryNamed(entries, "link")["type"] == "symlink");
  CHECK(entryNamed(entries, "link")["size"] == 9);  // "small.txt"
  for (const json& e : entries) {
    CHECK(e["mode"].get<std::string>().size() == 4);
    CHECK(e["mtime"].get<std::string>().ends_with("Z"));
  }

  std::string table = succeed({inspectToolPath(), "volume", image, "--ls", "/dir"});
  CHECK(table.find("\ncontent    ext4, label \"inspect-test\"") != std::string::npos);
  CHECK(table.find("\nDIRECTORY /dir ") != std::string::npos);
  for (const std::string& line : {std::string(" 6  "), std::string(" 200000  ")}) {
    CHECK(table.find(line) != std::string::npos);
  }
  for (std::string name : {"big.bin", "link", "small.txt", "sub"}) {
    CAPTURE(name);
    CHECK(table.find("  " + name + "\n") != std::string::npos);
  }
  CHECK(table.find("\n  d") != std::string::npos);  // sub, as ls -l shows a directory
  CHECK(table.find("\n  l") != std::string::npos);  // link

  // --ls without a directory lists the root.
  json root = inspectJson({"volume", image, "--json", "--ls"});
  CHECK(root["listing"]["directory"] == "/");
  CHECK(namesOf(root["listing"]["entries"]) ==
        std::vector<std::string>{"dir", "file", "lost+found"});
}

TEST_CASE("--ls names what is wrong with the directory asked for") {
  TempDir dir;
  std::string image = ext4Volume(dir);
  expectRefusal({"volume", image, "--ls", "/missing"}, {"there is no /missing", image});
  expectRefusal({"volume", image, "--ls", "/file"}, {"/file", "is not a directory", "file"});
  expectRefusal({"volume", image, "--ls", "/file/below"}, {"/file/below", "not a directory"});
  expectRefusal({"volume", image, "--ls", "dir"}, {"'dir'", "absolute path"});
}

TEST_CASE("data that is not a file system is unknown; --ls says so") {
  TempDir dir;
  std::string image = newVolume(dir, "odd.img", "16M");
  int fd = ::open(image.c_str(), O_WRONLY);
  REQUIRE(fd >= 0);
  const std::string junk = "not a file system";
  CHECK(::pwrite(fd, junk.data(), junk.size(), 4096 + 8192) == static_cast<ssize_t>(junk.size()));
  ::close(fd);

  json report = inspectJson({"volume", image, "--json"});
  CHECK(report["content"]["kind"] == "unknown");
  CHECK(report["dataRangeCount"] == 1);
  CHECK(report["ranges"][1]["offset"] == 8192);  // sparse, data, sparse: relative to the volume
  checkRangesCover(report);
  expectRefusal({"volume", image, "--ls", "/"}, {image, "no ext4 file system"});
}

TEST_CASE("a volume of many ranges: the table shows the first, the JSON up to its cap") {
  TempDir dir;
  std::string image = newVolume(dir, "many.img", "128M");
  int fd = ::open(image.c_str(), O_WRONLY);
  REQUIRE(fd >= 0);
  // One byte in every other 4 KiB block: a data range, then a hole, 10001 times over.
  for (std::uint64_t i = 0; i <= 10'000; ++i) {
    REQUIRE(::pwrite(fd, "x", 1, static_cast<off_t>(4096 + i * 8192)) == 1);
  }
  ::close(fd);

  json report = inspectJson({"volume", image, "--json"});
  CHECK(report["dataRangeCount"] == 10'001);
  CHECK(report["rangeCount"].get<std::uint64_t>() > 20'000);
  CHECK(report["rangesTruncated"] == true);
  CHECK(report["ranges"].size() == 10'000);
  checkRangesCover(report);

  std::string table = succeed({inspectToolPath(), "volume", image});
  auto rows = std::count(table.begin(), table.end(), '\n');
  CHECK(rows < 40);
  CHECK(table.find("ranges in all; --json lists them") != std::string::npos);
}

TEST_CASE("a volume an enclave holds is refused by name of its holder") {
  TempDir dir;
  std::string image = newVolume(dir, "held.img", "16M");
  auto held = VolumeFile::open(image, true);
  REQUIRE_MESSAGE(held.ok(), held.error());
  Lease lease{.peer = Peer{.kind = Peer::Kind::vsock, .cid = 16},
              .since = 1795714205,  // 2026-11-26T17:30:05Z
              .serverPid = static_cast<std::uint32_t>(::getpid()),
              .clientId = 7};
  auto acquired = held->acquire(lease, "volume " + image);
  REQUIRE_MESSAGE(acquired.ok(), acquired.error());

  expectRefusal({"volume", image},
                {"volume " + image + " is in use by CID 16 since 2026-11-26T17:30:05Z",
                 "inspect it when it is free"});
  held->release();
  CHECK(inspect({"volume", image}).exitCode == 0);
}

TEST_CASE("what is not a volume is refused in one line") {
  TempDir dir;
  writeFile(dir / "notes.txt", "not a volume at all\n");
  expectRefusal({"volume", dir / "notes.txt"}, {dir / "notes.txt", "not an enclavefs volume"});
  expectRefusal({"volume", dir / "absent.img"}, {dir / "absent.img"});
}

TEST_CASE("control commands without a server fail in one line naming the socket") {
  TempDir dir;
  expectRefusal({"--control", "unix:/nonexistent", "status"},
                {"/nonexistent", "No such file or directory"});
  expectRefusal({"metrics", "--control", "unix:/nonexistent"}, {"/nonexistent"});
  writeFile(dir / "plain", "");
  expectRefusal({"--control", "unix:" + (dir / "plain"), "trace"},
                {dir / "plain", "Connection refused"});
  expectRefusal({"--control", "vsock:3:5000", "status"}, {"vsock:3:5000", "unix:PATH"});
  expectRefusal({"status"}, {"status needs --control unix:PATH"});
  expectRefusal({"disconnect", "--control", "unix:/nonexistent"}, {"disconnect", "--client"});
}
