#include "support/harness.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <optional>
#include <thread>

namespace enclavefs::test {
namespace {

using namespace std::chrono_literals;

pid_t spawn(const std::vector<std::string>& argv, const std::string& outputPath) {
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    int fd = ::open(outputPath.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}


// True once the kernel lists `socketPath` as a listening unix socket. The socket file
// appears at bind(), before listen(): a client connecting in between would be refused.
bool listening(const std::string& socketPath) {
  std::ifstream table("/proc/net/unix");
  std::string line;
  std::getline(table, line);  // header
  while (std::getline(table, line)) {
    std::istringstream fields(line);
    std::string num, refs, protocol, flags, type, state, inode, path;
    if (fields >> num >> refs >> protocol >> flags >> type >> state >> inode >> path &&
        path == socketPath && flags == "00010000") {  // __SO_ACCEPTCON
      return true;
    }
  }
  return false;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void lazyUnmount(const std::string& path) { ::umount2(path.c_str(), MNT_DETACH); }

}  // namespace

std::optional<int> waitFor(pid_t pid, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (r < 0) return -1;
    if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
    std::this_thread::sleep_for(5ms);
  }
}

std::string hostdPath() { return ENCLAVEFS_HOSTD; }
std::string mountPath() { return ENCLAVEFS_MOUNT; }
std::string volumeToolPath() { return ENCLAVEFS_VOLUME; }
std::string inspectToolPath() { return ENCLAVEFS_INSPECT; }

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base != nullptr && *base != '\0' ? base : "/tmp") +
                        "/enclavefs-test.XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
  // The in-memory variants of the suites run the host's inline calls: their directory is a
  // tmpfs of its own (sparse, so 8 GiB is only a cap).
  if (std::getenv("ENCLAVEFS_TEST_TMPFS") != nullptr) {
    if (::mount("tmpfs", path_.c_str(), "tmpfs", 0, "size=8g,mode=0700") != 0) {
      throw std::runtime_error("cannot mount a tmpfs on " + path_ + ": " + std::strerror(errno));
    }
    ownTmpfs_ = true;
  }
}

TempDir::~TempDir() {
  // Anything still mounted below us would make the removal walk into it.
  std::ifstream mounts("/proc/self/mounts");
  std::string device, target, rest;
  std::vector<std::string> below;
  while (mounts >> device >> target && std::getline(mounts, rest)) {
    if (target.rfind(path_ + "/", 0) == 0) below.push_back(target);
  }
  for (auto it = below.rbegin(); it != below.rend(); ++it) lazyUnmount(*it);
  if (ownTmpfs_) lazyUnmount(path_);
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

RunResult run(const std::vector<std::string>& argv, std::chrono::milliseconds limit) {
  char pattern[] = "/tmp/enclavefs-run.XXXXXX";
  int fd = ::mkstemp(pattern);
  if (fd < 0) throw std::runtime_error("mkstemp failed");
  ::close(fd);
  RunResult result;
  pid_t pid = spawn(argv, pattern);
  auto code = waitFor(pid, limit);
  if (!code) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    result.exitCode = -1;
  } else {
    result.exitCode = *code;
  }
  result.output = slurp(pattern);
  ::unlink(pattern);
  return result;
}

HostServer::HostServer(const std::string& socketPath, const std::vector<std::string>& args)
    : socketPath_(socketPath), logPath_(socketPath + ".log") {
  std::vector<std::string> argv = {hostdPath(), "--listen", address()};
  argv.insert(argv.end(), args.begin(), args.end());
  pid_ = spawn(argv, logPath_);
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!listening(socketPath_)) {
    if (waitFor(pid_, 0ms)) {
      pid_ = -1;
      throw std::runtime_error("enclavefs-hostd exited at start: " + log());
    }
    if (std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("enclavefs-hostd does not listen on its socket: " + log());
    }
    std::this_thread::sleep_for(5ms);
  }
}

HostServer::~HostServer() {
  if (pid_ > 0) stop();
}

int HostServer::stop() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  auto code = waitFor(pid_, 10s);
  if (!code) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    code = -1;
  }
  pid_ = -1;
  return *code;
}

void HostServer::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

std::string HostServer::log() const { return slurp(logPath_); }

