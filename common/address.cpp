#include "common/address.h"

#include <linux/vm_sockets.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace enclavefs {
namespace {

bool parseU32(std::string_view text, std::uint32_t& out) {
  if (text.empty()) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out, 10);
  return ec == std::errc() && end == text.data() + text.size();
}

std::string sysError(const std::string& what, const Address& address) {
  return what + " " + address.toString() + ": " + std::strerror(errno);
}

sockaddr_un unixSockaddr(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  return sa;
}

sockaddr_vm vsockSockaddr(const Address& address) {
  sockaddr_vm sa{};
  sa.svm_family = AF_VSOCK;
  sa.svm_cid = address.cid;
  sa.svm_port = address.port;
  return sa;
}

}  // namespace

std::string Address::toString() const {
  if (family == Family::unix_socket) return "unix:" + path;
  return "vsock:" + std::to_string(cid) + ":" + std::to_string(port);
}

Result<Address, std::string> parseAddress(std::string_view text) {
  const std::string quoted = "address '" + std::string(text) + "'";
  Address address;
  if (text.starts_with("unix:")) {
    address.family = Address::Family::unix_socket;
    address.path = std::string(text.substr(5));
    if (address.path.empty()) return Fail{quoted + " has an empty socket path"};
    if (address.path.size() >= sizeof(sockaddr_un{}.sun_path)) {
      return Fail{quoted + " has a socket path longer than " +
                  std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes"};
    }
    if (address.path.find('\0') != std::string::npos) return Fail{quoted + " contains NUL"};
    return address;
  }
  if (text.starts_with("vsock:")) {
    auto rest = text.substr(6);
    auto colon = rest.find(':');
    if (colon == std::string_view::npos) return Fail{quoted + " is not vsock:CID:PORT"};
    address.family = Address::Family::vsock;
    if (!parseU32(rest.substr(0, colon), address.cid)) {
      return Fail{quoted + " has a bad CID (want a decimal number)"};
    }
    if (!parseU32(rest.substr(colon + 1), address.port)) {
      return Fail{quoted + " has a bad port (want a decimal number)"};
    }
    return address;
  }
  return Fail{quoted + " must start with 'unix:' or 'vsock:'"};
}

Result<UniqueFd, std::string> connectTo(const Address& address) {
  bool isUnix = address.family == Address::Family::unix_socket;
  UniqueFd fd(::socket(isUnix ? AF_UNIX : AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Fail{sysError("cannot create a socket for", address)};
  int rc;
  if (isUnix) {
    auto sa = unixSockaddr(address.path);
    rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  } else {
    auto sa = vsockSockaddr(address);
    rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  }
  if (rc != 0) return Fail{sysError("cannot connect to", address)};
  return fd;
}

Result<UniqueFd, std::string> listenOn(const Address& address, int backlog) {
  bool isUnix = address.family == Address::Family::unix_socket;
  UniqueFd fd(::socket(isUnix ? AF_UNIX : AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Fail{sysError("cannot create a socket for", address)};
  int rc;
  if (isUnix) {
    struct stat st;
    if (::lstat(address.path.c_str(), &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        return Fail{"cannot listen on " + address.toString() + ": path exists and is not a socket"};
      }
      // A socket nobody answers on is left over from a server that died; replace it.
      if (connectTo(address).ok()) {
        return Fail{"cannot listen on " + address.toString() + ": another server is listening"};
      }
      ::unlink(address.path.c_str());
    }
    auto sa = unixSockaddr(address.path);
    rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  } else {
    auto sa = vsockSockaddr(address);
    rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  }
  if (rc != 0) return Fail{sysError("cannot bind", address)};
  if (::listen(fd.get(), backlog) != 0) return Fail{sysError("cannot listen on", address)};
  return fd;
}

}  // namespace enclavefs
