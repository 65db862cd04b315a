// Transport addresses: `vsock:CID:PORT` in production, `unix:/path` for tests and
// development. Everything above the socket is the same for both.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/unique_fd.h"

namespace enclavefs {

struct Address {
  enum class Family { unix_socket, vsock };
  Family family = Family::unix_socket;
  std::string path;         // unix
  std::uint32_t cid = 0;    // vsock
  std::uint32_t port = 0;   // vsock

  std::string toString() const;
};

// The error names what is wrong with the text.
Result<Address, std::string> parseAddress(std::string_view text);

// A connected stream socket (close-on-exec, blocking), or an error sentence.
Result<UniqueFd, std::string> connectTo(const Address& address);

// A listening stream socket. A unix socket path must not exist yet unless it is a stale
// socket, which is replaced.
Result<UniqueFd, std::string> listenOn(const Address& address, int backlog = 64);

}  // namespace enclavefs
