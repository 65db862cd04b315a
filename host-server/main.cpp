// enclavefs-hostd: serves host directories and block volumes to enclaves.
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common/address.h"
#include "common/log.h"
#include "host-server/blocking_pool.h"
#include "host-server/config.h"
#include "host-server/control.h"
#include "host-server/exports.h"
#include "host-server/server.h"
#include "host-server/uring.h"

namespace enclavefs::host {
namespace {

constexpr const char* kProgram = "enclavefs-hostd";

int fail(const std::string& message) {
  std::fprintf(stderr, "%s: error: %s\n", kProgram, message.c_str());
  return 1;
}

// Reads SIGTERM/SIGINT through the ring, so a signal is just another completion.
class SignalWatch : public Completion {
 public:
  SignalWatch(Ring& ring, int fd) : ring_(ring), fd_(fd) { arm(); }
  bool fired() const { return fired_; }
  void complete(int result) override {
    if (result > 0) {
      fired_ = true;
      logger("hostd")->info("signal {} received, shutting down", info_.ssi_signo);
    }
    arm();
  }

 private:
  void arm() { io_uring_prep_read(ring_.prepare(this), fd_, &info_, sizeof info_, 0); }
  Ring& ring_;
  int fd_;
  signalfd_siginfo info_{};
  bool fired_ = false;
};

// A host server holds one O_PATH descriptor per node a client has looked up: take every
// descriptor the system allows (as root, up to the kernel's fs.nr_open).
void raiseDescriptorLimit() {
  rlimit limit;
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (FILE* f = std::fopen("/proc/sys/fs/nr_open", "r")) {
    unsigned long long nrOpen = 0;
    if (std::fscanf(f, "%llu", &nrOpen) == 1 && nrOpen > limit.rlim_max) {
      rlimit raised{nrOpen, nrOpen};
      if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
    }
    std::fclose(f);
  }
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
}

// Keeps `value` unless the command line gave the option (it wins) or the file did.
template <class T, class U>
void merge(T& value, const CLI::App& app, const char* flag, const std::optional<U>& fromFile) {
  if (app.count(flag) == 0 && fromFile) value = static_cast<T>(*fromFile);
}

int run(int argc, char** argv) {
  CLI::App app{"enclavefs host server: exports host directories and block volumes to enclaves", kProgram};
  std::string configPath;
  std::string listen;
  std::vector<std::string> exportsRw, exportsRo, volumeSpecs;
  std::string ownerSpec = "squash";
  std::string logLevel = "info";
  std::string control, metrics;
  unsigned poolThreads = 2;
  SessionLimits limits;
  app.add_option("--config", configPath,
                 "YAML configuration (docs/operations.md); command-line options override it "
                 "and --export adds to its exports");
  app.add_option("--listen", listen, "address to serve on: vsock:CID:PORT or unix:PATH");
  app.add_option("--export", exportsRw, "export a host directory or file read-write: NAME=PATH");
  app.add_option("--export-ro", exportsRo, "export a host directory or file read-only: NAME=PATH");
  app.add_option("--volume", volumeSpecs,
                 "serve a block volume (an image made by enclavefs-volume): NAME=PATH");
  app.add_option("--owner", ownerSpec,
                 "owner of what enclaves create in the exports given here: squash (the "
                 "server's ids), squash:UID:GID, or passthrough (the enclave's ids)");
  app.add_option("--log-level", logLevel, "trace, debug, info, warn, error or off");
  app.add_option("--control", control,
                 "serve the control socket enclavefs-inspect uses at unix:PATH (mode 0600, "
                 "local root only)");
  app.add_option("--metrics", metrics,
                 "serve Prometheus metrics over HTTP at IPV4-ADDRESS:PORT, e.g. 127.0.0.1:9464");
  auto range = [](const ConfigRange& r) { return CLI::Range(r.min, r.max); };
  app.add_option("--pool-threads", poolThreads, "threads for calls io_uring cannot make")
      ->check(range(kPoolThreadsRange));
  app.add_option("--max-in-flight", limits.maxInFlight, "requests served at once per client")
      ->check(range(kMaxInFlightRange));
  app.add_option("--max-nodes", limits.maxNodes, "inodes a client may hold")
      ->check(range(kMaxNodesRange));
  app.add_option("--max-clients", limits.maxClients, "connections served at once")
      ->check(range(kMaxClientsRange));
  app.add_option("--max-handles", limits.maxHandles, "open files a client may hold")
      ->check(range(kMaxHandlesRange));
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(e.what());
  }

  HostConfig config;
  if (!configPath.empty()) {
    auto loaded = loadHostConfig(configPath);
    if (!loaded) return fail(loaded.error());
    config = std::move(*loaded);
  }

  auto level = parseLogLevel(logLevel);
  if (!level) return fail("unknown log level '" + logLevel + "'");
  if (app.count("--log-level") == 0 && config.logLevel) level = config.logLevel;
  setLogLevel(*level);

