#include "host-server/stats.h"

#include <bit>
#include <cmath>

namespace enclavefs::host {

void LatencyHistogram::add(std::chrono::microseconds latency) {
  const auto micros = static_cast<std::uint64_t>(std::max<std::int64_t>(latency.count(), 0));
  // The first bucket whose upper bound 2^i lies above the latency.
  std::size_t bucket = std::min<std::size_t>(std::bit_width(micros), kBuckets - 1);
  ++buckets_[bucket];
  ++count_;
  sumMicros_ += micros;
}

std::uint64_t LatencyHistogram::percentileMicros(double fraction) const {
  if (count_ == 0) return 0;
  const auto rank = static_cast<std::uint64_t>(std::ceil(fraction * static_cast<double>(count_)));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < kBuckets; ++i) {
    seen += buckets_[i];
    if (seen >= std::max<std::uint64_t>(rank, 1)) return upperBoundMicros(i);
  }
  return upperBoundMicros(kBuckets - 1);
}

namespace {

std::int64_t nowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

void RequestStats::record(std::size_t op, int error, std::uint64_t bytesRead,
                          std::uint64_t bytesWritten, std::chrono::microseconds latency) {
  const std::int64_t second = nowSeconds();
  if (seconds_.empty() || seconds_.back().second != second) {
    seconds_.push_back({second, totals_});
    while (seconds_.front().second < second - kRateWindowSeconds) seconds_.pop_front();
  }
  OpCounters& counters = ops_[op];
  ++counters.count;
  counters.latency.add(latency);
  ++totals_.ops;
  if (error != 0) {
    ++counters.errors;
    ++totals_.errors;
  }
  totals_.bytesRead += bytesRead;
  totals_.bytesWritten += bytesWritten;
}

RequestStats::Rates RequestStats::recentRates() const {
  const std::int64_t now = nowSeconds();
  // The oldest second still inside the window; the current second counts as a whole one.
  for (const Second& s : seconds_) {
    if (s.second < now - kRateWindowSeconds + 1) continue;
    const double span = static_cast<double>(now - s.second + 1);
    return {static_cast<double>(totals_.ops - s.atStart.ops) / span,
            static_cast<double>(totals_.bytesRead - s.atStart.bytesRead) / span,
            static_cast<double>(totals_.bytesWritten - s.atStart.bytesWritten) / span};
  }
  return {};  // nothing happened within the window
}

std::pair<std::uint64_t, std::uint64_t> bytesMoved(const msg::Op& op, const msg::Reply& reply,
                                                   std::size_t requestPayload,
                                                   std::size_t replyPayload) {
  if (reply.error != 0) return {0, 0};
  if (std::holds_alternative<msg::op::Read>(op) || std::holds_alternative<msg::op::SectorRead>(op)) {
    return {replyPayload, 0};
  }
  if (std::holds_alternative<msg::op::Write>(op) || std::holds_alternative<msg::op::SectorWrite>(op)) {
    return {0, requestPayload};
  }
  return {0, 0};
}

}  // namespace enclavefs::host
