#include "enclave-fs/dir_attr_cache.h"

namespace enclavefs::enclave {

DirAttrCache::DirAttrCache(std::chrono::duration<double> lifetime)
    : lifetime_(std::chrono::duration_cast<Clock::duration>(lifetime)) {}

void DirAttrCache::store(msg::NodeId dir, const msg::Attr& attr) {
  std::lock_guard lock(mutex_);
  copies_[dir] = Copy{attr, Clock::now() + lifetime_};
}

void DirAttrCache::drop(msg::NodeId dir) {
  std::lock_guard lock(mutex_);
  copies_.erase(dir);
}

void DirAttrCache::clear() {
  std::lock_guard lock(mutex_);
  copies_.clear();
}

std::optional<msg::Attr> DirAttrCache::find(msg::NodeId dir) const {
  std::lock_guard lock(mutex_);
  auto it = copies_.find(dir);
  if (it == copies_.end() || Clock::now() >= it->second.expires) return std::nullopt;
  return it->second.attr;
}

}  // namespace enclavefs::enclave
