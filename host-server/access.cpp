#include "host-server/access.h"

#include <algorithm>

namespace enclavefs::host {

std::string Peer::describe() const {
  if (kind == Kind::vsock) return "cid " + std::to_string(cid);
  return "uid " + std::to_string(uid) + " pid " + std::to_string(pid);
}

std::string Peer::key() const {
  return kind == Kind::vsock ? "cid:" + std::to_string(cid) : "uid:" + std::to_string(uid);
}

bool AccessPolicy::allows(const Peer& peer) const {
  auto contains = [](const std::vector<std::uint32_t>& list, std::uint32_t id) {
    return std::find(list.begin(), list.end(), id) != list.end();
  };
  if (peer.kind == Peer::Kind::vsock) return !cids || contains(*cids, peer.cid);
  return !uids || contains(*uids, peer.uid);
}

}  // namespace enclavefs::host
