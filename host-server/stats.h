// What the server counts about the work it does, for `enclavefs-inspect status` and the
// Prometheus metrics: per operation, how many, how many failed, and how long they took; bytes
// moved; and recent rates. Updated on the loop thread as each request is answered: a few
// additions and one array increment, no allocation.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <variant>

#include "common/messages.h"

namespace enclavefs::host {

// Latencies in power-of-two buckets of microseconds: bucket i counts latencies below 2^i µs
// (the last bucket takes everything longer). A percentile is reported as its bucket's upper
// bound, so it is accurate to a factor of two, which is what an operator needs to tell
// microseconds from milliseconds from seconds.
class LatencyHistogram {
 public:
  static constexpr std::size_t kBuckets = 32;  // up to about 36 minutes

  void add(std::chrono::microseconds latency);
  std::uint64_t count() const { return count_; }
  std::uint64_t sumMicros() const { return sumMicros_; }
  // The latency below which `fraction` (0..1) of the samples lie, in microseconds; 0 if none.
  std::uint64_t percentileMicros(double fraction) const;
  const std::array<std::uint64_t, kBuckets>& buckets() const { return buckets_; }
  static std::uint64_t upperBoundMicros(std::size_t bucket) { return std::uint64_t{1} << bucket; }

 private:
  std::array<std::uint64_t, kBuckets> buckets_{};
  std::uint64_t count_ = 0;
  std::uint64_t sumMicros_ = 0;
};

inline constexpr std::size_t kOpKinds = std::variant_size_v<msg::Op>;

struct OpCounters {
  std::uint64_t count = 0;
  std::uint64_t errors = 0;
  LatencyHistogram latency;
};

struct Totals {
  std::uint64_t ops = 0;
  std::uint64_t errors = 0;
  std::uint64_t bytesRead = 0;
  std::uint64_t bytesWritten = 0;
};

// Everything counted about one stream of requests (a client, or the whole server).
class RequestStats {
 public:
  // One answered request: the operation's index in msg::Op, its errno (0 = success), the
  // bytes it read or wrote, and how long it took.
  void record(std::size_t op, int error, std::uint64_t bytesRead, std::uint64_t bytesWritten,
              std::chrono::microseconds latency);

  const Totals& totals() const { return totals_; }
  const OpCounters& op(std::size_t index) const { return ops_[index]; }

  // Per-second rates over about the last ten seconds.
  struct Rates {
    double ops = 0, bytesRead = 0, bytesWritten = 0;
  };
  Rates recentRates() const;

 private:
  // The totals as they stood when each recent second began.
  struct Second {
    std::int64_t second;
    Totals atStart;
  };
  static constexpr std::int64_t kRateWindowSeconds = 10;

  std::array<OpCounters, kOpKinds> ops_{};
  Totals totals_;
  std::deque<Second> seconds_;
};

// The bytes an operation moved: data read to the client, data written by it.
std::pair<std::uint64_t, std::uint64_t> bytesMoved(const msg::Op& op, const msg::Reply& reply,
                                                   std::size_t requestPayload,
                                                   std::size_t replyPayload);

}  // namespace enclavefs::host
