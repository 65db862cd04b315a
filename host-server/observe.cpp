#include "host-server/observe.h"

#include <unistd.h>

#include <map>
#include <sstream>

#include "common/log.h"
#include "host-server/server.h"
#include "host-server/volume_file.h"

namespace enclavefs::host {
namespace {

using nlohmann::json;

std::int64_t epochSeconds(std::chrono::system_clock::time_point time) {
  return std::chrono::duration_cast<std::chrono::seconds>(time.time_since_epoch()).count();
}

json idList(const std::optional<std::vector<std::uint32_t>>& ids) {
  return ids ? json(*ids) : json(nullptr);
}

json latencyOf(const RequestStats& stats) {
  json ops = json::array();
  for (std::size_t i = 0; i < kOpKinds; ++i) {
    const OpCounters& op = stats.op(i);
    if (op.count == 0) continue;
    ops.push_back({{"op", msg::opName(i)},
                   {"count", op.count},
                   {"errors", op.errors},
                   {"p50Us", op.latency.percentileMicros(0.50)},
                   {"p99Us", op.latency.percentileMicros(0.99)}});
  }
  return ops;
}

json clientOf(const Session& session) {
  const RequestStats& stats = session.stats();
  const RequestStats::Rates rates = stats.recentRates();
  json mount = nullptr;
  if (const Export* e = session.mountedExport()) mount = {{"kind", "export"}, {"name", e->name}};
  if (const Volume* v = session.heldVolume()) mount = {{"kind", "volume"}, {"name", v->name}};
  return {{"id", session.id()},
          {"peer", session.peer().describe()},
          {"mount", mount},
          {"since", formatUtc(epochSeconds(session.since()))},
          {"inFlight", session.inFlight()},
          {"handles", session.openHandles()},
          {"locks", session.lockOwners()},
          {"opsPerSecond", rates.ops},
          {"readBytesPerSecond", rates.bytesRead},
          {"writtenBytesPerSecond", rates.bytesWritten},
          {"totals",
           {{"ops", stats.totals().ops},
            {"errors", stats.totals().errors},
            {"bytesRead", stats.totals().bytesRead},
            {"bytesWritten", stats.totals().bytesWritten},
            {"changedEntriesPushed", session.pushedEntries()},
            {"changedInodesPushed", session.pushedInodes()}}},
          {"latency", latencyOf(stats)}};
}

struct VolumeState {
  std::uint64_t size = 0;
  std::uint64_t allocated = 0;
  const Session* holder = nullptr;
};

// Size and allocation from the image (read-only, without its lock), holder from the sessions.
std::map<std::string, VolumeState> volumeStates(const Server& server,
                                                const std::vector<std::shared_ptr<Session>>& live) {
  std::map<std::string, VolumeState> states;
  for (const auto& [name, volume] : server.volumes().all()) {
    VolumeState& state = states[name];
    if (auto image = VolumeFile::open(volume.path, false)) {
      state.size = image->header().size;
      state.allocated = image->allocatedBytes();
    }
  }
  for (const auto& session : live) {
    if (const Volume* v = session->heldVolume()) states[v->name].holder = session.get();
  }
  return states;
}

// One metric family: HELP, TYPE, then its samples.
class Family {
 public:
  Family(std::ostringstream& out, const char* name, const char* type, const char* help)
      : out_(out), name_(name) {
    out_ << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
  }
  template <class T>
  void sample(const T& value, const std::string& labels = "", const char* suffix = "") {
    out_ << name_ << suffix;
    if (!labels.empty()) out_ << '{' << labels << '}';
    out_ << ' ' << value << '\n';
  }

