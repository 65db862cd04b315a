// forceMount against real mounts: every combination of the four flags, over every kind of
// thing a mount path can hold (nothing, an empty directory, a non-empty directory, a regular
// file, a symlink, a fifo). An allowed mount must come up and cover the path; a refused one
// must name the path, what it found and the flag that would allow it, and leave the path as
// it was.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "enclave-fs/force_mount.h"
#include "support/harness.h"
#include "support/require_root.h"

using namespace enclavefs;
using namespace enclavefs::enclave;
using namespace enclavefs::test;

namespace {

const std::vector<Found> kKinds = {Found::absent,      Found::emptyDirectory, Found::fullDirectory,
                                   Found::regularFile, Found::symlink,        Found::other};

// Puts a thing of `kind` at `path` (a fifo for Found::other).
void plant(Found kind, const std::string& path, const std::string& dir) {
  switch (kind) {
    case Found::absent: break;
    case Found::emptyDirectory: REQUIRE(::mkdir(path.c_str(), 0755) == 0); break;
    case Found::fullDirectory:
      REQUIRE(::mkdir(path.c_str(), 0755) == 0);
      writeFile(path + "/image-file", "from the enclave image\n");
      break;
    case Found::regularFile: writeFile(path, "from the enclave image\n"); break;
    case Found::symlink:
      REQUIRE(::mkdir((dir + "/elsewhere").c_str(), 0755) == 0);
      REQUIRE(::symlink((dir + "/elsewhere").c_str(), path.c_str()) == 0);
      break;
    case Found::other: REQUIRE(::mkfifo(path.c_str(), 0644) == 0); break;
  }
}

std::string flagsText(ForceMount flags) { return flags == 0 ? "(none)" : forceMountList(flags); }

}  // namespace

TEST_CASE("the forceMount table: each flag and combination over each kind of mount path") {
  TempDir dir;
  std::filesystem::create_directories(dir / "export/sub");
  writeFile(dir / "export/from-host", "host\n");
  writeFile(dir / "single", "single file export\n");
  HostServer server(dir / "sock", {"--export", "tree=" + (dir / "export"), "--export",
                                   "single=" + (dir / "single")});
  int mounted = 0, refused = 0;
  for (ForceMount flags = 0; flags < 16; ++flags) {
    for (Found kind : kKinds) {
      CAPTURE(flagsText(flags));
      CAPTURE(describe(kind));
      TempDir scene;
      const std::string path = scene / "mnt";
      plant(kind, path, scene.path());
      // A regular file is the one mount path a single-file export fits.
      const bool fileExport = kind == Found::regularFile;
      std::vector<std::string> argv = {mountPath(), "--host", server.address(), "--export",
                                       fileExport ? "single" : "tree"};
      if (flags != 0) argv.insert(argv.end(), {"--force-mount", forceMountList(flags)});
      argv.push_back(path);
      RunResult r = run(argv);

      const bool expectMounted = allows(flags, kind) && kind != Found::other;
      if (expectMounted) {
        ++mounted;
        REQUIRE_MESSAGE(r.exitCode == 0, r.output);
        CHECK(isMountPoint(path));
        CHECK(readFile(path + (fileExport ? "" : "/from-host")) ==
              (fileExport ? "single file export\n" : "host\n"));
        run({"/bin/umount", path});
        CHECK_FALSE(isMountPoint(path));
        // An image file under a covered directory is still there once the mount is gone.
        if (kind == Found::fullDirectory) CHECK(readFile(path + "/image-file") == "from the enclave image\n");
        if (kind == Found::absent) CHECK(std::filesystem::is_directory(path));  // it was made
        continue;
      }
      ++refused;
      CHECK(r.exitCode == 1);
      CHECK(std::count(r.output.begin(), r.output.end(), '\n') == 1);
      CHECK(r.output.find("mount path " + path) != std::string::npos);
      CHECK_FALSE(isMountPoint(path));
      if (kind == Found::symlink) {
        CHECK(r.output.find("is a symbolic link, which would redirect the mount") != std::string::npos);
        CHECK_FALSE(isMountPoint(scene / "elsewhere"));
      } else if (!allows(flags, kind)) {
        const std::string found = kind == Found::other ? "a fifo" : describe(kind);
        CHECK(r.output.find("is " + found + ", which forceMount") != std::string::npos);
        CHECK(r.output.find(kind == Found::other ? "('all' would)"
                                                 : "('" + forceMountList(*flagFor(kind)) + "' or 'all' would)") !=
              std::string::npos);
      } else {  // a fifo that `all` lets through is still no place for a directory
        CHECK(r.output.find("is a fifo, but export 'tree' needs a directory") != std::string::npos);
      }
    }
  }
  MESSAGE(mounted << " combinations mounted, " << refused << " refused");
  CHECK(mounted + refused == 16 * 6);
}

TEST_CASE("a symlink anywhere above the mount path is refused, whatever the flags") {
  TempDir dir;
  std::filesystem::create_directories(dir / "export");
  std::filesystem::create_directories(dir / "real/mnt");
  REQUIRE(::symlink((dir / "real").c_str(), (dir / "link").c_str()) == 0);
  HostServer server(dir / "sock", {"--export", "tree=" + (dir / "export")});
  auto r = run({mountPath(), "--host", server.address(), "--export", "tree", "--force-mount", "all",
                dir / "link/mnt"});
  CHECK(r.exitCode == 1);
  CHECK(r.output.find("mount path " + (dir / "link/mnt") + " lies under " + (dir / "link") +
                      ", a symbolic link") != std::string::npos);
  CHECK_FALSE(isMountPoint(dir / "real/mnt"));
}

TEST_CASE("an absent mount path is made with its parents; a refused mount makes nothing") {
  TempDir dir;
  std::filesystem::create_directories(dir / "export");
  writeFile(dir / "single", "one\n");
  HostServer server(dir / "sock", {"--export", "tree=" + (dir / "export"), "--export",
                                   "single=" + (dir / "single")});
  // A single-file export gets a regular file made for it.
  auto r = run({mountPath(), "--host", server.address(), "--export", "single", dir / "a/b/file"});
  REQUIRE_MESSAGE(r.exitCode == 0, r.output);
  CHECK(readFile(dir / "a/b/file") == "one\n");
  run({"/bin/umount", dir / "a/b/file"});

  // The export does not exist: nothing the mount made is left.
  auto bad = run({mountPath(), "--host", server.address(), "--export", "nosuch", dir / "c/d/mnt"});
  CHECK(bad.exitCode == 1);
  CHECK_FALSE(std::filesystem::exists(dir / "c"));
}
