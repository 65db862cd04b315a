// host-server/config.h: the enclavefs-hostd configuration file. A valid file gives every
// setting; anything not exactly right is refused with one sentence that names the source,
// the line and the key or value at fault, because a silently ignored typo in `allow:` or
// `owner:` would weaken an export without anyone noticing.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "support/harness.h"
#include "host-server/config.h"

using namespace enclavefs;
using namespace enclavefs::host;

namespace {

// Joins lines with '\n', so the line numbers a test expects can be counted in the source:
// the first string is line 1.
std::string yaml(std::initializer_list<std::string_view> lines) {
  std::string text;
  for (std::string_view line : lines) {
    text += line;
    text += '\n';
  }
  return text;
}

// The error parseHostConfig gives for `text`; fails the test if it parses.
std::string errorOf(const std::string& text) {
  auto parsed = parseHostConfig(text, "<config>");
  REQUIRE_FALSE(parsed.ok());
  INFO("error: ", parsed.error());
  return parsed.error();
}

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

// Checks that the error for `text` points at `line` and names every one of `words`.
void checkError(const std::string& text, int line, std::initializer_list<std::string_view> words) {
  std::string error = errorOf(text);
  INFO("error: ", error);
  CHECK(error.starts_with("<config>:" + std::to_string(line) + ": "));
  for (std::string_view word : words) CHECK(contains(error, word));
  CHECK(error.find('\n') == std::string::npos);
}

using ScratchDir = enclavefs::test::TempDir;

const std::string kFullExample = yaml({
    "version: 1",                         // 1
    "listen: vsock:3:7000",               // 2
    "logLevel: debug",                    // 3
    "limits:",                            // 4
    "  maxClients: 64",                   // 5
    "  maxInFlight: 256",                 // 6
    "  maxNodes: 65536",                  // 7
    "  maxHandles: 4096",                 // 8
    "  poolThreads: 2",                   // 9
    "exports:",                           // 10
    "  - name: data",                     // 11
    "    path: /srv/data",                // 12
    "    readOnly: false",                // 13
    "    owner:",                         // 14
    "      mapping: squash",              // 15
    "      uid: 1000",                    // 16
    "      gid: 1001",                    // 17
    "    allow:",                         // 18
    "      cids: [16, 17]",               // 19
    "      uids: [0, 1000]",              // 20
    "    maxConnectionsPerPeer: 4",       // 21
    "    maxHandlesPerPeer: 1024",        // 22
    "  - name: results",                  // 23
    "    path: /srv/results",             // 24
    "    readOnly: true",                 // 25
    "    owner: {mapping: passthrough}",  // 26
    "    allow: {cids: []}",              // 27
});

}  // namespace

// ---- valid files ------------------------------------------------------------------------------

TEST_CASE("a full configuration gives every setting") {
  auto parsed = parseHostConfig(kFullExample, "hostd.yaml");
  REQUIRE_MESSAGE(parsed.ok(), parsed.error());
  const HostConfig& config = *parsed;

  REQUIRE(config.listen.has_value());
  CHECK(config.listen->family == Address::Family::vsock);
  CHECK(config.listen->cid == 3);
  CHECK(config.listen->port == 7000);
  CHECK(config.logLevel == spdlog::level::debug);

  CHECK(config.limits.maxClients == 64u);
  CHECK(config.limits.maxInFlight == 256u);
  CHECK(config.limits.maxNodes == 65536u);
  CHECK(config.limits.maxHandles == 4096u);
  CHECK(config.limits.poolThreads == 2u);

  REQUIRE(config.exports.size() == 2);
  const ExportSettings& data = config.exports[0];
  CHECK(data.name == "data");
  CHECK(data.path == "/srv/data");
  CHECK_FALSE(data.readOnly);
  CHECK(data.owner.mode == OwnerMapping::Mode::squash);
  CHECK(data.owner.uid == 1000u);
  CHECK(data.owner.gid == 1001u);
  CHECK(data.allow.cids == std::vector<std::uint32_t>{16, 17});
  CHECK(data.allow.uids == std::vector<std::uint32_t>{0, 1000});
  CHECK(data.maxConnectionsPerPeer == 4u);
  CHECK(data.maxHandlesPerPeer == 1024u);
  CHECK(data.origin == "hostd.yaml:11");

  const ExportSettings& results = config.exports[1];
  CHECK(results.name == "results");
  CHECK(results.path == "/srv/results");
  CHECK(results.readOnly);
  CHECK(results.owner.mode == OwnerMapping::Mode::passthrough);
  CHECK_FALSE(results.owner.uid.has_value());
  // An empty list admits no peer of that kind; an absent one does not restrict it.
  CHECK(results.allow.cids == std::vector<std::uint32_t>{});
  CHECK_FALSE(results.allow.uids.has_value());
  CHECK(results.origin == "hostd.yaml:23");
}

