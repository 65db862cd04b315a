// enclave-fs/mount_config.h: the mount configuration baked into an enclave image. A valid
// file gives every mount; anything not exactly right is refused with one sentence naming the
// source, the line and the key path at fault (and, for two mounts that clash, the line of the
// earlier one), because a silently misread mount path or forceMount would hide or expose
// files where the enclave's applications do not expect it.
#include "enclave-fs/mount_config.h"

#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <string_view>

#include "support/harness.h"

using namespace enclavefs;
using namespace enclavefs::enclave;

namespace {

// The header every example shares; its mounts begin on line 4.
constexpr std::string_view kHeader =
    "version: 1\n"          // 1
    "host: vsock:3:7000\n"  // 2
    "mounts:\n";            // 3

std::string withMounts(std::string_view entries) {
  return std::string(kHeader) + std::string(entries);
}

// The whole error sentence parseMountConfig gives for `text`; fails the test if it parses.
std::string refusal(const std::string& text) {
  auto parsed = parseMountConfig(text);
  REQUIRE_FALSE(parsed.ok());
  return parsed.error();
}

MountConfig accepted(const std::string& text) {
  auto parsed = parseMountConfig(text);
  REQUIRE_MESSAGE(parsed.ok(), parsed.error());
  return *parsed;
}

const std::string kFullExample =
    "version: 1\n"                         // 1
    "host: vsock:3:7000\n"                 // 2
    "mounts:\n"                            // 3
    "- type: basic\n"                      // 4
    "  name: enclave-data\n"               // 5
    "  mountPath: /shared/enclave-data\n"  // 6
    "  forceMount: empty\n"                // 7
    "  readOnly: false\n"                  // 8
    "- type: block\n"                      // 9
    "  name: db\n"                         // 10
    "  mountPath: /data\n"                 // 11
    "  exec: false\n"                      // 12
    "- type: basic\n"                      // 13
    "  name: model.bin\n"                  // 14
    "  mountPath: /opt/model.bin\n"        // 15
    "  forceMount: [file, empty]\n"        // 16
    "  readOnly: true\n"                   // 17
    "  exec: true\n"                       // 18
    "  symlinks: follow\n";                // 19

}  // namespace

// ---- valid files ------------------------------------------------------------------------------

TEST_CASE("a full configuration gives every mount and setting") {
  auto parsed = parseMountConfig(kFullExample, "mounts.yaml");
  REQUIRE_MESSAGE(parsed.ok(), parsed.error());
  const MountConfig& config = *parsed;
  CHECK(config.host.family == Address::Family::vsock);
  CHECK(config.host.cid == 3);
  CHECK(config.host.port == 7000);
  REQUIRE(config.mounts.size() == 3);

  const MountEntry& data = config.mounts[0];
  CHECK(data.type == MountEntry::Type::basic);
  CHECK(data.name == "enclave-data");
  CHECK(data.mountPath == "/shared/enclave-data");
  CHECK(data.forceMount == kForceEmpty);
  CHECK_FALSE(data.readOnly);
  CHECK_FALSE(data.exec.has_value());
  CHECK_FALSE(data.followSymlinks.has_value());
  CHECK(data.origin == "mounts.yaml:4");

  const MountEntry& db = config.mounts[1];
  CHECK(db.type == MountEntry::Type::block);
  CHECK(db.name == "db");
  CHECK(db.mountPath == "/data");
  CHECK(db.forceMount == 0u);
  CHECK(db.exec == false);
  CHECK(db.origin == "mounts.yaml:9");

  const MountEntry& model = config.mounts[2];
  CHECK(model.mountPath == "/opt/model.bin");
  CHECK(model.forceMount == (kForceFile | kForceEmpty));
  CHECK(model.readOnly);
  CHECK(model.exec == true);
  CHECK(model.followSymlinks == true);
  CHECK(model.origin == "mounts.yaml:13");
}

