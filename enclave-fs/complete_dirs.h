// Directories whose every entry the mount knows of, so that a lookup of any other name is
// answered "no such entry" without asking the host.
//
// A directory becomes complete when this mount made it (the reply to its mkdir: a new
// directory is empty). From then on a name is "maybe present" once this mount sends a
// request that may make it (create, mknod, mkdir, symlink, link, rename onto it) or the host
// reports a change of it; a lookup of a maybe-present name goes to the host as usual, and
// names are never taken back out (an unlinked name is simply asked about). Every other
// name is absent: any change the host sees in the directory is reported by name
// (consistency.md). A report about the directory that names none of its entries (its own
// attributes, or a notify queue that overflowed on the host) ends its completeness, as does
// the entry timeout passing (as for a negative entry: a change made before the host watched
// the new directory is not reported). Only used while the host pushes changes. Thread-safe.
//
// The kernel forgets a directory no process holds as soon as a notification drops its
// entry, as one about this mount's own mkdir does when the host pushes it back
// (ChangeWatch::madeBy says when). So a complete directory keeps the host's lookups of it
// when the kernel forgets it (holdLookups): the host goes on watching it, the kernel's next
// lookup of its name gets the same node back, and the directory stays complete. The lookups
// are given back when the completeness ends.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/messages.h"

namespace enclavefs::enclave {

class CompleteDirs {
 public:
  using Clock = std::chrono::steady_clock;

  using GiveBack = std::function<void(std::vector<msg::op::ForgetItem>)>;

  // `giveBack` returns held lookups to the host; it is called without the lock held.
  CompleteDirs(std::chrono::duration<double> lifetime, GiveBack giveBack);

  void madeEmpty(msg::NodeId dir);
  void mayBePresent(msg::NodeId dir, std::string_view name);
  // The kernel forgot `dir`, giving back `count` lookups: true if they are held for the
  // host instead (a complete directory), false if the caller must give them back now.
  bool holdLookups(msg::NodeId dir, std::uint64_t count);
  // Applies a notification: its names may be present, and a directory it names without
  // any of its entries is no longer complete.
  void changed(const msg::Notify& notify);
  bool surelyAbsent(msg::NodeId dir, std::string_view name) const;

  // Bounds on what is remembered; past them every directory is forgotten, which only sends
  // lookups to the host again. The names are counted over all directories: the host names
  // them in its notifications, and must not fill the enclave's memory through them (about
  // 350 bytes a name at most: 11 MiB).
  static constexpr std::size_t kMaxDirs = 4096;
  static constexpr std::size_t kMaxNames = 1 << 15;

 private:
  struct Dir {
    Clock::time_point expires;
    std::unordered_set<std::string> maybePresent;
    std::uint64_t heldLookups = 0;
  };
  using Dirs = std::unordered_map<msg::NodeId, Dir>;
  // Ends a directory's completeness, collecting the lookups it held.
  void end(Dirs::iterator it, std::vector<msg::op::ForgetItem>& held) const;
  void endAll(std::vector<msg::op::ForgetItem>& held) const;
  void giveBack(std::vector<msg::op::ForgetItem> held) const;
  // Ends the expired directories, at most once a second, so held lookups go back to the host
  // even for a directory no one looks into again.
  void sweep(Clock::time_point now, std::vector<msg::op::ForgetItem>& held);

  const Clock::duration lifetime_;
  const GiveBack giveBack_;
  mutable std::mutex mutex_;
  mutable Dirs dirs_;  // an expired directory is ended where it is found, or by sweep()
  mutable std::size_t names_ = 0;  // in all of dirs_' maybePresent sets
  Clock::time_point nextSweep_{};
};

}  // namespace enclavefs::enclave