TEST_CASE("absent keys are left unset, so command-line flags and built-in defaults apply") {
  auto parsed = parseHostConfig(yaml({"version: 1"}), "<config>");
  REQUIRE_MESSAGE(parsed.ok(), parsed.error());
  CHECK_FALSE(parsed->listen.has_value());
  CHECK_FALSE(parsed->logLevel.has_value());
  CHECK_FALSE(parsed->limits.maxClients.has_value());
  CHECK_FALSE(parsed->limits.maxInFlight.has_value());
  CHECK_FALSE(parsed->limits.maxNodes.has_value());
  CHECK_FALSE(parsed->limits.maxHandles.has_value());
  CHECK_FALSE(parsed->limits.poolThreads.has_value());
  CHECK(parsed->exports.empty());
}

TEST_CASE("an export with only a name and a path gets the secure defaults") {
  auto parsed = parseHostConfig(yaml({
                                    "version: 1",
                                    "limits: {}",
                                    "exports:",
                                    "  - {name: in, path: /srv/in}",
                                }),
                                "<config>");
  REQUIRE_MESSAGE(parsed.ok(), parsed.error());
  REQUIRE(parsed->exports.size() == 1);
  const ExportSettings& in = parsed->exports[0];
  CHECK(in.name == "in");
  CHECK(in.path == "/srv/in");
  CHECK_FALSE(in.readOnly);
  CHECK(in.owner.mode == OwnerMapping::Mode::squash);
  CHECK_FALSE(in.owner.uid.has_value());
  CHECK_FALSE(in.owner.gid.has_value());
  CHECK_FALSE(in.allow.cids.has_value());
  CHECK_FALSE(in.allow.uids.has_value());
  CHECK(in.maxConnectionsPerPeer == 0u);
  CHECK_FALSE(in.maxHandlesPerPeer.has_value());
}

TEST_CASE("numbers at the ends of their ranges are accepted") {
  auto parsed = parseHostConfig(yaml({
                                    "version: 1",
                                    "listen: unix:/run/hostd.sock",
                                    "logLevel: off",
                                    "limits: {maxClients: 65536, maxInFlight: 1, maxNodes: 16,",
                                    "         maxHandles: 1048576, poolThreads: 64}",
                                    "exports:",
                                    "  - name: x",
                                    "    path: /x",
                                    "    owner: {uid: 0, gid: 4294967294}",
                                    "    allow: {cids: [4294967295], uids: [4294967295]}",
                                    "    maxConnectionsPerPeer: 65536",
                                    "    maxHandlesPerPeer: 16",
                                }),
                                "<config>");
  REQUIRE_MESSAGE(parsed.ok(), parsed.error());
  CHECK(parsed->listen->family == Address::Family::unix_socket);
  CHECK(parsed->listen->path == "/run/hostd.sock");
  CHECK(parsed->logLevel == spdlog::level::off);
  CHECK(parsed->limits.maxClients == 65536u);
  CHECK(parsed->limits.maxInFlight == 1u);
  CHECK(parsed->limits.maxNodes == 16u);
  CHECK(parsed->limits.maxHandles == 1048576u);
  CHECK(parsed->limits.poolThreads == 64u);
  const ExportSettings& x = parsed->exports.at(0);
  CHECK(x.owner.uid == 0u);
  CHECK(x.owner.gid == 4294967294u);
  CHECK(x.allow.cids == std::vector<std::uint32_t>{4294967295u});
  CHECK(x.maxConnectionsPerPeer == 65536u);
  CHECK(x.maxHandlesPerPeer == 16u);
}

