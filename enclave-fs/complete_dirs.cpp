#include "enclave-fs/complete_dirs.h"

namespace enclavefs::enclave {

CompleteDirs::CompleteDirs(std::chrono::duration<double> lifetime, GiveBack giveBack)
    : lifetime_(std::chrono::duration_cast<Clock::duration>(lifetime)),
      giveBack_(std::move(giveBack)) {}

void CompleteDirs::end(Dirs::iterator it, std::vector<msg::op::ForgetItem>& held) const {
  if (it->second.heldLookups > 0) held.push_back({it->first, it->second.heldLookups});
  names_ -= it->second.maybePresent.size();
  dirs_.erase(it);
}

void CompleteDirs::endAll(std::vector<msg::op::ForgetItem>& held) const {
  while (!dirs_.empty()) end(dirs_.begin(), held);
}

void CompleteDirs::giveBack(std::vector<msg::op::ForgetItem> held) const {
  if (!held.empty()) giveBack_(std::move(held));
}

void CompleteDirs::sweep(Clock::time_point now, std::vector<msg::op::ForgetItem>& held) {
  if (now < nextSweep_) return;
  nextSweep_ = now + std::chrono::seconds(1);
  for (auto it = dirs_.begin(); it != dirs_.end();) {
    auto next = std::next(it);
    if (now >= it->second.expires) end(it, held);
    it = next;
  }
}

void CompleteDirs::madeEmpty(msg::NodeId dir) {
  std::vector<msg::op::ForgetItem> held;
  {
    std::lock_guard lock(mutex_);
    sweep(Clock::now(), held);
    if (dirs_.size() >= kMaxDirs && !dirs_.contains(dir)) endAll(held);
    Dir& d = dirs_[dir];
    d.expires = Clock::now() + lifetime_;
    names_ -= d.maybePresent.size();
    d.maybePresent.clear();
  }
  giveBack(std::move(held));
}

void CompleteDirs::mayBePresent(msg::NodeId dir, std::string_view name) {
  std::vector<msg::op::ForgetItem> held;
  {
    std::lock_guard lock(mutex_);
    auto it = dirs_.find(dir);
    if (it == dirs_.end()) return;
    if (Clock::now() >= it->second.expires) {
      end(it, held);
    } else if (names_ >= kMaxNames) {
      endAll(held);
    } else if (it->second.maybePresent.emplace(name).second) {
      ++names_;
    }
  }
  giveBack(std::move(held));
}

bool CompleteDirs::holdLookups(msg::NodeId dir, std::uint64_t count) {
  std::vector<msg::op::ForgetItem> held;
  bool holding = false;
  {
    std::lock_guard lock(mutex_);
    const auto now = Clock::now();
    sweep(now, held);
    auto it = dirs_.find(dir);
    if (it != dirs_.end() && now < it->second.expires) {
      it->second.heldLookups += count;
      holding = true;
    }
  }
  giveBack(std::move(held));
  return holding;
}

void CompleteDirs::changed(const msg::Notify& notify) {
  std::unordered_set<msg::NodeId> namedIn;
  for (const auto& e : notify.entries) {
    namedIn.insert(e.parent);
    mayBePresent(e.parent, e.name);
  }
  std::vector<msg::op::ForgetItem> held;
  {
    std::lock_guard lock(mutex_);
    for (msg::NodeId node : notify.inodes) {
      auto it = dirs_.find(node);
      if (it != dirs_.end() && !namedIn.contains(node)) end(it, held);
    }
  }
  giveBack(std::move(held));
}

bool CompleteDirs::surelyAbsent(msg::NodeId dir, std::string_view name) const {
  std::vector<msg::op::ForgetItem> held;
  bool absent = false;
  {
    std::lock_guard lock(mutex_);
    auto it = dirs_.find(dir);
    if (it == dirs_.end()) return false;
    if (Clock::now() >= it->second.expires) {
      end(it, held);
    } else {
      absent = !it->second.maybePresent.contains(std::string(name));
    }
  }
  giveBack(std::move(held));
  return absent;
}

}  // namespace enclavefs::enclave