TEST_CASE("an entry with only a type, a name and a path gets the defaults") {
  auto config = accepted(
      "version: 1\n"
      "host: unix:/run/enclavefs.sock\n"
      "mounts: [{type: basic, name: in, mountPath: /in}]\n");
  CHECK(config.host.family == Address::Family::unix_socket);
  CHECK(config.host.path == "/run/enclavefs.sock");
  REQUIRE(config.mounts.size() == 1);
  const MountEntry& in = config.mounts[0];
  CHECK(in.type == MountEntry::Type::basic);
  CHECK(in.forceMount == 0u);  // the path must not exist
  CHECK_FALSE(in.readOnly);
  CHECK_FALSE(in.exec.has_value());  // the kind's default: noexec for basic
  CHECK_FALSE(in.followSymlinks.has_value());
  CHECK(in.origin == "<config>:3");
}

TEST_CASE("symlinks: inside keeps links in the mount; a block mount may set exec") {
  auto config =
      accepted(withMounts("- {type: basic, name: a, mountPath: /a, symlinks: inside}\n"
                          "- {type: block, name: b, mountPath: /b, exec: true}\n"));
  CHECK(config.mounts.at(0).followSymlinks == false);
  CHECK(config.mounts.at(1).exec == true);
}

// ---- forceMount -------------------------------------------------------------------------------

TEST_CASE("forceMount is one flag or a list of flags") {
  auto config =
      accepted(withMounts("- {type: basic, name: a, mountPath: /a, forceMount: full}\n"
                          "- {type: basic, name: b, mountPath: /b, forceMount: all}\n"
                          "- {type: basic, name: c, mountPath: /c, forceMount: \"file\"}\n"
                          "- type: basic\n"
                          "  name: d\n"
                          "  mountPath: /d\n"
                          "  forceMount:\n"
                          "  - empty\n"
                          "  - full\n"
                          "- {type: basic, name: e, mountPath: /e,\n"
                          "   forceMount: [all, file, full, empty]}\n"));
  REQUIRE(config.mounts.size() == 5);
  CHECK(config.mounts[0].forceMount == kForceFull);
  CHECK(config.mounts[1].forceMount == kForceAll);
  CHECK(config.mounts[2].forceMount == kForceFile);
  CHECK(config.mounts[3].forceMount == (kForceEmpty | kForceFull));
  CHECK(config.mounts[4].forceMount == (kForceEmpty | kForceFile | kForceFull | kForceAll));
}

TEST_CASE("an unknown, repeated or missing forceMount flag is refused, naming the known ones") {
  CHECK(refusal(withMounts("- {type: basic, name: a, mountPath: /a, forceMount: always}\n")) ==
        "<config>:4: mounts[0].forceMount must be one of empty, file, full, all, or a list of "
        "them, not 'always'");
  // A comma list is the command line's spelling, not the file's.
  CHECK(refusal(withMounts("- type: basic\n"
                           "  name: a\n"
                           "  mountPath: /a\n"
                           "  forceMount: empty,full\n")) ==  // 7
        "<config>:7: mounts[0].forceMount must be one of empty, file, full, all, or a list of "
        "them, not 'empty,full'");
  CHECK(refusal(withMounts("- type: basic\n"
                           "  name: a\n"
                           "  mountPath: /a\n"
                           "  forceMount:\n"
                           "  - empty\n"
                           "  - fill\n")) ==  // 9
        "<config>:9: mounts[0].forceMount[1] must be one of empty, file, full, all, not 'fill'");
  CHECK(refusal(withMounts("- type: basic\n"
                           "  name: a\n"
                           "  mountPath: /a\n"
                           "  forceMount: [empty, full,\n"
                           "               empty]\n")) ==  // 8
        "<config>:8: mounts[0].forceMount[2]: the flag 'empty' is given twice");
  CHECK(refusal(withMounts("- {type: basic, name: a, mountPath: /a, forceMount: []}\n")) ==
        "<config>:4: mounts[0].forceMount must list at least one flag; leave it out to require "
        "that nothing exists at the mount path");
  CHECK(refusal(withMounts("- {type: basic, name: a, mountPath: /a, forceMount: {empty: 1}}\n")) ==
        "<config>:4: mounts[0].forceMount must be one of empty, file, full, all, or a list of "
        "them, not a map");
  CHECK(refusal(withMounts("- {type: basic, name: a, mountPath: /a, forceMount: [[empty]]}\n")) ==
        "<config>:4: mounts[0].forceMount[0] must be text, not a list");
}