TEST_CASE("every log level name is accepted") {
  for (auto [name, level] :
       {std::pair{"trace", spdlog::level::trace}, std::pair{"debug", spdlog::level::debug},
        std::pair{"info", spdlog::level::info}, std::pair{"warn", spdlog::level::warn},
        std::pair{"error", spdlog::level::err}, std::pair{"critical", spdlog::level::critical},
        std::pair{"off", spdlog::level::off}}) {
    auto parsed = parseHostConfig(yaml({"version: 1", "logLevel: " + std::string(name)}));
    REQUIRE_MESSAGE(parsed.ok(), parsed.error());
    CHECK(parsed->logLevel == level);
  }
}

// ---- the document as a whole ------------------------------------------------------------------

TEST_CASE("a YAML syntax error gives yaml-cpp's line") {
  checkError(yaml({"version: 1", "listen: a: b", "logLevel: info"}), 2, {"YAML syntax error"});
  checkError(yaml({"version: 1", "exports:", "  - name: a", "   path: /a", "logLevel: info"}), 4,
             {"YAML syntax error"});
  // An unclosed bracket is found where the text ends.
  checkError(yaml({"version: 1", "limits:", "  maxClients: [1, 2"}), 4,
             {"YAML syntax error", "end of sequence flow not found"});
}

TEST_CASE("an empty file, a list, or several documents are refused") {
  checkError("", 1, {"empty", "version"});
  checkError("# nothing but a comment\n", 1, {"empty", "version"});
  checkError(yaml({"- version: 1"}), 1, {"the configuration must be a map", "a list"});
  checkError(yaml({"version: 1", "---", "version: 1"}), 3, {"second YAML document"});
}

TEST_CASE("the version is required and must be 1, and is checked before the other keys") {
  checkError(yaml({"listen: unix:/s"}), 1, {"missing the required key 'version'"});
  checkError(yaml({"version: 2", "someFutureKey: x"}), 1, {"version must be 1", "'2'"});
  checkError(yaml({"logLevel: info", "version: \"1\""}), 2, {"version", "quoted"});
  checkError(yaml({"version:"}), 1, {"version", "empty value"});
}

// ---- keys -------------------------------------------------------------------------------------

TEST_CASE("an unknown key is refused at every level, naming its path") {
  checkError(yaml({"version: 1", "listne: unix:/s"}), 2, {"unknown key 'listne'", "listen"});
  checkError(yaml({"version: 1", "limits:", "  maxClient: 4"}), 3,
             {"unknown key 'limits.maxClient'", "maxClients"});
  checkError(yaml({"version: 1", "exports:", "  - name: a", "    path: /a", "    readonly: true"}),
             5, {"unknown key 'exports[0].readonly'", "readOnly"});
  checkError(yaml({"version: 1", "exports:", "  - name: a", "    path: /a",
                   "    owner:", "      user: 5"}),
             6, {"unknown key 'exports[0].owner.user'"});
  checkError(yaml({"version: 1", "exports:", "  - name: a", "    path: /a",
                   "    allow:", "      cid: [3]"}),
             6, {"unknown key 'exports[0].allow.cid'", "cids"});
}

TEST_CASE("a key given twice is refused, naming the first place") {
  checkError(yaml({"version: 1", "logLevel: info", "logLevel: debug"}), 3,
             {"'logLevel' is given twice", "line 2"});
  checkError(yaml({"version: 1", "exports:", "  - name: a", "    path: /a", "    path: /b"}), 5,
             {"'exports[0].path' is given twice", "line 4"});
}

TEST_CASE("a key that is not a word is refused") {
  checkError(yaml({"version: 1", "[a, b]: 1"}), 2, {"keys of the configuration", "a list"});
}

TEST_CASE("an export without a name or a path is refused") {
  checkError(yaml({"version: 1", "exports:", "  - path: /a"}), 3,
             {"exports[0] is missing the required key 'name'"});
  checkError(yaml({"version: 1", "exports:", "  - name: a", "    path: /a", "  - name: b"}), 5,
             {"exports[1] is missing the required key 'path'"});
}

