// enclavefs-mount: mounts a host export (basic mount) or a host volume (block mount) inside
// the enclave, or every mount of a configuration file; or unmounts them.
#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "common/address.h"
#include "common/log.h"
#include "enclave-fs/basic_mount.h"
#include "enclave-fs/block_mount.h"
#include "enclave-fs/config_mounts.h"
#include "enclave-fs/mount_options.h"
#include "enclave-fs/program.h"

namespace enclavefs::enclave {
namespace {

int run(int argc, char** argv) {
  CLI::App app{"enclavefs client: mounts a host export or volume inside the enclave", kProgram};
  std::string host, exportName, volumeName, mountPoint, configPath, logLevel = "info", logFile;
  std::vector<std::string> optionGroups;
  std::string forceMount;
  bool foreground = false, unmount = false;
  app.add_option("--host", host, "host server address: vsock:CID:PORT or unix:PATH");
  auto* exportOption = app.add_option("--export", exportName, "name of the host export to mount");
  app.add_option("--volume", volumeName, "name of the host volume to mount (block mount)")
      ->excludes(exportOption);
  app.add_option("--config", configPath,
                 "mount every entry of this YAML file in order (docs/operations.md); with "
                 "--unmount, unmount them in reverse order");
  app.add_flag("--unmount", unmount,
               "unmount MOUNTPOINT (or the mounts of --config); for a block mount, return once "
               "the volume is given back");
  app.add_option("mountpoint", mountPoint, "where to mount it");
  app.add_option("-o", optionGroups,
                 "mount options: ro, exec, noexec, timeout=S, max_threads=N, debug; basic "
                 "mounts also symlinks=inside|follow, entry_timeout=S, attr_timeout=S")
      ->allow_extra_args(false);  // one group per -o, so it never swallows the mount point
  app.add_option("--force-mount", forceMount,
                 "what may already exist at MOUNTPOINT, comma-separated: empty (an empty "
                 "directory), file (a regular file), full (a non-empty directory), all (anything "
                 "but a symlink); without it MOUNTPOINT must not exist, and is created");
  app.add_flag("-f,--foreground", foreground, "stay in the foreground");
  app.add_option("--log-level", logLevel, "trace, debug, info, warn, error or off");
  app.add_option("--log-file", logFile, "append the log to this file (in the background the "
                                         "log is otherwise lost with stderr)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(e.what());
  }
  auto level = parseLogLevel(logLevel);
  if (!level) return fail("unknown log level '" + logLevel + "'");
  setLogLevel(*level);
  if (!logFile.empty()) {
    if (auto error = logToFile(logFile)) return fail(*error);
  }

  const bool mountOptionsGiven = !host.empty() || !exportName.empty() || !volumeName.empty() ||
                                 !optionGroups.empty() || app.count("--force-mount") != 0;
  if (!configPath.empty()) {
    if (mountOptionsGiven || !mountPoint.empty() || foreground) {
      return fail("--config takes the mounts from the file: give no mount point, --host, "
                  "--export, --volume, -o, --force-mount or --foreground with it");
    }
    auto config = loadMountConfig(configPath);
    if (!config) return fail(config.error());
    if (unmount) return unmountFromConfig(*config);
    return mountFromConfig(*config, {app.count("--log-level") ? logLevel : "", logFile});
  }
  if (mountPoint.empty()) return fail("the mountpoint is required (or --config FILE)");
  // "/data/" is "/data": the mount path is compared and made component by component.
  while (mountPoint.size() > 1 && mountPoint.back() == '/') mountPoint.pop_back();
  if (unmount) {
    if (mountOptionsGiven) return fail("--unmount takes only the mount point");
    return unmountMountPoint(mountPoint);
  }
  if (host.empty()) return fail("--host is required");
  if (exportName.empty() == volumeName.empty()) {
    return fail("give what to mount: --export NAME (basic mount) or --volume NAME (block mount)");
  }
  auto address = parseAddress(host);
  if (!address) return fail(address.error());
  auto options = parseMountOptions(optionGroups);
  if (!options) return fail(options.error());
  ForceMount flags = 0;
  if (app.count("--force-mount") != 0) {
    auto parsed = parseForceMount(forceMount);
    if (!parsed) return fail(parsed.error());
    flags = *parsed;
  }
  const bool block = !volumeName.empty();
  MountRequest request{*address, block ? volumeName : exportName, mountPoint, *options, flags,
                       foreground};
  return block ? runBlockMount(request) : runBasicMount(std::move(request));
}

}  // namespace
}  // namespace enclavefs::enclave

int main(int argc, char** argv) {
  try {
    return enclavefs::enclave::run(argc, argv);
  } catch (const std::exception& e) {
    return enclavefs::enclave::fail(e.what());
  }
}
