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
#include "host-server/session.h"

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

void ChangeWatch::watch(const std::shared_ptr<Session>& session, const Node& node) {
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
  byWatch_[wd].push_back({session, session->id(), node.id, node.fd.get()});
  watchOf_[{session->id(), node.id}] = wd;
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

void ChangeWatch::madeBy(std::uint64_t sessionId, std::uint64_t batchesBefore, msg::NodeId dir,
                         const std::string& name, std::uint32_t event) {
  if (!inotify_ || ownChanges_.size() >= kMaxOwnChanges) return;
  if (batchesBefore != batches_ && !stillToCome(sessionId, batchesBefore, dir, name, event)) {
    return;
  }
  ownChanges_.push_back({sessionId, dir, name, event, reads_});
}

bool ChangeWatch::stillToCome(std::uint64_t sessionId, std::uint64_t batchesBefore,
                              msg::NodeId dir, const std::string& name,
                              std::uint32_t event) const {
  if (batchesBefore + 1 < recentFrom_) return false;
  auto watch = watchOf_.find({sessionId, dir});
  if (watch == watchOf_.end()) return false;
  return std::none_of(recent_.begin(), recent_.end(), [&](const RecentEvent& e) {
    return e.batch > batchesBefore && e.wd == watch->second && (e.mask & event) != 0 &&
           e.name == name;
  });
}

void ChangeWatch::remember(const inotify_event& event) {
  if (recent_.size() >= kMaxRecentEvents) {
    recentFrom_ = recent_.front().batch + 1;
    recent_.pop_front();
  }
  recent_.push_back({batches_, event.wd, event.mask, std::string(event.name)});
}

bool ChangeWatch::takeOwnChange(std::vector<OwnChange>& own, std::uint64_t sessionId,
                                msg::NodeId dir, const std::string& name, std::uint32_t mask) {
  auto it = std::find_if(own.begin(), own.end(), [&](const OwnChange& c) {
    return c.sessionId == sessionId && c.dir == dir && (mask & c.event) != 0 && c.name == name;
  });
  if (it == own.end()) return false;
  own.erase(it);
  return true;
}

void ChangeWatch::dispatch(const char* events, std::size_t bytes) {
  ++batches_;
  if (batches_ > kRecentBatches) recentFrom_ = std::max(recentFrom_, batches_ - kRecentBatches + 1);
  while (!recent_.empty() && recent_.front().batch < recentFrom_) recent_.pop_front();
  // This batch comes from read number reads_.
  std::vector<OwnChange> own;
  own.swap(ownChanges_);
  std::set<std::shared_ptr<Session>> touched;
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
    if (!name.empty() && (event->mask & (IN_CREATE | IN_DELETE))) remember(*event);
    // Which inode a content change is about, once for every session that holds it.
    std::optional<std::pair<std::uint64_t, std::uint64_t>> child;
    if (!name.empty() && (event->mask & kContentEvents) && !it->second.empty()) {
      struct stat st;
      if (::fstatat(it->second.front().fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
        child = {st.st_dev, st.st_ino};
      }
    }
    for (const Watcher& w : it->second) {
      auto session = w.session.lock();
      if (!session) continue;
      if (!own.empty() && !name.empty() && (event->mask & (IN_CREATE | IN_DELETE)) &&
          takeOwnChange(own, w.sessionId, w.node, name, event->mask)) {
        continue;
      }
      if (name.empty() || (event->mask & kEntryEvents)) session->noteChangedNode(w.node);
      if (!name.empty() && (event->mask & kEntryEvents)) session->noteChangedEntry(w.node, name);
      if (child) session->noteChangedInode(child->first, child->second);
      touched.insert(session);
    }
    if (event->mask & IN_IGNORED) {
      for (const Watcher& w : it->second) watchOf_.erase({w.sessionId, w.node});
      byWatch_.erase(it);
    }
  }
  // What this read was armed too early to be sure to hold waits for the next one.
  for (OwnChange& change : own) {
    if (change.read == reads_) ownChanges_.push_back(std::move(change));
  }
  for (const auto& session : touched) session->pushChanges();
}

void ChangeWatch::overflowed() {
  logger("hostd")->warn("inotify queue overflowed: telling every client to drop its caches");
  std::set<std::shared_ptr<Session>> sessions;
  for (auto& [wd, watchers] : byWatch_) {
    for (const Watcher& w : watchers) {
      if (auto s = w.session.lock()) sessions.insert(s);
    }
  }
  for (const auto& session : sessions) {
    session->noteEverythingChanged();
    session->pushChanges();
  }
}

}  // namespace enclavefs::host
