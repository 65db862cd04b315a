#include "host-server/control.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "common/address.h"
#include "common/log.h"
#include "host-server/observe.h"
#include "host-server/server.h"

namespace enclavefs::host {

// ---- StreamConnection -----------------------------------------------------------------------

void StreamConnection::start() { receive_.arm(); }

void StreamConnection::send(std::string text) {
  if (closed_) return;
  queuedBytes_ += text.size();
  out_.push_back(std::move(text));
  if (!send_.armed()) send_.arm();
}

void StreamConnection::finish() {
  finishing_ = true;
  if (out_.empty()) close();
}

void StreamConnection::close() {
  if (closed_) return;
  closed_ = true;
  ::shutdown(socket_.get(), SHUT_RDWR);  // wakes the armed receive
  onClosed();
}

void StreamConnection::Receive::arm() {
  keepAlive_ = c_.shared_from_this();
  io_uring_prep_recv(c_.ring_.prepare(this), c_.socket_.get(), buffer_, sizeof buffer_, 0);
}

void StreamConnection::Receive::complete(int result) {
  auto self = std::move(keepAlive_);
  if (c_.closed_) return;
  if (result == -EINTR || result == -EAGAIN) {
    arm();
    return;
  }
  if (result <= 0) {
    c_.close();
    return;
  }
  c_.received_.append(buffer_, static_cast<std::size_t>(result));
  c_.onData(c_.received_);
  if (!c_.closed_) arm();
}

void StreamConnection::Send::arm() {
  keepAlive_ = c_.shared_from_this();
  const std::string& front = c_.out_.front();
  io_uring_prep_send(c_.ring_.prepare(this), c_.socket_.get(), front.data() + c_.sentOfFront_,
                     front.size() - c_.sentOfFront_, MSG_NOSIGNAL);
}

void StreamConnection::Send::complete(int result) {
  auto self = std::move(keepAlive_);
  if (result <= 0) {
    if (result == -EINTR || result == -EAGAIN) {
      arm();
      return;
    }
    c_.out_.clear();
    c_.queuedBytes_ = 0;
    c_.close();
    return;
  }
  c_.sentOfFront_ += static_cast<std::size_t>(result);
  if (c_.sentOfFront_ == c_.out_.front().size()) {
    c_.queuedBytes_ -= c_.out_.front().size();
    c_.out_.pop_front();
    c_.sentOfFront_ = 0;
  }
  if (!c_.out_.empty() && !c_.closed_) {
    arm();
  } else if (c_.out_.empty() && c_.finishing_) {
    c_.close();
  }
}

// ---- Listener -------------------------------------------------------------------------------

namespace {
constexpr std::size_t kMaxOperatorConnections = 16;
}  // namespace

Listener::Listener(Ring& ring, UniqueFd socket, std::string what, Factory factory)
    : ring_(ring), socket_(std::move(socket)), what_(std::move(what)), factory_(std::move(factory)) {}

void Listener::stop() {
  if (stopping_) return;
  stopping_ = true;
  io_uring_prep_cancel(ring_.prepare(&cancel_), &accept_, 0);
  for (auto& weak : connections_) {
    if (auto connection = weak.lock()) connection->close();
  }
}

void Listener::Accept::arm() {
  io_uring_prep_accept(l_.ring_.prepare(this), l_.socket_.get(), nullptr, nullptr, SOCK_CLOEXEC);
}

bool Listener::idle() const {
  if (!stopping_ || accepting_) return false;
  for (const auto& weak : connections_) {
    if (!weak.expired()) return false;
  }
  return true;
}

void Listener::Accept::complete(int result) {
  if (l_.stopping_) {
    if (result >= 0) ::close(result);
    l_.accepting_ = false;
    return;
  }
  if (result >= 0) {
    std::erase_if(l_.connections_, [](const auto& weak) { return weak.expired(); });
    if (l_.connections_.size() >= kMaxOperatorConnections) {
      // Operators' tools and scrapers do not need more; a flood must not take the
      // descriptors the enclaves' sessions need.
      ::close(result);
      logger("hostd")->warn("{}: {} connections are open already; refused one", l_.what_,
                            kMaxOperatorConnections);
    } else {
      l_.connections_.push_back(l_.factory_(UniqueFd(result)));
    }
  } else if (result != -EINTR && result != -ECONNABORTED) {
    logger("hostd")->error("accept on the {} failed: {}", l_.what_, std::strerror(-result));
  }
  arm();
}

namespace {

using nlohmann::json;

constexpr std::size_t kMaxRequestBytes = 64 * 1024;
// A tracer that does not read gets no more than this queued; later events are dropped.
constexpr std::size_t kMaxQueuedTraceBytes = 4 << 20;

// Paths and names may hold bytes that are not UTF-8: they are replaced, never a throw.
std::string line(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}
std::string errorLine(const std::string& sentence) { return line({{"error", sentence}}); }

// One connection to the control socket: one request, then its answer (or a trace).
class ControlConnection : public StreamConnection, public Server::Tracer {
 public:
  ControlConnection(Server& server, UniqueFd socket)
      : StreamConnection(server.ring(), std::move(socket)), server_(server) {}