// ---- types ------------------------------------------------------------------------------------

TEST_CASE("text where a number is wanted is refused, quoted or not") {
  checkError(yaml({"version: 1", "limits:", "  maxClients: lots"}), 3,
             {"limits.maxClients", "whole number from 1 to 65536", "'lots'"});
  checkError(yaml({"version: 1", "limits:", "  maxInFlight: \"64\""}), 3,
             {"limits.maxInFlight", "quoted text '64'"});
  checkError(yaml({"version: 1", "limits:", "  poolThreads: 2.5"}), 3,
             {"limits.poolThreads", "'2.5'"});
  checkError(yaml({"version: 1", "limits:", "  maxNodes: 0x100"}), 3, {"limits.maxNodes"});
}

TEST_CASE("a negative number is refused where the value is unsigned") {
  checkError(yaml({"version: 1", "limits:", "  maxHandles: -1"}), 3, {"limits.maxHandles", "'-1'"});
  checkError(yaml({"version: 1", "exports:", "  - name: a", "    path: /a",
                   "    allow:", "      uids:", "        - 0", "        - -1"}),
             8, {"exports[0].allow.uids[1]", "from 0 to 4294967295", "'-1'"});
  checkError(
      yaml({"version: 1", "exports:", "  - name: a", "    path: /a", "    owner: {uid: -1}"}), 5,
      {"exports[0].owner.uid", "'-1'"});
}

TEST_CASE("a map or a list where another kind of value is wanted is refused") {
  checkError(yaml({"version: 1", "exports:", "  name: a", "  path: /a"}), 3,
             {"exports must be a list", "a map"});
  checkError(yaml({"version: 1", "limits: [1, 2]"}), 2, {"limits must be a map", "a list"});
  checkError(yaml({"version: 1", "exports:", "  - name: a", "    path: /a",
                   "    allow:", "      cids: 16"}),
             6, {"exports[0].allow.cids must be a list", "'16'"});
  checkError(yaml({"version: 1", "exports:", "  - a"}), 3, {"exports[0] must be a map", "'a'"});
  checkError(yaml({"version: 1", "listen: {unix: /s}"}), 2, {"listen must be text", "a map"});
  checkError(yaml({"version: 1", "exports:", "  - name: [a]", "    path: /a"}), 3,
             {"exports[0].name must be text", "a list"});
  checkError(yaml({"version: 1", "exports:", "  - name: a", "    path: /a",
                   "    allow:", "      uids: [0, [1]]"}),
             6, {"exports[0].allow.uids[1]", "a list"});
}

TEST_CASE("an empty value is refused and points at its key") {
  checkError(yaml({"version: 1", "limits:", "logLevel: info"}), 2,
             {"limits must be a map", "empty value"});
  checkError(yaml({"version: 1", "exports:", "  - name: a", "    path:", ""}), 4,
             {"exports[0].path must be text", "empty value"});
}

TEST_CASE("only true and false are booleans") {
  checkError(yaml({"version: 1", "exports:", "  - name: a", "    path: /a", "    readOnly: yes"}),
             5, {"exports[0].readOnly must be true or false", "'yes'"});
  checkError(
      yaml({"version: 1", "exports:", "  - name: a", "    path: /a", "    readOnly: \"true\""}), 5,
      {"exports[0].readOnly", "quoted text 'true'"});
}

// ---- values -----------------------------------------------------------------------------------

TEST_CASE("a number outside its range is refused, naming the range") {
  checkError(yaml({"version: 1", "limits:", "  maxClients: 0"}), 3,
             {"limits.maxClients", "from 1 to 65536", "'0'"});
  checkError(yaml({"version: 1", "limits:", "  maxClients: 65537"}), 3,
             {"limits.maxClients", "'65537'"});
  checkError(yaml({"version: 1", "limits:", "  maxNodes: 15"}), 3,
             {"limits.maxNodes", "from 16 to 16777216"});
  checkError(yaml({"version: 1", "limits:", "  poolThreads: 65"}), 3,
             {"limits.poolThreads", "from 1 to 64"});
  checkError(yaml({"version: 1", "limits:", "  maxInFlight: 99999999999999999999999"}), 3,
             {"limits.maxInFlight"});
  checkError(
      yaml({"version: 1", "exports:", "  - name: a", "    path: /a", "    maxHandlesPerPeer: 8"}),
      5, {"exports[0].maxHandlesPerPeer", "from 16 to 1048576"});
  checkError(yaml({"version: 1", "exports:", "  - name: a", "    path: /a",
                   "    maxConnectionsPerPeer: 0"}),
             5, {"exports[0].maxConnectionsPerPeer", "from 1 to 65536"});
  checkError(yaml({"version: 1", "exports:", "  - name: a", "    path: /a",
                   "    allow: {cids: [4294967296]}"}),
             5, {"exports[0].allow.cids[0]", "'4294967296'"});
}

