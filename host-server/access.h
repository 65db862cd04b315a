// Who is connecting, and what an export lets them do: the peer as the kernel identifies it,
// the export's access policy, and the per-peer usage that the export's caps count against.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace enclavefs::host {

// Who is on the other end, as the kernel tells it (never as the client claims).
struct Peer {
  enum class Kind { unix_socket, vsock } kind = Kind::unix_socket;
  std::uint32_t cid = 0;                    // vsock
  std::uint32_t pid = 0, uid = 0, gid = 0;  // unix (SO_PEERCRED)

  std::string describe() const;
  // The identity caps are counted by: the CID on vsock, the uid on a unix socket.
  std::string key() const;
};

// Which peers may mount an export. An absent list allows every peer of that transport.
struct AccessPolicy {
  std::optional<std::vector<std::uint32_t>> cids;
  std::optional<std::vector<std::uint32_t>> uids;

  bool allows(const Peer& peer) const;
};

// Whose files the enclave makes on the host, and what ids it may give them.
struct OwnerPolicy {
  enum class Mapping {
    squash,       // everything the enclave creates belongs to uid:gid; chown elsewhere is EPERM
    passthrough,  // the enclave's ids are stored as they are (needs a root server)
  };
  Mapping mapping = Mapping::squash;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
};

// What one peer holds of one export, across all its connections; owned by the server and
// shared by those connections' sessions (loop thread only).
struct PeerUsage {
  std::size_t connections = 0;
  std::size_t handles = 0;
};

}  // namespace enclavefs::host
