// The listening socket and the set of live sessions.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/address.h"
#include "common/unique_fd.h"
#include "host-server/blocking_pool.h"
#include "host-server/change_watch.h"
#include "host-server/exports.h"
#include "host-server/session.h"
#include "host-server/stats.h"
#include "host-server/trace.h"
#include "host-server/uring.h"
#include "host-server/volumes.h"

namespace enclavefs::host {

class Server {
 public:
  Server(Ring& ring, BlockingPool& pool, const ExportTable& exports, const VolumeTable& volumes,
         SessionLimits limits, UniqueFd listener, Address address);
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void start();
  // Stops accepting and closes every session; idle() turns true once all have ended.
  void stop();
  bool idle() const { return stopping_ && !accepting_ && sessions_.empty(); }

  Ring& ring() { return ring_; }
  BlockingPool& pool() { return pool_; }
  const ExportTable& exports() const { return exports_; }
  const VolumeTable& volumes() const { return volumes_; }
  const SessionLimits& limits() const { return limits_; }
  ChangeWatch& changes() { return changes_; }

  void sessionEnded(std::uint64_t id) { sessions_.erase(id); }

  // What `peer` holds of `exported` across its connections.
  std::shared_ptr<PeerUsage> usageOf(const Export& exported, const Peer& peer);

  // ---- observability (enclavefs-inspect, metrics) ----
  // Every request answered since the server started, all clients together.
  RequestStats& totals() { return totals_; }
  const RequestStats& totals() const { return totals_; }
  std::chrono::system_clock::time_point startedAt() const { return startedAt_; }
  std::uint64_t connectionsAccepted() const { return connectionsAccepted_; }
  std::uint64_t handshakesRefused() const { return handshakesRefused_; }
  void noteRefusedHandshake() { ++handshakesRefused_; }
  // The sessions alive now, by id.
  std::vector<std::shared_ptr<Session>> liveSessions() const;
  std::shared_ptr<Session> findSession(std::uint64_t id) const;

  // Receives trace events (the control socket's `trace`).
  class Tracer {
   public:
    virtual void traced(const TraceEvent& event) = 0;

   protected:
    ~Tracer() = default;
  };
  void addTracer(Tracer* tracer) { tracers_.push_back(tracer); }
  void removeTracer(Tracer* tracer);
  bool tracing() const { return !tracers_.empty(); }
  void traced(const TraceEvent& event);

 private:
  class Accept : public Completion {
   public:
    explicit Accept(Server& s) : server_(s) {}
    void arm();
    void cancel();
    void complete(int result) override;

   private:
    Server& server_;
    sockaddr_storage peer_{};
    socklen_t peerLen_ = 0;
  };

  class Cancel : public Completion {
   public:
    void complete(int) override {}
  };

  void accepted(UniqueFd socket, const sockaddr_storage& peer);

  Ring& ring_;
  BlockingPool& pool_;
  const ExportTable& exports_;
  const VolumeTable& volumes_;
  SessionLimits limits_;
  UniqueFd listener_;
  Address address_;
  ChangeWatch changes_{ring_};
  Accept accept_{*this};
  Cancel cancel_;
  bool accepting_ = false;
  bool stopping_ = false;
  std::uint64_t nextSessionId_ = 1;
  std::unordered_map<std::uint64_t, std::weak_ptr<Session>> sessions_;
  // Keyed by export name and Peer::key(); an entry lives while a session holds it.
  std::map<std::pair<std::string, std::string>, std::weak_ptr<PeerUsage>> usage_;

  RequestStats totals_;
  std::chrono::system_clock::time_point startedAt_ = std::chrono::system_clock::now();
  std::uint64_t connectionsAccepted_ = 0;
  // Connections refused for want of room are logged at most once per interval, with the
  // number refused since the last line: a peer that keeps connecting cannot fill the host's
  // disk through its log.
  std::optional<std::chrono::steady_clock::time_point> refusalLogged_;
  std::uint64_t refusalsNotLogged_ = 0;
  std::uint64_t handshakesRefused_ = 0;
  std::vector<Tracer*> tracers_;
};

}  // namespace enclavefs::host
