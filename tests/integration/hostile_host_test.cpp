// A hostile host: a fake enclavefs-hostd, run inside the test, answers the handshake properly
// and then breaks the protocol in one chosen way. The real enclavefs-mount must turn every
// malformed reply into EIO for the application (or ENOTCONN once it has dropped a connection
// whose framing it can no longer trust), must not crash, and must not hang. Every system call
// on the mount runs on its own thread with a deadline, so a hang fails the test instead of
// blocking it.
#include <dirent.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "common/address.h"
#include "common/frame.h"
#include "common/hard_limits.h"
#include "common/messages.h"
#include "common/wire.h"
#include "support/harness.h"
#include "support/require_root.h"

using namespace enclavefs;
using namespace enclavefs::test;
using namespace std::chrono_literals;

namespace {

// ---- bytes on the wire ------------------------------------------------------------------------

std::vector<std::byte> frame(FrameKind kind, std::uint64_t id, std::span<const std::byte> message,
                             std::span<const std::byte> payload = {}) {
  auto header = encodeHeader({static_cast<std::uint32_t>(message.size()),
                              static_cast<std::uint32_t>(payload.size()), id, kind});
  std::vector<std::byte> out(header.begin(), header.end());
  out.insert(out.end(), message.begin(), message.end());
  out.insert(out.end(), payload.begin(), payload.end());
  auto pad = payloadPadding(static_cast<std::uint32_t>(payload.size()));
  out.insert(out.end(), pad.begin(), pad.end());
  return out;
}

std::vector<std::byte> replyFrame(std::uint64_t id, const msg::Reply& reply,
                                  std::span<const std::byte> payload = {}) {
  auto words = wire::encode(reply);
  return frame(FrameKind::reply, id, wire::bytesOf(words), payload);
}

msg::Reply ok(msg::Body body) { return msg::Reply{0, std::move(body), {}}; }
msg::Reply error(int e) { return msg::Reply{e, msg::body::None{}, {}}; }

// ---- the fake host's small, well-behaved file system -------------------------------------------
//
//   node 1  /        directory
//   node 2  /good    regular file holding kGoodData (handle 200 when open)
//   node 3  /liar    regular file of 4096 bytes (handle 300 when open)

constexpr msg::NodeId kGoodNode = 2;
constexpr msg::NodeId kLiarNode = 3;
constexpr msg::HandleId kDirHandle = 100;
constexpr msg::HandleId kGoodHandle = 200;
constexpr msg::HandleId kLiarHandle = 300;
const std::string kGoodData = "good data\n";

msg::Attr rootAttr() {
  msg::Attr a;
  a.ino = 1;
  a.mode = S_IFDIR | 0755;
  a.nlink = 2;
  a.blksize = 4096;
  a.mtime = a.atime = a.ctime = {1700000000, 0};
  return a;
}

msg::Attr fileAttr(std::uint64_t ino, std::uint64_t size) {
  msg::Attr a;
  a.ino = ino;
  a.mode = S_IFREG | 0644;
  a.nlink = 1;
  a.size = size;
  a.blocks = (size + 511) / 512;
  a.blksize = 4096;
  a.mtime = a.atime = a.ctime = {1700000000, 0};
  return a;
}

msg::Entry entry(msg::NodeId node, msg::Attr attr) { return msg::Entry{node, 0, attr}; }

// One accepted connection, as the misbehaviours see it.
class FakeConn {
 public:
  explicit FakeConn(int fd) : fd_(fd) {}

  // False once the client has gone away.
  bool sendRaw(std::span<const std::byte> bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<std::size_t>(n);
    }
    return true;
  }
  void reply(std::uint64_t id, const msg::Reply& r, std::span<const std::byte> payload = {}) {
    sendRaw(replyFrame(id, r, payload));
  }
  // Waits, without reading, until the client shuts the connection down; false if it has
  // not within `limit`.
  bool waitForHangUp(std::chrono::milliseconds limit) {
    pollfd p{fd_, POLLRDHUP, 0};
    int r;
    do {
      r = ::poll(&p, 1, static_cast<int>(limit.count()));
    } while (r < 0 && errno == EINTR);
    return r > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
  }
  // Ends the connection after what was sent.
  void close() {
    ::shutdown(fd_, SHUT_RDWR);
    closed_ = true;
  }
  bool closed() const { return closed_; }

 private:
  int fd_;
  bool closed_ = false;
};

// Answers a request the hostile way; false leaves it to the well-behaved file system.
using Misbehaviour = std::function<bool(FakeConn&, std::uint64_t id, const msg::Request&)>;
// Changes the welcome to a hello before it is sent.
using WelcomeEdit = std::function<void(msg::Welcome&)>;

constexpr std::uint64_t kFakeVolumeBytes = 64 << 20;

class FakeHost {
 public:
  // `afterWelcome`: bytes sent with the welcome, in the same write.
  FakeHost(const std::string& socketPath, Misbehaviour misbehave, WelcomeEdit editWelcome = {},
           std::vector<std::byte> afterWelcome = {})
      : socketPath_(socketPath),
        misbehave_(std::move(misbehave)),
        editWelcome_(std::move(editWelcome)),
        afterWelcome_(std::move(afterWelcome)),
        stop_(::eventfd(0, EFD_CLOEXEC)) {
    auto address = parseAddress("unix:" + socketPath);
    if (!address) throw std::runtime_error(address.error());
    auto listener = listenOn(*address);
    if (!listener) throw std::runtime_error(listener.error());
    listener_ = std::move(*listener);
    thread_ = std::thread([this] { serve(); });
  }
  FakeHost(const FakeHost&) = delete;
  FakeHost& operator=(const FakeHost&) = delete;
  ~FakeHost() {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(stop_.get(), &one, sizeof one);
    thread_.join();
    ::unlink(socketPath_.c_str());
  }

  std::string address() const { return "unix:" + socketPath_; }
  int connections() const { return connections_.load(); }

