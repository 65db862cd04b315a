#include "enclave-fs/basic_mount.h"

#include <fuse_lowlevel.h>
#include <sys/stat.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "common/log.h"
#include "enclave-fs/background.h"
#include "enclave-fs/basic_fs.h"
#include "enclave-fs/connection.h"
#include "enclave-fs/force_mount.h"
#include "enclave-fs/fuse_device.h"
#include "enclave-fs/fuse_session.h"
#include "enclave-fs/invalidator.h"
#include "enclave-fs/program.h"

namespace enclavefs::enclave {
namespace {

}  // namespace

int runBasicMount(MountRequest request) {
  const std::string& exportName = request.name;
  const std::string& mountPoint = request.mountPoint;
  MountOptions& options = request.options;
  // A first look before connecting, so a bad path is reported as such, not as a host
  // problem; the check that counts is made again right before the mount.
  if (auto ok = MountPath::check(mountPoint, request.forceMount); !ok) return fail(ok.error());

  msg::Hello hello;
  hello.version = msg::kProtocolVersion;
  hello.kind = msg::MountKind::basic;
  hello.name = exportName;
  hello.features = msg::kFeatureChangeNotify | msg::kFeatureOrderedWrites | msg::kFeatureClearsSetId;
  auto timeout = std::chrono::milliseconds(
      static_cast<long long>(options.requestTimeoutSeconds * 1000));
  auto connection =
      Connection::open(request.host, hello, timeout);
  if (!connection) return fail(connection.error());
  Connection& conn = **connection;
  if (conn.welcome().readOnly) options.readOnly = true;

  const bool hostPushesChanges = (conn.welcome().features & msg::kFeatureChangeNotify) != 0;
  Invalidator invalidator;
  const bool writeBehind = !options.writeThrough &&
                          (conn.welcome().features & msg::kFeatureOrderedWrites) != 0;
  BasicFs fs(conn, {options.cacheTimeouts(hostPushesChanges), hostPushesChanges, writeBehind},
             options.policy, invalidator);
  conn.onNotify([&fs, &invalidator](msg::Notify notify) {
    fs.completeDirs().changed(notify);
    for (const auto& e : notify.entries) fs.listedDirs().nameChanged(e.parent);
    // New copies replace old ones before any is dropped, so no getattr in between misses.
    fs.keepDirAttrs(notify.dirAttrs);
    std::unordered_set<msg::NodeId> fresh;
    for (const msg::NodeAttr& a : notify.dirAttrs) fresh.insert(a.node);
    for (msg::NodeId node : notify.inodes) {
      if (!fresh.contains(node)) fs.dirAttrs().drop(node);
      fs.openData().changed(node);
      fs.listedDirs().nodeChanged(node);
    }
    invalidator.post(std::move(notify));
  });
  std::string kernelOptions = options.kernelOptions(exportName);
  std::vector<const char*> args = {kProgram, "-o", kernelOptions.c_str()};
  if (options.debug) args.push_back("-d");
  fuse_args fuseArgs = FUSE_ARGS_INIT(static_cast<int>(args.size()), const_cast<char**>(args.data()));

  // Declared before the session, so a failed mount's path goes after the unmount.
  std::optional<MountPath> path;
  FuseSession session;
  session.session = fuse_session_new(&fuseArgs, &basicOperations(), sizeof(fuse_lowlevel_ops), &fs);
  fuse_opt_free_args(&fuseArgs);  // libfuse copied what it keeps
  if (session.session == nullptr) return fail("cannot create the FUSE session");
  if (fuse_set_signal_handlers(session.session) != 0) return fail("cannot install signal handlers");
  session.signalsInstalled = true;
  const bool exportIsDirectory = (conn.welcome().root.mode & S_IFMT) == S_IFDIR;
  auto prepared = MountPath::prepare(mountPoint, request.forceMount,
                                     exportIsDirectory ? MountTarget::directory : MountTarget::regularFile,
                                     "export '" + exportName + "'");
  if (!prepared) return fail(prepared.error());
  path.emplace(std::move(*prepared));
  if (fuse_session_mount(session.session, mountPoint.c_str()) != 0) {
    return fail("cannot mount on " + mountPoint + " (is /dev/fuse available, and are we root?)");
  }
  session.mounted = true;
  // A host that does not clear set-ID bits leaves them to the enclave's kernel.
  const fuse_device::Hooks hooks{
      .busyPoll = std::chrono::microseconds(options.busyPollMicros),
      .hostClearsSetId = (conn.welcome().features & msg::kFeatureClearsSetId) != 0};
  if (!fuse_device::takeOver(session.session, hooks)) {
    return fail("cannot take over the FUSE session's I/O");
  }
  std::optional<Background> background;
  if (!request.foreground) {
    background = Background::detach([&] {
      fuse_session_unmount(session.session);
      path.reset();
    });
  }

  conn.start(std::chrono::microseconds(options.busyPollMicros));
  // Once the kernel has fetched the root through the mount, the mount answers: the command
  // may return. The kernel starts with placeholder attributes for the root (no permission
  // bits), and an invalidation that crosses a getattr makes it drop the answer and check
  // permissions against the placeholder; so changes are applied only from then on (until
  // then they queue, and there is nothing cached to drop anyway).
  std::thread primer([&] {
    struct stat root;
    if (::stat(mountPoint.c_str(), &root) != 0) {
      logger("mount")->error("the mount does not answer: {}", std::strerror(errno));
      fuse_session_exit(session.session);
      return;
    }
    logger("mount")->info("mounted export '{}' from {} on {}", exportName,
                          request.host.toString(), mountPoint);
    invalidator.start(session.session);
    path->keep();
    if (background) background->ready();
  });
  int rc = session.serve(options.maxThreads);
  primer.join();
  conn.stop();
  invalidator.stop();
  logger("mount")->info("unmounted {}", mountPoint);
  return rc == 0 ? 0 : 1;
}

}  // namespace enclavefs::enclave
