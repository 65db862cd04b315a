// The nodes the kernel holds, as the enclave has been told of them: each node's file type
// and lookup count. A host that later claims a known node is of another type is lying (or
// confused), and the reply is refused. Used from FUSE workers and the receiver thread.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "common/messages.h"
#include "enclave-fs/reply_check.h"

namespace enclavefs::enclave {

class NodeRegistry {
 public:
  void addRoot(std::uint32_t type);
  // Counts one kernel reference to the entry's node, after checking it agrees with what we
  // know of the node.
  Check learn(const msg::Entry& entry);
  // Checks attributes of a node the kernel already holds.
  Check agrees(msg::NodeId node, const msg::Attr& attr) const;
  void forget(msg::NodeId node, std::uint64_t count);
  std::optional<std::uint32_t> typeOf(msg::NodeId node) const;
  // Marks a node on which some process of this enclave asked for a POSIX or OFD lock; the
  // mark stays until the kernel forgets the node.
  void noteLockUse(msg::NodeId node);
  // Whether the host may hold record locks of this enclave on the node: false only for a
  // known node that was never marked.
  bool mayHoldLocks(msg::NodeId node) const;
  std::size_t size() const;

 private:
  struct Known {
    std::uint32_t type;
    std::uint64_t lookups;
    bool lockUsed = false;
  };
  mutable std::mutex mutex_;
  std::unordered_map<msg::NodeId, Known> nodes_;
};

}  // namespace enclavefs::enclave
