// `enclavefs-mount --config FILE`, as an enclave image runs it: every entry mounted in order,
// all undone when one fails, all unmounted by `--unmount`; and the secure defaults an
// application gets without asking: a host cannot make it run a planted program, gain
// privileges through a set-user-ID file, or follow a symlink out of the mount.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/harness.h"
#include "support/require_root.h"

using namespace enclavefs::test;

namespace {

// A host with a directory export, a single-file export and a volume, and an enclave (its run
// directory and its mount paths) on this machine.
struct Rig {
  TempDir dir;
  std::string exportDir = dir / "export";
  std::string enclave = dir / "enclave";
  std::string config = dir / "enclave.yaml";
  std::optional<HostServer> server;

  Rig() {
    std::filesystem::create_directories(exportDir + "/sub");
    std::filesystem::create_directories(enclave);
    writeFile(exportDir + "/sub/file", "inside\n");
    writeFile(dir / "settings", "key=value\n");
    auto made = run({volumeToolPath(), "create", "--size", "64M", "--volume", dir / "db.img"});
    REQUIRE_MESSAGE(made.exitCode == 0, made.output);
    server.emplace(dir / "sock", std::vector<std::string>{"--export", "data=" + exportDir,
                                                          "--export", "settings=" + (dir / "settings"),
                                                          "--volume", "db=" + (dir / "db.img")});
  }
  ~Rig() { unmountAll(); }

  // Writes the config: `host:` and the given mounts.
  void configure(const std::string& mounts) {
    writeFile(config, "version: 1\nhost: " + server->address() + "\nmounts:\n" + mounts);
  }
  RunResult mountAll() {
    return run({"/usr/bin/env", "ENCLAVEFS_RUN_DIR=" + enclave, mountPath(), "--config", config}, std::chrono::seconds(120));
  }
  RunResult unmountAll() {
    return run({"/usr/bin/env", "ENCLAVEFS_RUN_DIR=" + enclave, mountPath(), "--config", config, "--unmount"},
               std::chrono::seconds(120));
  }
  std::string at(const std::string& name) const { return dir / ("root/" + name); }
};

bool volumeIsFree(const std::string& image) {
  auto info = run({volumeToolPath(), "info", image});
  return info.output.find("state        free") != std::string::npos;
}

// Runs `argv` as the unprivileged user nobody.
RunResult runAsNobody(std::vector<std::string> argv) {
  argv.insert(argv.begin(), {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"});
  return run(argv);
}

}  // namespace

TEST_CASE("every entry is mounted in order, and --unmount takes them all down and away") {
  Rig rig;
  rig.configure("- type: basic\n  name: data\n  mountPath: " + rig.at("shared/data") +
                "\n- type: basic\n  name: settings\n  mountPath: " + rig.at("etc/settings") +
                "\n  readOnly: true\n- type: block\n  name: db\n  mountPath: " + rig.at("db") + "\n");
  auto up = rig.mountAll();
  REQUIRE_MESSAGE(up.exitCode == 0, up.output);
  CHECK(readFile(rig.at("shared/data/sub/file")) == "inside\n");
  CHECK(readFile(rig.at("etc/settings")) == "key=value\n");
  CHECK(::access(rig.at("etc/settings").c_str(), W_OK) != 0);  // read-only
  writeFile(rig.at("db/on-the-volume"), "kept\n");
  CHECK_FALSE(volumeIsFree(rig.dir / "db.img"));

  auto down = rig.unmountAll();
  CHECK_MESSAGE(down.exitCode == 0, down.output);
  CHECK(volumeIsFree(rig.dir / "db.img"));
  // The mount paths did not exist before (no forceMount): they are gone again.
  for (const char* path : {"shared/data", "etc/settings", "db"}) {
    CAPTURE(path);
    CHECK_FALSE(isMountPoint(rig.at(path)));
    CHECK_FALSE(std::filesystem::exists(rig.at(path)));
  }
  // And it all comes back the same.
  REQUIRE(rig.mountAll().exitCode == 0);
  CHECK(readFile(rig.at("db/on-the-volume")) == "kept\n");
}

TEST_CASE("when the second of three mounts fails, the first is undone and nothing is left") {
  Rig rig;
  std::filesystem::create_directories(rig.at("occupied"));
  writeFile(rig.at("occupied/image-file"), "from the image\n");
  rig.configure("- type: block\n  name: db\n  mountPath: " + rig.at("db") +
                "\n- type: basic\n  name: data\n  mountPath: " + rig.at("occupied") +
                "\n  forceMount: empty\n- type: basic\n  name: settings\n  mountPath: " +
                rig.at("settings") + "\n");
  auto r = rig.mountAll();
  CHECK(r.exitCode == 1);
  CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);
  CHECK_MESSAGE(r.output.find("mounts[1] 'data' (" + rig.config + ":7) on " + rig.at("occupied") +
                              ": mount path " + rig.at("occupied") +
                              " is a non-empty directory, which forceMount [empty] does not allow "
                              "('full' or 'all' would)") != std::string::npos,
                r.output);
  CHECK_FALSE(isMountPoint(rig.at("db")));
  CHECK_FALSE(std::filesystem::exists(rig.at("db")));
  CHECK_FALSE(isMountPoint(rig.at("occupied")));
  CHECK(readFile(rig.at("occupied/image-file")) == "from the image\n");
  CHECK_FALSE(std::filesystem::exists(rig.at("settings")));
  CHECK(volumeIsFree(rig.dir / "db.img"));
  CHECK_FALSE(isMountPoint(rig.enclave + "/block"));
}

TEST_CASE("a bad configuration is one error line with the file and line, and mounts nothing") {
  Rig rig;
  rig.configure("- type: basic\n  name: data\n  mountPath: " + rig.at("a") +
                "\n- type: block\n  name: db\n  mountPath: " + rig.at("a/b") + "\n");
  auto r = rig.mountAll();
  CHECK(r.exitCode == 1);
  CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);
  CHECK_MESSAGE(r.output.find(rig.config + ":9: mounts[1].mountPath '" + rig.at("a/b") +
                              "' lies inside mounts[0].mountPath '" + rig.at("a") + "' (line 6)") !=
                    std::string::npos,
                r.output);
  CHECK_FALSE(std::filesystem::exists(rig.at("a")));
}

