// Keeps a client's requests behind the writes it sent before them.
//
// A basic mount answers a write before the host has (write-behind, docs/consistency.md), and
// a block mount its writes without FUA, so every request either sends after a write must
// find that write done on the host: a request
// starts only when every write that arrived before it has finished, and writes run one at a
// time, in order. A request that arrives while no write is running or waiting starts at
// once, as it would without this. On a memory file system writes finish inline, so nothing
// ever waits.
#pragma once

#include <coroutine>
#include <deque>

namespace enclavefs::host {

class WriteOrder {
 public:
  // co_await turn(isWrite) before a request runs; a write must call finished() afterwards,
  // once its reply is queued (so replies keep the order of the writes).
  auto turn(bool isWrite) {
    struct Awaitable {
      WriteOrder& order;
      bool isWrite;
      bool await_ready() { return order.mayStart(isWrite); }
      void await_suspend(std::coroutine_handle<> h) { order.waiting_.push_back({h, isWrite}); }
      void await_resume() const noexcept {}
    };
    return Awaitable{*this, isWrite};
  }
  void finished();

 private:
  struct Waiter {
    std::coroutine_handle<> handle;
    bool isWrite;
  };
  bool mayStart(bool isWrite);

  bool writing_ = false;
  bool resuming_ = false;
  std::deque<Waiter> waiting_;
};

}  // namespace enclavefs::host
