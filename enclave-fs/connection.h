// The enclave's connection to the host.
//
// Threads: any FUSE worker may call(); one receiver thread reads every frame from the host,
// decodes it, and runs the handler of the request it answers, which makes the single
// fuse_reply_* call. No thread waits for a reply. The receiver never sends: a handler that
// must tell the host something (give back a lookup, close a handle) hands it to another
// thread, since a send may wait on a socket the host has stopped reading, and only the
// receiver would notice that the host's time is up. `pendingMutex_` guards the table of
// requests in flight; `sendMutex_` keeps frames whole on the socket. Neither is held while a
// handler runs.
//
// Busy polling (busy_poll.h): when the socket runs dry, the receiver keeps trying it for a
// short while before it sleeps, which keeps its CPU awake across one request's round trip
// and for the thread the answer wakes in turn. It costs CPU time only while requests follow
// each other closely, and none when the mount is idle (docs/performance.md has the figures).
//
// Failure: a framing error, a reply to a request never made, a host that closes the socket,
// or a request unanswered past the timeout ends the connection; every request in flight and
// every later one fails at once with ENOTCONN, so nothing waits forever.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>

#include "common/address.h"
#include "common/frame.h"
#include "common/messages.h"
#include "common/result.h"
#include "common/unique_fd.h"

namespace enclavefs::enclave {

// A decoded reply and its payload, valid only during the handler.
struct Answer {
  const msg::Reply& reply;
  std::span<const std::byte> payload;
};

// Called exactly once per request: with the answer, or with the errno of a transport failure
// (ENOTCONN) or an undecodable reply (EIO).
using ReplyHandler = std::function<void(Result<Answer>)>;

class Connection {
 public:
  // Connects and performs the handshake, which may take at most 10 s (or `requestTimeout`
  // if shorter); the error sentence says what went wrong. Each request later may go
  // unanswered for `requestTimeout` before the connection is declared dead.
  static Result<std::unique_ptr<Connection>, std::string> open(
      const Address& address, const msg::Hello& hello, std::chrono::milliseconds requestTimeout);

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  const msg::Welcome& welcome() const { return welcome_; }

  // Starts the receiver thread, which polls for up to `busyPoll` before it sleeps. Call
  // after any fork.
  void start(std::chrono::microseconds busyPoll);
  // Stops the receiver thread and fails what is in flight.
  void stop();

  // `unbounded`: the host may rightly take as long as it needs (a lock that must wait), so
  // the request timeout does not apply.
  void call(const msg::Request& request, std::span<const std::byte> payload, ReplyHandler handler,
            bool unbounded = false);
  // A request the host does not answer (forget).
  void post(const msg::Request& request);

  bool alive() const { return alive_.load(std::memory_order_acquire); }

  // Where the host's change notifications go, decoded and checked (set before start()).
  using NotifyHandler = std::function<void(msg::Notify)>;
  void onNotify(NotifyHandler handler) { notifyHandler_ = std::move(handler); }

 private:
  struct Pending {
    ReplyHandler handler;
    std::chrono::steady_clock::time_point deadline;
  };

  Connection(UniqueFd socket, std::chrono::milliseconds timeout);

  Result<void> send(FrameKind kind, std::uint64_t id, std::span<const std::byte> message,
                    std::span<const std::byte> payload);
  void receive();
  // Reads what the socket has into `in`, trying for up to busyPoll_; -1 with EAGAIN when
  // nothing came in that time.
  ssize_t receiveBusyPolling(FrameAssembler& in);
  void dispatch(const FrameView& frame);
  void fail(const std::string& why);
  bool expired();

  UniqueFd socket_;
  std::chrono::milliseconds timeout_;
  std::chrono::microseconds busyPoll_{0};
  msg::Welcome welcome_;
  std::atomic<bool> alive_{true};
  std::atomic<std::uint64_t> nextId_{1};
  std::mutex sendMutex_;
  std::mutex pendingMutex_;
  std::unordered_map<std::uint64_t, Pending> pending_;
  FrameAssembler in_;  // the handshake's, then the receiver's
  UniqueFd stopEvent_;
  NotifyHandler notifyHandler_;
  std::thread receiver_;
};

}  // namespace enclavefs::enclave