 private:
  // Waits for `fd` to be readable; false once the test ends.
  bool wait(int fd) {
    pollfd p[2] = {{fd, POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    for (;;) {
      int r = ::poll(p, 2, -1);
      if (r < 0 && errno == EINTR) continue;
      return r > 0 && p[1].revents == 0;
    }
  }

  void serve() {
    while (wait(listener_.get())) {
      UniqueFd client(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!client) continue;
      ++connections_;
      serveConnection(client.get());
    }
  }

  void serveConnection(int fd) {
    FakeConn conn(fd);
    FrameAssembler in;
    bool welcomed = false;
    while (!conn.closed() && wait(fd)) {
      auto space = in.writable();
      ssize_t n = ::recv(fd, space.data(), space.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      in.commit(static_cast<std::size_t>(n));
      for (;;) {
        auto next = in.next();
        if (!next || !next->has_value()) break;
        const FrameView& f = **next;
        if (!welcomed) {
          if (f.header.kind != FrameKind::hello) return;
          auto hello = wire::decodeHello(f.message);
          if (!hello) return;
          msg::Welcome welcome;
          welcome.version = msg::kProtocolVersion;
          welcome.maxWrite = limits::kMaxIoBytes;
          welcome.maxRead = limits::kMaxIoBytes;
          welcome.root = rootAttr();
          if (hello->kind == msg::MountKind::block) {
            welcome.volumeSize = kFakeVolumeBytes;
            welcome.sectorSize = limits::kSectorBytes;
          }
          if (editWelcome_) editWelcome_(welcome);
          auto bytes = frame(FrameKind::welcome, 0, wire::bytesOf(wire::encode(welcome)));
          bytes.insert(bytes.end(), afterWelcome_.begin(), afterWelcome_.end());
          conn.sendRaw(bytes);
          welcomed = true;
          continue;
        }
        if (f.header.kind != FrameKind::request) continue;
        auto request = wire::decodeRequest(f.message);
        if (!request) continue;
        if (std::holds_alternative<msg::op::Forget>(request->op)) continue;  // one-way
        if (!misbehave_(conn, f.header.id, *request)) answer(conn, f.header.id, *request);
        if (conn.closed()) return;
      }
    }
  }

  static void answer(FakeConn& conn, std::uint64_t id, const msg::Request& r) {
    const auto* op = &r.op;
    if (std::holds_alternative<msg::op::Lookup>(*op)) {
      if (r.node != msg::kRootNode) return conn.reply(id, error(ENOENT));
      if (r.name == "good") return conn.reply(id, ok(entry(kGoodNode, fileAttr(2, kGoodData.size()))));
      if (r.name == "liar") return conn.reply(id, ok(entry(kLiarNode, fileAttr(3, 4096))));
      return conn.reply(id, error(ENOENT));
    }
    if (std::holds_alternative<msg::op::GetAttr>(*op)) {
      if (r.node == msg::kRootNode) return conn.reply(id, ok(rootAttr()));
      if (r.node == kGoodNode) return conn.reply(id, ok(fileAttr(2, kGoodData.size())));
      if (r.node == kLiarNode) return conn.reply(id, ok(fileAttr(3, 4096)));
      return conn.reply(id, error(ESTALE));
    }
    if (std::holds_alternative<msg::op::OpenDir>(*op)) {
      return conn.reply(id, ok(msg::body::Opened{kDirHandle}));
    }
    if (const auto* rd = std::get_if<msg::op::ReadDir>(op)) {
      msg::body::Entries list;
      if (rd->offset == 0) {
        list.items.push_back({".", 1, DT_DIR, 1, std::nullopt});
        list.items.push_back({"..", 1, DT_DIR, 2, std::nullopt});
        msg::body::DirEntry good{"good", 2, DT_REG, 3, std::nullopt};
        if (rd->plus) good.entry = entry(kGoodNode, fileAttr(2, kGoodData.size()));
        list.items.push_back(good);
      }
      return conn.reply(id, ok(list));
    }
    if (std::holds_alternative<msg::op::Open>(*op)) {
      if (r.node != kGoodNode && r.node != kLiarNode) return conn.reply(id, error(EACCES));
      // With the file's first bytes when asked (a host that pushes changes).
      const std::string data = r.node == kGoodNode ? kGoodData : std::string(4096, 'x');
      const std::size_t sent = std::min<std::size_t>(r.openData, data.size());
      return conn.reply(id, ok(msg::body::Opened{r.node == kGoodNode ? kGoodHandle : kLiarHandle}),
                        std::as_bytes(std::span(data.data(), sent)));
    }
    if (const auto* rd = std::get_if<msg::op::Read>(op)) {
      std::string data = r.handle == kGoodHandle ? kGoodData : std::string(4096, 'x');
      std::size_t from = std::min<std::size_t>(rd->offset, data.size());
      std::size_t n = std::min<std::size_t>(rd->size, data.size() - from);
      return conn.reply(id, ok(msg::body::Data{}),
                        std::as_bytes(std::span(data.data() + from, n)));
    }
    if (std::holds_alternative<msg::op::Write>(*op)) {
      return conn.reply(id, error(EROFS));
    }
    if (std::holds_alternative<msg::op::Flush>(*op) || std::holds_alternative<msg::op::Release>(*op) ||
        std::holds_alternative<msg::op::ReleaseDir>(*op)) {
      return conn.reply(id, ok(msg::body::None{}));
    }
    if (std::holds_alternative<msg::op::StatFs>(*op)) {
      return conn.reply(id, ok(msg::body::StatFs{1000, 500, 500, 100, 50, 4096, 4096, 255}));
    }
    if (std::holds_alternative<msg::op::GetXattr>(*op)) return conn.reply(id, error(ENODATA));
    if (const auto* sr = std::get_if<msg::op::SectorRead>(op)) {  // a blank volume
      std::vector<std::byte> zeros(sr->length);
      return conn.reply(id, ok(msg::body::Data{}), zeros);
    }
    if (const auto* lx = std::get_if<msg::op::ListXattr>(op)) {
      if (lx->size == 0) return conn.reply(id, ok(msg::body::Size{0}));
      return conn.reply(id, ok(msg::body::Data{}));
    }
    conn.reply(id, error(EPERM));
  }

  std::string socketPath_;
  Misbehaviour misbehave_;
  WelcomeEdit editWelcome_;
  std::vector<std::byte> afterWelcome_;
  UniqueFd listener_;
  UniqueFd stop_;
  std::atomic<int> connections_{0};
  std::thread thread_;
};

bool isLookup(const msg::Request& r, const std::string& name) {
  return std::holds_alternative<msg::op::Lookup>(r.op) && r.name == name;
}

// ---- the enclavefs-mount process ---------------------------------------------------------------

// Alive and not a zombie.
bool processAlive(pid_t pid) {
  if (pid <= 0) return false;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return false;
  auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

// ---- bounded system calls ----------------------------------------------------------------------

struct Outcome {
  bool finished = false;  // false: still blocked at the deadline (a hang)
  long rc = 0;
  int err = 0;
  std::chrono::milliseconds took{0};
};

// Runs `call` (a system call returning -1 and setting errno on failure) on its own thread.
// If it has not returned after `limit`, the mount's daemon is killed so the call comes back
// and the test can go on, and the outcome says it hung.
Outcome bounded(const std::string& mountPoint, std::function<long()> call,
                std::chrono::milliseconds limit = 5s) {
  struct State {
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    long rc = 0;
    int err = 0;
  };
  auto state = std::make_shared<State>();
  auto start = std::chrono::steady_clock::now();
  std::thread worker([state, call = std::move(call)] {
    errno = 0;
    long rc = call();
    int err = errno;
    std::lock_guard lock(state->m);
    state->rc = rc;
    state->err = err;
    state->done = true;
    state->cv.notify_all();
  });
  Outcome out;
  std::unique_lock lock(state->m);
  out.finished = state->cv.wait_for(lock, limit, [&] { return state->done; });
  if (!out.finished) {
    pid_t daemon = mountDaemon(mountPoint);
    if (daemon > 0) ::kill(daemon, SIGKILL);
    if (!state->cv.wait_for(lock, 10s, [&] { return state->done; })) {
      lock.unlock();
      worker.detach();
      return out;
    }
  }
  out.took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start);
  out.rc = state->rc;
  out.err = state->err;
  lock.unlock();
  worker.join();
  return out;
}

Outcome statOf(const std::string& mountPoint, const std::string& path) {
  return bounded(mountPoint, [path] {
    struct stat st;
    return static_cast<long>(::stat(path.c_str(), &st));
  });
}

// Opens `path` with `flags`, then runs `use` on the descriptor and closes it; the outcome is
// the first failing step's.
Outcome withFile(const std::string& mountPoint, const std::string& path, int flags,
                 std::function<long(int)> use) {
  return bounded(mountPoint, [path, flags, use] {
    int fd = ::open(path.c_str(), flags | O_CLOEXEC);
    if (fd < 0) return -1L;
    long rc = use(fd);
    int err = errno;
    ::close(fd);
    errno = err;
    return rc;
  });
}

long readSome(int fd) {
  char buf[100];
  return static_cast<long>(::read(fd, buf, sizeof buf));
}

long listSome(int fd) {
  alignas(8) char buf[4096];
  return static_cast<long>(::syscall(SYS_getdents64, fd, buf, sizeof buf));
}

std::string errName(int e) { return std::string(strerrorname_np(e) ? strerrorname_np(e) : "?"); }

// The call came back in time with exactly `expected`.
void checkFails(const Outcome& o, int expected) {
  REQUIRE_MESSAGE(o.finished, "the call hung (the mount daemon was killed to end it)");
  CHECK(o.rc == -1);
  CHECK_MESSAGE(o.err == expected, "errno ", errName(o.err), ", expected ", errName(expected));
  CHECK(o.took < 5s);
}

// The call came back in time with EIO, or ENOTCONN because the client dropped the connection.
void checkFailsOrDrops(const Outcome& o) {
  REQUIRE_MESSAGE(o.finished, "the call hung (the mount daemon was killed to end it)");
  CHECK(o.rc == -1);
  CHECK_MESSAGE((o.err == EIO || o.err == ENOTCONN), "errno ", errName(o.err));
  CHECK(o.took < 5s);
}

// The daemon survived, the mount is still there, and it still serves a good request.
void checkStillServing(const Mount& mount, pid_t daemon) {
  CHECK(processAlive(daemon));
  CHECK(isMountPoint(mount.path()));
  auto o = statOf(mount.path(), mount / "good");
  REQUIRE_MESSAGE(o.finished, "stat of a good file hung");
  CHECK_MESSAGE(o.rc == 0, "stat of a good file failed: ", errName(o.err));
  CHECK(o.took < 5s);
  auto r = withFile(mount.path(), mount / "good", O_RDONLY, [](int fd) {
    char buf[64];
    ssize_t n = ::read(fd, buf, sizeof buf);
    return n == static_cast<ssize_t>(kGoodData.size()) && std::memcmp(buf, kGoodData.data(), n) == 0
               ? 0L
               : -2L;
  });
  REQUIRE(r.finished);
  CHECK_MESSAGE(r.rc == 0, "reading a good file failed: rc ", r.rc, " ", errName(r.err));
  CHECK(processAlive(daemon));
}

// The daemon survived a fault that cost it the connection: the mount is still there and
// answers promptly with an error instead of hanging.
void checkDisconnectedButAlive(const Mount& mount, pid_t daemon) {
  CHECK(processAlive(daemon));
  CHECK(isMountPoint(mount.path()));
  auto o = statOf(mount.path(), mount / "after-the-fault");
  REQUIRE_MESSAGE(o.finished, "a stat after the fault hung");
  CHECK(o.rc == -1);
  CHECK_MESSAGE(o.err == ENOTCONN, "errno ", errName(o.err));
  CHECK(o.took < 5s);
  CHECK(processAlive(daemon));
}

// A test's fake host and the real mount of it.
struct Scene {
  TempDir dir;
  std::unique_ptr<FakeHost> host;
  std::unique_ptr<Mount> mount;
  pid_t daemon = -1;

  explicit Scene(Misbehaviour misbehave, const std::vector<std::string>& mountArgs = {},
                 std::vector<std::byte> afterWelcome = {}, WelcomeEdit editWelcome = {}) {
    ::mkdir((dir / "mnt").c_str(), 0755);
    host = std::make_unique<FakeHost>(dir / "sock", std::move(misbehave), std::move(editWelcome),
                                      std::move(afterWelcome));
    mount = std::make_unique<Mount>(host->address(), "data", dir / "mnt", mountArgs);
    daemon = mountDaemon(mount->path());
    REQUIRE_MESSAGE(daemon > 0, "cannot find the enclavefs-mount daemon");
  }
  ~Scene() {
    mount.reset();  // unmount while the fake host still answers
    host.reset();
  }
  const Mount& m() const { return *mount; }
  std::string operator/(const std::string& name) const { return *mount / name; }
};

}  // namespace

// ---- the fake host itself ----------------------------------------------------------------------

TEST_CASE("the well-behaved fake host serves the mount (control)") {
  Scene scene([](FakeConn&, std::uint64_t, const msg::Request&) { return false; });
  checkStillServing(scene.m(), scene.daemon);
  auto missing = statOf(scene.m().path(), scene / "missing");
  checkFails(missing, ENOENT);
  auto listed = withFile(scene.m().path(), scene.m().path(), O_RDONLY | O_DIRECTORY, listSome);
  REQUIRE(listed.finished);
  CHECK(listed.rc > 0);
}

// ---- framing faults: the connection cannot be trusted any more ----------------------------------

TEST_CASE("a truncated frame followed by a close fails the call, the daemon survives") {
  Scene scene([](FakeConn& conn, std::uint64_t id, const msg::Request& r) {
    if (!isLookup(r, "trigger")) return false;
    auto bytes = replyFrame(id, ok(entry(7, fileAttr(7, 1))));
    conn.sendRaw(std::span(bytes).first(kFrameHeaderBytes + (bytes.size() - kFrameHeaderBytes) / 2));
    conn.close();
    return true;
  });
  checkFailsOrDrops(statOf(scene.m().path(), scene / "trigger"));
  checkDisconnectedButAlive(scene.m(), scene.daemon);
}

TEST_CASE("a header announcing an oversized message ends the connection without waiting") {
  Scene scene([](FakeConn& conn, std::uint64_t id, const msg::Request& r) {
    if (!isLookup(r, "trigger")) return false;
    // The socket stays open: the client must not wait for 256 KiB that will never come.
    auto header = encodeHeader({limits::kMaxMessageBytes + 8, 0, id, FrameKind::reply});
    conn.sendRaw(header);
    return true;
  });
  checkFailsOrDrops(statOf(scene.m().path(), scene / "trigger"));
  checkDisconnectedButAlive(scene.m(), scene.daemon);
}

TEST_CASE("a header announcing an oversized payload ends the connection without waiting") {
  Scene scene([](FakeConn& conn, std::uint64_t id, const msg::Request& r) {
    if (!isLookup(r, "trigger")) return false;
    auto words = wire::encode(ok(entry(7, fileAttr(7, 1))));
    auto header = encodeHeader({static_cast<std::uint32_t>(words.asBytes().size()),
                                limits::kMaxPayloadBytes + 1, id, FrameKind::reply});
    conn.sendRaw(header);
    conn.sendRaw(wire::bytesOf(words));
    return true;
  });
  checkFailsOrDrops(statOf(scene.m().path(), scene / "trigger"));
  checkDisconnectedButAlive(scene.m(), scene.daemon);
}

TEST_CASE("other malformed headers end the connection") {
  // A header is patched after encoding, so any field can be made wrong.
  std::function<void(HeaderBytes&)> patch;
  SUBCASE("message length 0") { patch = [](HeaderBytes& h) { std::memset(&h[0], 0, 4); }; }
  SUBCASE("message length not a multiple of 8") { patch = [](HeaderBytes& h) { h[0] = std::byte{13}; }; }
  SUBCASE("message length 4 GiB - 8") {
    patch = [](HeaderBytes& h) { std::memset(&h[0], 0xff, 4); h[0] = std::byte{0xf8}; };
  }
  SUBCASE("payload length 4 GiB - 1") { patch = [](HeaderBytes& h) { std::memset(&h[4], 0xff, 4); }; }
  SUBCASE("bad magic") { patch = [](HeaderBytes& h) { h[20] = std::byte{0}; }; }
  SUBCASE("unknown frame kind") { patch = [](HeaderBytes& h) { h[16] = std::byte{77}; }; }
  SUBCASE("nonzero flags") { patch = [](HeaderBytes& h) { h[18] = std::byte{1}; }; }
  SUBCASE("a welcome frame instead of a reply") {
    patch = [](HeaderBytes& h) { h[16] = std::byte{static_cast<int>(FrameKind::welcome)}; };
  }
  SUBCASE("a request frame instead of a reply") {
    patch = [](HeaderBytes& h) { h[16] = std::byte{static_cast<int>(FrameKind::request)}; };
  }
  Scene scene([patch](FakeConn& conn, std::uint64_t id, const msg::Request& r) {
    if (!isLookup(r, "trigger")) return false;
    auto bytes = replyFrame(id, ok(entry(7, fileAttr(7, 1))));
    HeaderBytes header;
    std::memcpy(header.data(), bytes.data(), header.size());
    patch(header);
    std::memcpy(bytes.data(), header.data(), header.size());
    conn.sendRaw(bytes);
    return true;
  });
  checkFailsOrDrops(statOf(scene.m().path(), scene / "trigger"));
  checkDisconnectedButAlive(scene.m(), scene.daemon);
}

TEST_CASE("a reply to a request never made ends the connection") {
  Scene scene([](FakeConn& conn, std::uint64_t id, const msg::Request& r) {
    if (!isLookup(r, "trigger")) return false;
    // A well-formed answer, but to an id the client never used; the real request is dropped.
    conn.reply(id + 1'000'000, ok(entry(7, fileAttr(7, 1))));
    return true;
  });
  checkFailsOrDrops(statOf(scene.m().path(), scene / "trigger"));
  checkDisconnectedButAlive(scene.m(), scene.daemon);
}

TEST_CASE("a host that never answers: the call fails within the mount's timeout") {
  Scene scene(
      [](FakeConn&, std::uint64_t, const msg::Request& r) { return isLookup(r, "silence"); },
      {"-o", "timeout=2"});
  auto o = statOf(scene.m().path(), scene / "silence");
  checkFailsOrDrops(o);
  CHECK(o.took >= 1500ms);  // it did wait for the host, as long as it was told to
  checkDisconnectedButAlive(scene.m(), scene.daemon);
}

TEST_CASE("a host that trickles a frame it never finishes cannot stall a call past the timeout") {
  Scene scene(
      [](FakeConn& conn, std::uint64_t id, const msg::Request& r) {
        if (!isLookup(r, "trickle")) return false;
        // A legal header for the largest message, then a byte at a time: the socket is never
        // quiet, but the reply never completes. Stops when the client hangs up (or after 9 s).
        conn.sendRaw(encodeHeader({limits::kMaxMessageBytes, 0, id, FrameKind::reply}));
        const std::byte one[1] = {std::byte{0}};
        for (int i = 0; i < 30; ++i) {
          std::this_thread::sleep_for(300ms);
          if (!conn.sendRaw(one)) break;
        }
        conn.close();
        return true;
      },
      {"-o", "timeout=2"});
  auto o = statOf(scene.m().path(), scene / "trickle");
  checkFailsOrDrops(o);
  checkDisconnectedButAlive(scene.m(), scene.daemon);
}

TEST_CASE("a host that answers everything but one request cannot stall it past the timeout") {
  // attr_timeout=0: every fstat of the open file is a getattr the host answers at once.
  Scene scene(
      [](FakeConn&, std::uint64_t, const msg::Request& r) { return isLookup(r, "silence"); },
      {"-o", "timeout=2,attr_timeout=0"});
  const std::string mnt = scene.m().path();
  int fd = ::open((scene / "good").c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  // Keep the host busy answering other requests the whole time.
  std::atomic<bool> stop{false};
  std::atomic<int> answered{0};
  std::thread busy([&] {
    while (!stop.load()) {
      struct stat st;
      if (::fstat(fd, &st) == 0) ++answered;
      std::this_thread::sleep_for(50ms);
    }
  });
  auto o = statOf(mnt, scene / "silence");
  stop.store(true);
  busy.join();
  ::close(fd);
  checkFailsOrDrops(o);
  CHECK(answered.load() > 10);  // the host really was answering meanwhile
  checkDisconnectedButAlive(scene.m(), scene.daemon);
}

TEST_CASE(
    "a host that stops reading cannot stall the mount, even when a reply must be given back") {
  // The host stops reading, so the mount's socket fills with a write; then it answers a
  // lookup with an entry the mount refuses, whose lookup count the mount must give back.
  // The mount must still refuse the lookup at once, and end the connection when the write
  // is past its timeout, rather than wait on the full socket for good.
  std::atomic<bool> hungUp{false};
  Scene scene(
      [&hungUp](FakeConn& conn, std::uint64_t id, const msg::Request& r) {
        if (!isLookup(r, "stall")) return false;
        std::this_thread::sleep_for(1500ms);  // not reading: the write below fills the socket
        conn.reply(id, ok(entry(0, fileAttr(9, 1))));
        hungUp = conn.waitForHangUp(8s);
        conn.close();
        return true;
      },
      {"-o", "timeout=2"});
  const std::string mnt = scene.m().path();
  int fd = ::open((scene / "good").c_str(), O_WRONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  std::optional<Outcome> lookup;
  std::thread looking([&] { lookup = statOf(mnt, scene / "stall"); });
  std::this_thread::sleep_for(300ms);  // the host has the lookup and no longer reads
  auto written = bounded(mnt, [fd] {
    std::vector<char> data(4 << 20, 'w');  // more than the socket holds
    return static_cast<long>(::write(fd, data.data(), data.size()));
  });
  looking.join();
  ::close(fd);
  REQUIRE(lookup.has_value());
  checkFailsOrDrops(*lookup);
  CHECK(lookup->took < 3s);
  REQUIRE_MESSAGE(written.finished, "the write hung (the mount daemon was killed to end it)");
  CHECK(written.rc == -1);
  CHECK(hungUp.load());  // the mount, not the host, ended the connection
  checkDisconnectedButAlive(scene.m(), scene.daemon);
}

TEST_CASE("a host that floods change notifications while the mount starts cannot grow its memory") {
  // Until the kernel has the root's attributes, the mount applies no change notification and
  // queues them instead. Frames of nothing but directory attributes (thousands each) must not
  // pile up in that queue: the mount's peak resident set is compared with a mount's that
  // got no flood, of the same build.
  //
  // AddressSanitizer keeps freed memory in quarantine, where it would count as the mount's:
  // none for the mounts of this test (the variable means nothing to a build without it).
  const char* asanWas = std::getenv("ASAN_OPTIONS");
  const std::string asanBefore = asanWas != nullptr ? asanWas : "";
  ::setenv("ASAN_OPTIONS", (asanBefore + ":quarantine_size_mb=0").c_str(), 1);
  struct Restore {
    bool was;
    std::string before;
    ~Restore() {
      if (was) {
        ::setenv("ASAN_OPTIONS", before.c_str(), 1);
      } else {
        ::unsetenv("ASAN_OPTIONS");
      }
    }
  } restore{asanWas != nullptr, asanBefore};

  auto peakOfMount = [](int frames) {
    std::atomic<bool> flooded{false};
    Scene scene([&flooded, frames](FakeConn& conn, std::uint64_t, const msg::Request& r) {
      if (!std::holds_alternative<msg::op::GetAttr>(r.op) || flooded.exchange(true)) return false;
      msg::Notify notify;
      notify.dirAttrs.assign(1500, msg::NodeAttr{msg::kRootNode, rootAttr()});
      auto bytes = frame(FrameKind::notify, 0, wire::bytesOf(wire::encode(notify)));
      for (int i = 0; i < frames; ++i) conn.sendRaw(bytes);  // 168 KiB each once decoded
      return false;                                          // then answer the getattr
    });
    CHECK(flooded.load());
    checkStillServing(scene.m(), scene.daemon);
    return memoryKiB(scene.daemon, "VmHWM");
  };
  const long quiet = peakOfMount(0);
  const long flooded = peakOfMount(800);  // about 130 MiB once decoded
  REQUIRE(quiet > 0);
  REQUIRE(flooded > 0);
  CHECK_MESSAGE(flooded - quiet < 32 * 1024, "the flood raised the mount's peak resident set from ",
                quiet / 1024, " to ", flooded / 1024, " MiB");
}

TEST_CASE("a frame that begins in the same read as the welcome is read whole") {
  // A host may send a change notification right after the welcome; the mount must not lose
  // the part of it that came with the welcome (it would then read the rest as a frame).
  msg::Notify notify;
  notify.entries.push_back({msg::kRootNode, "good"});
  const auto bytes = frame(FrameKind::notify, 0, wire::bytesOf(wire::encode(notify)));
  const std::size_t half = bytes.size() / 2;
  std::vector<std::byte> firstHalf(bytes.begin(), bytes.begin() + static_cast<long>(half));
  std::atomic<bool> finished{false};
  Scene scene(
      [&finished, bytes, half](FakeConn& conn, std::uint64_t, const msg::Request&) {
        if (!finished.exchange(true)) conn.sendRaw(std::span(bytes).subspan(half));
        return false;
      },
      {}, firstHalf);
  CHECK(finished.load());
  checkStillServing(scene.m(), scene.daemon);
}

TEST_CASE("an export welcome with a root of another type or tiny reads and writes is refused") {
  const std::vector<std::pair<WelcomeEdit, std::string>> welcomes = {
      {[](msg::Welcome& w) { w.root.mode = S_IFIFO | 0644; }, "the root is neither"},
      {[](msg::Welcome& w) { w.root.mode = 0; }, "no valid file type"},
      {[](msg::Welcome& w) { w.maxWrite = 0; }, "largest read"},
  };
  for (const auto& [edit, expected] : welcomes) {
    CAPTURE(expected);
    TempDir dir;
    ::mkdir((dir / "mnt").c_str(), 0755);
    FakeHost host(
        dir / "sock", [](FakeConn&, std::uint64_t, const msg::Request&) { return false; }, edit);
    auto r = run({mountPath(), "--host", host.address(), "--export", "data", "--force-mount",
                  "empty", dir / "mnt"});
    CHECK(r.exitCode == 1);
    CHECK_MESSAGE(r.output.find("broke the protocol: ") != std::string::npos, r.output);
    CHECK_MESSAGE(r.output.find(expected) != std::string::npos, r.output);
    CHECK_FALSE(isMountPoint(dir / "mnt"));
  }
}

TEST_CASE("a notification full of bad directory attributes is refused in one log line") {
  TempDir logs;
  const std::string log = logs / "mount.log";
  Scene scene(
      [](FakeConn& conn, std::uint64_t id, const msg::Request& r) {
        if (!isLookup(r, "flood")) return false;
        msg::Notify notify;
        msg::Attr none;  // mode 0: no file type
        notify.dirAttrs.assign(1000, msg::NodeAttr{msg::kRootNode, none});
        conn.sendRaw(frame(FrameKind::notify, 0, wire::bytesOf(wire::encode(notify))));
        conn.reply(id, error(ENOENT));
        return true;
      },
      {"--log-file", log}, {}, [](msg::Welcome& w) { w.features |= msg::kFeatureChangeNotify; });
  checkFails(statOf(scene.m().path(), scene / "flood"), ENOENT);
  std::ifstream in(log);
  std::string line;
  int refusals = 0;
  while (std::getline(in, line)) {
    if (line.find("refused the host's attributes") != std::string::npos) {
      ++refusals;
      CHECK_MESSAGE(line.find("1000 directories") != std::string::npos, line);
    }
  }
  CHECK(refusals == 1);
  checkStillServing(scene.m(), scene.daemon);
}

// ---- bad replies on a sound connection: EIO, and the mount goes on -----------------------------

TEST_CASE("a lookup reply with node 0, the root's node or a bad attribute gives EIO") {
  Scene scene([](FakeConn& conn, std::uint64_t id, const msg::Request& r) {
    if (!std::holds_alternative<msg::op::Lookup>(r.op)) return false;
    msg::Attr a = fileAttr(9, 1);
    msg::NodeId node = 9;
    if (r.name == "node-0") {
      node = 0;
    } else if (r.name == "node-1") {
      node = msg::kRootNode;
    } else if (r.name == "node-1-as-dir") {
      node = msg::kRootNode;
      a = rootAttr();
    } else if (r.name == "type-0") {
      a.mode = 0644;
    } else if (r.name == "type-017") {
      a.mode = 0170000 | 0644;
    } else if (r.name == "type-013") {
      a.mode = 0130000 | 0644;
    } else if (r.name == "size-2^63") {
      a.size = 1ull << 63;
    } else if (r.name == "blocks-huge") {
      a.blocks = ~0ull;
    } else if (r.name == "blksize-3000") {
      a.blksize = 3000;
    } else if (r.name == "nsec-1e9") {
      a.mtime.nsec = 1'000'000'000;
    } else if (r.name == "good-as-dir") {
      // The node the host gave out as a regular file, now claimed to be a directory.
      node = kGoodNode;
      a = rootAttr();
      a.ino = 2;
    } else {
      return false;
    }
    conn.reply(id, ok(entry(node, a)));
    return true;
  });
  REQUIRE(statOf(scene.m().path(), scene / "good").rc == 0);  // node 2 known as a file
  for (const std::string name : {"node-0", "node-1", "node-1-as-dir", "type-0", "type-017", "type-013",
                           "size-2^63", "blocks-huge", "blksize-3000", "nsec-1e9", "good-as-dir"}) {
    CAPTURE(name);
    checkFails(statOf(scene.m().path(), scene / name), EIO);
  }
  checkStillServing(scene.m(), scene.daemon);
}

TEST_CASE("a reply with the wrong body or an unexpected payload gives EIO") {
  Scene scene([](FakeConn& conn, std::uint64_t id, const msg::Request& r) {
    if (!std::holds_alternative<msg::op::Lookup>(r.op)) return false;
    const std::byte junk[5] = {};
    if (r.name == "attr-body") {
      conn.reply(id, ok(fileAttr(9, 1)));
    } else if (r.name == "none-body") {
      conn.reply(id, ok(msg::body::None{}));
    } else if (r.name == "opened-body") {
      conn.reply(id, ok(msg::body::Opened{5}));
    } else if (r.name == "entries-body") {
      conn.reply(id, ok(msg::body::Entries{}));
    } else if (r.name == "entry-with-payload") {
      conn.reply(id, ok(entry(9, fileAttr(9, 1))), junk);
    } else {
      return false;
    }
    return true;
  });
  for (const std::string name :
       {"attr-body", "none-body", "opened-body", "entries-body", "entry-with-payload"}) {
    CAPTURE(name);
    checkFails(statOf(scene.m().path(), scene / name), EIO);
  }
  checkStillServing(scene.m(), scene.daemon);
}

TEST_CASE("an errno out of range, or one that would change the kernel's view, gives EIO") {
  Scene scene([](FakeConn& conn, std::uint64_t id, const msg::Request& r) {
    if (!std::holds_alternative<msg::op::Lookup>(r.op)) return false;
    if (r.name == "errno-5000") {
      conn.reply(id, error(5000));
    } else if (r.name == "errno-minus-3") {
      conn.reply(id, error(-3));
    } else if (r.name == "errno-4096") {
      conn.reply(id, error(4096));
    } else if (r.name == "errno-int-min") {
      conn.reply(id, error(INT32_MIN));
    } else if (r.name == "errno-enosys") {
      conn.reply(id, error(ENOSYS));
    } else if (r.name == "errno-enotconn") {
      conn.reply(id, error(ENOTCONN));
    } else if (r.name == "errno-eacces") {
      conn.reply(id, error(EACCES));
    } else {
      return false;
    }
    return true;
  });
  for (const std::string name : {"errno-5000", "errno-minus-3", "errno-4096", "errno-int-min",
                           "errno-enosys", "errno-enotconn"}) {
    CAPTURE(name);
    checkFails(statOf(scene.m().path(), scene / name), EIO);
  }
  // An ordinary errno passes through as it is.
  checkFails(statOf(scene.m().path(), scene / "errno-eacces"), EACCES);
  checkStillServing(scene.m(), scene.daemon);
}

TEST_CASE("a reply whose Cap'n Proto message is garbage gives EIO") {
  Scene scene([](FakeConn& conn, std::uint64_t id, const msg::Request& r) {
    if (!std::holds_alternative<msg::op::Lookup>(r.op)) return false;
    std::vector<std::byte> message;
    if (r.name == "all-ones") {
      message.assign(64, std::byte{0xff});
    } else if (r.name == "all-zeros") {
      message.assign(8, std::byte{0});
    } else if (r.name == "segment-past-end") {
      // One segment that claims 1000 words, in a message of four.
      message.assign(32, std::byte{0});
      message[4] = std::byte{0xe8};
      message[5] = std::byte{0x03};
    } else if (r.name == "pointer-loop") {
      // One segment whose root pointer is a far pointer to itself.
      message.assign(16, std::byte{0});
      message[4] = std::byte{1};
      message[8] = std::byte{0x02};  // far pointer, landing pad at word 0 of segment 0
    } else if (r.name == "pattern") {
      for (int i = 0; i < 256; ++i) message.push_back(static_cast<std::byte>(i * 37 + 11));
    } else {
      return false;
    }
    conn.sendRaw(frame(FrameKind::reply, id, message));
    return true;
  });
  for (const std::string name : {"all-ones", "all-zeros", "segment-past-end", "pointer-loop", "pattern"}) {
    CAPTURE(name);
    checkFails(statOf(scene.m().path(), scene / name), EIO);
  }
  checkStillServing(scene.m(), scene.daemon);
}

TEST_CASE("a directory listing with a bad name or a bad offset gives EIO") {
  auto mode = std::make_shared<std::atomic<int>>(0);
  enum {
    kGood,
    kSlash,
    kEmpty,
    kZeroOffset,
    kRepeatedOffset,
    kRootNodeEntry,
    kDotWithAttrs,
    kLongName,
    kTooMany
  };
  Scene scene([mode](FakeConn& conn, std::uint64_t id, const msg::Request& r) {
    const auto* rd = std::get_if<msg::op::ReadDir>(&r.op);
    if (rd == nullptr || mode->load() == kGood) return false;
    msg::body::Entries list;
    list.items.push_back({".", 1, DT_DIR, 1, std::nullopt});
    switch (mode->load()) {
      case kSlash: list.items.push_back({"../../etc", 5, DT_DIR, 2, std::nullopt}); break;
      case kEmpty: list.items.push_back({"", 5, DT_REG, 2, std::nullopt}); break;
      case kZeroOffset: list.items.push_back({"zero", 5, DT_REG, 0, std::nullopt}); break;
      case kRepeatedOffset: list.items.push_back({"again", 5, DT_REG, 1, std::nullopt}); break;
      case kRootNodeEntry:
        list.items.push_back({"root", 1, DT_DIR, 2, entry(msg::kRootNode, rootAttr())});
        break;
      case kDotWithAttrs: list.items[0].entry = entry(9, rootAttr()); break;
      case kLongName: list.items.push_back({std::string(300, 'n'), 5, DT_REG, 2, std::nullopt}); break;
      case kTooMany:
        // More entries than any kernel buffer could take.
        for (std::uint64_t i = 0; i < 4200; ++i) {
          list.items.push_back({"e" + std::to_string(i), 5 + i, DT_REG, 2 + i, std::nullopt});
        }
        break;
    }
    conn.reply(id, ok(list));
    return true;
  });
  for (int m : {kSlash, kEmpty, kZeroOffset, kRepeatedOffset, kRootNodeEntry, kDotWithAttrs,
                kLongName, kTooMany}) {
    CAPTURE(m);
    mode->store(m);
    checkFails(withFile(scene.m().path(), scene.m().path(), O_RDONLY | O_DIRECTORY, listSome), EIO);
    // The very next listing, well-formed, works.
    mode->store(kGood);
    auto good = withFile(scene.m().path(), scene.m().path(), O_RDONLY | O_DIRECTORY, listSome);
    REQUIRE(good.finished);
    CHECK(good.rc > 0);
  }
  checkStillServing(scene.m(), scene.daemon);
}

TEST_CASE("a read reply carrying more bytes than were asked for gives EIO") {
  Scene scene([](FakeConn& conn, std::uint64_t id, const msg::Request& r) {
    const auto* rd = std::get_if<msg::op::Read>(&r.op);
    if (rd == nullptr || r.handle != kLiarHandle) return false;
    std::vector<std::byte> data(std::min<std::size_t>(rd->size + 8, limits::kMaxPayloadBytes),
                                std::byte{'x'});
    conn.reply(id, ok(msg::body::Data{}), data);
    return true;
  });
  checkFails(withFile(scene.m().path(), scene / "liar", O_RDONLY, readSome), EIO);
  checkStillServing(scene.m(), scene.daemon);
}

TEST_CASE("a write reply claiming more bytes than were sent gives EIO") {
  Scene scene([](FakeConn& conn, std::uint64_t id, const msg::Request& r) {
    if (!std::holds_alternative<msg::op::Write>(r.op)) return false;
    conn.reply(id, ok(msg::body::Written{1u << 30}));
    return true;
  });
  checkFails(withFile(scene.m().path(), scene / "liar", O_WRONLY,
                      [](int fd) { return static_cast<long>(::write(fd, "0123456789", 10)); }),
             EIO);
  checkStillServing(scene.m(), scene.daemon);
}

TEST_CASE("an open reply with handle 0 gives EIO") {
  Scene scene([](FakeConn& conn, std::uint64_t id, const msg::Request& r) {
    if (!std::holds_alternative<msg::op::Open>(r.op) || r.node != kLiarNode) return false;
    conn.reply(id, ok(msg::body::Opened{0}));
    return true;
  });
  checkFails(withFile(scene.m().path(), scene / "liar", O_RDONLY, [](int) { return 0L; }), EIO);
  checkStillServing(scene.m(), scene.daemon);
}

TEST_CASE("an open reply carrying more file bytes than were asked for gives EIO") {
  Scene scene([](FakeConn& conn, std::uint64_t id, const msg::Request& r) {
    if (!std::holds_alternative<msg::op::Open>(r.op) || r.node != kLiarNode) return false;
    std::vector<std::byte> data(limits::kMaxOpenDataBytes + 1, std::byte{'x'});
    conn.reply(id, ok(msg::body::Opened{kLiarHandle}), data);
    return true;
  });
  checkFails(withFile(scene.m().path(), scene / "liar", O_RDONLY, readSome), EIO);
  checkStillServing(scene.m(), scene.daemon);
}

TEST_CASE("a getattr reply that changes a known node's file type gives EIO") {
  auto flip = std::make_shared<std::atomic<bool>>(false);
  // attr_timeout=0: every stat asks the host again.
  Scene scene(
      [flip](FakeConn& conn, std::uint64_t id, const msg::Request& r) {
        if (!flip->load() || !std::holds_alternative<msg::op::GetAttr>(r.op) || r.node != kGoodNode) {
          return false;
        }
        msg::Attr a = rootAttr();
        a.ino = 2;
        conn.reply(id, ok(a));
        return true;
      },
      {"-o", "attr_timeout=0"});
  REQUIRE(statOf(scene.m().path(), scene / "good").rc == 0);
  flip->store(true);
  checkFails(statOf(scene.m().path(), scene / "good"), EIO);
  flip->store(false);
  checkStillServing(scene.m(), scene.daemon);
}

TEST_CASE("bad replies to statfs, xattr, lseek, create and mkdir give EIO") {
  Scene scene([](FakeConn& conn, std::uint64_t id, const msg::Request& r) {
    if (std::holds_alternative<msg::op::StatFs>(r.op)) {
      conn.reply(id, ok(msg::body::StatFs{100, 200, 50, 10, 5, 4096, 4096, 255}));  // free > total
      return true;
    }
    if (const auto* g = std::get_if<msg::op::GetXattr>(&r.op)) {
      if (r.name == "user.huge-size" && g->size == 0) {
        conn.reply(id, ok(msg::body::Size{limits::kMaxXattrValueBytes + 1}));
        return true;
      }
      if (r.name == "user.too-much" && g->size != 0) {
        std::vector<std::byte> value(g->size + 10, std::byte{'v'});
        conn.reply(id, ok(msg::body::Data{}), value);
        return true;
      }
      return false;
    }
    if (const auto* l = std::get_if<msg::op::ListXattr>(&r.op)) {
      if (r.node != kLiarNode || l->size == 0) return false;
      const std::string list = "user.a";  // not NUL-terminated
      conn.reply(id, ok(msg::body::Data{}), std::as_bytes(std::span(list.data(), list.size())));
      return true;
    }
    if (const auto* l = std::get_if<msg::op::Lseek>(&r.op)) {
      // Out of range, or before the offset asked from (a walk over the extents would loop).
      conn.reply(id, ok(msg::body::Offset{l->offset == 0 ? 1ull << 63 : l->offset - 1}));
      return true;
    }
    if (std::holds_alternative<msg::op::Create>(r.op)) {
      msg::Attr a = rootAttr();  // asked for a file, handed a directory
      a.ino = 20;
      conn.reply(id, ok(msg::body::Created{entry(20, a), 777}));
      return true;
    }
    if (std::holds_alternative<msg::op::MakeDir>(r.op)) {
      conn.reply(id, ok(entry(21, fileAttr(21, 0))));  // asked for a directory, handed a file
      return true;
    }
    return false;
  });
  const std::string mnt = scene.m().path();
  checkFails(bounded(mnt, [mnt] {
               struct statvfs st;
               return static_cast<long>(::statvfs(mnt.c_str(), &st));
             }),
             EIO);
  const std::string good = scene / "good";
  checkFails(bounded(mnt, [good] {
               return static_cast<long>(::getxattr(good.c_str(), "user.huge-size", nullptr, 0));
             }),
             EIO);
  checkFails(bounded(mnt, [good] {
               char buf[64];
               return static_cast<long>(::getxattr(good.c_str(), "user.too-much", buf, sizeof buf));
             }),
             EIO);
  const std::string liar = scene / "liar";
  checkFails(bounded(mnt, [liar] {
               char buf[256];
               return static_cast<long>(::listxattr(liar.c_str(), buf, sizeof buf));
             }),
             EIO);
  checkFails(withFile(mnt, good, O_RDONLY,
                      [](int fd) { return static_cast<long>(::lseek(fd, 0, SEEK_DATA)); }),
             EIO);
  checkFails(withFile(mnt, good, O_RDONLY,
                      [](int fd) { return static_cast<long>(::lseek(fd, 5, SEEK_HOLE)); }),
             EIO);
  const std::string created = scene / "created";
  checkFails(bounded(mnt, [created] {
               int fd = ::open(created.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
               if (fd >= 0) ::close(fd);
               return fd < 0 ? -1L : 0L;
             }),
             EIO);
  const std::string made = scene / "made";
  checkFails(bounded(mnt, [made] { return static_cast<long>(::mkdir(made.c_str(), 0755)); }), EIO);
  checkStillServing(scene.m(), scene.daemon);
}

TEST_CASE("a symlink whose target leaves the mount is refused") {
  // DESIGN.md, threat model: "symlinks that point outside the mount are refused unless the
  // mount opts in". The host must not be able to point enclave programs at enclave files.
  constexpr msg::NodeId kAbsLink = 10, kUpLink = 11, kInLink = 12;
  Scene scene([](FakeConn& conn, std::uint64_t id, const msg::Request& r) {
    auto link = [&](msg::NodeId node) {
      msg::Attr a = fileAttr(node, 11);
      a.mode = S_IFLNK | 0777;
      conn.reply(id, ok(entry(node, a)));
    };
    if (std::holds_alternative<msg::op::Lookup>(r.op)) {
      msg::NodeId node = r.name == "abs-link" ? kAbsLink
                         : r.name == "up-link" ? kUpLink
                         : r.name == "in-link" ? kInLink
                                               : 0;
      if (node == 0) return false;
      link(node);
      return true;
    }
    if (std::holds_alternative<msg::op::ReadLink>(r.op)) {
      std::string target = r.node == kAbsLink  ? "/etc/passwd"
                           : r.node == kUpLink ? "../../../../../../../../../etc/passwd"
                                               : "good";
      conn.reply(id, ok(msg::body::Target{target}));
      return true;
    }
    if (std::holds_alternative<msg::op::GetAttr>(r.op) && r.node >= kAbsLink && r.node <= kInLink) {
      msg::Attr a = fileAttr(r.node, 11);
      a.mode = S_IFLNK | 0777;
      conn.reply(id, ok(a));
      return true;
    }
    return false;
  });
  const std::string mnt = scene.m().path();
  // The control: a link that stays inside works.
  {
    const std::string in = scene / "in-link";
    auto o = withFile(mnt, in, O_RDONLY, readSome);
    REQUIRE(o.finished);
    CHECK_MESSAGE(o.rc == static_cast<long>(kGoodData.size()), "reading through in-link: ",
                  errName(o.err));
  }
  for (const std::string name : {"abs-link", "up-link"}) {
    CAPTURE(name);
    const std::string path = scene / name;
    auto target = bounded(mnt, [path] {
      char buf[256];
      return static_cast<long>(::readlink(path.c_str(), buf, sizeof buf));
    });
    REQUIRE(target.finished);
    CHECK_MESSAGE(target.rc == -1, "readlink handed the enclave a target outside the mount");
    auto opened = bounded(mnt, [path] {
      int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd >= 0) ::close(fd);
      return fd < 0 ? -1L : 0L;
    });
    REQUIRE(opened.finished);
    CHECK_MESSAGE(opened.rc == -1, "open through the link reached the enclave's own /etc/passwd");
  }
  checkStillServing(scene.m(), scene.daemon);
}

// ---- block mounts --------------------------------------------------------------------------------

namespace {

// A block mount of the fake host's volume from an enclave whose run directory is `runDir`.
RunResult mountFakeVolume(const std::string& runDir, const FakeHost& host, const std::string& mnt) {
  return run({"/usr/bin/env", "ENCLAVEFS_RUN_DIR=" + runDir, mountPath(), "--host", host.address(),
              "--volume", "db", "--force-mount", "empty", mnt});
}

// Nothing of a failed block mount is left: no file system, no FUSE file, no loop device.
void checkNothingLeft(const std::string& runDir, const std::string& mnt) {
  CHECK_FALSE(isMountPoint(mnt));
  CHECK_FALSE(isMountPoint(runDir + "/block"));
  for (const auto& entry : std::filesystem::directory_iterator("/sys/block")) {
    std::ifstream backing(entry.path() / "loop" / "backing_file");
    std::string path;
    if (backing && std::getline(backing, path)) CHECK(path != runDir + "/block/volume");
  }
}

void checkBadVolumeWelcome(const WelcomeEdit& edit, const std::string& expected) {
  TempDir dir;
  ::mkdir((dir / "mnt").c_str(), 0755);
  ::mkdir((dir / "enclave").c_str(), 0755);
  FakeHost host(dir / "sock", [](FakeConn&, std::uint64_t, const msg::Request&) { return false; }, edit);
  auto r = mountFakeVolume(dir / "enclave", host, dir / "mnt");
  CHECK(r.exitCode == 1);
  CHECK_MESSAGE(r.output.find("broke the protocol: " + expected) != std::string::npos, r.output);
  checkNothingLeft(dir / "enclave", dir / "mnt");
}

}  // namespace

TEST_CASE("a volume welcome with a foreign sector size or an impossible size is refused") {
  checkBadVolumeWelcome([](msg::Welcome& w) { w.sectorSize = 512; }, "sector size 512");
  checkBadVolumeWelcome([](msg::Welcome& w) { w.volumeSize = kFakeVolumeBytes + 100; }, "volume size");
  checkBadVolumeWelcome([](msg::Welcome& w) { w.volumeSize = 0; }, "volume size 0");
  checkBadVolumeWelcome([](msg::Welcome& w) { w.volumeSize = 1ull << 60; }, "volume size");
  checkBadVolumeWelcome([](msg::Welcome& w) { w.maxRead = 100; }, "largest read 100");
}

TEST_CASE("sector reads answered short, long or not at all fail the mount and leave nothing") {
  const std::vector<std::pair<const char*, Misbehaviour>> hosts = {
      {"short", [](FakeConn& conn, std::uint64_t id, const msg::Request& r) {
         const auto* sr = std::get_if<msg::op::SectorRead>(&r.op);
         if (sr == nullptr) return false;
         conn.reply(id, ok(msg::body::Data{}), std::vector<std::byte>(sr->length / 2));
         return true;
       }},
      {"long", [](FakeConn& conn, std::uint64_t id, const msg::Request& r) {
         const auto* sr = std::get_if<msg::op::SectorRead>(&r.op);
         if (sr == nullptr) return false;
         conn.reply(id, ok(msg::body::Data{}), std::vector<std::byte>(sr->length + 4096));
         return true;
       }},
      {"wrong body", [](FakeConn& conn, std::uint64_t id, const msg::Request& r) {
         if (!std::holds_alternative<msg::op::SectorRead>(r.op)) return false;
         conn.reply(id, ok(msg::body::Written{4096}));
         return true;
       }},
  };
  for (const auto& [what, misbehave] : hosts) {
    CAPTURE(what);
    TempDir dir;
    ::mkdir((dir / "mnt").c_str(), 0755);
    ::mkdir((dir / "enclave").c_str(), 0755);
    FakeHost host(dir / "sock", misbehave);
    auto r = mountFakeVolume(dir / "enclave", host, dir / "mnt");
    CHECK(r.exitCode == 1);
    CHECK_MESSAGE(r.output.find("cannot read the start of volume 'db'") != std::string::npos, r.output);
    checkNothingLeft(dir / "enclave", dir / "mnt");
  }
}
