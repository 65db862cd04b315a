#include "enclave-fs/connection.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cassert>
#include <cerrno>
#include <cstring>
#include <vector>

#include "common/log.h"
#include "common/wire.h"
#include "enclave-fs/busy_poll.h"
#include "enclave-fs/reply_check.h"

namespace enclavefs::enclave {
namespace {

constexpr std::chrono::milliseconds kExpiryCheckInterval{500};

// The connection whose receiver runs on this thread, if any.
thread_local const Connection* receiverOf = nullptr;

}  // namespace

namespace {
// A host that has not answered the hello by then is not going to.
constexpr std::chrono::milliseconds kHandshakeTimeout{10000};
}  // namespace

Connection::Connection(UniqueFd socket, std::chrono::milliseconds timeout)
    : socket_(std::move(socket)), timeout_(timeout), stopEvent_(::eventfd(0, EFD_CLOEXEC)) {}

Connection::~Connection() { stop(); }

Result<std::unique_ptr<Connection>, std::string> Connection::open(
    const Address& address, const msg::Hello& hello, std::chrono::milliseconds requestTimeout) {
  auto socket = connectTo(address);
  if (!socket) return Fail{socket.error()};
  std::unique_ptr<Connection> conn(new Connection(std::move(*socket), requestTimeout));
  const auto timeout = std::min(requestTimeout, kHandshakeTimeout);
  const std::string host = "host " + address.toString();

  auto words = wire::encode(hello);
  if (!conn->send(FrameKind::hello, 0, wire::bytesOf(words), {})) {
    return Fail{"cannot send to " + host + ": " + std::strerror(errno)};
  }
  // The connection's own assembler: what follows the welcome in the same read is the
  // receiver's to take.
  FrameAssembler& in = conn->in_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto frame = in.next();
    if (!frame) return Fail{host + " broke the protocol: " + printable(frame.error())};
    if (frame->has_value()) {
      const FrameView& view = **frame;
      if (view.header.kind != FrameKind::welcome) {
        return Fail{host + " broke the protocol: answered the handshake with frame kind " +
                    std::to_string(static_cast<int>(view.header.kind))};
      }
      auto welcome = wire::decodeWelcome(view.message);
      if (!welcome) return Fail{host + " broke the protocol: " + printable(welcome.error())};
      if (welcome->error != 0) {
        const char* kind = hello.kind == msg::MountKind::block ? "volume" : "export";
        return Fail{host + " refused " + kind + " '" + hello.name + "': " +
                    printable(welcome->message)};
      }
      if (welcome->version != msg::kProtocolVersion) {
        return Fail{host + " speaks protocol version " + std::to_string(welcome->version)};
      }
      Check valid = hello.kind == msg::MountKind::block ? checkVolumeWelcome(*welcome)
                                                        : checkExportWelcome(*welcome);
      if (!valid) return Fail{host + " broke the protocol: " + valid.error()};
      conn->welcome_ = std::move(*welcome);
      return conn;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{conn->socket_.get(), POLLIN, 0};
    int ready = left.count() > 0 ? ::poll(&p, 1, static_cast<int>(left.count())) : 0;
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) return Fail{host + " did not answer the handshake"};
    auto space = in.writable();
    ssize_t n = ::recv(conn->socket_.get(), space.data(), space.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Fail{host + " closed the connection during the handshake"};
    in.commit(static_cast<std::size_t>(n));
  }
}

void Connection::start(std::chrono::microseconds busyPoll) {
  busyPoll_ = busyPoll;
  receiver_ = std::thread([this] { receive(); });
}

void Connection::stop() {
  if (receiver_.joinable()) {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(stopEvent_.get(), &one, sizeof one);
    receiver_.join();
  }
  alive_.store(false, std::memory_order_release);  // an orderly stop is not logged as a loss
  fail("connection stopped");
}

Result<void> Connection::send(FrameKind kind, std::uint64_t id, std::span<const std::byte> message,
                              std::span<const std::byte> payload) {
  // The receiver is the only thread that drains the host's answers and the only one that
  // notices a request past its deadline. Were it to wait here on a socket the host stopped
  // reading, nothing would ever time out: handlers defer their sends to another thread.
  assert(receiverOf != this && "the receiver thread must not send");
  auto header = encodeHeader({static_cast<std::uint32_t>(message.size()),
                              static_cast<std::uint32_t>(payload.size()), id, kind});
  auto pad = payloadPadding(static_cast<std::uint32_t>(payload.size()));
  iovec iov[4] = {{header.data(), header.size()},
                  {const_cast<std::byte*>(message.data()), message.size()},
                  {const_cast<std::byte*>(payload.data()), payload.size()},
                  {const_cast<std::byte*>(pad.data()), pad.size()}};
  std::lock_guard lock(sendMutex_);
  iovec* next = iov;
  std::size_t count = 4;
  while (count > 0) {
    msghdr mh{};
    mh.msg_iov = next;
    mh.msg_iovlen = count;
    ssize_t n = ::sendmsg(socket_.get(), &mh, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno{errno};
    }
    auto left = static_cast<std::size_t>(n);
    while (count > 0 && left >= next->iov_len) {
      left -= next->iov_len;
      ++next;
      --count;
    }
    if (count > 0) {
      next->iov_base = static_cast<char*>(next->iov_base) + left;
      next->iov_len -= left;
    }
  }
  return {};
}

void Connection::call(const msg::Request& request, std::span<const std::byte> payload,
                      ReplyHandler handler, bool unbounded) {
  std::uint64_t id = nextId_.fetch_add(1, std::memory_order_relaxed);
  auto words = wire::encode(request);
  {
    // Checked under the lock fail() takes, so no request is added after the table was failed.
    std::unique_lock lock(pendingMutex_);
    if (!alive()) {
      lock.unlock();
      handler(Errno{ENOTCONN});
      return;
    }
    auto deadline = unbounded ? std::chrono::steady_clock::time_point::max()
                              : std::chrono::steady_clock::now() + timeout_;
    pending_.emplace(id, Pending{std::move(handler), deadline});
  }
  if (auto sent = send(FrameKind::request, id, wire::bytesOf(words), payload); !sent) {
    fail(std::string("cannot send to the host: ") + std::strerror(sent.error().value));
  }
}

void Connection::post(const msg::Request& request) {
  if (!alive()) return;
  auto words = wire::encode(request);
  if (auto sent = send(FrameKind::request, nextId_.fetch_add(1), wire::bytesOf(words), {}); !sent) {
    fail(std::string("cannot send to the host: ") + std::strerror(sent.error().value));
  }
}

void Connection::fail(const std::string& why) {
  std::unordered_map<std::uint64_t, Pending> failed;
  {
    std::lock_guard lock(pendingMutex_);
    bool was = alive_.exchange(false, std::memory_order_acq_rel);
    if (was) logger("mount")->error("connection to the host lost: {}", why);
    failed.swap(pending_);
  }
  ::shutdown(socket_.get(), SHUT_RDWR);
  for (auto& [id, p] : failed) p.handler(Errno{ENOTCONN});
}

bool Connection::expired() {
  auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(pendingMutex_);
  for (const auto& [id, p] : pending_) {
    if (p.deadline < now) return true;
  }
  return false;
}

void Connection::receive() {
  receiverOf = this;
  FrameAssembler& in = in_;
  auto nextExpiryCheck = std::chrono::steady_clock::now() + kExpiryCheckInterval;
  for (;;) {
    // Checked on a clock, not only when the socket is quiet: a host that keeps answering
    // other requests must not starve one forever.
    if (std::chrono::steady_clock::now() >= nextExpiryCheck) {
      if (expired()) {
        fail("the host did not answer within " + std::to_string(timeout_.count() / 1000) + " s");
        return;
      }
      nextExpiryCheck = std::chrono::steady_clock::now() + kExpiryCheckInterval;
    }
    for (;;) {
      auto frame = in.next();
      if (!frame) {
        fail("host broke the framing: " + frame.error());
        return;
      }
      if (!frame->has_value()) break;
      dispatch(**frame);
      if (!alive()) return;
    }
    ssize_t n = receiveBusyPolling(in);
    if (n < 0 && errno == EAGAIN) {
      pollfd fds[2] = {{socket_.get(), POLLIN, 0}, {stopEvent_.get(), POLLIN, 0}};
      int ready = ::poll(fds, 2, static_cast<int>(kExpiryCheckInterval.count()));
      if (ready < 0 && errno != EINTR) {
        fail(std::string("poll: ") + std::strerror(errno));
        return;
      }
      if (fds[1].revents != 0) return;
      if (ready <= 0) continue;
      auto space = in.writable();
      n = ::recv(socket_.get(), space.data(), space.size(), 0);
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {
      fail("the host closed the connection");
      return;
    }
    if (n < 0) {
      fail(std::string("receive: ") + std::strerror(errno));
      return;
    }
    in.commit(static_cast<std::size_t>(n));
  }
}

ssize_t Connection::receiveBusyPolling(FrameAssembler& in) {
  ssize_t n = -1;
  errno = EAGAIN;
  busyPoll(busyPoll_, [&] {
    auto space = in.writable();
    n = ::recv(socket_.get(), space.data(), space.size(), MSG_DONTWAIT);
    return n >= 0 || errno != EAGAIN;
  });
  return n;
}

void Connection::dispatch(const FrameView& frame) {
  if (frame.header.kind == FrameKind::notify) {
    auto notify = wire::decodeNotify(frame.message);
    Check valid = notify ? checkNotify(*notify) : Check(Fail{notify.error()});
    if (!valid) {
      fail("host sent a malformed change notification: " + printable(valid.error()));
      return;
    }
    if (notifyHandler_) notifyHandler_(std::move(*notify));
    return;
  }
  if (frame.header.kind != FrameKind::reply) {
    fail("host sent an unexpected frame kind " + std::to_string(static_cast<int>(frame.header.kind)));
    return;
  }
  ReplyHandler handler;
  {
    std::lock_guard lock(pendingMutex_);
    auto it = pending_.find(frame.header.id);
    if (it == pending_.end()) {
      // Checked under the lock: fail() may have emptied the table meanwhile.
      if (!alive_.load()) return;
      handler = nullptr;
    } else {
      handler = std::move(it->second.handler);
      pending_.erase(it);
    }
  }
  if (!handler) {
    fail("host answered request " + std::to_string(frame.header.id) + ", which was never made");
    return;
  }
  auto reply = wire::decodeReply(frame.message);
  if (!reply) {
    logger("mount")->error("malformed reply from the host: {}", printable(reply.error()));
    handler(Errno{EIO});
    return;
  }
  handler(Answer{*reply, frame.payload});
}

}  // namespace enclavefs::enclave
