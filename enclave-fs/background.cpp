#include "enclave-fs/background.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

namespace enclavefs::enclave {
namespace {

constexpr char kReady = 'R';
constexpr char kFailed = 'F';

}  // namespace

Background Background::detach(const std::function<void()>& undo) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  }
  UniqueFd fromChild(fds[0]), toParent(fds[1]);
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    fromChild.reset();
    ::setsid();
    return Background(std::move(toParent));
  }
  toParent.reset();
  char status = 0;
  ssize_t n;
  do {
    n = ::read(fromChild.get(), &status, 1);
  } while (n < 0 && errno == EINTR);
  if (n == 1 && status == kReady) std::_Exit(0);
  if (n == 1 && status == kFailed) std::_Exit(1);
  undo();
  std::fprintf(stderr,
               "enclavefs-mount: error: the mount process ended before the mount answered\n");
  std::fflush(stderr);
  std::_Exit(1);
}

void Background::failed() {
  std::fflush(stderr);
  [[maybe_unused]] auto n = ::write(toParent_.get(), &kFailed, 1);
  toParent_.reset();
}

void Background::ready() {
  [[maybe_unused]] auto n = ::write(toParent_.get(), &kReady, 1);
  toParent_.reset();
  [[maybe_unused]] int rc = ::chdir("/");
  int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull >= 0) {
    ::dup2(devnull, 0);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    ::close(devnull);
  }
}

}  // namespace enclavefs::enclave
