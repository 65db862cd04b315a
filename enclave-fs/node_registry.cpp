#include "enclave-fs/node_registry.h"

#include <sys/stat.h>

#include <string>

namespace enclavefs::enclave {

void NodeRegistry::addRoot(std::uint32_t type) {
  std::lock_guard lock(mutex_);
  nodes_[msg::kRootNode] = Known{type & S_IFMT, 1, false};
}

Check NodeRegistry::learn(const msg::Entry& entry) {
  std::uint32_t type = entry.attr.mode & S_IFMT;
  std::lock_guard lock(mutex_);
  auto [it, added] = nodes_.try_emplace(entry.node, Known{type, 0, false});
  if (!added && it->second.type != type) {
    return Fail{"node " + std::to_string(entry.node) + " changed file type"};
  }
  ++it->second.lookups;
  return {};
}

Check NodeRegistry::agrees(msg::NodeId node, const msg::Attr& attr) const {
  std::lock_guard lock(mutex_);
  auto it = nodes_.find(node);
  if (it != nodes_.end() && it->second.type != (attr.mode & S_IFMT)) {
    return Fail{"node " + std::to_string(node) + " changed file type"};
  }
  return {};
}

void NodeRegistry::forget(msg::NodeId node, std::uint64_t count) {
  if (node == msg::kRootNode) return;
  std::lock_guard lock(mutex_);
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return;
  if (it->second.lookups <= count) {
    nodes_.erase(it);
  } else {
    it->second.lookups -= count;
  }
}

std::optional<std::uint32_t> NodeRegistry::typeOf(msg::NodeId node) const {
  std::lock_guard lock(mutex_);
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return std::nullopt;
  return it->second.type;
}

void NodeRegistry::noteLockUse(msg::NodeId node) {
  std::lock_guard lock(mutex_);
  auto it = nodes_.find(node);
  if (it != nodes_.end()) it->second.lockUsed = true;
}

bool NodeRegistry::mayHoldLocks(msg::NodeId node) const {
  std::lock_guard lock(mutex_);
  auto it = nodes_.find(node);
  return it == nodes_.end() || it->second.lockUsed;
}

std::size_t NodeRegistry::size() const {
  std::lock_guard lock(mutex_);
  return nodes_.size();
}

}  // namespace enclavefs::enclave
