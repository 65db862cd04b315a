// A connection's inodes: node numbers drawn from a counter, each holding an O_PATH
// descriptor of the host file, and counted the way the FUSE kernel module counts lookups.
// A node is shared_ptr-owned so that an operation in flight keeps its descriptor even if a
// (hostile) forget removes the node from the table meanwhile.
#pragma once

#include <sys/stat.h>
#include <linux/stat.h>

#include <cstdint>
#include <functional>
#include <map>
#include <vector>
#include <memory>
#include <unordered_map>
#include <utility>

#include "common/messages.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace enclavefs::host {

struct Node {
  msg::NodeId id = 0;
  UniqueFd fd;  // O_PATH | O_NOFOLLOW
  std::uint32_t type = 0;  // S_IFMT bits
  std::uint64_t lookups = 0;
  // One open file description per enclave lock owner, carrying that owner's byte-range
  // locks as OFD locks (ops_lock.cpp); closing it drops them.
  // Shared so that a wait in progress keeps its description even if a flush drops the owner.
  std::unordered_map<std::uint64_t, std::shared_ptr<UniqueFd>> lockFds;
};

using NodeRef = std::shared_ptr<Node>;

class NodeTable {
 public:
  explicit NodeTable(std::size_t limit) : limit_(limit) {}

  // Told when a directory node is made and when any node is removed (change watching).
  struct Observer {
    std::function<void(const Node&)> directoryAdded;
    std::function<void(const Node&)> removed;
  };
  void observe(Observer observer) { observer_ = std::move(observer); }

  // Installs the export root as node 1 (never forgotten).
  void setRoot(UniqueFd fd, std::uint32_t type);

  NodeRef find(msg::NodeId id) const;

  // Finds the node for this host inode or makes one from `fd`, and counts one lookup.
  // ENFILE when the connection holds as many nodes as it may.
  Result<NodeRef> adopt(UniqueFd fd, const struct statx& st);

  void forget(msg::NodeId id, std::uint64_t count);

  // The node of a host inode, or 0 if this connection holds none.
  msg::NodeId findByInode(std::uint64_t dev, std::uint64_t ino) const;
  std::vector<msg::NodeId> ids() const;

  std::size_t size() const { return byId_.size(); }
  // Lock owners holding byte-range locks on this connection's nodes.
  std::size_t lockOwners() const;
  // No new node fits: an operation that would make one must fail before it changes anything.
  bool full() const { return byId_.size() >= limit_; }
  // At least half the nodes this connection may hold are in use: what a client asks for on
  // speculation (a listing it made of its own accord) gets no more of them.
  bool halfFull() const { return byId_.size() >= limit_ / 2; }

 private:
  std::size_t limit_;
  Observer observer_;
  msg::NodeId next_ = msg::kRootNode + 1;
  std::unordered_map<msg::NodeId, NodeRef> byId_;
  std::map<std::pair<std::uint64_t, std::uint64_t>, msg::NodeId> byInode_;  // (dev, ino)
  std::unordered_map<msg::NodeId, std::pair<std::uint64_t, std::uint64_t>> inodeOf_;
};

}  // namespace enclavefs::host
