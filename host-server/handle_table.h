// A connection's open files and directories, keyed by handle numbers drawn from a counter.
// Shared ownership keeps a descriptor open while an operation on it is in flight, so a
// (hostile) release cannot close it under a read and let the number be reused.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>

#include "common/messages.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "host-server/node_table.h"

namespace enclavefs::host {

struct OpenFile {
  UniqueFd fd;
  NodeRef node;
  bool directory = false;
};

using OpenFileRef = std::shared_ptr<OpenFile>;

class HandleTable {
 public:
  explicit HandleTable(std::size_t limit) : limit_(limit) {}

  // EMFILE when the connection has as many handles open as it may.
  Result<msg::HandleId> add(OpenFileRef file);
  OpenFileRef find(msg::HandleId id) const;
  OpenFileRef remove(msg::HandleId id);
  std::size_t size() const { return files_.size(); }

 private:
  std::size_t limit_;
  msg::HandleId next_ = 1;
  std::unordered_map<msg::HandleId, OpenFileRef> files_;
};

}  // namespace enclavefs::host
