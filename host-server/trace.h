// Tracing: one event per answered request, sent to whoever runs `enclavefs-inspect trace`.
// Sessions build an event only while someone traces (Server::tracing()), so a server nobody
// traces pays one branch per request.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "common/messages.h"

namespace enclavefs::host {

struct TraceEvent {
  std::chrono::system_clock::time_point time;  // when the answer was ready
  std::uint64_t client = 0;
  std::size_t op = 0;  // index in msg::Op
  msg::NodeId node = 0;
  std::string name;  // for operations on a name
  msg::HandleId handle = 0;
  std::optional<std::uint64_t> offset;
  std::optional<std::uint64_t> size;
  int error = 0;
  std::chrono::microseconds latency{0};
};

// The event for `request`, answered with `error` after `latency`. `payloadBytes` is the size
// of the request's payload (a write's data).
TraceEvent traceEvent(std::uint64_t client, const msg::Request& request, std::size_t payloadBytes,
                      int error, std::chrono::microseconds latency);

// One line of JSON (without the newline), as the control socket sends it.
std::string toJsonLine(const TraceEvent& event);

// Which events a tracer wants.
struct TraceFilter {
  std::optional<std::uint64_t> client;
  std::optional<std::size_t> op;
  bool matches(const TraceEvent& event) const {
    return (!client || *client == event.client) && (!op || *op == event.op);
  }
};

// "2026-11-26T17:30:05.123456Z"
std::string formatMicros(std::chrono::system_clock::time_point time);

}  // namespace enclavefs::host
