#include "host-server/change_watch.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <string>

#include "common/log.h"

namespace enclavefs::host {
namespace {

constexpr std::uint32_t kWatchedEvents = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO |
                                         IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE |
                                         IN_DELETE_SELF | IN_MOVE_SELF | IN_EXCL_UNLINK;
constexpr std::uint32_t kEntryEvents = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO;
constexpr std::uint32_t kContentEvents = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE;

std::string procPathOf(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

}  // namespace

ChangeWatch::ChangeWatch(Ring& ring)
    : ring_(ring), inotify_(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
  if (!inotify_) {
    int error = errno;  // before logging can change it
    logger("hostd")->warn("inotify unavailable ({}): clients only see host changes when their "
                          "caches expire", std::strerror(error));
    return;
  }
  reader_.arm();
}

void ChangeWatch::watch(const std::shared_ptr<ChangeListener>& listener, std::uint64_t sessionId,
                        const Node& node) {
  if (!inotify_) return;
  int wd = ::inotify_add_watch(inotify_.get(), procPathOf(node.fd.get()).c_str(), kWatchedEvents);
  if (wd < 0) {
    int error = errno;
    if (!warnedNoWatch_) {
      logger("hostd")->warn("cannot watch more directories ({}); raise "
                            "fs.inotify.max_user_watches for prompt coherence",
                            std::strerror(error));
      warnedNoWatch_ = true;
    }
    return;
  }
  byWatch_[wd].push_back({listener, sessionId, node.id, node.fd.get()});
  watchOf_[{sessionId, node.id}] = wd;
}

void ChangeWatch::unwatch(std::uint64_t sessionId, msg::NodeId node) {
  auto it = watchOf_.find({sessionId, node});
  if (it == watchOf_.end()) return;
  int wd = it->second;
  watchOf_.erase(it);
  auto& watchers = byWatch_[wd];
  std::erase_if(watchers, [&](const Watcher& w) { return w.sessionId == sessionId && w.node == node; });
  if (watchers.empty()) {
    byWatch_.erase(wd);
    ::inotify_rm_watch(inotify_.get(), wd);
  }
}

void ChangeWatch::unwatchSession(std::uint64_t sessionId) {
  std::vector<msg::NodeId> nodes;
  for (auto it = watchOf_.lower_bound({sessionId, 0});
       it != watchOf_.end() && it->first.first == sessionId; ++it) {
    nodes.push_back(it->first.second);
  }
  for (msg::NodeId node : nodes) unwatch(sessionId, node);
}

void ChangeWatch::Reader::arm() {
  ++watch_.reads_;
  io_uring_prep_read(watch_.ring_.prepare(this), watch_.inotify_.get(), buffer_, sizeof buffer_, 0);
}

void ChangeWatch::Reader::complete(int result) {
  if (result > 0) {
    watch_.dispatch(buffer_, static_cast<std::size_t>(result));
    watch_.pause_.arm();
  } else if (result == 0 || result == -EAGAIN || result == -EINTR) {
    arm();
  } else {
    logger("hostd")->error("reading inotify events failed: {}", std::strerror(-result));
  }
}

void ChangeWatch::Pause::arm() {
  io_uring_prep_timeout(watch_.ring_.prepare(this), &wait_, 0, 0);
}

void ChangeWatch::Pause::complete(int) { watch_.reader_.arm(); }

std::uint64_t ChangeWatch::expect(std::uint64_t sessionId, msg::NodeId dir, const std::string& name,
                                  std::uint32_t event) {
  if (!inotify_ || ownChanges_.size() >= kMaxOwnChanges) return 0;
  const std::uint64_t ticket = nextTicket_++;
  ownChanges_.push_back({ticket, sessionId, dir, name, event});
  return ticket;
}

void ChangeWatch::done(std::uint64_t ticket, bool succeeded) {
  auto it = std::find_if(ownChanges_.begin(), ownChanges_.end(),
                         [ticket](const OwnChange& c) { return c.ticket == ticket; });
  if (it == ownChanges_.end()) return;
  if (succeeded && !it->matched) {
    it->running = false;
    it->read = reads_;
    return;
  }
  const OwnChange change = std::move(*it);
  ownChanges_.erase(it);
  if (succeeded) return;
  if (!change.matched) return;
  // The call failed: the event held back for it was another's, and the session must hear it.
  auto watch = watchOf_.find({change.sessionId, change.dir});
  if (watch == watchOf_.end()) return;
  auto watchers = byWatch_.find(watch->second);
  if (watchers == byWatch_.end()) return;
  for (const Watcher& w : watchers->second) {
    auto listener = w.listener.lock();
    if (w.sessionId != change.sessionId || !listener) continue;
    listener->noteChangedNode(w.node);
    listener->noteChangedEntry(w.node, change.name);
    listener->pushChanges();
  }
}

bool ChangeWatch::ownChange(std::uint64_t sessionId, msg::NodeId dir, const std::string& name,
                            std::uint32_t mask) {
  auto it = std::find_if(ownChanges_.begin(), ownChanges_.end(), [&](const OwnChange& c) {
    return c.sessionId == sessionId && c.dir == dir && (mask & c.event) != 0 && !c.matched &&
           c.name == name;
  });
  if (it == ownChanges_.end()) return false;
  if (it->running) {
    it->matched = true;
  } else {
    ownChanges_.erase(it);
  }
  return true;
}

void ChangeWatch::dispatch(const char* events, std::size_t bytes) {
  std::set<std::shared_ptr<ChangeListener>> touched;
  for (std::size_t at = 0; at < bytes;) {
    const auto* event = reinterpret_cast<const inotify_event*>(events + at);
    at += sizeof(inotify_event) + event->len;
    if (event->mask & IN_Q_OVERFLOW) {
      overflowed();
      continue;
    }
    auto it = byWatch_.find(event->wd);
    if (it == byWatch_.end()) continue;
    const std::string name = event->len > 0 ? std::string(event->name) : std::string();
    // Which inode a content change is about, once for every session that holds it.
    std::optional<std::pair<std::uint64_t, std::uint64_t>> child;
    if (!name.empty() && (event->mask & kContentEvents) && !it->second.empty()) {
      struct stat st;
      if (::fstatat(it->second.front().fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        child = {st.st_dev, st.st_ino};
      }
    }
    for (const Watcher& w : it->second) {
      auto listener = w.listener.lock();
      if (!listener) continue;
      if (!ownChanges_.empty() && !name.empty() && (event->mask & (IN_CREATE | IN_DELETE)) &&
          ownChange(w.sessionId, w.node, name, event->mask)) {
        continue;
      }
      if (name.empty() || (event->mask & kEntryEvents)) listener->noteChangedNode(w.node);
      if (!name.empty() && (event->mask & kEntryEvents)) listener->noteChangedEntry(w.node, name);
      if (child) listener->noteChangedInode(child->first, child->second);
      touched.insert(listener);
    }
    if (event->mask & IN_IGNORED) {
      for (const Watcher& w : it->second) watchOf_.erase({w.sessionId, w.node});
      byWatch_.erase(it);
    }
  }
  // This batch came from read number reads_. A change that ended before that read was
  // armed had its event in it, or in an earlier one: it is over. One that ended while the
  // read was armed may have missed it, and waits for the next.
  std::erase_if(ownChanges_, [this](const OwnChange& c) { return !c.running && c.read < reads_; });
  for (const auto& listener : touched) listener->pushChanges();
}

void ChangeWatch::overflowed() {
  logger("hostd")->warn("inotify queue overflowed: telling every client to drop its caches");
  std::set<std::shared_ptr<ChangeListener>> listeners;
  for (auto& [wd, watchers] : byWatch_) {
    for (const Watcher& w : watchers) {
      if (auto l = w.listener.lock()) listeners.insert(l);
    }
  }
  for (const auto& listener : listeners) {
    listener->noteEverythingChanged();
    listener->pushChanges();
  }
}

}  // namespace enclavefs::host
