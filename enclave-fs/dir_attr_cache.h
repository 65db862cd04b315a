// The latest attributes the host sent of each directory, so that the kernel's frequent
// re-reads of a directory's attributes are answered in the enclave.
//
// The kernel drops a directory's attributes after every change it makes in it (create,
// unlink, mkdir, ...) and again when the host's notification of that change arrives, and
// with default_permissions it needs them for the next lookup there: without this cache each
// file created or removed costs one or two extra round trips.
//
// Why a copy here is current: every frame that carries a directory's attributes (the reply
// to a request that changed it, a getattr or setattr reply, a change notification) carries
// them as the host read them right before queueing the frame, on its one event loop; frames
// arrive in the order they were queued, and the receiver thread stores copies in that order.
// So the newest copy is the directory as of that moment, and any later change is followed
// by a frame with a newer copy (a notification, if another party made it). The one change
// whose frames do not name the directory, a rename moving it, drops every copy when its
// reply arrives. Used only while the host pushes changes; copies expire after the
// attribute timeout, like the kernel's. Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "common/messages.h"

namespace enclavefs::enclave {

class DirAttrCache {
 public:
  using Clock = std::chrono::steady_clock;

  explicit DirAttrCache(std::chrono::duration<double> lifetime);

  void store(msg::NodeId dir, const msg::Attr& attr);
  void drop(msg::NodeId dir);
  void clear();
  std::optional<msg::Attr> find(msg::NodeId dir) const;

 private:
  struct Copy {
    msg::Attr attr;
    Clock::time_point expires;
  };
  const Clock::duration lifetime_;
  mutable std::mutex mutex_;
  std::unordered_map<msg::NodeId, Copy> copies_;
};

}  // namespace enclavefs::enclave
