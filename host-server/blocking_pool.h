// A few threads for the system calls io_uring cannot make (getdents, xattrs, chmod, statfs,
// ...). A coroutine awaits `pool.run(fn)`: fn runs on a pool thread, and the coroutine
// resumes on the loop thread with its result, woken through an eventfd the ring reads.
#pragma once

#include <condition_variable>
#include <coroutine>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "common/unique_fd.h"
#include "host-server/uring.h"

namespace enclavefs::host {

class BlockingPool {
 public:
  class Job {
   public:
    virtual void execute() = 0;  // on a pool thread
    virtual void finish() = 0;   // back on the loop thread

   protected:
    ~Job() = default;
  };

  BlockingPool(Ring& ring, unsigned threads);
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;
  ~BlockingPool();

  // Awaitable: runs `fn` on a pool thread; co_await yields its result.
  template <class F>
  auto run(F fn) {
    using R = decltype(fn());
    struct Awaitable : Job {
      BlockingPool& pool;
      F fn;
      R result{};
      std::coroutine_handle<> waiter;
      Awaitable(BlockingPool& p, F f) : pool(p), fn(std::move(f)) {}
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> h) {
        waiter = h;
        pool.submit(this);
      }
      R await_resume() { return std::move(result); }
      void execute() override { result = fn(); }
      void finish() override { waiter.resume(); }
    };
    return Awaitable(*this, std::move(fn));
  }

 private:
  // Reads the eventfd through the ring and finishes every job the threads have done.
  class Wakeup : public Completion {
   public:
    explicit Wakeup(BlockingPool& pool) : pool_(pool) {}
    void arm();
    void complete(int result) override;

   private:
    BlockingPool& pool_;
    std::uint64_t count_ = 0;
  };

  void submit(Job* job);
  void work();

  Ring& ring_;
  UniqueFd eventFd_;
  Wakeup wakeup_{*this};
  std::mutex mutex_;  // guards the two queues and stopping_
  std::condition_variable wanted_;
  std::deque<Job*> queued_;
  std::vector<Job*> done_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace enclavefs::host
