// enclavefs-volume, the real binary: what each command prints and does, every mistake giving
// one error line and exit status 1 with nothing done, and a volume held through
// VolumeFile::acquire (as enclavefs-hostd holds it) refused to resize and delete by name of its
// holder. Needs no root and no FUSE.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "host-server/volume_file.h"
#include "support/harness.h"

using namespace enclavefs::test;
using enclavefs::host::Lease;
using enclavefs::host::Peer;
using enclavefs::host::VolumeFile;

namespace {

constexpr std::uint64_t kMiB = 1ull << 20;
constexpr std::uint64_t kHeader = 4096;
const std::string kSince = "2026-11-26T17:30:05Z";

RunResult tool(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {volumeToolPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv);
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::uint64_t fileSize(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return static_cast<std::uint64_t>(st.st_size);
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// Runs the tool, expecting exit status 1 and exactly one error line naming every one of
// `mentions`. Returns that line.
std::string expectError(const std::vector<std::string>& args,
                        const std::vector<std::string>& mentions) {
  RunResult r = tool(args);
  INFO("output: [" << r.output << "]");
  CHECK(r.exitCode == 1);
  auto lines = linesOf(r.output);
  REQUIRE(lines.size() == 1);
  const std::string& line = lines.front();
  CHECK(line.starts_with("enclavefs-volume: error: "));
  for (const auto& m : mentions) {
    CAPTURE(m);
    CHECK(contains(line, m));
  }
  return line;
}

// Runs the tool, expecting success; its output.
std::string expectOk(const std::vector<std::string>& args) {
  RunResult r = tool(args);
  INFO("output: [" << r.output << "]");
  CHECK(r.exitCode == 0);
  return r.output;
}

nlohmann::json jsonOf(const std::vector<std::string>& args) {
  std::string output = expectOk(args);
  INFO("output: [" << output << "]");
  auto parsed = nlohmann::json::parse(output, nullptr, false);
  REQUIRE_FALSE(parsed.is_discarded());
  return parsed;
}

std::string makeVolume(const TempDir& dir, const std::string& name, const std::string& size) {
  std::string path = dir / name;
  expectOk({"create", "--size", size, "--volume", path});
  return path;
}

// Breaks the header's checksum, keeping the magic.
void corrupt(const std::string& path) {
  std::string bytes = readFile(path).substr(0, 64);
  REQUIRE(bytes.size() == 64);
  FILE* f = std::fopen(path.c_str(), "r+");
  REQUIRE(f != nullptr);
  std::fseek(f, 60, SEEK_SET);
  std::fputc(bytes[60] ^ 0x01, f);
  std::fclose(f);
}

Lease enclaveLease() {
  Lease lease;
  lease.peer.kind = Peer::Kind::vsock;
  lease.peer.cid = 16;
  lease.since = 1795714205;  // 2026-11-26T17:30:05Z
  lease.serverPid = static_cast<std::uint32_t>(::getpid());
  lease.clientId = 3;
  return lease;
}

}  // namespace

TEST_CASE("create makes a sparse volume and says what it made") {
  TempDir dir;
  std::string path = dir / "db.img";
  std::string output = expectOk({"create", "--size", "2G", "--volume", path});
  CHECK(output.starts_with("created volume " + path + ": 2 GiB, "));
  CHECK(output.ends_with(" allocated\n"));
  CHECK(linesOf(output).size() == 1);
  CHECK(fileSize(path) == kHeader + (2048 * kMiB));
  auto opened = VolumeFile::open(path, false);
  REQUIRE_MESSAGE(opened.ok(), opened.error());
  CHECK(opened->header().size == 2048 * kMiB);

  std::string user = std::to_string(::getuid()) + ":" + std::to_string(::getgid());
  expectOk({"create", "--size", "16M", "--volume", dir / "mine.img", "--user", user});
  CHECK(fileSize(dir / "mine.img") == kHeader + 16 * kMiB);
}

TEST_CASE("info describes a volume, as text and as JSON") {
  TempDir dir;
  std::string path = makeVolume(dir, "db.img", "2G");
  std::string text = expectOk({"info", path});
  CHECK(contains(text, "volume       " + path + "\n"));
  CHECK(contains(text, "size         2 GiB (2147483648 bytes)\n"));
  CHECK(contains(text, "sector size  4096 bytes\n"));
  CHECK(contains(text, "allocated    "));
  CHECK(contains(text, "created      20"));
  CHECK(contains(text, "format       version 1\n"));
  CHECK(contains(text, "encrypted    no\n"));
  CHECK(contains(text, "state        free\n"));

  nlohmann::json info = jsonOf({"info", path, "--json"});
  CHECK(info["path"] == path);
  CHECK(info["size"] == 2048 * kMiB);
  CHECK(info["sectorSize"] == 4096);
  CHECK(info["allocated"].is_number_unsigned());
  CHECK(info["allocated"].get<std::uint64_t>() <= 64 * 1024);
  CHECK(info["created"].get<std::string>().ends_with("Z"));
  CHECK(info["formatVersion"] == 1);
  CHECK(info["encrypted"] == false);
  CHECK(info["state"] == "free");
  CHECK(info["inUseBy"].is_null());
  CHECK(info["holder"].is_null());
}

TEST_CASE("list shows the volumes of a directory by name, broken ones with the reason") {
  TempDir dir;
  makeVolume(dir, "b.img", "32M");
  makeVolume(dir, "a.img", "16M");
  std::string broken = makeVolume(dir, "c.img", "16M");
  corrupt(broken);
  writeFile(dir / "notes.txt", "not a volume\n");
  writeFile(dir / "empty", "");
  REQUIRE(::mkdir((dir / "subdir").c_str(), 0700) == 0);

  auto lines = linesOf(expectOk({"list", dir.path()}));
  REQUIRE(lines.size() == 4);
  CHECK(lines[0].starts_with("NAME"));
  CHECK(lines[1].starts_with("a.img "));
  CHECK(contains(lines[1], "16 MiB"));
  CHECK(lines[1].ends_with("free"));
  CHECK(lines[2].starts_with("b.img "));
  CHECK(contains(lines[2], "32 MiB"));
  CHECK(lines[3].starts_with("c.img "));
  CHECK(lines[3].ends_with("broken: header is corrupt (checksum mismatch)"));

  nlohmann::json list = jsonOf({"list", dir.path(), "--json"});
  REQUIRE(list.is_array());
  REQUIRE(list.size() == 3);
  CHECK(list[0]["name"] == "a.img");
  CHECK(list[0]["path"] == dir / "a.img");
  CHECK(list[0]["size"] == 16 * kMiB);
  CHECK(list[0]["allocated"].is_number_unsigned());
  CHECK(list[0]["state"] == "free");
  CHECK(list[0]["inUseBy"].is_null());
  CHECK(list[1]["name"] == "b.img");
  CHECK(list[1]["size"] == 32 * kMiB);
  CHECK(list[2]["name"] == "c.img");
  CHECK(list[2]["state"] == "broken");
  CHECK(list[2]["error"] == "header is corrupt (checksum mismatch)");

  TempDir emptyDir;
  CHECK(expectOk({"list", emptyDir.path()}) == "no volumes in " + emptyDir.path() + "\n");
  CHECK(jsonOf({"list", emptyDir.path(), "--json"}) == nlohmann::json::array());
}

TEST_CASE("resize grows a volume; the same size changes nothing") {
  TempDir dir;
  std::string path = makeVolume(dir, "db.img", "16M");
  CHECK(expectOk({"resize", "--size", "64M", "--volume", path}) ==
        "resized volume " + path + " from 16 MiB to 64 MiB\n");
  CHECK(fileSize(path) == kHeader + 64 * kMiB);
  CHECK(jsonOf({"info", path, "--json"})["size"] == 64 * kMiB);

  CHECK(expectOk({"resize", "--size", "64M", "--volume", path}) ==
        "volume " + path + " is already 64 MiB; nothing changed\n");
  CHECK(fileSize(path) == kHeader + 64 * kMiB);
}

TEST_CASE("delete removes a volume") {
  TempDir dir;
  std::string path = makeVolume(dir, "db.img", "16M");
  CHECK(expectOk({"delete", path}) == "deleted volume " + path + "\n");
  CHECK_FALSE(exists(path));
}

TEST_CASE("every bad input is one error line, exit 1, and nothing done") {
  TempDir dir;
  std::string volume = makeVolume(dir, "db.img", "32M");
  const std::string original = readFile(volume).substr(0, kHeader);
  std::string notes = dir / "notes.txt";
  writeFile(notes, "not a volume\n");
  std::string broken = makeVolume(dir, "broken.img", "16M");
  corrupt(broken);
  std::string fresh = dir / "new.img";
  std::string missing = dir / "missing.img";

  SUBCASE("sizes") {
    for (std::string size : {"12X", "-1G", "0", "1000", "1M", "17T", "1.5G", "64MB", ""}) {
      CAPTURE(size);
      expectError({"create", "--size", size, "--volume", fresh},
                  {size.empty() ? "the size is empty" : "size '" + size + "'"});
      CHECK_FALSE(exists(fresh));
      expectError({"resize", "--size", size, "--volume", volume},
                  {size.empty() ? "the size is empty" : "size '" + size + "'"});
    }
    expectError({"create", "--size", "12X", "--volume", fresh},
                {"size '12X' is not a size (use bytes or a number with K, M, G or T, as in 512M)"});
    expectError({"create", "--size", "1000", "--volume", fresh}, {"not a multiple of"});
    expectError({"create", "--size", "17T", "--volume", fresh}, {"above the largest volume"});
  }
  SUBCASE("an existing file") {
    expectError({"create", "--size", "16M", "--volume", notes},
                {"volume " + notes + " already exists; refusing to overwrite it"});
    CHECK(readFile(notes) == "not a volume\n");
    expectError({"create", "--size", "64M", "--volume", volume}, {"already exists"});
  }
  SUBCASE("a bad owner") {
    expectError({"create", "--size", "16M", "--volume", fresh, "--user", "alice"},
                {"user 'alice' must be UID:GID"});
    CHECK_FALSE(exists(fresh));
  }
  SUBCASE("a missing file or directory") {
    expectError({"info", missing},
                {"cannot open volume " + missing + ": No such file or directory"});
    expectError({"resize", "--size", "64M", "--volume", missing}, {missing, "No such file"});
    expectError({"delete", missing}, {missing, "No such file"});
    expectError({"list", dir / "nowhere"}, {"cannot list directory " + dir / "nowhere"});
    expectError({"create", "--size", "16M", "--volume", dir / "nowhere/x.img"},
                {"cannot create volume " + dir / "nowhere/x.img"});
  }
  SUBCASE("a file that is not a volume") {
    expectError({"info", notes}, {notes + " is not an enclavefs volume"});
    expectError({"resize", "--size", "64M", "--volume", notes}, {notes, "not an enclavefs volume"});
    expectError({"delete", notes}, {notes + " is not an enclavefs volume"});
    CHECK(readFile(notes) == "not a volume\n");
    expectError({"info", broken}, {broken, "header is corrupt (checksum mismatch)"});
    expectError({"delete", broken}, {broken, "checksum mismatch"});
    CHECK(exists(broken));
  }
  SUBCASE("a shrink") {
    expectError({"resize", "--size", "16M", "--volume", volume},
                {"cannot resize volume " + volume +
                 " from 32 MiB to 16 MiB: that would shrink it; volumes only grow"});
  }
  SUBCASE("missing or unknown arguments") {
    expectError({}, {"no command given"});
    expectError({"format"}, {"format"});
    expectError({"create", "--volume", fresh}, {"create", "--size is required"});
    expectError({"create", "--size", "16M"}, {"create", "--volume is required"});
    expectError({"info"}, {"info", "PATH is required"});
    expectError({"list"}, {"list", "DIR is required"});
    expectError({"resize", "--volume", volume}, {"resize", "--size is required"});
    expectError({"resize", "--size", "64M"}, {"resize", "--volume is required"});
    expectError({"delete"}, {"delete", "PATH is required"});
    expectError({"delete", volume, "--force"}, {"--force"});
    CHECK_FALSE(exists(fresh));
  }
  CHECK(readFile(volume).substr(0, kHeader) == original);
  CHECK(fileSize(volume) == kHeader + 32 * kMiB);
}

TEST_CASE("a volume in use is neither resized nor deleted, and its holder is named") {
  TempDir dir;
  std::string path = makeVolume(dir, "db.img", "32M");
  auto held = VolumeFile::open(path, true);
  REQUIRE_MESSAGE(held.ok(), held.error());
  auto acquired = held->acquire(enclaveLease(), "volume db");
  REQUIRE_MESSAGE(acquired.ok(), acquired.error());
  const std::string before = readFile(path).substr(0, kHeader);

  const std::string holder = "CID 16 since " + kSince;
  expectError({"resize", "--size", "64M", "--volume", path},
              {"cannot resize volume " + path + ": volume " + path + " is in use by " + holder});
  expectError({"delete", path},
              {"cannot delete volume " + path + ": volume " + path + " is in use by " + holder});
  CHECK(exists(path));
  CHECK(fileSize(path) == kHeader + 32 * kMiB);
  CHECK(readFile(path).substr(0, kHeader) == before);

  CHECK(contains(expectOk({"info", path}), "state        in use by " + holder + "\n"));
  nlohmann::json info = jsonOf({"info", path, "--json"});
  CHECK(info["state"] == "in use");
  CHECK(info["inUseBy"] == holder);
  CHECK(info["holder"]["kind"] == "vsock");
  CHECK(info["holder"]["cid"] == 16);
  CHECK(info["holder"]["since"] == kSince);
  CHECK(info["holder"]["serverPid"] == ::getpid());
  CHECK(info["holder"]["clientId"] == 3);
  auto lines = linesOf(expectOk({"list", dir.path()}));
  REQUIRE(lines.size() == 2);
  CHECK(lines[1].ends_with("in use by " + holder));
  nlohmann::json list = jsonOf({"list", dir.path(), "--json"});
  CHECK(list[0]["state"] == "in use");
  CHECK(list[0]["inUseBy"] == holder);

  held->release();
  expectOk({"resize", "--size", "64M", "--volume", path});
  expectOk({"delete", path});
  CHECK_FALSE(exists(path));
}
