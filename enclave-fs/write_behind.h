// Writes the mount answered before the host did (write-behind, docs/consistency.md).
//
// A write() returns once its request is on the socket; the host runs it before any request
// sent after it (msg::kFeatureOrderedWrites). What is left to the enclave is the write's
// outcome: this table counts, per node, the writes whose answers have not arrived, and keeps
// the first error one of them met until a close (flush) or fsync of the node reports it.
// Used from FUSE workers and the receiver thread.
#pragma once

#include <functional>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "common/messages.h"

namespace enclavefs::enclave {

class WriteBehind {
 public:
  using Settled = std::function<void(int error)>;

  void started(msg::NodeId node);
  // A write's answer arrived; `error` is 0 or the errno it met. Runs the waiting callbacks
  // when it was the node's last unanswered write.
  void finished(msg::NodeId node, int error);
  // Runs `then` once no write of `node` is unanswered (at once if none is), with the first
  // error a write of the node met since the last report, or 0; the error is then forgotten.
  void whenSettled(msg::NodeId node, Settled then);
  // The node's unreported error, or 0; forgotten once taken.
  int takeError(msg::NodeId node);

 private:
  struct Node {
    unsigned unanswered = 0;
    int error = 0;
    std::vector<Settled> waiting;
  };
  std::mutex mutex_;
  std::unordered_map<msg::NodeId, Node> nodes_;  // only nodes with something to keep
};

}  // namespace enclavefs::enclave
