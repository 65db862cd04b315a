#include "enclave-fs/write_behind.h"

namespace enclavefs::enclave {

void WriteBehind::started(msg::NodeId node) {
  std::lock_guard lock(mutex_);
  ++nodes_[node].unanswered;
}

void WriteBehind::finished(msg::NodeId node, int error) {
  std::vector<Settled> settled;
  int reported = 0;
  {
    std::lock_guard lock(mutex_);
    auto it = nodes_.find(node);
    if (it == nodes_.end()) return;
    Node& n = it->second;
    --n.unanswered;
    if (n.error == 0) n.error = error;
    if (n.unanswered > 0) return;
    if (!n.waiting.empty()) {
      settled.swap(n.waiting);
      reported = n.error;
      n.error = 0;
    }
    if (n.error == 0) nodes_.erase(it);
  }
  for (auto& then : settled) then(reported);
}

void WriteBehind::whenSettled(msg::NodeId node, Settled then) {
  int error = 0;
  {
    std::lock_guard lock(mutex_);
    auto it = nodes_.find(node);
    if (it != nodes_.end()) {
      if (it->second.unanswered > 0) {
        it->second.waiting.push_back(std::move(then));
        return;
      }
      error = it->second.error;
      nodes_.erase(it);
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
  if (it->second.unanswered == 0) nodes_.erase(it);
  return error;
}

}  // namespace enclavefs::enclave
