// The host's event loop: one io_uring, driven from one thread, and the coroutine types the
// operation handlers are written in.
//
// Every submission carries a Completion*; when its CQE arrives the loop calls complete() on
// it. A coroutine that awaits a ring operation is suspended on an awaitable that is itself
// the Completion, so handlers read as straight-line code:
//
//     int fd = co_await ring.openat2(dirfd, name, &how);
//
// Submissions made while completions are being dispatched are batched: the loop submits them
// all with one io_uring_enter.
#pragma once

#include <liburing.h>

#include <coroutine>
#include <cstdint>
#include <exception>
#include <optional>
#include <utility>

namespace enclavefs::host {

class Completion {
 public:
  virtual void complete(int result) = 0;

 protected:
  ~Completion() = default;
};

// A lazily started coroutine whose result another coroutine awaits.
template <class T>
class [[nodiscard]] Co {
 public:
  struct promise_type {
    std::optional<T> value;
    std::coroutine_handle<> continuation;

    Co get_return_object() { return Co(std::coroutine_handle<promise_type>::from_promise(*this)); }
    std::suspend_always initial_suspend() noexcept { return {}; }
    struct FinalAwaiter {
      bool await_ready() noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> h) noexcept {
        return h.promise().continuation;
      }
      void await_resume() noexcept {}
    };
    FinalAwaiter final_suspend() noexcept { return {}; }
    template <class U>
    void return_value(U&& v) { value.emplace(std::forward<U>(v)); }
    void unhandled_exception() { std::terminate(); }
  };

  Co(Co&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Co(const Co&) = delete;
  Co& operator=(const Co&) = delete;
  Co& operator=(Co&&) = delete;
  ~Co() {
    if (handle_) handle_.destroy();
  }

  bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> waiter) noexcept {
    handle_.promise().continuation = waiter;
    return handle_;
  }
  T await_resume() { return std::move(*handle_.promise().value); }

 private:
  explicit Co(std::coroutine_handle<promise_type> h) : handle_(h) {}
  std::coroutine_handle<promise_type> handle_;
};

// A coroutine that starts at once and owns itself; nothing awaits it.
struct Detached {
  struct promise_type {
    Detached get_return_object() { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() {}
    void unhandled_exception() { std::terminate(); }
  };
};

class Ring {
 public:
  explicit Ring(unsigned entries);
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring();

  // A submission slot tagged with `completion`; flushes the queue first if it is full. A
  // null `completion` is for an operation whose result nobody waits for: its CQE is dropped,
  // so it may outlive whoever submitted it.
  io_uring_sqe* prepare(Completion* completion);

  // Submits what is queued, waits for at least one completion, and dispatches all that are
  // ready. Returns false if the wait was interrupted by a signal (the caller re-checks its
  // stop condition).
  bool runOnce();

  // An awaitable ring operation: `prep` fills the SQE; co_await yields the CQE result
  // (negative errno on failure).
  template <class Prep>
  auto op(Prep prep) {
    struct Awaitable : Completion {
      Ring& ring;
      Prep prep;
      std::coroutine_handle<> waiter;
      int result = 0;
      Awaitable(Ring& r, Prep p) : ring(r), prep(std::move(p)) {}
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> h) {
        waiter = h;
        prep(ring.prepare(this));
      }
      int await_resume() const noexcept { return result; }
      void complete(int r) override {
        result = r;
        waiter.resume();
      }
    };
    return Awaitable(*this, std::move(prep));
  }

 private:
  io_uring ring_;
};

}  // namespace enclavefs::host
