#include "enclave-fs/fuse_device.h"

#include <poll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <span>

#include "enclave-fs/busy_poll.h"
#include "enclave-fs/set_id_bits.h"

namespace enclavefs::enclave::fuse_device {
namespace {

Hooks gHooks;
// Whether a worker is polling the device now.
std::atomic<bool> gPolling{false};
// Whether this worker's last read brought a request (which it has handled since).
thread_local bool tHandledOne = false;

// Returns once the device has a request, or busyPoll after the call: at once unless this
// worker has just handled a request and no other worker polls.
void pollBriefly(int fd) {
  if (gHooks.busyPoll.count() == 0 || !tHandledOne || gPolling.exchange(true)) return;
  pollfd device{fd, POLLIN, 0};
  busyPoll(gHooks.busyPoll, [&] { return ::poll(&device, 1, 0) != 0; });
  gPolling.store(false);
}

ssize_t readRequest(int fd, void* buf, size_t size, void*) {
  pollBriefly(fd);
  const ssize_t n = ::read(fd, buf, size);
  tHandledOne = n > 0;
  if (gHooks.hostClearsSetId) {
    set_id_bits::noteRequest(
        tHandledOne ? std::span(static_cast<const std::byte*>(buf), static_cast<std::size_t>(n))
                    : std::span<const std::byte>());
  }
  return n;
}

ssize_t writeAnswer(int fd, iovec* iov, int count, void*) {
  if (gHooks.hostClearsSetId) return set_id_bits::writeAnswer(fd, iov, count);
  return ::writev(fd, iov, count);
}

constexpr fuse_custom_io kIo = {
    .writev = writeAnswer, .read = readRequest, .splice_receive = nullptr, .splice_send = nullptr};

}  // namespace

bool takeOver(fuse_session* session, Hooks hooks) {
  gHooks = hooks;
  return fuse_session_custom_io(session, &kIo, fuse_session_fd(session)) == 0;
}

}  // namespace enclavefs::enclave::fuse_device
