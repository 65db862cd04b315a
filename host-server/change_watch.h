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
#include <deque>
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

  // Own changes. A client learns of a name it made or removed itself from the reply (its
  // kernel drops or adds the entry, and the reply carries the directory's new attributes),
  // so the inotify event of that change is not pushed back to it; other clients get it.
  //
  // batches() is read before the change's system call, and the change is told after it
  // succeeded, with the count read. If no batch was dispatched in between, the event is
  // known not to be dispatched yet (events are dispatched on the loop thread, as changes are
  // made). If batches were (the system call ran on the ring meanwhile), the create and
  // delete events of the last few batches tell whether one of them carried it (it was then
  // pushed back, harmlessly); if none did, it is still to come. It is then in the first
  // batch read by a read armed after the change (or earlier), unless that batch ended short
  // of it (the event is then pushed, as any other); until that batch, an own change is kept,
  // and after it, forgotten. So an own change can only hide the first event of its kind for
  // its name that follows it: if that was another's (a name removed, made again, and
  // removed by us), the making in between still reaches the client, and so does our
  // removal, which then matches nothing.
  std::uint64_t batches() const { return batches_; }
  // `event` is IN_CREATE or IN_DELETE, of `name` in directory `dir` (the session's node).
  void madeBy(std::uint64_t sessionId, std::uint64_t batchesBefore, msg::NodeId dir,
              const std::string& name, std::uint32_t event);

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

  struct OwnChange {
    std::uint64_t sessionId;
    msg::NodeId dir;
    std::string name;
    std::uint32_t event;
    std::uint64_t read;  // reads_ when it was told
  };
  // Own changes whose events are still to come; more are not held (their events are pushed).
  static constexpr std::size_t kMaxOwnChanges = 4096;

  // A create or delete event of a recent batch.
  struct RecentEvent {
    std::uint64_t batch;
    int wd;
    std::uint32_t mask;
    std::string name;
  };
  // Events of this many batches are kept, and at most kMaxRecentEvents of them.
  static constexpr std::uint64_t kRecentBatches = 4;
  static constexpr std::size_t kMaxRecentEvents = 4096;

  void dispatch(const char* events, std::size_t bytes);
  // Whether the event is an own change of the watching session; takes the change if so.
  bool takeOwnChange(std::vector<OwnChange>& own, std::uint64_t sessionId, msg::NodeId dir,
                     const std::string& name, std::uint32_t mask);
  void overflowed();
  // Whether the event of an own change whose system call crossed the batches after
  // `batchesBefore` is still to come: none of them carried it, and all are remembered.
  bool stillToCome(std::uint64_t sessionId, std::uint64_t batchesBefore, msg::NodeId dir,
                   const std::string& name, std::uint32_t event) const;
  void remember(const inotify_event& event);

  Ring& ring_;
  UniqueFd inotify_;
  Reader reader_{*this};
  Pause pause_{*this};
  std::unordered_map<int, std::vector<Watcher>> byWatch_;
  std::map<std::pair<std::uint64_t, msg::NodeId>, int> watchOf_;
  std::vector<OwnChange> ownChanges_;
  std::uint64_t batches_ = 0;
  std::uint64_t reads_ = 0;  // inotify reads armed so far
  std::deque<RecentEvent> recent_;
  std::uint64_t recentFrom_ = 1;  // recent_ holds every event of the batches from this one on
  bool warnedNoWatch_ = false;
};

}  // namespace enclavefs::host
