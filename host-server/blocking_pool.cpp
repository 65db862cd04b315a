#include "host-server/blocking_pool.h"

#include <sys/eventfd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

namespace enclavefs::host {

BlockingPool::BlockingPool(Ring& ring, unsigned threads)
    : ring_(ring), eventFd_(::eventfd(0, EFD_CLOEXEC)) {
  if (!eventFd_) throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
  wakeup_.arm();
  for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
}

BlockingPool::~BlockingPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wanted_.notify_all();
  for (auto& t : threads_) t.join();
}

void BlockingPool::submit(Job* job) {
  {
    std::lock_guard lock(mutex_);
    queued_.push_back(job);
  }
  wanted_.notify_one();
}

void BlockingPool::work() {
  for (;;) {
    Job* job;
    {
      std::unique_lock lock(mutex_);
      wanted_.wait(lock, [this] { return stopping_ || !queued_.empty(); });
      if (queued_.empty()) return;
      job = queued_.front();
      queued_.pop_front();
    }
    job->execute();
    bool first;
    {
      std::lock_guard lock(mutex_);
      first = done_.empty();
      done_.push_back(job);
    }
    // One wakeup per batch: the loop takes every finished job when it reads the eventfd.
    if (first) {
      std::uint64_t one = 1;
      [[maybe_unused]] auto n = ::write(eventFd_.get(), &one, sizeof one);
    }
  }
}

void BlockingPool::Wakeup::arm() {
  io_uring_prep_read(pool_.ring_.prepare(this), pool_.eventFd_.get(), &count_, sizeof count_, 0);
}

void BlockingPool::Wakeup::complete(int) {
  std::vector<Job*> finished;
  {
    std::lock_guard lock(pool_.mutex_);
    finished.swap(pool_.done_);
  }
  arm();
  for (Job* job : finished) job->finish();
}

}  // namespace enclavefs::host
