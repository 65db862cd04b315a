#include "host-server/uring.h"

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace enclavefs::host {

Ring::Ring(unsigned entries) {
  io_uring_params params{};
  params.flags = IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN;
  int rc = io_uring_queue_init_params(entries, &ring_, &params);
  if (rc == -EINVAL) {
    // Kernels before 5.19 lack the flags; they only make the loop a little cheaper.
    params = {};
    rc = io_uring_queue_init_params(entries, &ring_, &params);
  }
  if (rc < 0) throw std::runtime_error(std::string("io_uring setup failed: ") + std::strerror(-rc));
}

Ring::~Ring() { io_uring_queue_exit(&ring_); }

io_uring_sqe* Ring::prepare(Completion* completion) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  io_uring_sqe_set_data(sqe, completion);
  return sqe;
}

bool Ring::runOnce() {
  int rc = io_uring_submit_and_wait(&ring_, 1);
  if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
    throw std::runtime_error(std::string("io_uring_enter failed: ") + std::strerror(-rc));
  }
  // Copy the ready completions out before dispatching: a completion handler submits new work
  // and may run other coroutines, so the CQ ring is released first.
  constexpr unsigned kBatch = 128;
  io_uring_cqe* cqes[kBatch];
  bool any = false;
  for (;;) {
    unsigned n = io_uring_peek_batch_cqe(&ring_, cqes, kBatch);
    if (n == 0) break;
    any = true;
    std::pair<Completion*, int> ready[kBatch];
    for (unsigned i = 0; i < n; ++i) {
      ready[i] = {static_cast<Completion*>(io_uring_cqe_get_data(cqes[i])), cqes[i]->res};
    }
    io_uring_cq_advance(&ring_, n);
    for (unsigned i = 0; i < n; ++i) {
      if (ready[i].first != nullptr) ready[i].first->complete(ready[i].second);
    }
  }
  return any || rc != -EINTR;
}

}  // namespace enclavefs::host
