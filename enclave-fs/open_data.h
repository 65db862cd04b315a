// The first bytes of a file that come with the reply to its open (Request.openData), kept
// for the read the kernel makes next, which then needs no round trip to the host.
//
// They are the file as the host read it right after opening it, as good as pages the kernel
// caches, so they are kept under the same rule: only while the host pushes changes, and only
// while nothing is known to have changed the file since. A change the host reports, a lock
// granted on the file, and a write, truncate or fallocate through this mount drop what is
// kept of it, and so do new attributes of it from the host (the kernel drops its pages when
// they show a new size or mtime), and a change between the open's request and its reply. What a handle
// keeps goes at its release, and at most kBudgetBytes are kept in all.
//
// An open asks for the bytes only when the kernel has not read the file since it last
// changed: otherwise it most likely still caches the pages, and the bytes would be wasted.
//
// Used from FUSE workers and the receiver thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/messages.h"

namespace enclavefs::enclave {

class OpenData {
 public:
  static constexpr std::size_t kBudgetBytes = 4 << 20;

  // How many leading bytes an open of `node` asks for: 0, or limits::kMaxOpenDataBytes.
  // When not 0, the open must be followed by opened() with the same node and count.
  std::uint32_t asking(msg::NodeId node);
  // The reply to that open: keeps `bytes` for `handle` (none if the open failed) unless the
  // file changed since asking(). Fewer bytes than `asked` reach the end of the file.
  void opened(msg::NodeId node, std::optional<msg::HandleId> handle,
              std::span<const std::byte> bytes, std::uint32_t asked);

  // What a read of `size` at `offset` on `handle` returns, if it is kept: `view` stays valid
  // as long as the slice, without a copy. Bytes up to the end of what is kept are given out
  // once.
  struct Slice {
    std::shared_ptr<const std::vector<std::byte>> bytes;
    std::span<const std::byte> view;
  };
  std::optional<Slice> read(msg::HandleId handle, msg::NodeId node, std::uint64_t offset,
                            std::uint32_t size);
  // The host answered a read of `node`: the kernel now caches some of its pages.
  void wasRead(msg::NodeId node);

  // `node` may differ from what was kept, while the kernel's pages stay current: this mount
  // writes, truncates or allocates it, or the kernel got new attributes of it (with a new
  // size or mtime it drops its own pages, but it cannot drop these).
  void drop(msg::NodeId node);
  // `node` changed elsewhere, or may have: the kernel drops its pages too.
  void changed(msg::NodeId node);
  void released(msg::HandleId handle);
  // The kernel forgot `node`.
  void forgotten(msg::NodeId node);

  std::size_t keptBytes() const;

 private:
  struct Kept {
    msg::NodeId node;
    std::shared_ptr<const std::vector<std::byte>> bytes;
    bool toEnd;  // the bytes reach the end of the file
  };
  struct Asking {
    int opens = 0;
    bool changed = false;
  };
  // Bounds the nodes remembered as read; the memory is only a hint.
  static constexpr std::size_t kMaxReadNodes = 65536;

  void dropLocked(std::unordered_map<msg::HandleId, Kept>::iterator it);
  // Drops what is kept of `node`, and marks its opens in flight as changed.
  void dropNodeLocked(msg::NodeId node);

  mutable std::mutex mutex_;
  std::unordered_map<msg::HandleId, Kept> kept_;
  std::size_t keptBytes_ = 0;
  std::unordered_map<msg::NodeId, Asking> asking_;
  std::unordered_set<msg::NodeId> read_;
};

}  // namespace enclavefs::enclave
