// Directory listings fetched with readdirplus once lookups keep missing in a directory, so
// that the next lookups there are answered by the mount.
//
// When the host has found the kMissesToList-th name within a second in one directory (a
// lookup the listing could have answered), the mount lists the directory (opendir without touching its access time, readdirplus until the
// end or kMaxEntries, releasedir). Each listed entry carries one host lookup, held here until
// a lookup hands it to the kernel (the kernel gives it back with its forget) or the entry is
// dropped (the lookup goes back to the host through `giveBack`). A name the listing does not
// hold is asked of the host as before: a listing never answers "no such entry".
//
// A listed entry is the name as the host read it, as good as an entry the kernel caches, and
// it is kept under the same rule: only while the host reports every change of the directory
// (the kernel holds it, so the host watches it). A reported change of a name in it, a
// request of this mount that may change a name in it, or the kernel forgetting it ends the
// listing; a reported change of a listed node, this mount changing it, or newer attributes
// of it reaching the kernel drop its entries. While a listing is fetched, a changed name in
// the directory drops it whole when it ends, and a node changed meanwhile is left out of it.
// A listing lasts at most the entry timeout, and a directory is listed at most once per
// entry timeout (never with a timeout of 0). Only used while the host pushes changes.
// Thread-safe.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/messages.h"

namespace enclavefs::enclave {

class ListedDirs {
 public:
  using Clock = std::chrono::steady_clock;
  using GiveBack = std::function<void(std::vector<msg::op::ForgetItem>)>;

  // Names the host must find in one directory within kMissWindow before it is listed: a
  // listing costs the host about as much as a few hundred lookups, and pays off only when
  // more lookups follow.
  static constexpr int kMissesToList = 4;
  static constexpr std::chrono::seconds kMissWindow{1};
  // Most entries one listing keeps; a longer directory is listed that far.
  static constexpr std::size_t kMaxEntries = 4096;
  // Most listings kept at once (past it the one that expires first goes), and most entries
  // held in all: each holds a node, and so a descriptor, on the host.
  static constexpr std::size_t kMaxDirs = 16;
  static constexpr std::size_t kMaxHeld = 16384;
  // Most nodes noted as changed while one listing is fetched; past it the listing is dropped.
  static constexpr std::size_t kMaxChangedWhileFetching = 1024;

  // `giveBack` returns held lookups to the host; it is called without the lock held, and
  // must not send from the receiver thread itself.
  ListedDirs(std::chrono::duration<double> lifetime, GiveBack giveBack);

  // The host found a name in `dir`. True when the caller is to list `dir` now: then it must
  // end with finished(dir) whatever happens.
  bool foundOnHost(msg::NodeId dir);
  // A part of the listing: its entries with attributes, each holding one host lookup.
  void add(msg::NodeId dir, const std::vector<msg::body::DirEntry>& items);
  void finished(msg::NodeId dir);

  // The entry of `name` in `dir`, if listed; its host lookup now belongs to the caller, and
  // the listing holds the name no more.
  std::optional<msg::Entry> take(msg::NodeId dir, std::string_view name);

  // A name in `dir` changed, or may have (a notification, or a request of this mount):
  // ends the listing of `dir`.
  void nameChanged(msg::NodeId dir);
  // `node` changed, or the kernel forgot it: drops the entries naming it, and ends the
  // listing of `node` if it is a listed directory.
  void nodeChanged(msg::NodeId node);
  // The kernel got newer attributes of `node` than a listing may hold: drops its entries.
  // Both also keep `node` out of the listings being fetched: the host may have listed it
  // before the change.
  void attrsSeen(msg::NodeId node);

  std::size_t heldLookups() const;

 private:
  struct Dir {
    Clock::time_point expires;
    bool fetching = false;
    bool spoiled = false;  // a name changed while fetching: the listing may be stale
    std::unordered_set<msg::NodeId> changedWhileFetching;
    std::unordered_map<std::string, msg::Entry> entries;
    std::unordered_multimap<msg::NodeId, std::string> namesOf;
  };
  struct Misses {
    Clock::time_point since;
    int count = 0;
  };
  using Dirs = std::unordered_map<msg::NodeId, Dir>;

  // Ends a listing (one being fetched is only spoiled), collecting its lookups.
  void end(Dirs::iterator it, std::vector<msg::op::ForgetItem>& held);
  static void unindex(Dir& dir, msg::NodeId node, const std::string& name);
  void dropEntry(Dir& dir, std::unordered_map<std::string, msg::Entry>::iterator it,
                 std::vector<msg::op::ForgetItem>& held);
  // Drops the entries naming `node`, and keeps it out of a listing being fetched.
  void dropNamesOf(Dir& dir, msg::NodeId node, std::vector<msg::op::ForgetItem>& held);
  void expire(Clock::time_point now, std::vector<msg::op::ForgetItem>& held);
  void giveBack(std::vector<msg::op::ForgetItem> held) const;

  const Clock::duration lifetime_;
  const GiveBack giveBack_;
  mutable std::mutex mutex_;
  Dirs dirs_;
  std::unordered_map<msg::NodeId, Misses> misses_;
  std::unordered_map<msg::NodeId, Clock::time_point> listedAt_;
  std::size_t held_ = 0;
};

}  // namespace enclavefs::enclave
