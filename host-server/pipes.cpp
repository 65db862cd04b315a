#include "host-server/pipes.h"

#include <fcntl.h>

#include <utility>

#include "common/hard_limits.h"

namespace enclavefs::host {

std::optional<PipedBytes> PipePool::take() {
  if (unavailable_ || inUse_ >= kMaxPipesInUse) return std::nullopt;
  Pipe pipe;
  if (!spare_.empty()) {
    pipe = std::move(spare_.back());
    spare_.pop_back();
  } else {
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC) != 0) return std::nullopt;  // out of descriptors: copy for now
    pipe = {UniqueFd(ends[0]), UniqueFd(ends[1])};
    // Past /proc/sys/fs/pipe-max-size (or the user's pipe quota) this fails for good.
    if (::fcntl(pipe.writeEnd.get(), F_SETPIPE_SZ, static_cast<int>(limits::kMaxPayloadBytes)) <
        0) {
      unavailable_ = true;
      return std::nullopt;
    }
  }
  ++inUse_;
  return PipedBytes(*this, std::move(pipe));
}

void PipePool::release(Pipe pipe, bool empty) {
  --inUse_;
  if (empty) spare_.push_back(std::move(pipe));
}

PipedBytes::PipedBytes(PipedBytes&& other) noexcept
    : size(other.size),
      sent(other.sent),
      pool_(std::exchange(other.pool_, nullptr)),
      pipe_(std::move(other.pipe_)) {}

PipedBytes& PipedBytes::operator=(PipedBytes&& other) noexcept {
  if (this != &other) {
    giveBack();
    size = other.size;
    sent = other.sent;
    pool_ = std::exchange(other.pool_, nullptr);
    pipe_ = std::move(other.pipe_);
  }
  return *this;
}

PipedBytes::~PipedBytes() { giveBack(); }

void PipedBytes::giveBack() {
  if (pool_ == nullptr) return;
  std::exchange(pool_, nullptr)->release(std::move(pipe_), sent == size);
}

}  // namespace enclavefs::host
