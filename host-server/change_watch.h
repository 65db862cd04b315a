// Coherence: watches, with inotify, every host directory a client holds (and a single-file
// export's file), and tells the client's session what changed there, whoever changed it —
// another enclave or a host process. The session pushes that to its enclave as a notify
// frame, and the enclave's kernel drops the cached entries, attributes and data, so enclaves
// can cache with long timeouts and still see a change within milliseconds.
//
// One inotify instance serves the whole server; the kernel gives one watch per inode, shared
// by every session that holds it. Events are read through the ring. Loop thread only.
#pragma once

#include <sys/inotify.h>

#include <cstdint>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

#include "common/messages.h"
#include "common/unique_fd.h"
#include "host-server/node_table.h"
#include "host-server/uring.h"

namespace enclavefs::host {

class Session;

class ChangeWatch {
 public:
  explicit ChangeWatch(Ring& ring);
  ChangeWatch(const ChangeWatch&) = delete;
  ChangeWatch& operator=(const ChangeWatch&) = delete;

  bool available() const { return inotify_.valid(); }

  // Starts telling `session` about changes in `node` (a directory, or a file export's root).
  void watch(const std::shared_ptr<Session>& session, const Node& node);
  void unwatch(std::uint64_t sessionId, msg::NodeId node);
  // Stops every watch of a session that is ending.
  void unwatchSession(std::uint64_t sessionId);

 private:
  class Reader : public Completion {
   public:
    explicit Reader(ChangeWatch& watch) : watch_(watch) {}
    void arm();
    void complete(int result) override;

   private:
    ChangeWatch& watch_;
    alignas(inotify_event) char buffer_[64 * 1024];
  };

  // After a batch of events, the next read waits kBatchWindow, so the changes of a busy
  // moment (a create is three events) reach each client as one notification rather than one
  // per event: fewer frames and wake-ups in the enclave. A change after a quiet spell is
  // read at once.
  static constexpr long kBatchWindowNs = 1'000'000;
  class Pause : public Completion {
   public:
    explicit Pause(ChangeWatch& watch) : watch_(watch) {}
    void arm();
    void complete(int result) override;

   private:
    ChangeWatch& watch_;
    __kernel_timespec wait_{0, kBatchWindowNs};
  };

  struct Watcher {
    std::weak_ptr<Session> session;
    std::uint64_t sessionId;
    msg::NodeId node;
    int fd;  // the node's O_PATH descriptor, valid while the node is watched
  };

  void dispatch(const char* events, std::size_t bytes);
  void overflowed();

  Ring& ring_;
  UniqueFd inotify_;
  Reader reader_{*this};
  Pause pause_{*this};
  std::unordered_map<int, std::vector<Watcher>> byWatch_;
  std::map<std::pair<std::uint64_t, msg::NodeId>, int> watchOf_;
  bool warnedNoWatch_ = false;
};

}  // namespace enclavefs::host
