#include "enclave-fs/invalidator.h"

#include "common/log.h"

namespace enclavefs::enclave {
namespace {

// A host can send changes faster than the kernel takes them; beyond this many queued
// items the oldest are the ones that matter least, and new ones are dropped (the caches'
// timeouts still bound how long a dropped change stays unseen).
constexpr std::size_t kMaxQueuedItems = 1 << 16;

}  // namespace

Invalidator::~Invalidator() { stop(); }

void Invalidator::start(fuse_session* session) {
  session_ = session;
  thread_ = std::thread([this] { run(); });
}

void Invalidator::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wanted_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
  } else {
    answerWaiting();
  }
}

void Invalidator::answerWaiting() {
  std::deque<Work> left;
  {
    std::lock_guard lock(mutex_);
    left.swap(queue_);
  }
  for (auto& w : left) {
    if (w.then) w.then();
  }
}

void Invalidator::post(msg::Notify notify) {
  // What the queue holds is bounded by names and nodes, so nothing else may ride along: a
  // notification without any is not queued, and its directory attributes (already applied by
  // the receiver, and up to thousands a frame) are not kept.
  if (notify.empty()) return;
  notify.dirAttrs = {};
  std::size_t items = notify.entries.size() + notify.inodes.size();
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    if (queued_ + items > kMaxQueuedItems) {
      if (!warnedFull_) {
        logger("mount")->warn("the host sends changes faster than they can be applied; "
                              "some are dropped until the queue drains");
        warnedFull_ = true;
      }
      return;
    }
    queued_ += items;
    queue_.push_back({std::move(notify), nullptr});
  }
  wanted_.notify_one();
}

void Invalidator::invalidateThen(msg::NodeId node, std::function<void()> then) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      // Never dropped: the request waits for it.
      queued_ += 1;
      queue_.push_back({msg::Notify{{}, {node}, {}}, std::move(then)});
      wanted_.notify_one();
      return;
    }
  }
  then();
}

void Invalidator::later(std::function<void()> then) {
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      queue_.push_back({msg::Notify{}, std::move(then)});
      wanted_.notify_one();
      return;
    }
  }
  then();
}

void Invalidator::run() {
  for (;;) {
    Work work;
    {
      std::unique_lock lock(mutex_);
      wanted_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) break;
      work = std::move(queue_.front());
      queue_.pop_front();
      queued_ -= work.notify.entries.size() + work.notify.inodes.size();
      if (queued_ == 0) warnedFull_ = false;
    }
    const msg::Notify& notify = work.notify;
    // A node or name the kernel no longer holds answers ENOENT: nothing to drop.
    for (const auto& e : notify.entries) {
      fuse_lowlevel_notify_inval_entry(session_, e.parent, e.name.c_str(), e.name.size());
    }
    for (msg::NodeId node : notify.inodes) {
      fuse_lowlevel_notify_inval_inode(session_, node, 0, 0);
    }
    if (work.then) work.then();
  }
  answerWaiting();
}

}  // namespace enclavefs::enclave
