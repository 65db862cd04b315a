#include "host-server/handle_table.h"

#include <cerrno>

namespace enclavefs::host {

HandleTable::~HandleTable() {
  if (peerUsage_) peerUsage_->handles -= files_.size();
}

void HandleTable::shareWithPeer(std::shared_ptr<PeerUsage> usage, std::size_t peerLimit) {
  peerUsage_ = std::move(usage);
  peerLimit_ = peerLimit;
  peerUsage_->handles += files_.size();
}

Result<msg::HandleId> HandleTable::add(OpenFileRef file) {
  if (files_.size() >= limit_) return Errno{EMFILE};
  if (peerUsage_ && peerUsage_->handles >= peerLimit_) return Errno{EMFILE};
  msg::HandleId id = next_++;
  files_.emplace(id, std::move(file));
  if (peerUsage_) ++peerUsage_->handles;
  return id;
}

OpenFileRef HandleTable::find(msg::HandleId id) const {
  auto it = files_.find(id);
  return it == files_.end() ? nullptr : it->second;
}

OpenFileRef HandleTable::remove(msg::HandleId id) {
  auto it = files_.find(id);
  if (it == files_.end()) return nullptr;
  OpenFileRef file = std::move(it->second);
  files_.erase(it);
  if (peerUsage_) --peerUsage_->handles;
  return file;
}

}  // namespace enclavefs::host
