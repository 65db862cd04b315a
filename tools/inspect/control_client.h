// The client side of enclavefs-hostd's control socket. A connection carries ONE request, sent
// as one line of JSON, and the server answers in lines of JSON: one answer for most
// commands, a stream of events for trace, which ends when the server closes the connection.
// An answer {"error": "..."} is the server refusing the request; it is returned as an error.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/result.h"
#include "common/unique_fd.h"

namespace enclavefs::inspect {

using Json = nlohmann::ordered_json;

// How long a command waits for its answer (and for the server to accept the connection).
inline constexpr std::chrono::seconds kAnswerTimeout{10};

class ControlConnection {
 public:
  // Connects to `address`, which must be unix:PATH. Errors name the socket and the reason.
  static Result<ControlConnection, std::string> connect(const std::string& address);

  // Sends `request` as one line.
  Result<void, std::string> send(const Json& request);

  // What reading the next line found.
  struct Next {
    enum class Kind { line, closed, interrupted } kind = Kind::line;
    Json json;  // kind == line: the line, a JSON object that is not an {"error": ...}
  };
  // The next line, waiting up to `timeout` (forever without one). `interruptFd`, if not -1,
  // is watched as well: once it is readable, reading stops with Kind::interrupted. A close
  // between lines is Kind::closed; a close in the middle of a line, a line that is not a
  // JSON object, an {"error": ...} answer and the timeout are errors.
  Result<Next, std::string> next(std::optional<std::chrono::milliseconds> timeout,
                                 int interruptFd = -1);

  // send(), then the one answer within kAnswerTimeout.
  Result<Json, std::string> request(const Json& request);

 private:
  ControlConnection(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  Result<Json, std::string> parseLine(const std::string& line) const;

  UniqueFd fd_;
  std::string path_;    // the socket, for errors
  std::string buffer_;  // bytes read past the last full line
};

}  // namespace enclavefs::inspect