  std::optional<Address> address = config.listen;
  if (app.count("--listen") != 0) {
    auto parsed = parseAddress(listen);
    if (!parsed) return fail(parsed.error());
    address = *parsed;
  }
  if (!address) return fail("no address to serve on: give --listen or 'listen:' in the config");
  std::optional<Address> controlAddress = config.control;
  if (app.count("--control") != 0) {
    auto parsed = parseAddress(control);
    if (!parsed) return fail("--control: " + parsed.error());
    controlAddress = *parsed;
  }
  std::optional<std::string> metricsSpec = config.metrics;
  if (app.count("--metrics") != 0) metricsSpec = metrics;
  merge(poolThreads, app, "--pool-threads", config.limits.poolThreads);
  merge(limits.maxInFlight, app, "--max-in-flight", config.limits.maxInFlight);
  merge(limits.maxNodes, app, "--max-nodes", config.limits.maxNodes);
  merge(limits.maxClients, app, "--max-clients", config.limits.maxClients);
  merge(limits.maxHandles, app, "--max-handles", config.limits.maxHandles);

  auto owner = parseOwnerSpec(ownerSpec);
  if (!owner) return fail(owner.error());
  ExportTable exports;
  for (const auto& settings : config.exports) {
    if (auto added = exports.add(settings); !added) return fail(added.error());
  }
  for (auto [specs, readOnly] : {std::pair{&exportsRw, false}, std::pair{&exportsRo, true}}) {
    for (const auto& spec : *specs) {
      auto parsed = parseNamedPath(spec, "export");
      if (!parsed) return fail(parsed.error());
      ExportSettings settings;
      settings.owner = *owner;
      settings.name = parsed->first;
      settings.path = parsed->second;
      settings.readOnly = readOnly;
      if (auto added = exports.add(settings); !added) return fail(added.error());
    }
  }
  VolumeTable volumes;
  for (const auto& settings : config.volumes) {
    if (auto added = volumes.add(settings); !added) return fail(added.error());
  }
  for (const auto& spec : volumeSpecs) {
    auto parsed = parseNamedPath(spec, "volume");
    if (!parsed) return fail(parsed.error());
    if (auto added = volumes.add({parsed->first, parsed->second, {}, {}}); !added) {
      return fail(added.error());
    }
  }
  if (exports.all().empty() && volumes.all().empty()) {
    return fail("nothing to serve: give --export NAME=PATH, --volume NAME=PATH, or 'exports:' "
                "or 'volumes:' in the config");
  }

  // Modes arrive from the enclave already masked by the enclave's umask.
  ::umask(0);
  raiseDescriptorLimit();

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // before the pool threads start
  sigdelset(&signals, SIGPIPE);
  UniqueFd signalFd(::signalfd(-1, &signals, SFD_CLOEXEC));
  if (!signalFd) return fail(std::string("signalfd: ") + std::strerror(errno));

  auto listener = listenOn(*address);
  if (!listener) return fail(listener.error());

  Ring ring(256);
  BlockingPool pool(ring, poolThreads);
  Server server(ring, pool, exports, volumes, limits, std::move(*listener), *address);
  SignalWatch signalWatch(ring, signalFd.get());
  std::unique_ptr<Listener> controlSocket, metricsEndpoint;
  if (controlAddress) {
    auto opened = openControlSocket(server, *controlAddress);
    if (!opened) return fail(opened.error());
    controlSocket = std::move(*opened);
  }
  if (metricsSpec) {
    auto opened = openMetricsEndpoint(server, *metricsSpec);
    if (!opened) return fail(opened.error());
    metricsEndpoint = std::move(*opened);
  }
  server.start();
  for (auto* listener : {controlSocket.get(), metricsEndpoint.get()}) {
    if (listener != nullptr) listener->start();
  }
  auto log = logger("hostd");
  for (const auto& [name, ex] : exports.all()) {
    log->info("exporting '{}' = {}{}", name, ex.path, ex.readOnly ? " (read-only)" : "");
  }
  for (const auto& [name, volume] : volumes.all()) {
    log->info("serving volume '{}' = {}", name, volume.path);
  }
  log->info("listening on {}", address->toString());

  auto listenersIdle = [&] {
    for (auto* listener : {controlSocket.get(), metricsEndpoint.get()}) {
      if (listener != nullptr && !listener->idle()) return false;
    }
    return true;
  };
  while (!server.idle() || !listenersIdle()) {
    ring.runOnce();
    if (signalWatch.fired()) {
      server.stop();
      for (auto* listener : {controlSocket.get(), metricsEndpoint.get()}) {
        if (listener != nullptr) listener->stop();
      }
    }
  }
  if (address->family == Address::Family::unix_socket) ::unlink(address->path.c_str());
  if (controlAddress) ::unlink(controlAddress->path.c_str());
  log->info("stopped");
  return 0;
}

}  // namespace
}  // namespace enclavefs::host

int main(int argc, char** argv) {
  try {
    return enclavefs::host::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "enclavefs-hostd: error: %s\n", e.what());
    return 1;
  }
}