  void begin() {
    ucred cred{};
    socklen_t len = sizeof cred;
    refused_ = ::getsockopt(fd(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != 0;
    peer_ = "uid " + std::to_string(cred.uid) + " pid " + std::to_string(cred.pid);
    if (refused_) {
      logger("control")->warn("refused a control connection from {}: only root may use the "
                               "control socket", peer_);
    }
    // A refused peer's request is read all the same, so that it gets its answer rather than
    // a reset.
    start();
  }

  void traced(const TraceEvent& event) override {
    if (!filter_.matches(event)) return;
    if (queuedBytes() > kMaxQueuedTraceBytes) {
      ++dropped_;
      return;
    }
    send(toJsonLine(event) + "\n");
    if (remaining_ && --*remaining_ == 0) {
      server_.removeTracer(this);
      tracing_ = false;
      finish();
    }
  }

 protected:
  void onData(std::string& received) override {
    if (answered_) {  // a tracer says nothing more; anything it sends is ignored
      received.clear();
      return;
    }
    auto newline = received.find('\n');
    if (newline == std::string::npos) {
      if (received.size() > kMaxRequestBytes) {
        answered_ = true;
        received.clear();
        reply(errorLine("the request is longer than 64 KiB"));
      }
      return;
    }
    std::string request = received.substr(0, newline);
    received.clear();
    answered_ = true;
    if (refused_) return reply(errorLine("only root may use the control socket"));
    handle(request);
  }

  void onClosed() override {
    if (tracing_) {
      server_.removeTracer(this);
      tracing_ = false;
      logger("control")->info("trace by {} ended ({} events dropped)", peer_, dropped_);
    }
  }

 private:
  void reply(const std::string& answer) {
    send(answer);
    finish();
  }

  void handle(const std::string& text) {
    json request = json::parse(text, nullptr, false);
    if (request.is_discarded() || !request.is_object()) {
      return reply(errorLine("the request is not a JSON object"));
    }
    const json& command = request.value("command", json());
    if (!command.is_string()) return reply(errorLine("the request has no \"command\""));
    const std::string name = command.get<std::string>();
    logger("control")->info("{} asked for {}", peer_, name);
    if (name == "status") return reply(line(statusReport(server_)));
    if (name == "metrics") return reply(line({{"metrics", metricsText(server_)}}));
    if (name == "disconnect") return disconnect(request);
    if (name == "trace") return trace(request);
    reply(errorLine("unknown command '" + printable(name) + "' (status, trace, disconnect, metrics)"));
  }

  // A non-negative integer field, or nothing if absent; false if present but not one.
  static bool unsignedField(const json& request, const char* key, std::optional<std::uint64_t>& out) {
    if (!request.contains(key)) return true;
    const json& value = request[key];
    if (!value.is_number_unsigned()) return false;
    out = value.get<std::uint64_t>();
    return true;
  }

  void disconnect(const json& request) {
    std::optional<std::uint64_t> id;
    if (!unsignedField(request, "client", id) || !id) {
      return reply(errorLine("disconnect needs \"client\": a client id"));
    }
    auto session = server_.findSession(*id);
    if (!session) return reply(errorLine("no client " + std::to_string(*id)));
    logger("control")->warn("{} disconnects client {} ({})", peer_, *id, session->peer().describe());
    session->close("disconnected by the operator");
    reply(line({{"disconnected", *id}}));
  }

  void trace(const json& request) {
    std::optional<std::uint64_t> client, count;
    if (!unsignedField(request, "client", client)) {
      return reply(errorLine("\"client\" must be a client id"));
    }
    if (!unsignedField(request, "count", count) || (count && *count == 0)) {
      return reply(errorLine("\"count\" must be a positive number"));
    }
    if (request.contains("op")) {
      const json& op = request["op"];
      auto index = op.is_string() ? msg::opIndex(op.get<std::string>()) : std::nullopt;
      if (!index) {
        return reply(errorLine("\"op\" must name an operation (lookup, read, write, ...), not " +
                               printable(op.dump())));
      }
      filter_.op = *index;
    }
    filter_.client = client;
    remaining_ = count;
    send(line({{"tracing", true}}));
    server_.addTracer(this);
    tracing_ = true;
  }

  Server& server_;
  std::string peer_;
  bool refused_ = false;  // the peer is not root
  bool answered_ = false;
  bool tracing_ = false;
  TraceFilter filter_;
  std::optional<std::uint64_t> remaining_;
  std::uint64_t dropped_ = 0;
};

// One scrape: read the request's head, answer the metrics, close.
class MetricsConnection : public StreamConnection {
 public:
  MetricsConnection(Server& server, UniqueFd socket)
      : StreamConnection(server.ring(), std::move(socket)), server_(server) {}

 protected:
  void onData(std::string& received) override {
    if (answered_) return;
    if (received.find("\r\n\r\n") == std::string::npos && received.size() < 8192) return;
    answered_ = true;
    const bool get = received.starts_with("GET ");
    std::string body = get ? metricsText(server_) : "only GET is served here\n";
    send(std::string(get ? "HTTP/1.1 200 OK\r\n" : "HTTP/1.1 405 Method Not Allowed\r\n") +
         "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n" +
         "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
    finish();
  }

 private:
  Server& server_;
  bool answered_ = false;
};

}  // namespace

Result<std::unique_ptr<Listener>, std::string> openControlSocket(Server& server,
                                                                 const Address& address) {
  if (address.family != Address::Family::unix_socket) {
    return Fail{"the control socket must be a unix:PATH address (it is for local root only), not " +
                address.toString()};
  }
  // Created 0600: the peer check below is the rule, the mode keeps others from even trying.
  const mode_t previous = ::umask(0177);
  auto socket = listenOn(address);
  ::umask(previous);
  if (!socket) return Fail{"control socket: " + socket.error()};
  return std::make_unique<Listener>(server.ring(), std::move(*socket),
                                    "control socket " + address.toString(),
                                    [&server](UniqueFd fd) {
                                      auto c = std::make_shared<ControlConnection>(server, std::move(fd));
                                      c->begin();
                                      return std::static_pointer_cast<StreamConnection>(c);
                                    });
}

Result<std::unique_ptr<Listener>, std::string> openMetricsEndpoint(Server& server,
                                                                   const std::string& spec) {
  auto colon = spec.rfind(':');
  sockaddr_in where{};
  where.sin_family = AF_INET;
  unsigned port = 0;
  const char* portText = colon == std::string::npos ? nullptr : spec.c_str() + colon + 1;
  auto [end, ec] = portText ? std::from_chars(portText, spec.c_str() + spec.size(), port)
                            : std::from_chars_result{nullptr, std::errc::invalid_argument};
  if (colon == std::string::npos || ec != std::errc() || *end != '\0' || port == 0 || port > 65535 ||
      ::inet_pton(AF_INET, spec.substr(0, colon).c_str(), &where.sin_addr) != 1) {
    return Fail{"--metrics '" + spec + "' is not IPV4-ADDRESS:PORT (for example 127.0.0.1:9464)"};
  }
  where.sin_port = htons(static_cast<std::uint16_t>(port));
  UniqueFd socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int one = 1;
  if (!socket || ::setsockopt(socket.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      ::bind(socket.get(), reinterpret_cast<sockaddr*>(&where), sizeof where) != 0 ||
      ::listen(socket.get(), 16) != 0) {
    return Fail{"cannot serve metrics on " + spec + ": " + std::strerror(errno)};
  }
  return std::make_unique<Listener>(server.ring(), std::move(socket), "metrics endpoint " + spec,
                                    [&server](UniqueFd fd) {
                                      auto c = std::make_shared<MetricsConnection>(server, std::move(fd));
                                      c->start();
                                      return std::static_pointer_cast<StreamConnection>(c);
                                    });
}

}  // namespace enclavefs::host