TEST_CASE("secure defaults: a program planted on the host cannot run in the enclave") {
  Rig rig;
  writeFile(rig.exportDir + "/planted.sh", "#!/bin/sh\necho pwned\n");
  ::chmod((rig.exportDir + "/planted.sh").c_str(), 0755);
  std::filesystem::copy_file("/bin/true", rig.exportDir + "/planted-binary");
  ::chmod((rig.exportDir + "/planted-binary").c_str(), 0755);
  rig.configure("- type: basic\n  name: data\n  mountPath: " + rig.at("data") +
                "\n- type: basic\n  name: data\n  mountPath: " + rig.at("data-exec") +
                "\n  exec: true\n");
  REQUIRE(rig.mountAll().exitCode == 0);
  for (const char* program : {"planted.sh", "planted-binary"}) {
    CAPTURE(program);
    auto blocked = run({rig.at("data/") + program});
    CHECK(blocked.exitCode != 0);
    CHECK(blocked.output.find("pwned") == std::string::npos);
    CHECK(::access(rig.at("data/").append(program).c_str(), X_OK) != 0);  // noexec
    // The entry that opts in with `exec: true` runs it.
    CHECK(run({rig.at("data-exec/") + program}).exitCode == 0);
  }
  struct statvfs st;
  REQUIRE(::statvfs(rig.at("data").c_str(), &st) == 0);
  CHECK((st.f_flag & ST_NOEXEC) != 0);
  CHECK((st.f_flag & ST_NOSUID) != 0);
  CHECK((st.f_flag & ST_NODEV) != 0);
}

TEST_CASE("secure defaults: a set-user-ID file gives no privileges, on basic and block mounts") {
  Rig rig;
  // The host plants a set-user-ID root copy of `id`.
  std::filesystem::copy_file("/usr/bin/id", rig.exportDir + "/suid-id");
  REQUIRE(::chmod((rig.exportDir + "/suid-id").c_str(), 04755) == 0);
  rig.configure("- type: basic\n  name: data\n  mountPath: " + rig.at("data") +
                "\n  exec: true\n- type: block\n  name: db\n  mountPath: " + rig.at("db") + "\n");
  REQUIRE(rig.mountAll().exitCode == 0);
  ::chmod(rig.at("").c_str(), 0755);
  ::chmod(rig.dir.path().c_str(), 0755);
  auto basic = runAsNobody({rig.at("data/suid-id"), "-u"});
  REQUIRE_MESSAGE(basic.exitCode == 0, basic.output);
  CHECK(basic.output == "65534\n");

  // On the volume the enclave itself made the file set-user-ID (as a host rewriting sectors
  // could): still no effect.
  std::filesystem::copy_file("/usr/bin/id", rig.at("db/suid-id"));
  REQUIRE(::chmod(rig.at("db/suid-id").c_str(), 04755) == 0);
  auto block = runAsNobody({rig.at("db/suid-id"), "-u"});
  REQUIRE_MESSAGE(block.exitCode == 0, block.output);
  CHECK(block.output == "65534\n");
  struct statvfs st;
  REQUIRE(::statvfs(rig.at("db").c_str(), &st) == 0);
  CHECK((st.f_flag & ST_NOSUID) != 0);
  CHECK((st.f_flag & ST_NODEV) != 0);
  CHECK((st.f_flag & ST_NOEXEC) == 0);  // the enclave wrote every file on its volume
}

TEST_CASE("secure defaults: a symlink out of the mount is refused, one inside it works") {
  Rig rig;
  writeFile(rig.dir / "enclave-secret", "key material\n");
  REQUIRE(::symlink((rig.dir / "enclave-secret").c_str(), (rig.exportDir + "/absolute").c_str()) == 0);
  REQUIRE(::symlink("../../enclave-secret", (rig.exportDir + "/sub/climbing").c_str()) == 0);
  REQUIRE(::symlink("/proc/self/environ", (rig.exportDir + "/environ").c_str()) == 0);
  REQUIRE(::symlink("sub/file", (rig.exportDir + "/inward").c_str()) == 0);
  rig.configure("- type: basic\n  name: data\n  mountPath: " + rig.at("data") +
                "\n- type: basic\n  name: data\n  mountPath: " + rig.at("follow") +
                "\n  symlinks: follow\n");
  REQUIRE(rig.mountAll().exitCode == 0);
  for (const char* link : {"absolute", "sub/climbing", "environ"}) {
    CAPTURE(link);
    std::ifstream in(rig.at("data/") + link);
    CHECK_FALSE(in.good());
    // Writing through it does not reach the target either.
    std::ofstream out(rig.at("data/") + link, std::ios::app);
    CHECK_FALSE(out.good());
  }
  CHECK(readFile(rig.dir / "enclave-secret") == "key material\n");
  CHECK(readFile(rig.at("data/inward")) == "inside\n");
  // The entry that opts in follows the absolute link (into the enclave's own files).
  CHECK(readFile(rig.at("follow/absolute")) == "key material\n");
}