TEST_CASE("parseForceMount reads the command line's comma list") {
  auto both = parseForceMount("empty,full");
  REQUIRE_MESSAGE(both.ok(), both.error());
  CHECK(*both == (kForceEmpty | kForceFull));
  auto all = parseForceMount("file,all,empty,full");
  REQUIRE_MESSAGE(all.ok(), all.error());
  CHECK(*all == (kForceEmpty | kForceFile | kForceFull | kForceAll));
  auto one = parseForceMount("file");
  REQUIRE_MESSAGE(one.ok(), one.error());
  CHECK(*one == kForceFile);

  auto unknown = parseForceMount("empty,nonempty");
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error() ==
        "unknown forceMount flag 'nonempty' (expected one of: empty, file, full, all)");
  auto blank = parseForceMount("");
  REQUIRE_FALSE(blank.ok());
  CHECK(blank.error() == "unknown forceMount flag '' (expected one of: empty, file, full, all)");
  auto gap = parseForceMount("empty,,full");
  REQUIRE_FALSE(gap.ok());
  CHECK(gap.error().starts_with("unknown forceMount flag ''"));
  auto trailing = parseForceMount("empty,");
  REQUIRE_FALSE(trailing.ok());
  auto repeated = parseForceMount("full,empty,full");
  REQUIRE_FALSE(repeated.ok());
  CHECK(repeated.error() == "the forceMount flag 'full' is given twice");
  auto spaced = parseForceMount("empty, full");
  REQUIRE_FALSE(spaced.ok());
  CHECK(spaced.error().starts_with("unknown forceMount flag ' full'"));
}

TEST_CASE("describeForceMount lists the flags in a fixed order, or says none") {
  CHECK(describeForceMount(0) == "none");
  CHECK(describeForceMount(kForceFile) == "[file]");
  CHECK(describeForceMount(kForceFull | kForceEmpty) == "[empty, full]");
  CHECK(describeForceMount(kForceAll | kForceFull | kForceFile | kForceEmpty) ==
        "[empty, file, full, all]");
}

// ---- the document and its top-level keys -------------------------------------------------------

TEST_CASE("an empty file, several documents or a YAML syntax error are refused with a line") {
  CHECK(refusal("") == "<config>:1: the configuration is empty; it needs at least 'version: 1'");
  CHECK(refusal(withMounts("- {type: basic, name: a, mountPath: /a}\n---\nversion: 1\n")) ==
        "<config>:6: a second YAML document begins here; the configuration must be a single "
        "document");
  CHECK(refusal(withMounts("- {type: basic, name: a, mountPath: /a\n"))
            .starts_with("<config>:5: YAML syntax error: "));
  CHECK(refusal("version: 1\nhost: a: b\n").starts_with("<config>:2: YAML syntax error: "));
  CHECK(refusal("- version: 1\n") ==
        "<config>:1: the configuration must be a map of settings, not a list");
}

TEST_CASE("the version is required and must be 1, and is checked before the other keys") {
  CHECK(refusal("host: vsock:3:7000\nmounts: [{type: basic, name: a, mountPath: /a}]\n") ==
        "<config>:1: the configuration is missing the required key 'version'");
  CHECK(refusal("futureKey: x\nversion: 2\n") ==
        "<config>:2: version must be 1 (the only schema this enclavefs-mount knows), not '2'");
  CHECK(refusal("version: \"1\"\n") ==
        "<config>:1: version must be 1 (the only schema this enclavefs-mount knows), not the "
        "quoted text '1'");
}

