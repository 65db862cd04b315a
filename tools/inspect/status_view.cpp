#include "tools/inspect/status_view.h"

#include <cmath>
#include <cstdint>
#include <optional>
#include <vector>

#include "common/log.h"
#include "host-server/volume_file.h"
#include "tools/inspect/table.h"

namespace enclavefs::inspect {
namespace {

constexpr std::size_t kMaxCell = 4096;

const Json& field(const Json& object, const char* key) {
  static const Json missing;  // null
  if (!object.is_object()) return missing;
  auto it = object.find(key);
  return it == object.end() ? missing : *it;
}

std::string text(const Json& value) {
  if (value.is_string()) return printable(value.get<std::string>(), kMaxCell);
  if (value.is_number()) return value.dump();
  if (value.is_boolean()) return value.get<bool>() ? "yes" : "no";
  return "-";
}
std::string text(const Json& object, const char* key) {
  return text(field(object, key));
}

std::optional<double> number(const Json& object, const char* key) {
  const Json& value = field(object, key);
  if (!value.is_number()) return std::nullopt;
  return value.get<double>();
}

std::string bytes(const Json& object, const char* key) {
  const Json& value = field(object, key);
  // JSON parsing makes every non-negative integer unsigned.
  return value.is_number_unsigned() ? host::formatBytes(value.get<std::uint64_t>()) : "-";
}

std::string micros(const Json& object, const char* key) {
  auto value = number(object, key);
  return value ? formatMicros(*value) : "-";
}

std::string rate(const Json& object, const char* key) {
  auto value = number(object, key);
  return value ? formatRate(*value) : "-";
}

std::string perSecond(const Json& object, const char* key) {
  auto value = number(object, key);
  return value ? formatPerSecond(*value) : "-";
}

// An allow list: null allows everyone, an empty list no one.
std::string allowList(const Json& list) {
  if (list.is_null()) return "any";
  if (!list.is_array()) return text(list);
  if (list.empty()) return "none";
  std::string out;
  for (const Json& id : list) out += (out.empty() ? "" : ",") + text(id);
  return out;
}

const Json& array(const Json& object, const char* key) {
  static const Json empty = Json::array();
  const Json& value = field(object, key);
  return value.is_array() ? value : empty;
}

void section(std::FILE* out, const char* title, const Table& table) {
  std::fprintf(out, "\n%s\n", title);
  if (table.empty()) {
    std::fprintf(out, "  (none)\n");
  } else {
    table.print(out, "  ");
  }
}

void printClientLatency(const Json& client, std::FILE* out) {
  Table latency({"OP", "COUNT", "ERRORS", "P50", "P99"});
  for (const Json& op : array(client, "latency")) {
    auto count = number(op, "count");
    if (!count || *count <= 0) continue;
    latency.add({text(op, "op"), text(op, "count"), text(op, "errors"), micros(op, "p50Us"),
                 micros(op, "p99Us")});
  }
  if (latency.empty()) return;
  std::fprintf(out, "\n  client %s (%s) latency\n", text(client, "id").c_str(),
               text(client, "peer").c_str());
  latency.print(out, "    ");
}

}  // namespace

void printStatus(const Json& status, std::FILE* out) {
  const Json& server = field(status, "server");
  std::fprintf(out, "server: enclavefs-hostd %s, pid %s, running since %s\n",
               text(server, "version").c_str(), text(server, "pid").c_str(),
               text(server, "since").c_str());

  Table exports({"NAME", "PATH", "ACCESS", "CIDS", "UIDS", "CLIENTS"});
  for (const Json& e : array(status, "exports")) {
    const Json& readOnly = field(e, "readOnly");
    const Json& allow = field(e, "allow");
    exports.add({text(e, "name"), text(e, "path"),
                 readOnly.is_boolean() ? (readOnly.get<bool>() ? "ro" : "rw") : "-",
                 allowList(field(allow, "cids")), allowList(field(allow, "uids")),
                 text(e, "clients")});
  }
  section(out, "EXPORTS", exports);

  Table clients({"ID", "PEER", "MOUNT", "SINCE", "IN FLIGHT", "HANDLES", "LOCKS", "OPS/S", "READ/S",
                 "WRITTEN/S", "OPS", "ERRORS", "READ", "WRITTEN"});
  for (const Json& c : array(status, "clients")) {
    const Json& mount = field(c, "mount");
    const Json& totals = field(c, "totals");
    clients.add({text(c, "id"), text(c, "peer"), text(mount, "kind") + " " + text(mount, "name"),
                 text(c, "since"), text(c, "inFlight"), text(c, "handles"), text(c, "locks"),
                 perSecond(c, "opsPerSecond"), rate(c, "readBytesPerSecond"),
                 rate(c, "writtenBytesPerSecond"), text(totals, "ops"), text(totals, "errors"),
                 bytes(totals, "bytesRead"), bytes(totals, "bytesWritten")});
  }
  section(out, "CLIENTS", clients);
  for (const Json& c : array(status, "clients")) printClientLatency(c, out);

  Table volumes({"NAME", "PATH", "SIZE", "ALLOCATED", "HOLDER"});
  for (const Json& v : array(status, "volumes")) {
    const Json& holder = field(v, "holder");
    std::string held = holder.is_null()
                           ? "free"
                           : "client " + text(holder, "client") + " (" + text(holder, "peer") +
                                 ") since " + text(holder, "since");
    volumes.add({text(v, "name"), text(v, "path"), bytes(v, "size"), bytes(v, "allocated"), held});
  }
  section(out, "VOLUMES", volumes);
}

std::string traceLine(const Json& event) {
  // "2026-11-26T17:30:05.123456Z" shows as its time of day; anything else as it is.
  std::string time = text(event, "time");
  if (auto t = time.find('T'); t != std::string::npos) time.erase(0, t + 1);
  if (time.ends_with("Z")) time.pop_back();

  std::string line = time + " client " + text(event, "client") + " " + text(event, "op");
  // Each of these is there only where the operation has one (the server leaves out node 0).
  auto add = [&](const char* key) {
    if (const Json& value = field(event, key); !value.is_null()) {
      line += " " + std::string(key) + " " + text(value);
    }
  };
  add("node");
  if (const Json& name = field(event, "name"); name.is_string()) {
    // ensure_ascii: every byte past ASCII is escaped, so no name can reach the terminal raw.
    line += " " + name.dump(-1, ' ', true, Json::error_handler_t::replace);
  }
  add("handle");
  add("offset");
  add("size");
  line += " = " + text(event, "result");
  if (auto latency = number(event, "latencyUs")) line += " (" + formatMicros(*latency) + ")";
  return line;
}

}  // namespace enclavefs::inspect