TEST_CASE("the owner uid and gid cannot be the id that chown reads as 'unchanged'") {
  checkError(yaml({"version: 1", "exports:", "  - name: a", "    path: /a",
                   "    owner:", "      gid: 4294967295"}),
             6, {"exports[0].owner.gid", "from 0 to 4294967294"});
}

TEST_CASE("an unknown enumeration value is refused, listing the known ones") {
  checkError(yaml({"version: 1", "logLevel: loud"}), 2,
             {"logLevel must be one of trace, debug, info, warn, error, critical, off", "'loud'"});
  checkError(yaml({"version: 1", "exports:", "  - name: a", "    path: /a",
                   "    owner:", "      mapping: root"}),
             6, {"exports[0].owner.mapping must be squash or passthrough", "'root'"});
}

TEST_CASE("a listen address that does not parse is refused with parseAddress's reason") {
  checkError(yaml({"version: 1", "listen: tcp:1234"}), 2, {"listen", "'tcp:1234'", "unix:"});
  checkError(yaml({"version: 1", "listen: vsock:three:7000"}), 2, {"listen", "CID"});
}

TEST_CASE("an export name must be plain and unique; its path must not be empty") {
  checkError(yaml({"version: 1", "exports:", "  - name: a/b", "    path: /a"}), 3,
             {"exports[0].name 'a/b'", "without '/'"});
  checkError(yaml({"version: 1", "exports:", "  - name: ..", "    path: /a"}), 3,
             {"exports[0].name '..'"});
  checkError(yaml({"version: 1", "exports:", "  - name: \"\"", "    path: /a"}), 3,
             {"exports[0].name ''"});
  checkError(yaml({"version: 1", "exports:", "  - name: " + std::string(256, 'n'), "    path: /a"}),
             3, {"exports[0].name", "1-255 bytes"});
  checkError(yaml({"version: 1", "exports:", "  - name: data", "    path: /a", "  - name: logs",
                   "    path: /b", "  - name: data", "    path: /c"}),
             7, {"exports[2].name", "'data' is already used on line 3"});
  checkError(yaml({"version: 1", "exports:", "  - name: a", "    path: \"\""}), 4,
             {"exports[0].path must be a host path"});
  checkError(yaml({"version: 1", "exports:", "  - name: a", "    path: \"/a\\0/b\""}), 4,
             {"exports[0].path must not contain a NUL byte"});
}