 private:
  std::ostringstream& out_;
  const char* name_;
};

// A label value, escaped as the exposition format wants.
std::string label(const char* key, const std::string& value) {
  std::string escaped;
  for (char c : value) {
    if (c == '\\' || c == '"') escaped += '\\';
    if (c == '\n') {
      escaped += "\\n";
      continue;
    }
    escaped += c;
  }
  return std::string(key) + "=\"" + escaped + "\"";
}

}  // namespace

json statusReport(const Server& server) {
  const auto live = server.liveSessions();
  json exports = json::array();
  for (const auto& [name, e] : server.exports().all()) {
    std::size_t clients = 0;
    for (const auto& session : live) clients += session->mountedExport() == &e ? 1 : 0;
    exports.push_back({{"name", name},
                       {"path", e.path},
                       {"readOnly", e.readOnly},
                       {"allow", {{"cids", idList(e.allow.cids)}, {"uids", idList(e.allow.uids)}}},
                       {"clients", clients}});
  }
  json clients = json::array();
  for (const auto& session : live) clients.push_back(clientOf(*session));
  json volumes = json::array();
  for (const auto& [name, state] : volumeStates(server, live)) {
    json holder = nullptr;
    if (state.holder != nullptr) {
      holder = {{"client", state.holder->id()},
                {"peer", state.holder->peer().describe()},
                {"since", formatUtc(epochSeconds(state.holder->since()))}};
    }
    volumes.push_back({{"name", name},
                       {"path", server.volumes().find(name)->path},
                       {"size", state.size},
                       {"allocated", state.allocated},
                       {"holder", holder}});
  }
  return {{"server",
           {{"pid", ::getpid()},
            {"since", formatUtc(epochSeconds(server.startedAt()))},
            {"version", ENCLAVEFS_VERSION}}},
          {"exports", exports},
          {"clients", clients},
          {"volumes", volumes}};
}

std::string metricsText(const Server& server) {
  const auto live = server.liveSessions();
  const RequestStats& totals = server.totals();
  std::ostringstream out;
  Family(out, "enclavefs_start_time_seconds", "gauge", "When the server started (Unix time).")
      .sample(epochSeconds(server.startedAt()));
  Family(out, "enclavefs_clients", "gauge", "Client connections open now.").sample(live.size());
  Family(out, "enclavefs_connections_total", "counter", "Client connections accepted.")
      .sample(server.connectionsAccepted());
  Family(out, "enclavefs_handshakes_refused_total", "counter",
         "Handshakes refused (unknown export or volume, policy, volume in use, ...).")
      .sample(server.handshakesRefused());
  std::size_t inFlight = 0, handles = 0, locks = 0;
  for (const auto& session : live) {
    inFlight += session->inFlight();
    handles += session->openHandles();
    locks += session->lockOwners();
  }
  Family(out, "enclavefs_requests_in_flight", "gauge", "Requests being served now.").sample(inFlight);
  Family(out, "enclavefs_open_handles", "gauge", "Files and directories clients hold open.")
      .sample(handles);
  Family(out, "enclavefs_lock_owners", "gauge", "Lock owners holding byte-range locks.").sample(locks);
  Family(out, "enclavefs_read_bytes_total", "counter", "File and sector data sent to clients.")
      .sample(totals.totals().bytesRead);
  Family(out, "enclavefs_written_bytes_total", "counter", "File and sector data written by clients.")
      .sample(totals.totals().bytesWritten);

  Family requests(out, "enclavefs_requests_total", "counter", "Requests answered, by operation.");
  for (std::size_t i = 0; i < kOpKinds; ++i) {
    if (totals.op(i).count != 0) requests.sample(totals.op(i).count, label("op", msg::opName(i)));
  }
  Family errors(out, "enclavefs_request_errors_total", "counter",
                "Requests answered with an error, by operation.");
  for (std::size_t i = 0; i < kOpKinds; ++i) {
    if (totals.op(i).count != 0) errors.sample(totals.op(i).errors, label("op", msg::opName(i)));
  }
  Family duration(out, "enclavefs_request_duration_seconds", "histogram",
                  "Time from a request's arrival to its answer, by operation.");
  for (std::size_t i = 0; i < kOpKinds; ++i) {
    const LatencyHistogram& h = totals.op(i).latency;
    if (h.count() == 0) continue;
    const std::string op = label("op", msg::opName(i));
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b + 1 < LatencyHistogram::kBuckets && cumulative < h.count(); ++b) {
      cumulative += h.buckets()[b];
      const double le = static_cast<double>(LatencyHistogram::upperBoundMicros(b)) / 1e6;
      std::ostringstream bound;
      bound << le;
      duration.sample(cumulative, op + "," + label("le", bound.str()), "_bucket");
    }
    duration.sample(h.count(), op + "," + label("le", "+Inf"), "_bucket");
    duration.sample(static_cast<double>(h.sumMicros()) / 1e6, op, "_sum");
    duration.sample(h.count(), op, "_count");
  }

  const auto volumes = volumeStates(server, live);
  Family size(out, "enclavefs_volume_size_bytes", "gauge", "Size of each volume.");
  for (const auto& [name, state] : volumes) size.sample(state.size, label("volume", name));
  Family allocated(out, "enclavefs_volume_allocated_bytes", "gauge",
                   "Host storage each volume's sparse image occupies.");
  for (const auto& [name, state] : volumes) allocated.sample(state.allocated, label("volume", name));
  Family held(out, "enclavefs_volume_held", "gauge", "1 while a client holds the volume's lease.");
  for (const auto& [name, state] : volumes) held.sample(state.holder != nullptr ? 1 : 0, label("volume", name));
  return out.str();
}

}  // namespace enclavefs::host
