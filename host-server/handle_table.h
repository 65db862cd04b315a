// A connection's open files and directories, keyed by handle numbers drawn from a counter.
// Shared ownership keeps a descriptor open while an operation on it is in flight, so a
// (hostile) release cannot close it under a read and let the number be reused.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include "common/messages.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "host-server/access.h"
#include "host-server/node_table.h"

namespace enclavefs::host {

struct OpenFile {
  UniqueFd fd;
  NodeRef node;
  bool directory = false;
  // A directory the client lists of its own accord (Request.noAtime): its entries take
  // nodes only from the first half of the node table, so that they never crowd out the
  // client's own lookups.
  bool speculative = false;
  // Lock owners that took locks through this handle: an OFD lock owner's locks end with it.
  std::unordered_set<std::uint64_t> lockOwners;
};

using OpenFileRef = std::shared_ptr<OpenFile>;

class HandleTable {
 public:
  explicit HandleTable(std::size_t limit) : limit_(limit) {}
  HandleTable(const HandleTable&) = delete;
  HandleTable& operator=(const HandleTable&) = delete;
  ~HandleTable();

  // Also counts this connection's handles against what its peer may hold of the export.
  void shareWithPeer(std::shared_ptr<PeerUsage> usage, std::size_t peerLimit);

  // EMFILE when the connection, or its peer, has as many handles open as it may.
  Result<msg::HandleId> add(OpenFileRef file);
  OpenFileRef find(msg::HandleId id) const;
  OpenFileRef remove(msg::HandleId id);
  std::size_t size() const { return files_.size(); }

 private:
  std::size_t limit_;
  std::shared_ptr<PeerUsage> peerUsage_;
  std::size_t peerLimit_ = 0;
  msg::HandleId next_ = 1;
  std::unordered_map<msg::HandleId, OpenFileRef> files_;
};

}  // namespace enclavefs::host
