#include "tools/inspect/control_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "common/address.h"
#include "common/log.h"

namespace enclavefs::inspect {
namespace {

// The server's status of many clients or its metrics can be long, but not this long: a
// longer line means something other than enclavefs-hostd is answering.
constexpr std::size_t kMaxLine = 64u << 20;

// Why a connection failed, and for the common cases what to check.
std::string connectProblem(int error) {
  std::string text = std::strerror(error);
  if (error == ENOENT || error == ECONNREFUSED) {
    text += " (is enclavefs-hostd running with its control socket there?)";
  } else if (error == EAGAIN || error == ETIMEDOUT) {
    text = "enclavefs-hostd did not accept the connection within " +
           std::to_string(kAnswerTimeout.count()) + " s";
  }
  return text;
}

}  // namespace

Result<ControlConnection, std::string> ControlConnection::connect(const std::string& address) {
  if (!address.starts_with("unix:")) {
    return Fail{"control address '" + printable(address) +
                "' must be unix:PATH, the path of enclavefs-hostd's control socket"};
  }
  auto parsed = parseAddress(address);
  if (!parsed) return Fail{"control " + parsed.error()};
  const std::string& path = parsed->path;
  const std::string what = "control socket " + path;

  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Fail{"cannot create a socket for " + what + ": " + std::strerror(errno)};
  // A unix connect waits while the server's backlog is full; the send timeout bounds it.
  timeval limit{.tv_sec = kAnswerTimeout.count(), .tv_usec = 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);  // parseAddress checked the length
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    return Fail{"cannot connect to " + what + ": " + connectProblem(errno)};
  }
  return ControlConnection(std::move(fd), path);
}

Result<void, std::string> ControlConnection::send(const Json& request) {
  const std::string line = request.dump() + "\n";
  std::size_t sent = 0;
  while (sent < line.size()) {
    ssize_t n = ::send(fd_.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return Fail{"cannot send the request to control socket " + path_ + ": " +
                  std::strerror(errno)};
    }
    sent += static_cast<std::size_t>(n);
  }
  return {};
}

Result<Json, std::string> ControlConnection::parseLine(const std::string& line) const {
  Json json = Json::parse(line, nullptr, false);
  if (json.is_discarded() || !json.is_object()) {
    return Fail{"control socket " + path_ +
                " answered something that is not a JSON object: " + printable(line, 80)};
  }
  if (auto error = json.find("error"); error != json.end()) {
    return Fail{printable(error->is_string() ? error->get<std::string>() : error->dump(), 1000)};
  }
  return json;
}

Result<ControlConnection::Next, std::string> ControlConnection::next(
    std::optional<std::chrono::milliseconds> timeout, int interruptFd) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = timeout ? Clock::now() + *timeout : Clock::time_point::max();
  for (;;) {
    if (auto end = buffer_.find('\n'); end != std::string::npos) {
      std::string line = buffer_.substr(0, end);
      buffer_.erase(0, end + 1);
      auto json = parseLine(line);
      if (!json) return Fail{json.error()};
      return Next{Next::Kind::line, std::move(*json)};
    }
    if (buffer_.size() > kMaxLine) {
      return Fail{"control socket " + path_ + " sent a line longer than " +
                  std::to_string(kMaxLine >> 20) + " MiB"};
    }
    int wait = -1;
    if (timeout) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        return Fail{"control socket " + path_ + ": no answer within " +
                    std::to_string(kAnswerTimeout.count()) + " s"};
      }
      wait = static_cast<int>(left.count());
    }
    pollfd fds[2] = {{fd_.get(), POLLIN, 0}, {interruptFd, POLLIN, 0}};
    int ready = ::poll(fds, interruptFd >= 0 ? 2 : 1, wait);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0)
      return Fail{"cannot wait for control socket " + path_ + ": " + std::strerror(errno)};
    if (interruptFd >= 0 && (fds[1].revents & POLLIN) != 0)
      return Next{Next::Kind::interrupted, {}};
    if (ready == 0) continue;  // the deadline check above reports it

    char chunk[64 * 1024];
    ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) {
      return Fail{"cannot read from control socket " + path_ + ": " + std::strerror(errno)};
    }
    if (n == 0) {
      if (buffer_.empty()) return Next{Next::Kind::closed, {}};
      return Fail{"control socket " + path_ + " closed the connection in the middle of a line"};
    }
    buffer_.append(chunk, static_cast<std::size_t>(n));
  }
}

Result<Json, std::string> ControlConnection::request(const Json& request) {
  if (auto sent = send(request); !sent) return Fail{sent.error()};
  auto answer = next(kAnswerTimeout);
  if (!answer) return Fail{answer.error()};
  if (answer->kind != Next::Kind::line) {
    return Fail{"control socket " + path_ + " closed the connection without answering"};
  }
  return std::move(answer->json);
}

}  // namespace enclavefs::inspect
