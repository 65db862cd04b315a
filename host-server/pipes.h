// Pipes that carry a large read's bytes from the file to the client's socket without a copy.
//
// A read of `kPipedReadMinBytes` or more is spliced from the file into a pipe (the pipe then
// holds references to the file's cached pages) and from the pipe into the socket, which on a
// Unix socket passes the same pages on to the receiver. Copying it instead would cost the
// host two copies of every byte: into a buffer, and from it into the socket.
//
// The bytes sent are those the file held when the read was served, unless a later change
// reaches the same cached pages before the client receives them; the client sees newer bytes
// only for a range it was reading while something wrote it, where any outcome is allowed.
#pragma once

#include <cstddef>
#include <optional>
#include <vector>

#include "common/unique_fd.h"

namespace enclavefs::host {

// Smaller reads are copied: io_uring always hands a splice to a worker thread, and that
// hand-off costs a read of a 128 KiB window (a block mount's read-around) more time than the
// copies it saves (docs/performance.md).
constexpr std::size_t kPipedReadMinBytes = 256 * 1024;

struct Pipe {
  UniqueFd readEnd;
  UniqueFd writeEnd;
};

class PipedBytes;

// A session's pipes. Each holds the largest payload; at most `kMaxPipesInUse` carry bytes at
// once, so a client cannot make the host spend its descriptors on them. Emptied pipes are
// kept for the next read.
class PipePool {
 public:
  static constexpr std::size_t kMaxPipesInUse = 8;

  // An empty pipe to fill, or none: all in use, or pipes cannot be made as large as a payload
  // here (then none is tried again). The caller copies instead.
  std::optional<PipedBytes> take();

 private:
  friend class PipedBytes;
  void release(Pipe pipe, bool empty);

  std::vector<Pipe> spare_;
  std::size_t inUse_ = 0;
  bool unavailable_ = false;
};

// Bytes waiting in a pipe of a pool. When this is destroyed the pipe goes back to the pool if
// every byte was taken out of it (`sent`), else it is closed with what is left in it.
class PipedBytes {
 public:
  PipedBytes(PipedBytes&& other) noexcept;
  PipedBytes& operator=(PipedBytes&& other) noexcept;
  ~PipedBytes();

  int readEnd() const { return pipe_.readEnd.get(); }
  int writeEnd() const { return pipe_.writeEnd.get(); }

  std::size_t size = 0;  // bytes put into the pipe
  std::size_t sent = 0;  // bytes taken out of it

 private:
  friend class PipePool;
  PipedBytes(PipePool& pool, Pipe pipe) : pool_(&pool), pipe_(std::move(pipe)) {}
  void giveBack();

  PipePool* pool_;
  Pipe pipe_;
};

}  // namespace enclavefs::host
