#include "host-server/node_table.h"

#include <sys/sysmacros.h>

#include <cerrno>

namespace enclavefs::host {

void NodeTable::setRoot(UniqueFd fd, std::uint32_t type) {
  auto root = std::make_shared<Node>();
  root->id = msg::kRootNode;
  root->fd = std::move(fd);
  root->type = type;
  root->lookups = 1;
  byId_[msg::kRootNode] = std::move(root);
}

NodeRef NodeTable::find(msg::NodeId id) const {
  auto it = byId_.find(id);
  return it == byId_.end() ? nullptr : it->second;
}

Result<NodeRef> NodeTable::adopt(UniqueFd fd, const struct statx& st) {
  auto key = std::pair<std::uint64_t, std::uint64_t>{makedev(st.stx_dev_major, st.stx_dev_minor),
                                                     st.stx_ino};
  if (auto it = byInode_.find(key); it != byInode_.end()) {
    // The inode cannot have been reused meanwhile: our O_PATH descriptor pins it.
    NodeRef& node = byId_.at(it->second);
    ++node->lookups;
    return node;
  }
  if (byId_.size() >= limit_) return Errno{ENFILE};
  auto node = std::make_shared<Node>();
  node->id = next_++;
  node->fd = std::move(fd);
  node->type = st.stx_mode & S_IFMT;
  node->lookups = 1;
  byInode_.emplace(key, node->id);
  inodeOf_.emplace(node->id, key);
  byId_.emplace(node->id, node);
  if (node->type == S_IFDIR && observer_.directoryAdded) observer_.directoryAdded(*node);
  return node;
}

void NodeTable::forget(msg::NodeId id, std::uint64_t count) {
  if (id == msg::kRootNode) return;
  auto it = byId_.find(id);
  if (it == byId_.end()) return;
  Node& node = *it->second;
  node.lookups -= std::min(count, node.lookups);
  if (node.lookups > 0) return;
  if (observer_.removed) observer_.removed(node);
  auto key = inodeOf_.find(id);
  byInode_.erase(key->second);
  inodeOf_.erase(key);
  byId_.erase(it);
}

msg::NodeId NodeTable::findByInode(std::uint64_t dev, std::uint64_t ino) const {
  auto it = byInode_.find({dev, ino});
  return it == byInode_.end() ? 0 : it->second;
}

std::vector<msg::NodeId> NodeTable::ids() const {
  std::vector<msg::NodeId> out;
  out.reserve(byId_.size());
  for (const auto& [id, node] : byId_) out.push_back(id);
  return out;
}

std::size_t NodeTable::lockOwners() const {
  std::size_t owners = 0;
  for (const auto& [id, node] : byId_) owners += node->lockFds.size();
  return owners;
}

}  // namespace enclavefs::host
