// Writes the mount answered before the host did (write-behind, docs/consistency.md).
//
// A write() returns once its request is on the socket; the host runs it before any request
// sent after it (msg::kFeatureOrderedWrites). What is left to the enclave is the write's
// outcome: this table counts, per node, the writes whose answers have not arrived, and keeps
// the first error one of them met until a close (flush) or fsync of the node reports it.
// Used from FUSE workers and the receiver thread.
#pragma once

#include <cstdint>
#include <deque>
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
  // Runs `then` once every write of `node` started before this call is answered (at once if
  // none is unanswered), with the first error a write of the node met since the last report,
  // or 0; the error is then forgotten. Writes started later do not hold it back.
  void whenSettled(msg::NodeId node, Settled then);
  // The node's unreported error, or 0; forgotten once taken.
  int takeError(msg::NodeId node);

 private:
  struct Waiter {
    std::uint64_t until;  // settled once `finished` reaches this
    Settled then;
  };
  struct Node {
    std::uint64_t started = 0;
    std::uint64_t finished = 0;
    int error = 0;
    std::deque<Waiter> waiting;  // in the order of `until`
  };
  std::mutex mutex_;
  std::unordered_map<msg::NodeId, Node> nodes_;  // only nodes with something to keep
};

}  // namespace enclavefs::enclave
