#include "enclave-fs/run_tool.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "common/unique_fd.h"

extern char** environ;

namespace enclavefs::enclave {
namespace {

constexpr const char* kSystemDirs[] = {"/usr/sbin", "/sbin", "/usr/bin", "/bin"};

std::string lastLine(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  auto newline = text.rfind('\n');
  return newline == std::string::npos ? text : text.substr(newline + 1);
}

}  // namespace

Result<Finished, std::string> runProgram(const std::string& program,
                                         const std::vector<std::string>& argv,
                                         int highestSuccess) {
  int pipeFds[2];
  if (::pipe2(pipeFds, O_CLOEXEC) != 0) return Fail{std::string("pipe: ") + std::strerror(errno)};
  UniqueFd errRead(pipeFds[0]), errWrite(pipeFds[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, errWrite.get(), 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, program.c_str(), &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  errWrite.reset();
  if (rc != 0) return Fail{"cannot run " + program + ": " + std::strerror(rc)};

  // Until every writer is gone: a program that leaves a daemon behind hands it the pipe,
  // which the daemon lets go of once it has said whether it started.
  std::string errors;
  char buffer[4096];
  for (;;) {
    ssize_t n = ::read(errRead.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (errors.size() < 65536) errors.append(buffer, static_cast<std::size_t>(n));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  Finished finished;
  finished.succeeded = WIFEXITED(status) && WEXITSTATUS(status) <= highestSuccess;
  finished.how = WIFEXITED(status) ? "exited with status " + std::to_string(WEXITSTATUS(status))
                                   : "was killed by signal " + std::to_string(WTERMSIG(status));
  finished.lastErrorLine = lastLine(errors);
  return finished;
}

Result<void, std::string> runTool(const std::vector<std::string>& argv, int highestSuccess) {
  const std::string& name = argv.at(0);
  std::string program;
  for (const char* dir : kSystemDirs) {
    std::string candidate = std::string(dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) {
      program = candidate;
      break;
    }
  }
  if (program.empty()) return Fail{name + " is not installed (looked in /usr/sbin, /sbin, /usr/bin, /bin)"};
  auto finished = runProgram(program, argv, highestSuccess);
  if (!finished) return Fail{finished.error()};
  if (finished->succeeded) return {};
  const std::string& said = finished->lastErrorLine;
  return Fail{name + " " + finished->how + (said.empty() ? "" : ": " + printable(said, 300))};
}

}  // namespace enclavefs::enclave
