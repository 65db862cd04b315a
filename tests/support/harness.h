// Test harness: temporary directories, a real enclavefs-hostd on a unix socket, and real
// enclavefs-mount mounts of it. Everything started here is stopped and unmounted by the
// destructors, also when a test fails half-way.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace enclavefs::test {

// Paths of the built programs (set by tests/meson.build).
std::string hostdPath();
std::string mountPath();
std::string volumeToolPath();
std::string inspectToolPath();

// A fresh directory under $TMPDIR (default /tmp), on a tmpfs of its own when
// ENCLAVEFS_TEST_TMPFS is set, removed with everything in it (after unmounting anything
// left mounted below it).
class TempDir {
 public:
  TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
  bool ownTmpfs_ = false;
};

struct RunResult {
  int exitCode = -1;   // -1 if killed by a signal or not started
  std::string output;  // stdout and stderr together
};

// Waits for child `pid` up to `limit`: its exit code, -1 after a signal, or nullopt if it is
// still running.
std::optional<int> waitFor(pid_t pid, std::chrono::milliseconds limit);

// Runs a program to completion (with a time limit), capturing its output.
RunResult run(const std::vector<std::string>& argv,
              std::chrono::milliseconds limit = std::chrono::seconds(30));

// A running enclavefs-hostd. `args` follow --listen, which the harness supplies.
class HostServer {
 public:
  HostServer(const std::string& socketPath, const std::vector<std::string>& args);
  HostServer(const HostServer&) = delete;
  HostServer& operator=(const HostServer&) = delete;
  ~HostServer();

  std::string address() const { return "unix:" + socketPath_; }
  const std::string& socketPath() const { return socketPath_; }
  pid_t pid() const { return pid_; }
  // SIGTERM, and the exit status (or -1).
  int stop();
  // SIGKILL, no clean-up by the server.
  void kill();
  // What the server logged so far.
  std::string log() const;

 private:
  std::string socketPath_;
  std::string logPath_;
  pid_t pid_ = -1;
};

// A live enclavefs-mount. Throws (failing the test) if the mount does not come up.
class Mount {
 public:
  Mount(const std::string& address, const std::string& exportName, const std::string& mountPoint,
        const std::vector<std::string>& extraArgs = {});
  Mount(const Mount&) = delete;
  Mount& operator=(const Mount&) = delete;
  ~Mount();

  const std::string& path() const { return mountPoint_; }
  std::string operator/(const std::string& name) const { return mountPoint_ + "/" + name; }
  void unmount();

 private:
  std::string mountPoint_;
  bool mounted_ = false;
};

bool isMountPoint(const std::string& path);
// The enclavefs-mount daemon serving `mountPoint`, found by its command line (it has forked
// away from the process the harness started), or -1.
pid_t mountDaemon(const std::string& mountPoint);
// CPU time the process has used so far (user and system, all its threads).
std::chrono::milliseconds cpuTime(pid_t pid);
// A memory figure of the process from /proc/PID/status, in KiB ("VmRSS", "VmHWM" for the
// peak resident set), or -1 if it cannot be read.
long memoryKiB(pid_t pid, const std::string& field);

// Writes/reads a whole file through ordinary system calls.
void writeFile(const std::string& path, const std::string& content);
// writeFile, then fsync before closing.
void writeFileSynced(const std::string& path, const std::string& content);

// A program's output split into lines (one trailing newline ignored).
std::vector<std::string> linesOf(const std::string& output);

// Polls `condition` every 20 ms until it holds or `limit` has passed; its last answer.
// Writes dirty data back, then makes the kernel drop its page cache and unused dentries and
// inodes, which sends FUSE FORGETs for them (root only).
void dropKernelCaches();

bool waitUntil(const std::function<bool()>& condition, std::chrono::milliseconds limit);
std::string readFile(const std::string& path);

}  // namespace enclavefs::test