bool isMountPoint(const std::string& path) {
  std::ifstream mounts("/proc/self/mounts");
  std::string device, target, rest;
  while (mounts >> device >> target && std::getline(mounts, rest)) {
    if (target == path) return true;
  }
  return false;
}

Mount::Mount(const std::string& address, const std::string& exportName,
             const std::string& mountPoint, const std::vector<std::string>& extraArgs)
    : mountPoint_(mountPoint) {
  // Tests make their mount points beforehand: an empty directory, or a file for a
  // single-file export.
  std::vector<std::string> argv = {mountPath(), "--host", address, "--export", exportName,
                                   "--force-mount", "empty,file", mountPoint};
  argv.insert(argv.end(), extraArgs.begin(), extraArgs.end());
  RunResult r = run(argv);
  if (r.exitCode != 0) {
    throw std::runtime_error("enclavefs-mount failed (" + std::to_string(r.exitCode) +
                             "): " + r.output);
  }
  if (!isMountPoint(mountPoint_)) {
    throw std::runtime_error("enclavefs-mount returned but " + mountPoint_ + " is not mounted");
  }
  mounted_ = true;
}

Mount::~Mount() {
  if (mounted_) {
    // A test that failed half-way may leave files open; never leave the mount behind.
    if (::umount2(mountPoint_.c_str(), 0) != 0) lazyUnmount(mountPoint_);
  }
}

void Mount::unmount() {
  if (!mounted_) return;
  if (::umount2(mountPoint_.c_str(), 0) != 0) {
    throw std::runtime_error("umount " + mountPoint_ + ": " + std::strerror(errno));
  }
  mounted_ = false;
}

namespace {

void writeWhole(const std::string& path, const std::string& content, bool sync) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("open " + path + ": " + std::strerror(errno));
  std::size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      int e = errno;
      ::close(fd);
      throw std::runtime_error("write " + path + ": " + std::strerror(e));
    }
    done += static_cast<std::size_t>(n);
  }
  if (sync && ::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    throw std::runtime_error("fsync " + path + ": " + std::strerror(e));
  }
  if (::close(fd) != 0) throw std::runtime_error("close " + path + ": " + std::strerror(errno));
}

}  // namespace

void writeFile(const std::string& path, const std::string& content) {
  writeWhole(path, content, false);
}

void writeFileSynced(const std::string& path, const std::string& content) {
  writeWhole(path, content, true);
}

void dropKernelCaches() {
  ::sync();
  writeWhole("/proc/sys/vm/drop_caches", "3\n", false);
}

bool waitUntil(const std::function<bool()>& condition, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return condition();
}

// The output's lines, ignoring one trailing newline.
std::vector<std::string> linesOf(const std::string& output) {
  std::vector<std::string> lines;
  std::string current;
  for (char c : output) {
    if (c == '\n') {
      lines.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  if (!current.empty()) lines.push_back(current);
  return lines;
}

std::string readFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("open " + path + ": " + std::strerror(errno));
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      int e = errno;
      ::close(fd);
      throw std::runtime_error("read " + path + ": " + std::strerror(e));
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

pid_t mountDaemon(const std::string& mountPoint) {
  for (const auto& proc : std::filesystem::directory_iterator("/proc")) {
    const std::string name = proc.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(proc.path() / "cmdline");
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::string> args;
    std::size_t at = 0;
    while (at < all.size()) {
      std::size_t end = all.find('\0', at);
      if (end == std::string::npos) end = all.size();
      args.push_back(all.substr(at, end - at));
      at = end + 1;
    }
    if (args.empty() || !args[0].ends_with("enclavefs-mount")) continue;
    for (const auto& a : args) {
      if (a == mountPoint) return static_cast<pid_t>(std::stol(name));
    }
  }
  return -1;
}

long memoryKiB(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(field + ":")) return std::stol(line.substr(field.size() + 1));
  }
  return -1;
}

std::chrono::milliseconds cpuTime(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(in, stat);
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string field;
  long long ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i >= 14) ticks += std::stoll(field);  // utime, stime
  }
  return std::chrono::milliseconds(ticks * 1000 / ::sysconf(_SC_CLK_TCK));
}

}  // namespace enclavefs::test
