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
#include <string>
#include <unordered_map>
#include <vector>

#include "common/messages.h"
#include "common/unique_fd.h"
#include "host-server/node_table.h"
#include "host-server/uring.h"

namespace enclavefs::host {

// Who hears of the changes in what a client holds: its session (session.h), which sends them
// to the client on pushChanges(). Loop thread only.
class ChangeListener {
 public:
  virtual void noteChangedNode(msg::NodeId node) = 0;
  virtual void noteChangedEntry(msg::NodeId parent, const std::string& name) = 0;
  virtual void noteChangedInode(std::uint64_t dev, std::uint64_t ino) = 0;
  virtual void noteEverythingChanged() = 0;
  virtual void pushChanges() = 0;

 protected:
  ~ChangeListener() = default;
};

class ChangeWatch {
 public:
  explicit ChangeWatch(Ring& ring);
  ChangeWatch(const ChangeWatch&) = delete;
  ChangeWatch& operator=(const ChangeWatch&) = delete;

  bool available() const { return inotify_.valid(); }

  // Starts telling session `sessionId`, through `listener`, about changes in `node` (a
  // directory, or a file export's root).
  void watch(const std::shared_ptr<ChangeListener>& listener, std::uint64_t sessionId,
             const Node& node);
  void unwatch(std::uint64_t sessionId, msg::NodeId node);
  // Stops every watch of a session that is ending.
  void unwatchSession(std::uint64_t sessionId);

  // Own changes. A client learns of a name it made or removed itself from the reply (its
  // kernel drops or adds the entry, and the reply carries the directory's new attributes),
  // so the inotify event of that change is not pushed back to it; other clients get it.
  //
  // The change is announced before its system call (expect) and settled after it (done),
  // so its event can be matched whenever it is read, even in a batch dispatched while the
  // call still runs on the ring. An event matched before the call ended is held back until
  // done() says whether the call succeeded: if it failed, the event was another's, and the
  // session is told of the name after all. A change that succeeded and was not matched yet
  // is kept until the batch of a read armed after the call (the read armed before may have
  // missed its event), and then forgotten: its event was pushed, as any other, if the batch
  // ended short of it. So an own change can only hide the first event of its kind for its
  // name that follows its start: if that was another's (a name removed, made again, and
  // removed by us), the making in between still reaches the client, and so does our
  // removal, which then matches nothing.
  //
  // `event` is IN_CREATE or IN_DELETE, of `name` in directory `dir` (the session's node).
  // Answers a ticket for done(); 0 (done() ignores it) when nothing is held.
  std::uint64_t expect(std::uint64_t sessionId, msg::NodeId dir, const std::string& name,
                       std::uint32_t event);
  void done(std::uint64_t ticket, bool succeeded);

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
    std::weak_ptr<ChangeListener> listener;
    std::uint64_t sessionId;
    msg::NodeId node;
    int fd;  // the node's O_PATH descriptor, valid while the node is watched
  };

  struct OwnChange {
    std::uint64_t ticket;
    std::uint64_t sessionId;
    msg::NodeId dir;
    std::string name;
    std::uint32_t event;
    bool running = true;     // its system call has not ended
    bool matched = false;    // an event was held back for it while it ran
    std::uint64_t read = 0;  // reads_ when its system call ended
  };
  // Own changes running, or whose events are still to come; more are not held (their
  // events are pushed).
  static constexpr std::size_t kMaxOwnChanges = 4096;

  void dispatch(const char* events, std::size_t bytes);
  // Whether the event is an own change of the watching session, which then holds it back.
  bool ownChange(std::uint64_t sessionId, msg::NodeId dir, const std::string& name,
                 std::uint32_t mask);
  void overflowed();

  Ring& ring_;
  UniqueFd inotify_;
  Reader reader_{*this};
  Pause pause_{*this};
  std::unordered_map<int, std::vector<Watcher>> byWatch_;
  std::map<std::pair<std::uint64_t, msg::NodeId>, int> watchOf_;
  std::vector<OwnChange> ownChanges_;
  std::uint64_t nextTicket_ = 1;
  std::uint64_t reads_ = 0;  // inotify reads armed so far
  bool warnedNoWatch_ = false;
};

}  // namespace enclavefs::host