TEST_CASE("host and mounts are required; host must parse as an address") {
  CHECK(refusal("version: 1\nmounts: [{type: basic, name: a, mountPath: /a}]\n") ==
        "<config>:1: the configuration is missing the required key 'host'");
  CHECK(refusal("version: 1\nhost: vsock:3:7000\n") ==
        "<config>:1: the configuration is missing the required key 'mounts'");
  CHECK(refusal("version: 1\nhost: tcp:1234\nmounts: []\n") ==
        "<config>:2: host: address 'tcp:1234' must start with 'unix:' or 'vsock:'");
  CHECK(refusal("version: 1\nhost: vsock:parent:7000\nmounts: []\n") ==
        "<config>:2: host: address 'vsock:parent:7000' has a bad CID (want a decimal number)");
  CHECK(refusal("version: 1\nhost: [vsock]\n") == "<config>:2: host must be text, not a list");
}

TEST_CASE("mounts must be a list with at least one entry, each a map") {
  CHECK(refusal("version: 1\nhost: vsock:3:7000\nmounts: []\n") ==
        "<config>:3: mounts must list at least one mount");
  CHECK(refusal("version: 1\nhost: vsock:3:7000\nmounts:\n") ==
        "<config>:3: mounts must be a list of mounts, each starting with '- type:', not an empty "
        "value");
  CHECK(refusal("version: 1\nhost: vsock:3:7000\nmounts:\n  type: basic\n") ==
        "<config>:4: mounts must be a list of mounts, each starting with '- type:', not a map");
  CHECK(refusal(withMounts("- /data\n")) ==
        "<config>:4: mounts[0] must be a map of settings, not '/data'");
}

// ---- keys of an entry ------------------------------------------------------------------------

TEST_CASE("an unknown or repeated key is refused at every level, naming its path") {
  CHECK(refusal("version: 1\nhost: vsock:3:7000\nmount: []\n") ==
        "<config>:3: unknown key 'mount' (expected one of: version, host, mounts)");
  CHECK(refusal(withMounts("- {type: basic, name: a, mountPath: /a}\n"
                           "- type: basic\n"
                           "  name: b\n"
                           "  mountPath: /b\n"
                           "  readonly: true\n")) ==  // 8
        "<config>:8: unknown key 'mounts[1].readonly' (expected one of: type, name, mountPath, "
        "forceMount, readOnly, exec, symlinks)");
  CHECK(refusal(withMounts("- type: basic\n"
                           "  name: a\n"
                           "  mountPath: /a\n"
                           "  mountPath: /b\n")) ==  // 7
        "<config>:7: 'mounts[0].mountPath' is given twice (first on line 6)");
  CHECK(refusal("version: 1\nhost: vsock:3:7000\nhost: vsock:3:7001\n") ==
        "<config>:3: 'host' is given twice (first on line 2)");
}

TEST_CASE("an entry without a type, a name or a mount path is refused") {
  CHECK(refusal(withMounts("- {name: a, mountPath: /a}\n")) ==
        "<config>:4: mounts[0] is missing the required key 'type'");
  CHECK(refusal(withMounts("- {type: basic, name: a, mountPath: /a}\n"
                           "- {type: block, mountPath: /b}\n")) ==
        "<config>:5: mounts[1] is missing the required key 'name'");
  CHECK(refusal(withMounts("- type: block\n"
                           "  name: db\n")) ==
        "<config>:4: mounts[0] is missing the required key 'mountPath'");
}

