#include "enclave-fs/write_behind.h"

namespace enclavefs::enclave {

void WriteBehind::started(msg::NodeId node) {
  std::lock_guard lock(mutex_);
  ++nodes_[node].started;
}

void WriteBehind::finished(msg::NodeId node, int error) {
  std::vector<Settled> settled;
  int reported = 0;
  {
    std::lock_guard lock(mutex_);
    auto it = nodes_.find(node);
    if (it == nodes_.end()) return;
    Node& n = it->second;
    ++n.finished;
    if (n.error == 0) n.error = error;
    // The host answers one connection's writes in the order it ran them, which is the order
    // they were sent: a waiter's writes are done once as many writes have finished.
    while (!n.waiting.empty() && n.waiting.front().until <= n.finished) {
      settled.push_back(std::move(n.waiting.front().then));
      n.waiting.pop_front();
    }
    if (!settled.empty()) {
      reported = n.error;
      n.error = 0;
    }
    if (n.finished == n.started && n.error == 0 && n.waiting.empty()) nodes_.erase(it);
  }
  for (auto& then : settled) then(reported);
}

void WriteBehind::whenSettled(msg::NodeId node, Settled then) {
  int error = 0;
  {
    std::lock_guard lock(mutex_);
    auto it = nodes_.find(node);
    if (it != nodes_.end()) {
      Node& n = it->second;
      if (n.finished < n.started) {
        n.waiting.push_back({n.started, std::move(then)});
        return;
      }
      error = n.error;
      n.error = 0;
      if (n.waiting.empty()) nodes_.erase(it);
    }
  }
  then(error);
}

int WriteBehind::takeError(msg::NodeId node) {
  std::lock_guard lock(mutex_);
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return 0;
  int error = it->second.error;
  it->second.error = 0;
  if (it->second.finished == it->second.started && it->second.waiting.empty()) nodes_.erase(it);
  return error;
}

}  // namespace enclavefs::enclave
