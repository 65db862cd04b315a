#include "enclave-fs/open_data.h"

#include <algorithm>

#include "common/hard_limits.h"

namespace enclavefs::enclave {

std::uint32_t OpenData::asking(msg::NodeId node) {
  std::lock_guard lock(mutex_);
  if (read_.contains(node)) return 0;
  asking_[node].opens += 1;
  return limits::kMaxOpenDataBytes;
}

void OpenData::opened(msg::NodeId node, std::optional<msg::HandleId> handle,
                      std::span<const std::byte> bytes, std::uint32_t asked) {
  std::lock_guard lock(mutex_);
  auto it = asking_.find(node);
  if (it == asking_.end()) return;  // not asked through asking()
  const bool changed = it->second.changed;
  if (--it->second.opens == 0) asking_.erase(it);
  if (!handle || changed || bytes.size() > asked) return;
  if (keptBytes_ + bytes.size() > kBudgetBytes) return;
  // A handle number is the host's: a second open under the same number replaces the first.
  if (auto old = kept_.find(*handle); old != kept_.end()) dropLocked(old);
  auto copy = std::make_shared<const std::vector<std::byte>>(bytes.begin(), bytes.end());
  kept_.emplace(*handle, Kept{node, std::move(copy), bytes.size() < asked});
  keptBytes_ += bytes.size();
}

std::optional<OpenData::Slice> OpenData::read(msg::HandleId handle, msg::NodeId node,
                                              std::uint64_t offset, std::uint32_t size) {
  std::lock_guard lock(mutex_);
  auto it = kept_.find(handle);
  if (it == kept_.end() || it->second.node != node) return std::nullopt;
  std::shared_ptr<const std::vector<std::byte>> bytes = it->second.bytes;
  if (offset > bytes->size()) return std::nullopt;
  const std::uint64_t end = offset + size;
  if (end > bytes->size() && !it->second.toEnd) return std::nullopt;  // needs bytes not here
  const auto from = static_cast<std::size_t>(offset);
  const auto to = static_cast<std::size_t>(std::min<std::uint64_t>(end, bytes->size()));
  Slice out{bytes, std::span(*bytes).subspan(from, to - from)};
  // The kernel caches what it read; the rest stays for its next read.
  if (to == bytes->size()) dropLocked(it);
  if (read_.size() >= kMaxReadNodes) read_.clear();
  read_.insert(node);
  return out;
}

void OpenData::wasRead(msg::NodeId node) {
  std::lock_guard lock(mutex_);
  if (read_.size() >= kMaxReadNodes) read_.clear();
  read_.insert(node);
}

void OpenData::drop(msg::NodeId node) {
  std::lock_guard lock(mutex_);
  dropNodeLocked(node);
}

void OpenData::changed(msg::NodeId node) {
  std::lock_guard lock(mutex_);
  read_.erase(node);
  dropNodeLocked(node);
}

void OpenData::dropNodeLocked(msg::NodeId node) {
  if (auto it = asking_.find(node); it != asking_.end()) it->second.changed = true;
  for (auto it = kept_.begin(); it != kept_.end();) {
    auto next = std::next(it);
    if (it->second.node == node) dropLocked(it);
    it = next;
  }
}

void OpenData::released(msg::HandleId handle) {
  std::lock_guard lock(mutex_);
  if (auto it = kept_.find(handle); it != kept_.end()) dropLocked(it);
}

void OpenData::forgotten(msg::NodeId node) {
  std::lock_guard lock(mutex_);
  read_.erase(node);
}

std::size_t OpenData::keptBytes() const {
  std::lock_guard lock(mutex_);
  return keptBytes_;
}

void OpenData::dropLocked(std::unordered_map<msg::HandleId, Kept>::iterator it) {
  keptBytes_ -= it->second.bytes->size();
  kept_.erase(it);
}

}  // namespace enclavefs::enclave
