#include "enclave-fs/set_id_bits.h"

#include <linux/fuse.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <vector>

#include "common/log.h"

namespace enclavefs::enclave::set_id_bits {
namespace {

// Where the kernel marks each request of Marked (in its order): a bit of a 32-bit field of
// the request's argument.
struct Mark {
  std::uint32_t opcode;
  std::size_t offset;
  std::uint32_t bit;
};
constexpr std::array<Mark, 4> kMarks = {{
    {FUSE_WRITE, offsetof(fuse_write_in, write_flags), FUSE_WRITE_KILL_SUIDGID},
    {FUSE_SETATTR, offsetof(fuse_setattr_in, valid), FATTR_KILL_SUIDGID},
    {FUSE_OPEN, offsetof(fuse_open_in, open_flags), FUSE_OPEN_KILL_SUIDGID},
    {FUSE_CREATE, offsetof(fuse_create_in, open_flags), FUSE_OPEN_KILL_SUIDGID},
}};

std::atomic<bool> gHostClears{false};
// The request this FUSE worker read last.
thread_local KernelRequest tLastRead;

// The `T` at `offset` into the argument that follows the request's header, if the request
// is long enough to hold it.
template <typename T>
bool argumentAt(std::span<const std::byte> request, std::size_t offset, T& out) {
  const std::size_t at = sizeof(fuse_in_header) + offset;
  if (request.size() < at + sizeof(T)) return false;
  std::memcpy(&out, request.data() + at, sizeof(T));
  return true;
}

}  // namespace

void noteRequest(std::span<const std::byte> request) {
  tLastRead = request.empty() ? KernelRequest{} : inspect(request);
}

ssize_t writeAnswer(int fd, iovec* iov, int count) {
  const KernelRequest& init = tLastRead;
  if (init.opcode != FUSE_INIT || !init.offersHandover || count < 2 ||
      iov[0].iov_len < sizeof(fuse_out_header)) {
    return ::writev(fd, iov, count);
  }
  fuse_out_header header;
  std::memcpy(&header, iov[0].iov_base, sizeof header);
  constexpr std::size_t kFlagsEnd = offsetof(fuse_init_out, flags) + sizeof(fuse_init_out::flags);
  std::array<std::byte, 256> answer;
  if (header.unique != init.unique || header.error != 0 || iov[1].iov_len < kFlagsEnd ||
      iov[1].iov_len > answer.size()) {
    return ::writev(fd, iov, count);
  }
  std::memcpy(answer.data(), iov[1].iov_base, iov[1].iov_len);
  std::uint32_t flags;
  std::memcpy(&flags, answer.data() + offsetof(fuse_init_out, flags), sizeof flags);
  flags |= FUSE_HANDLE_KILLPRIV_V2;
  std::memcpy(answer.data() + offsetof(fuse_init_out, flags), &flags, sizeof flags);
  std::vector<iovec> patched(iov, iov + count);
  patched[1].iov_base = answer.data();
  ssize_t n = ::writev(fd, patched.data(), count);
  if (n >= 0) gHostClears = true;
  tLastRead = {};
  return n;
}

KernelRequest inspect(std::span<const std::byte> request) {
  KernelRequest out;
  fuse_in_header header;
  if (request.size() < sizeof header) return out;
  std::memcpy(&header, request.data(), sizeof header);
  out.opcode = header.opcode;
  out.unique = header.unique;
  out.node = header.nodeid;
  auto bitSet = [request](std::size_t offset, std::uint32_t bit) {
    std::uint32_t field = 0;
    return argumentAt(request, offset, field) && (field & bit) != 0;
  };
  for (const Mark& mark : kMarks) {
    if (mark.opcode == header.opcode) out.killSetId = bitSet(mark.offset, mark.bit);
  }
  if (header.opcode == FUSE_INIT) {
    out.offersHandover = bitSet(offsetof(fuse_init_in, flags), FUSE_HANDLE_KILLPRIV_V2);
  }
  return out;
}

bool hostClears() { return gHostClears; }

bool requested(Marked operation, fuse_ino_t node) {
  if (!gHostClears) return false;
  const std::uint32_t opcode = kMarks[static_cast<std::size_t>(operation)].opcode;
  const KernelRequest& last = tLastRead;
  if (last.opcode == opcode && last.node == node) return last.killSetId;
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true)) {
    logger("mount")->warn("a FUSE request was handled on another thread than the one that read "
                          "it; set-ID bits are now cleared on every write and truncate");
  }
  return true;
}

}  // namespace enclavefs::enclave::set_id_bits
