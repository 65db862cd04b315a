#include "enclave-fs/read_around.h"

#include <algorithm>

namespace enclavefs::enclave {

std::optional<ReadAround::Slice> ReadAround::kept(std::uint64_t offset, std::uint32_t length) {
  const std::uint64_t start = offset - offset % kWindowBytes;
  std::lock_guard lock(mutex_);
  auto it = windows_.find(start);
  if (it == windows_.end() || offset + length > start + it->second.bytes->size()) {
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  lastEnd_ = offset + length;
  const auto& bytes = it->second.bytes;
  return Slice{bytes, std::span(*bytes).subspan(offset - start, length)};
}

std::optional<ReadAround::Fetch> ReadAround::around(std::uint64_t offset, std::uint32_t length) {
  std::lock_guard lock(mutex_);
  const bool near = lastEnd_ != UINT64_MAX &&
                    (offset >= lastEnd_ ? offset - lastEnd_ : lastEnd_ - offset) < kWindowBytes;
  lastEnd_ = offset + length;
  const std::uint64_t start = offset - offset % kWindowBytes;
  if (!near || length > kWindowBytes / 2 || offset + length > start + kWindowBytes ||
      start >= volumeSize_) {
    return std::nullopt;
  }
  const auto windowLength =
      static_cast<std::uint32_t>(std::min<std::uint64_t>(kWindowBytes, volumeSize_ - start));
  for (const auto& [id, change] : changes_) {
    if (change.overlaps(start, windowLength)) return std::nullopt;
  }
  for (const auto& [id, fetch] : fetches_) {
    if (fetch.range.offset == start) return std::nullopt;  // one fetch of a window at a time
  }
  Fetch fetch{nextId_++, start, windowLength};
  fetches_.emplace(fetch.id, InFlight{{start, windowLength}});
  return fetch;
}

void ReadAround::fetched(const Fetch& fetch, std::span<const std::byte> bytes) {
  std::lock_guard lock(mutex_);
  auto it = fetches_.find(fetch.id);
  if (it == fetches_.end()) return;
  const bool spoiled = it->second.spoiled;
  fetches_.erase(it);
  if (spoiled || bytes.size() != fetch.length || windows_.contains(fetch.offset)) return;
  while (keptBytes_ + bytes.size() > kBudgetBytes && !lru_.empty()) dropWindow(lru_.back());
  lru_.push_front(fetch.offset);
  windows_.emplace(fetch.offset,
                   Window{std::make_shared<const std::vector<std::byte>>(bytes.begin(), bytes.end()),
                          lru_.begin()});
  keptBytes_ += bytes.size();
}

std::uint64_t ReadAround::changing(std::uint64_t offset, std::uint64_t length) {
  std::lock_guard lock(mutex_);
  const Range range{offset, length};
  for (auto& [id, fetch] : fetches_) {
    if (fetch.range.overlaps(offset, length)) fetch.spoiled = true;
  }
  std::vector<std::uint64_t> touched;
  for (const auto& [start, window] : windows_) {
    if (range.overlaps(start, window.bytes->size())) touched.push_back(start);
  }
  for (std::uint64_t start : touched) dropWindow(start);
  const std::uint64_t id = nextId_++;
  changes_.emplace(id, range);
  return id;
}

void ReadAround::changed(std::uint64_t id) {
  std::lock_guard lock(mutex_);
  changes_.erase(id);
}

std::size_t ReadAround::keptBytes() const {
  std::lock_guard lock(mutex_);
  return keptBytes_;
}

void ReadAround::dropWindow(std::uint64_t start) {
  auto it = windows_.find(start);
  if (it == windows_.end()) return;
  keptBytes_ -= it->second.bytes->size();
  lru_.erase(it->second.lru);
  windows_.erase(it);
}

}  // namespace enclavefs::enclave
