// Block volumes: sectorRead, sectorWrite, sectorFlush, sectorTrim, sectorWriteZeroes.
//
// A request's byte range is checked against the volume before any I/O: aligned to the
// sector size, not empty, and inside the volume (without overflow). The image's header lies
// before the data area, so a client can reach neither it nor anything past the volume's end.
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/uio.h>

#include <cerrno>

#include "common/hard_limits.h"
#include "common/log.h"
#include "common/overloaded.h"
#include "host-server/operations.h"
#include "host-server/volume_file.h"

namespace enclavefs::host {
namespace {

// EINVAL for a range the client should never send; the log says which rule the
// connection's first such range broke (Session::noteInvalidRange).
Result<std::uint64_t> imageOffset(Session& s, const char* op, std::uint64_t offset,
                                  std::uint64_t length) {
  const VolumeHeader& volume = s.image().header();
  const char* broken = nullptr;
  if (length == 0) {
    broken = "is empty";
  } else if (offset % volume.sectorSize != 0 || length % volume.sectorSize != 0) {
    broken = "is not sector-aligned";
  } else if (offset > volume.size || length > volume.size - offset) {
    broken = "ends past the end of the volume";
  }
  if (broken != nullptr) {
    if (s.noteInvalidRange()) {
      s.log().warn("client {}: {} of {} bytes at {} {} (further invalid ranges are only counted)",
                   s.id(), op, length, offset, broken);
    }
    return Errno{EINVAL};
  }
  return volume.dataOffset + offset;
}

}  // namespace

namespace ops {

Co<Outcome> sectorRead(Session& s, const msg::op::SectorRead& op) {
  if (op.length > limits::kMaxIoBytes) co_return failure(EINVAL);
  auto at = imageOffset(s, "sectorRead", op.offset, op.length);
  if (!at) co_return failure(at.error().value);
  Outcome outcome = success(msg::body::Data{});
  auto piped = co_await readIntoPipe(s, s.image().fd(), *at, op.length);
  if (!piped) co_return failure(piped.error().value);
  if (*piped) {
    if ((*piped)->size < op.length) co_return failure(EIO);  // the image shrank under us
    outcome.payload = std::move(**piped);
    co_return outcome;
  }
  Bytes data = Bytes::allocate(op.length);
  std::size_t done = 0;
  while (done < data.size()) {
    std::byte* into = data.data() + done;
    const std::size_t want = data.size() - done;
    const std::uint64_t from = *at + done;
    int n = co_await inMemoryOrRing(
        s, [&] { return ::pread(s.image().fd(), into, want, static_cast<off_t>(from)); },
        [&](io_uring_sqe* sqe) {
          io_uring_prep_read(sqe, s.image().fd(), into, static_cast<unsigned>(want), from);
        });
    if (n < 0) co_return failure(-n);
    if (n == 0) co_return failure(EIO);  // the image shrank under us
    done += static_cast<std::size_t>(n);
  }
  outcome.payload = std::move(data);
  co_return outcome;
}

Co<Outcome> sectorWrite(Session& s, const msg::op::SectorWrite& op, Bytes& data) {
  auto at = imageOffset(s, "sectorWrite", op.offset, data.size());
  if (!at) co_return failure(at.error().value);
  std::size_t done = 0;
  while (done < data.size()) {
    const std::byte* from = data.data() + done;
    const std::size_t want = data.size() - done;
    const std::uint64_t to = *at + done;
    const int flags = op.fua ? RWF_DSYNC : 0;
    int n = co_await inMemoryOrRing(
        s,
        [&] {
          iovec iov{const_cast<std::byte*>(from), want};
          return ::pwritev2(s.image().fd(), &iov, 1, static_cast<off_t>(to), flags);
        },
        [&](io_uring_sqe* sqe) {
          io_uring_prep_write(sqe, s.image().fd(), from, static_cast<unsigned>(want), to);
          sqe->rw_flags = flags;
        });
    if (n < 0) co_return failure(-n);
    if (n == 0) co_return failure(EIO);
    done += static_cast<std::size_t>(n);
  }
  co_return success(msg::body::Written{static_cast<std::uint32_t>(done)});
}

Co<Outcome> sectorFlush(Session& s) {
  int rc = co_await inMemoryOrRing(
      s, [&] { return ::fdatasync(s.image().fd()); },
      [&](io_uring_sqe* sqe) { io_uring_prep_fsync(sqe, s.image().fd(), IORING_FSYNC_DATASYNC); });
  if (rc < 0) co_return failure(-rc);
  co_return success();
}

Co<Outcome> sectorDiscard(Session& s, const char* op, std::uint64_t offset, std::uint64_t length,
                          bool keepAllocated) {
  auto at = imageOffset(s, op, offset, length);
  if (!at) co_return failure(at.error().value);
  auto fallocate = [&](int mode) {
    mode |= FALLOC_FL_KEEP_SIZE;
    const auto start = static_cast<off_t>(*at);
    const auto bytes = static_cast<off_t>(length);
    return inMemoryOrRing(
        s, [&s, mode, start, bytes] { return ::fallocate(s.image().fd(), mode, start, bytes); },
        [&s, mode, start, bytes](io_uring_sqe* sqe) {
          io_uring_prep_fallocate(sqe, s.image().fd(), mode, start, bytes);
        });
  };
  int rc = -EOPNOTSUPP;
  if (keepAllocated) rc = co_await fallocate(FALLOC_FL_ZERO_RANGE);
  // A hole reads back as zeros too, on file systems without zero-range (tmpfs).
  if (rc == -EOPNOTSUPP) rc = co_await fallocate(FALLOC_FL_PUNCH_HOLE);
  if (rc < 0) co_return failure(-rc);
  co_return success();
}

}  // namespace ops

Co<Outcome> performBlock(Session& s, const msg::Request& r, Bytes& payload) {
  return std::visit(
      Overloaded{
          [&](const msg::op::SectorRead& op) { return ops::sectorRead(s, op); },
          [&](const msg::op::SectorWrite& op) { return ops::sectorWrite(s, op, payload); },
          [&](const msg::op::SectorFlush&) { return ops::sectorFlush(s); },
          [&](const msg::op::SectorTrim& op) {
            return ops::sectorDiscard(s, "sectorTrim", op.offset, op.length, false);
          },
          [&](const msg::op::SectorWriteZeroes& op) {
            return ops::sectorDiscard(s, "sectorWriteZeroes", op.offset, op.length, true);
          },
          // File-system operations mean nothing on a volume.
          [&](const auto&) { return immediately(failure(EOPNOTSUPP)); },
      },
      r.op);
}

}  // namespace enclavefs::host
