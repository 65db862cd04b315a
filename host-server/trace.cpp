#include "host-server/trace.h"

#include <nlohmann/json.hpp>

#include <cstring>
#include <ctime>

#include "common/log.h"
#include "common/overloaded.h"

namespace enclavefs::host {

TraceEvent traceEvent(std::uint64_t client, const msg::Request& request, std::size_t payloadBytes,
                      int error, std::chrono::microseconds latency) {
  TraceEvent e;
  e.time = std::chrono::system_clock::now();
  e.client = client;
  e.op = request.op.index();
  e.node = request.node;
  e.name = request.name;
  e.handle = request.handle;
  e.error = error;
  e.latency = latency;
  auto range = [&](std::uint64_t offset, std::uint64_t size) {
    e.offset = offset;
    e.size = size;
  };
  std::visit(Overloaded{
                 [&](const msg::op::Read& op) { range(op.offset, op.size); },
                 [&](const msg::op::Write& op) { range(op.offset, payloadBytes); },
                 [&](const msg::op::Fallocate& op) { range(op.offset, op.length); },
                 [&](const msg::op::ReadDir& op) { range(op.offset, op.size); },
                 [&](const msg::op::Lseek& op) { e.offset = op.offset; },
                 [&](const msg::op::SectorRead& op) { range(op.offset, op.length); },
                 [&](const msg::op::SectorWrite& op) { range(op.offset, payloadBytes); },
                 [&](const msg::op::SectorTrim& op) { range(op.offset, op.length); },
                 [&](const msg::op::SectorWriteZeroes& op) { range(op.offset, op.length); },
                 [](const auto&) {},
             },
             request.op);
  return e;
}

std::string formatMicros(std::chrono::system_clock::time_point time) {
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(time.time_since_epoch()).count();
  const std::time_t seconds = static_cast<std::time_t>(micros / 1000000);
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char text[64];
  std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  std::snprintf(text + n, sizeof text - n, ".%06lldZ", static_cast<long long>(micros % 1000000));
  return text;
}

std::string toJsonLine(const TraceEvent& event) {
  nlohmann::json j;
  j["time"] = formatMicros(event.time);
  j["client"] = event.client;
  j["op"] = msg::opName(event.op);
  if (event.node != 0) j["node"] = event.node;
  if (!event.name.empty()) j["name"] = printable(event.name, 255);
  if (event.handle != 0) j["handle"] = event.handle;
  if (event.offset) j["offset"] = *event.offset;
  if (event.size) j["size"] = *event.size;
  const char* errnoName = event.error == 0 ? "ok" : strerrorname_np(event.error);
  j["result"] = errnoName != nullptr ? errnoName : std::to_string(event.error);
  j["latencyUs"] = event.latency.count();
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace enclavefs::host