TEST_CASE("volumes: a name, a path and who may hold each; the same rules as exports") {
  auto parsed = parseHostConfig(yaml({
                                    "version: 1",                 // 1
                                    "volumes:",                   // 2
                                    "  - name: db",               // 3
                                    "    path: /srv/db.img",      // 4
                                    "    allow: {cids: [16]}",    // 5
                                    "  - name: scratch",          // 6
                                    "    path: /srv/scratch.img", // 7
                                    "exports:",                   // 8
                                    "  - name: db",               // 9: another namespace
                                    "    path: /srv/db",          // 10
                                }),
                                "hostd.yaml");
  REQUIRE_MESSAGE(parsed.ok(), parsed.error());
  REQUIRE(parsed->volumes.size() == 2);
  CHECK(parsed->volumes[0].name == "db");
  CHECK(parsed->volumes[0].path == "/srv/db.img");
  CHECK(parsed->volumes[0].allow.cids == std::vector<std::uint32_t>{16});
  CHECK_FALSE(parsed->volumes[0].allow.uids.has_value());
  CHECK(parsed->volumes[0].origin == "hostd.yaml:3");
  CHECK(parsed->volumes[1].name == "scratch");
  CHECK_FALSE(parsed->volumes[1].allow.cids.has_value());
  CHECK(parsed->exports.size() == 1);

  checkError(yaml({"version: 1", "volumes:", "  - name: a/b", "    path: /a"}), 3,
             {"volumes[0].name 'a/b'", "without '/'"});
  checkError(yaml({"version: 1", "volumes:", "  - name: db", "    path: /a", "  - name: db",
                   "    path: /b"}),
             5, {"volumes[1].name", "the volume name 'db' is already used on line 3"});
  checkError(yaml({"version: 1", "volumes:", "  - name: db"}), 3, {"volumes[0]", "path"});
  checkError(yaml({"version: 1", "volumes:", "  - name: db", "    path: /a", "    readOnly: true"}),
             5, {"volumes[0].readOnly"});
  checkError(yaml({"version: 1", "volumes: db"}), 2, {"volumes must be a list of volumes"});
}

TEST_CASE("control and metrics: where the operator's tools reach the server") {
  auto parsed = parseHostConfig(
      yaml({"version: 1", "control: unix:/run/enclavefs/control.sock", "metrics: 127.0.0.1:9464"}));
  REQUIRE_MESSAGE(parsed.ok(), parsed.error());
  REQUIRE(parsed->control.has_value());
  CHECK(parsed->control->toString() == "unix:/run/enclavefs/control.sock");
  CHECK(parsed->metrics == "127.0.0.1:9464");
  checkError(yaml({"version: 1", "control: nowhere"}), 2, {"control: "});
  checkError(yaml({"version: 1", "metrics: [1]"}), 2, {"metrics"});
}

TEST_CASE("an owner uid or gid is refused with mapping passthrough") {
  checkError(yaml({"version: 1", "exports:", "  - name: a", "    path: /a",
                   "    owner:", "      mapping: passthrough", "      uid: 1000"}),
             7, {"exports[0].owner.uid cannot be given with mapping passthrough"});
  // Whichever comes first in the file is the one named, whatever the order of the keys.
  checkError(yaml({"version: 1", "exports:", "  - name: a", "    path: /a",
                   "    owner:", "      gid: 5", "      mapping: passthrough", "      uid: 5"}),
             6, {"exports[0].owner.gid cannot be given with mapping passthrough"});
}

// ---- files ------------------------------------------------------------------------------------

TEST_CASE("a configuration file on disk loads, and its errors name the file") {
  ScratchDir dir;
  std::string path = dir / "hostd.yaml";
  std::ofstream(path) << kFullExample;
  auto loaded = loadHostConfig(path);
  REQUIRE_MESSAGE(loaded.ok(), loaded.error());
  CHECK(loaded->exports.size() == 2);
  CHECK(loaded->exports.at(0).origin == path + ":11");

  std::string broken = dir / "broken.yaml";
  std::ofstream(broken) << yaml({"version: 1", "limits:", "  maxClients: many"});
  auto refused = loadHostConfig(broken);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().starts_with(broken + ":3: limits.maxClients"));
}

TEST_CASE("a missing, unreadable or oversized configuration file gives an error naming it") {
  ScratchDir dir;
  std::string missing = dir / "absent.yaml";
  auto loaded = loadHostConfig(missing);
  REQUIRE_FALSE(loaded.ok());
  CHECK(contains(loaded.error(), missing));
  CHECK(contains(loaded.error(), "No such file or directory"));

  auto directory = loadHostConfig(dir.path());
  REQUIRE_FALSE(directory.ok());
  CHECK(contains(directory.error(), dir.path()));
  CHECK(contains(directory.error(), "directory"));

  std::string huge = dir / "huge.yaml";
  {
    std::ofstream out(huge);
    out << "version: 1\n";
    out << std::string(2 << 20, '#') << "\n";
  }
  auto tooBig = loadHostConfig(huge);
  REQUIRE_FALSE(tooBig.ok());
  CHECK(contains(tooBig.error(), huge));
  CHECK(contains(tooBig.error(), "larger than"));
}
