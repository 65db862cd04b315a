// Reads around: the volume's bytes near small reads, kept for the reads that follow.
//
// The enclave's ext4 reads a tree of small files one 4 KiB block at a time, and the files'
// blocks lie next to each other, so each of those reads would be one round trip to the host
// for 4 KiB. When a small read misses and starts within kWindowBytes of where the read before
// it ended (reads that wander over the volume, like random I/O, hardly ever do), the mount
// asks the host for the whole aligned window of kWindowBytes around it instead, answers the
// read from it, and keeps it for the reads that follow.
//
// Kept windows stay current because a volume is held by one mount at a time: this mount's
// own writes, trims and zeroings drop the windows they touch when they are sent. A window is
// fetched only while no such change of it is on its way, and one that such a change meets
// while it is fetched is not kept (the host might have read it before the change). At most
// kBudgetBytes are kept, the least recently used going first.
//
// Used from FUSE workers and the receiver thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

namespace enclavefs::enclave {

class ReadAround {
 public:
  static constexpr std::uint32_t kWindowBytes = 128 << 10;
  static constexpr std::size_t kBudgetBytes = 8 << 20;

  explicit ReadAround(std::uint64_t volumeSize) : volumeSize_(volumeSize) {}

  // Bytes a kept window holds; `window` keeps `view` valid after the lock is left.
  struct Slice {
    std::shared_ptr<const std::vector<std::byte>> window;
    std::span<const std::byte> view;
  };
  // The read of `length` bytes at `offset`, if a kept window holds all of it.
  std::optional<Slice> kept(std::uint64_t offset, std::uint32_t length);

  // A window to fetch in place of a read that missed.
  struct Fetch {
    std::uint64_t id = 0;
    std::uint64_t offset = 0;
    std::uint32_t length = 0;
  };
  // For a read that kept() could not answer: the window to fetch instead, or nothing when
  // the read does not qualify (then it goes to the host as it is). Notes the read either
  // way. A Fetch must be followed by fetched(), also when it fails.
  std::optional<Fetch> around(std::uint64_t offset, std::uint32_t length);
  // The window's bytes (empty if the fetch failed): kept unless a change met it.
  void fetched(const Fetch& fetch, std::span<const std::byte> bytes);

  // A write, trim or zeroing of `length` bytes at `offset` is being sent: drops what it
  // touches and spoils windows being fetched. Must be followed by changed() with the id.
  std::uint64_t changing(std::uint64_t offset, std::uint64_t length);
  // That change was answered (or failed).
  void changed(std::uint64_t id);

  std::size_t keptBytes() const;

 private:
  struct Range {
    std::uint64_t offset;
    std::uint64_t length;
    bool overlaps(std::uint64_t o, std::uint64_t l) const { return o < offset + length && offset < o + l; }
  };
  struct Window {
    std::shared_ptr<const std::vector<std::byte>> bytes;
    std::list<std::uint64_t>::iterator lru;
  };
  struct InFlight {
    Range range;
    bool spoiled = false;
  };

  void dropWindow(std::uint64_t start);

  const std::uint64_t volumeSize_;
  mutable std::mutex mutex_;
  std::uint64_t lastEnd_ = UINT64_MAX;  // where the last small read ended
  std::uint64_t nextId_ = 1;
  std::unordered_map<std::uint64_t, Window> windows_;  // by start offset
  std::list<std::uint64_t> lru_;                       // starts, most recently used first
  std::size_t keptBytes_ = 0;
  std::unordered_map<std::uint64_t, InFlight> fetches_;
  std::unordered_map<std::uint64_t, Range> changes_;
};

}  // namespace enclavefs::enclave
