// The operator's side doors into a running server, both served on the loop thread:
//
//   --control unix:PATH   the control socket enclavefs-inspect talks to. Mode 0600, and only
//                         a peer whose SO_PEERCRED uid is 0 is answered. One request per
//                         connection, one line of JSON; the answer is JSON lines:
//                           {"command":"status"}                  -> the status report
//                           {"command":"metrics"}                 -> {"metrics": TEXT}
//                           {"command":"disconnect","client":ID}  -> {"disconnected": ID}
//                           {"command":"trace"[,"client":ID][,"op":OP][,"count":N]}
//                               -> {"tracing":true}, then one event per line until N events
//                                  or until the tracer hangs up
//                         Errors are {"error": SENTENCE}. It never carries file data.
//   --metrics HOST:PORT   the Prometheus text over HTTP (any GET), for standard scrapers.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <functional>
#include <vector>

#include "common/address.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "host-server/uring.h"

namespace enclavefs::host {

class Server;

// A stream connection on the ring: reads into a buffer and hands what arrived to onData();
// sends queued text in order. Alive while a receive or send is armed.
class StreamConnection : public std::enable_shared_from_this<StreamConnection> {
 public:
  StreamConnection(Ring& ring, UniqueFd socket) : ring_(ring), socket_(std::move(socket)) {}
  StreamConnection(const StreamConnection&) = delete;
  StreamConnection& operator=(const StreamConnection&) = delete;
  virtual ~StreamConnection() = default;

  void start();
  void send(std::string text);
  // Closes once everything queued is sent.
  void finish();
  void close();
  bool closed() const { return closed_; }
  std::size_t queuedBytes() const { return queuedBytes_; }
  int fd() const { return socket_.get(); }

 protected:
  // What has arrived so far (the connection keeps it until consume()).
  virtual void onData(std::string& received) = 0;
  virtual void onClosed() {}

 private:
  class Receive : public Completion {
   public:
    explicit Receive(StreamConnection& c) : c_(c) {}
    void arm();
    void complete(int result) override;

   private:
    StreamConnection& c_;
    std::shared_ptr<StreamConnection> keepAlive_;
    char buffer_[4096];
  };
  class Send : public Completion {
   public:
    explicit Send(StreamConnection& c) : c_(c) {}
    void arm();
    bool armed() const { return keepAlive_ != nullptr; }
    void complete(int result) override;

   private:
    StreamConnection& c_;
    std::shared_ptr<StreamConnection> keepAlive_;
  };

  Ring& ring_;
  UniqueFd socket_;
  std::string received_;
  std::deque<std::string> out_;
  std::size_t sentOfFront_ = 0;
  std::size_t queuedBytes_ = 0;
  bool closed_ = false;
  bool finishing_ = false;
  Receive receive_{*this};
  Send send_{*this};
};

// Accepts connections on a listening socket; the factory makes (and starts) the connection
// for each.
class Listener {
 public:
  using Factory = std::function<std::shared_ptr<StreamConnection>(UniqueFd)>;
  Listener(Ring& ring, UniqueFd socket, std::string what, Factory factory);
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  void start() {
    accepting_ = true;
    accept_.arm();
  }
  // Stops accepting and closes every connection; idle() turns true once all have ended.
  void stop();
  bool idle() const;

 private:
  class Accept : public Completion {
   public:
    explicit Accept(Listener& l) : l_(l) {}
    void arm();
    void complete(int result) override;

   private:
    Listener& l_;
  };
  class Cancel : public Completion {
   public:
    void complete(int) override {}
  };

  Ring& ring_;
  UniqueFd socket_;
  std::string what_;
  Factory factory_;
  Accept accept_{*this};
  Cancel cancel_;
  bool accepting_ = false;  // an accept is armed
  bool stopping_ = false;
  std::vector<std::weak_ptr<StreamConnection>> connections_;
};

// `--control unix:PATH`: makes the socket (mode 0600) and serves it. The error names the path.
Result<std::unique_ptr<Listener>, std::string> openControlSocket(Server& server,
                                                                 const Address& address);

// `--metrics HOST:PORT` (an IPv4 address). The error names the address.
Result<std::unique_ptr<Listener>, std::string> openMetricsEndpoint(Server& server,
                                                                   const std::string& address);

}  // namespace enclavefs::host