TEST_CASE(
    "type is basic or block; readOnly and exec are true or false; symlinks inside or follow") {
  CHECK(refusal(withMounts("- {type: nfs, name: a, mountPath: /a}\n")) ==
        "<config>:4: mounts[0].type must be basic or block, not 'nfs'");
  CHECK(refusal(withMounts("- {type: basic, name: a, mountPath: /a, readOnly: yes}\n")) ==
        "<config>:4: mounts[0].readOnly must be true or false, not 'yes'");
  CHECK(refusal(withMounts("- {type: basic, name: a, mountPath: /a, exec: \"true\"}\n")) ==
        "<config>:4: mounts[0].exec must be true or false, not the quoted text 'true'");
  CHECK(refusal(withMounts("- {type: basic, name: a, mountPath: /a, symlinks: outside}\n")) ==
        "<config>:4: mounts[0].symlinks must be inside or follow, not 'outside'");
  CHECK(refusal(withMounts("- {type: basic, name: a, mountPath: /a, name: [x]}\n")) ==
        "<config>:4: 'mounts[0].name' is given twice (first on line 4)");
  CHECK(refusal(withMounts("- {type: basic, name: [x], mountPath: /a}\n")) ==
        "<config>:4: mounts[0].name must be text, not a list");
}

TEST_CASE("symlinks is refused on a block mount, whatever the order of the keys") {
  CHECK(refusal(withMounts("- {type: basic, name: a, mountPath: /a}\n"
                           "- symlinks: inside\n"  // 5
                           "  type: block\n"
                           "  name: db\n"
                           "  mountPath: /data\n")) ==
        "<config>:5: mounts[1].symlinks applies to basic mounts only");
}

// ---- values of an entry -----------------------------------------------------------------------

TEST_CASE("a name must be one plain path component") {
  CHECK(refusal(withMounts("- {type: basic, name: a/b, mountPath: /a}\n")) ==
        "<config>:4: mounts[0].name 'a/b' must be 1-255 bytes without '/' and not . or ..");
  CHECK(refusal(withMounts("- {type: block, name: .., mountPath: /a}\n")) ==
        "<config>:4: mounts[0].name '..' must be 1-255 bytes without '/' and not . or ..");
  CHECK(refusal(withMounts("- {type: basic, name: \"\", mountPath: /a}\n")) ==
        "<config>:4: mounts[0].name '' must be 1-255 bytes without '/' and not . or ..");
  CHECK(refusal(withMounts("- {type: basic, name: " + std::string(256, 'n') + ", mountPath: /a}\n"))
            .starts_with("<config>:4: mounts[0].name 'nnn"));
  auto longest =
      accepted(withMounts("- {type: basic, name: " + std::string(255, 'n') + ", mountPath: /a}\n"));
  CHECK(longest.mounts.at(0).name.size() == 255);
}

TEST_CASE("a mount path must be absolute, normalized, not / and not too long") {
  auto mountPathError = [](const std::string& path) {
    return refusal(
        withMounts("- type: basic\n"
                   "  name: a\n"
                   "  mountPath: \"" +
                   path + "\"\n"));  // 6
  };
  CHECK(mountPathError("data") ==
        "<config>:6: mounts[0].mountPath 'data' must be an absolute path");
  CHECK(mountPathError("") == "<config>:6: mounts[0].mountPath '' must be an absolute path");
  CHECK(mountPathError("/") ==
        "<config>:6: mounts[0].mountPath '/' cannot be '/', which would cover the whole enclave");
  CHECK(mountPathError("/data/") ==
        "<config>:6: mounts[0].mountPath '/data/' must not end with '/'");
  for (const char* path : {"//data", "/a//b", "/a/./b", "/a/..", "/../etc", "/."}) {
    INFO("path: ", path);
    CHECK(mountPathError(path) == "<config>:6: mounts[0].mountPath '" + std::string(path) +
                                      "' must be normalized, without empty, '.' or '..' "
                                      "components");
  }
  CHECK(mountPathError("/a\\0b") == "<config>:6: mounts[0].mountPath must not contain a NUL byte");
  CHECK(mountPathError("/" + std::string(4096, 'p')) == "<config>:6: mounts[0].mountPath '/" +
                                                            std::string(199, 'p') +
                                                            "' is longer than 4096 bytes");

  auto longest = accepted(
      withMounts("- {type: basic, name: a, mountPath: /" + std::string(4095, 'p') + "}\n"));
  CHECK(longest.mounts.at(0).mountPath.size() == 4096);
  auto dotted = accepted(withMounts("- {type: basic, name: a, mountPath: /a/.hidden/b..c/...}\n"));
  CHECK(dotted.mounts.at(0).mountPath == "/a/.hidden/b..c/...");
}

