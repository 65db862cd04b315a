#include "host-server/server.h"

#include <linux/vm_sockets.h>
#include <sys/socket.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <vector>

#include "common/log.h"

namespace enclavefs::host {
namespace {
constexpr std::chrono::seconds kRefusalLogInterval{10};
}  // namespace

Server::Server(Ring& ring, BlockingPool& pool, const ExportTable& exports,
               const VolumeTable& volumes, SessionLimits limits, UniqueFd listener,
               Address address)
    : ring_(ring),
      pool_(pool),
      exports_(exports),
      volumes_(volumes),
      limits_(limits),
      listener_(std::move(listener)),
      address_(std::move(address)) {}

void Server::start() {
  accepting_ = true;
  accept_.arm();
}

void Server::stop() {
  if (stopping_) return;
  stopping_ = true;
  if (accepting_) accept_.cancel();
  // Closing may end a session, which removes it from the map: close from a copy.
  std::vector<std::shared_ptr<Session>> live;
  for (auto& [id, weak] : sessions_) {
    if (auto session = weak.lock()) live.push_back(std::move(session));
  }
  for (auto& session : live) session->close("server is shutting down");
}

void Server::Accept::arm() {
  peerLen_ = sizeof peer_;
  io_uring_prep_accept(server_.ring_.prepare(this), server_.listener_.get(),
                       reinterpret_cast<sockaddr*>(&peer_), &peerLen_, SOCK_CLOEXEC);
}

void Server::Accept::cancel() {
  io_uring_prep_cancel(server_.ring_.prepare(&server_.cancel_), this, 0);
}

void Server::Accept::complete(int result) {
  if (server_.stopping_) {
    if (result >= 0) ::close(result);
    server_.accepting_ = false;
    return;
  }
  if (result >= 0) {
    server_.accepted(UniqueFd(result), peer_);
  } else if (result != -EINTR && result != -ECONNABORTED) {
    logger("hostd")->error("accept on {} failed: {}", server_.address_.toString(),
                           std::strerror(-result));
    if (result == -EMFILE || result == -ENFILE) {
      // Out of descriptors: keep serving the clients we have rather than spin.
      logger("hostd")->error("not accepting new clients until descriptors are free");
    }
  }
  arm();
}

std::shared_ptr<PeerUsage> Server::usageOf(const Export& exported, const Peer& peer) {
  auto& slot = usage_[{exported.name, peer.key()}];
  auto usage = slot.lock();
  if (!usage) {
    usage = std::make_shared<PeerUsage>();
    slot = usage;
  }
  return usage;
}

void Server::accepted(UniqueFd socket, const sockaddr_storage& peerAddress) {
  Peer peer;
  if (peerAddress.ss_family == AF_VSOCK) {
    peer.kind = Peer::Kind::vsock;
    peer.cid = reinterpret_cast<const sockaddr_vm&>(peerAddress).svm_cid;
  } else {
    peer.kind = Peer::Kind::unix_socket;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(socket.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
      peer.pid = static_cast<std::uint32_t>(cred.pid);
      peer.uid = cred.uid;
      peer.gid = cred.gid;
    }
  }
  if (sessions_.size() >= limits_.maxClients) {
    const auto now = std::chrono::steady_clock::now();
    if (refusalLogged_ && now - *refusalLogged_ < kRefusalLogInterval) {
      ++refusalsNotLogged_;
      return;  // `socket` closes
    }
    const std::string more =
        refusalsNotLogged_ == 0
            ? ""
            : " (and " + std::to_string(refusalsNotLogged_) + " more since the last such line)";
    logger("hostd")->warn("refusing a client ({}): {} clients are connected already{}",
                          peer.describe(), sessions_.size(), more);
    refusalLogged_ = now;
    refusalsNotLogged_ = 0;
    return;  // `socket` closes
  }
  ++connectionsAccepted_;
  std::uint64_t id = nextSessionId_++;
  auto session = std::make_shared<Session>(*this, std::move(socket), peer, id);
  sessions_.emplace(id, session);
  session->start();
}

std::vector<std::shared_ptr<Session>> Server::liveSessions() const {
  std::vector<std::shared_ptr<Session>> live;
  for (const auto& [id, weak] : sessions_) {
    if (auto session = weak.lock()) live.push_back(std::move(session));
  }
  std::sort(live.begin(), live.end(), [](const auto& a, const auto& b) { return a->id() < b->id(); });
  return live;
}

std::shared_ptr<Session> Server::findSession(std::uint64_t id) const {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second.lock();
}

void Server::removeTracer(Tracer* tracer) {
  tracers_.erase(std::remove(tracers_.begin(), tracers_.end(), tracer), tracers_.end());
}

void Server::traced(const TraceEvent& event) {
  // A tracer may leave (its count reached) while it is told: tell a copy of the list.
  std::vector<Tracer*> tracers = tracers_;
  for (Tracer* tracer : tracers) tracer->traced(event);
}

}  // namespace enclavefs::host
