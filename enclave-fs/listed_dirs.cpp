#include "enclave-fs/listed_dirs.h"

namespace enclavefs::enclave {
namespace {

// Bounds the directories whose misses are counted; only a hint.
constexpr std::size_t kMaxMissesKept = 4096;

}  // namespace

ListedDirs::ListedDirs(std::chrono::duration<double> lifetime, GiveBack giveBack)
    : lifetime_(std::chrono::duration_cast<Clock::duration>(lifetime)),
      giveBack_(std::move(giveBack)) {}

void ListedDirs::giveBack(std::vector<msg::op::ForgetItem> held) const {
  if (!held.empty()) giveBack_(std::move(held));
}

void ListedDirs::unindex(Dir& dir, msg::NodeId node, const std::string& name) {
  auto [from, to] = dir.namesOf.equal_range(node);
  for (auto n = from; n != to; ++n) {
    if (n->second == name) {
      dir.namesOf.erase(n);
      return;
    }
  }
}

void ListedDirs::dropEntry(Dir& dir, std::unordered_map<std::string, msg::Entry>::iterator it,
                           std::vector<msg::op::ForgetItem>& held) {
  held.push_back({it->second.node, 1});
  --held_;
  unindex(dir, it->second.node, it->first);
  dir.entries.erase(it);
}

void ListedDirs::end(Dirs::iterator it, std::vector<msg::op::ForgetItem>& held) {
  Dir& dir = it->second;
  while (!dir.entries.empty()) dropEntry(dir, dir.entries.begin(), held);
  if (dir.fetching) {
    dir.spoiled = true;  // finished() removes it
  } else {
    dirs_.erase(it);
  }
}

void ListedDirs::expire(Clock::time_point now, std::vector<msg::op::ForgetItem>& held) {
  for (auto it = dirs_.begin(); it != dirs_.end();) {
    auto next = std::next(it);
    if (!it->second.fetching && now >= it->second.expires) end(it, held);
    it = next;
  }
}

bool ListedDirs::foundOnHost(msg::NodeId dir) {
  std::vector<msg::op::ForgetItem> held;
  bool list = false;
  {
    std::lock_guard lock(mutex_);
    const auto now = Clock::now();
    expire(now, held);
    auto last = listedAt_.find(dir);
    // At most one listing of a directory per lifetime: one under constant change is not
    // listed over and over, and a lifetime of 0 (entry_timeout=0) lists nothing.
    const bool mayList = lifetime_ > Clock::duration::zero() &&
                         (last == listedAt_.end() || now - last->second >= lifetime_);
    if (mayList && !dirs_.contains(dir)) {
      if (misses_.size() >= kMaxMissesKept && !misses_.contains(dir)) misses_.clear();
      Misses& m = misses_[dir];
      if (m.count == 0 || now - m.since >= kMissWindow) m = {now, 0};
      if (++m.count >= kMissesToList) {
        misses_.erase(dir);
        if (dirs_.size() >= kMaxDirs) {
          // The one that expires first goes.
          auto oldest = dirs_.end();
          for (auto it = dirs_.begin(); it != dirs_.end(); ++it) {
            if (!it->second.fetching &&
                (oldest == dirs_.end() || it->second.expires < oldest->second.expires)) {
              oldest = it;
            }
          }
          if (oldest != dirs_.end()) end(oldest, held);
        }
        if (dirs_.size() < kMaxDirs) {
          if (listedAt_.size() >= kMaxMissesKept && !listedAt_.contains(dir)) listedAt_.clear();
          listedAt_[dir] = now;
          Dir& d = dirs_[dir];
          d.fetching = true;
          d.expires = now + lifetime_;
          list = true;
        }
      }
    }
  }
  giveBack(std::move(held));
  return list;
}

void ListedDirs::add(msg::NodeId dir, const std::vector<msg::body::DirEntry>& items) {
  std::vector<msg::op::ForgetItem> held;
  {
    std::lock_guard lock(mutex_);
    auto it = dirs_.find(dir);
    Dir* d = it != dirs_.end() && it->second.fetching ? &it->second : nullptr;
    for (const msg::body::DirEntry& item : items) {
      if (!item.entry) continue;
      // Every entry with attributes holds a host lookup: kept, or given back at once.
      if (d == nullptr || d->spoiled || item.name == "." || item.name == ".." ||
          d->entries.size() >= kMaxEntries || held_ >= kMaxHeld ||
          d->entries.contains(item.name) || d->changedWhileFetching.contains(item.entry->node)) {
        held.push_back({item.entry->node, 1});
        continue;
      }
      d->entries.emplace(item.name, *item.entry);
      d->namesOf.emplace(item.entry->node, item.name);
      ++held_;
    }
  }
  giveBack(std::move(held));
}

void ListedDirs::finished(msg::NodeId dir) {
  std::vector<msg::op::ForgetItem> held;
  {
    std::lock_guard lock(mutex_);
    auto it = dirs_.find(dir);
    if (it == dirs_.end()) return;
    it->second.fetching = false;
    it->second.changedWhileFetching.clear();
    if (it->second.spoiled) end(it, held);
  }
  giveBack(std::move(held));
}

std::optional<msg::Entry> ListedDirs::take(msg::NodeId dir, std::string_view name) {
  std::vector<msg::op::ForgetItem> held;
  std::optional<msg::Entry> taken;
  {
    std::lock_guard lock(mutex_);
    auto it = dirs_.find(dir);
    if (it == dirs_.end() || it->second.fetching) return taken;
    if (Clock::now() >= it->second.expires) {
      end(it, held);
    } else if (auto e = it->second.entries.find(std::string(name)); e != it->second.entries.end()) {
      taken = e->second;
      --held_;  // the caller's now
      unindex(it->second, e->second.node, e->first);
      it->second.entries.erase(e);
    }
  }
  giveBack(std::move(held));
  return taken;
}

void ListedDirs::nameChanged(msg::NodeId dir) {
  std::vector<msg::op::ForgetItem> held;
  {
    std::lock_guard lock(mutex_);
    if (auto it = dirs_.find(dir); it != dirs_.end()) end(it, held);
  }
  giveBack(std::move(held));
}

void ListedDirs::nodeChanged(msg::NodeId node) {
  std::vector<msg::op::ForgetItem> held;
  {
    std::lock_guard lock(mutex_);
    if (auto it = dirs_.find(node); it != dirs_.end()) end(it, held);
    for (auto& [id, d] : dirs_) dropNamesOf(d, node, held);
  }
  giveBack(std::move(held));
}

void ListedDirs::attrsSeen(msg::NodeId node) {
  std::vector<msg::op::ForgetItem> held;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, d] : dirs_) dropNamesOf(d, node, held);
  }
  giveBack(std::move(held));
}

void ListedDirs::dropNamesOf(Dir& dir, msg::NodeId node, std::vector<msg::op::ForgetItem>& held) {
  if (dir.fetching) {
    if (dir.changedWhileFetching.size() >= kMaxChangedWhileFetching) {
      dir.spoiled = true;
    } else {
      dir.changedWhileFetching.insert(node);
    }
  }
  for (auto n = dir.namesOf.find(node); n != dir.namesOf.end(); n = dir.namesOf.find(node)) {
    auto e = dir.entries.find(n->second);
    if (e == dir.entries.end()) {
      dir.namesOf.erase(n);  // never so: both maps change together
    } else {
      dropEntry(dir, e, held);
    }
  }
}

std::size_t ListedDirs::heldLookups() const {
  std::lock_guard lock(mutex_);
  return held_;
}

}  // namespace enclavefs::enclave