// ---- mounts that clash ------------------------------------------------------------------------

TEST_CASE("two mounts at the same path are refused, naming the earlier one's line") {
  CHECK(refusal(withMounts("- type: block\n"  // 4
                           "  name: db\n"
                           "  mountPath: /data\n"  // 6
                           "- {type: basic, name: a, mountPath: /shared}\n"
                           "- type: basic\n"  // 8
                           "  name: b\n"
                           "  mountPath: /data\n")) ==  // 10
        "<config>:10: mounts[2].mountPath '/data' is already used by mounts[0] on line 4");
}

TEST_CASE("a mount inside another is refused in either order; a shared prefix is not nesting") {
  CHECK(refusal(withMounts("- {type: block, name: db, mountPath: /data}\n"
                           "- {type: basic, name: x, mountPath: /data/x}\n")) ==
        "<config>:5: mounts[1].mountPath '/data/x' lies inside mounts[0].mountPath '/data' "
        "(line 4)");
  CHECK(refusal(withMounts("- {type: basic, name: x, mountPath: /srv/data/x/y}\n"
                           "- {type: basic, name: a, mountPath: /srv/b}\n"
                           "- type: basic\n"
                           "  name: d\n"
                           "  mountPath: /srv/data\n")) ==  // 8
        "<config>:8: mounts[2].mountPath '/srv/data' contains mounts[0].mountPath "
        "'/srv/data/x/y' (line 4)");

  auto siblings =
      accepted(withMounts("- {type: block, name: db, mountPath: /data}\n"
                          "- {type: basic, name: a, mountPath: /database}\n"
                          "- {type: basic, name: b, mountPath: /dat}\n"
                          "- {type: basic, name: c, mountPath: /data-x/data}\n"));
  CHECK(siblings.mounts.size() == 4);
}

TEST_CASE("an enclave has at most one block mount") {
  CHECK(refusal(withMounts("- {type: block, name: db, mountPath: /data}\n"  // 4
                           "- {type: basic, name: a, mountPath: /a}\n"
                           "- type: block\n"  // 6
                           "  name: logs\n"
                           "  mountPath: /logs\n")) ==
        "<config>:6: mounts[2] is a second block mount (the first is mounts[0] on line 4); an "
        "enclave has at most one");
}

// ---- files ------------------------------------------------------------------------------------

TEST_CASE("a configuration file on disk loads, and its errors name the file") {
  test::TempDir dir;
  std::string path = dir / "mounts.yaml";
  std::ofstream(path) << kFullExample;
  auto loaded = loadMountConfig(path);
  REQUIRE_MESSAGE(loaded.ok(), loaded.error());
  REQUIRE(loaded->mounts.size() == 3);
  CHECK(loaded->mounts[1].name == "db");
  CHECK(loaded->mounts[1].origin == path + ":9");

  std::string broken = dir / "broken.yaml";
  std::ofstream(broken) << withMounts("- {type: basic, name: a, mountPath: a}\n");
  auto refused = loadMountConfig(broken);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error() == broken + ":4: mounts[0].mountPath 'a' must be an absolute path");
}

TEST_CASE("a missing configuration file or a directory gives an error naming it") {
  test::TempDir dir;
  std::string missing = dir / "absent.yaml";
  auto loaded = loadMountConfig(missing);
  REQUIRE_FALSE(loaded.ok());
  CHECK(loaded.error() == "cannot read config file " + missing + ": No such file or directory");

  auto directory = loadMountConfig(dir.path());
  REQUIRE_FALSE(directory.ok());
  CHECK(directory.error() == "cannot read config file " + dir.path() + ": it is a directory");
}
