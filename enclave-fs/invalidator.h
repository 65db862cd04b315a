// Applies the host's change notifications to the enclave kernel's caches.
//
// fuse_lowlevel_notify_inval_* may wait for locks the kernel holds while a request on the
// same directory is being answered, so it must never run on the thread that answers
// requests (the connection's receiver). This class owns its own thread and a bounded queue.
#pragma once

#include <fuse_lowlevel.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "common/messages.h"

namespace enclavefs::enclave {

class Invalidator {
 public:
  Invalidator() = default;
  Invalidator(const Invalidator&) = delete;
  Invalidator& operator=(const Invalidator&) = delete;
  ~Invalidator();

  void start(fuse_session* session);
  void stop();
  // Queues a notification's names and nodes to drop (from the receiver thread). Checked
  // already by reply_check; its directory attributes are the receiver's to apply.
  void post(msg::Notify notify);
  // Drops what the kernel caches of `node`, then runs `then` (which replies to a request):
  // a lock the host just granted must not be followed by reads of pages cached before it.
  void invalidateThen(msg::NodeId node, std::function<void()> then);
  // Runs `then` on this thread, after what is queued: for work the receiver thread must not
  // do itself, such as sending (it would wait on a full socket that only it can drain).
  void later(std::function<void()> then);

 private:
  void run();
  // Requests still waiting get their answers, without the invalidation (when stopping).
  void answerWaiting();

  fuse_session* session_ = nullptr;
  std::mutex mutex_;  // guards queue_, queued_ and stopping_
  std::condition_variable wanted_;
  struct Work {
    msg::Notify notify;
    std::function<void()> then;  // may be empty
  };
  std::deque<Work> queue_;
  std::size_t queued_ = 0;  // items in queue_
  bool stopping_ = false;
  bool warnedFull_ = false;
  std::thread thread_;
};

}  // namespace enclavefs::enclave
