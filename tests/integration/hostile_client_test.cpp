// A hostile enclave: a raw protocol client (no FUSE, no enclavefs-mount) talks to a real
// enclavefs-hostd and sends what a compromised enclave could send. The host must stay inside
// the export, hand out nothing it did not issue, refuse what the export's policy forbids, and
// drop a connection whose framing is broken while it goes on serving everyone else.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <capnp/common.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
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

std::string errName(int e) {
  const char* name = strerrorname_np(e);
  return name != nullptr ? name : std::to_string(e);
}

// A client that speaks the protocol by hand, and can also break it.
class RawClient {
 public:
  struct Frame {
    FrameHeader header;
    std::vector<capnp::word> message;
    std::vector<std::byte> payload;
  };
  struct Answer {
    msg::Reply reply;
    std::vector<std::byte> payload;
    int error() const { return reply.error; }
  };
  enum class Got { frame, closed, timeout };

  explicit RawClient(const std::string& address) {
    auto parsed = parseAddress(address);
    REQUIRE_MESSAGE(parsed.ok(), "bad address ", address);
    auto fd = connectTo(*parsed);
    REQUIRE_MESSAGE(fd.ok(), fd.error());
    fd_ = std::move(*fd);
  }

  void sendRaw(std::span<const std::byte> bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::send(fd_.get(), bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // the host closed: what follows will show it
      done += static_cast<std::size_t>(n);
    }
  }

  // Sends what the socket takes without waiting more than `patience` for room: a host that
  // has stopped reading does not hang the test. The bytes sent.
  std::size_t sendWithoutWaiting(std::span<const std::byte> bytes,
                                 std::chrono::milliseconds patience) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n =
          ::send(fd_.get(), bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        done += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno != EAGAIN) break;
      pollfd p{fd_.get(), POLLOUT, 0};
      if (::poll(&p, 1, static_cast<int>(patience.count())) <= 0) break;
    }
    return done;
  }

  static std::vector<std::byte> frameBytes(FrameKind kind, std::uint64_t id,
                                           std::span<const std::byte> message,
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

  static std::vector<std::byte> requestBytes(std::uint64_t id, const msg::Request& r,
                                             std::span<const std::byte> payload = {}) {
    return frameBytes(FrameKind::request, id, wire::bytesOf(wire::encode(r)), payload);
  }

  void sendFrame(FrameKind kind, std::uint64_t id, std::span<const std::byte> message,
                 std::span<const std::byte> payload = {}) {
    sendRaw(frameBytes(kind, id, message, payload));
  }

  void sendRequest(std::uint64_t id, const msg::Request& r, std::span<const std::byte> payload = {}) {
    sendRaw(requestBytes(id, r, payload));
  }

  // The next frame, or that the host closed the connection, or nothing within `limit`.
  Got receive(Frame& out, std::chrono::milliseconds limit = 5s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      auto next = in_.next();
      REQUIRE_MESSAGE(next.ok(), "the host broke the framing: ", next.error());
      if (next->has_value()) {
        const FrameView& f = **next;
        out.header = f.header;
        out.message.assign(f.message.begin(), f.message.end());
        out.payload.assign(f.payload.begin(), f.payload.end());
        return Got::frame;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return Got::timeout;
      pollfd p{fd_.get(), POLLIN, 0};
      int ready = ::poll(&p, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) return Got::timeout;
      auto space = in_.writable();
      ssize_t n = ::recv(fd_.get(), space.data(), space.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Got::closed;  // end of stream or a reset
      in_.commit(static_cast<std::size_t>(n));
    }
  }

  // The host's answer to a hello, accepted or not.
  msg::Welcome handshake(const std::string& name, msg::MountKind kind) {
    msg::Hello h;
    h.version = msg::kProtocolVersion;
    h.kind = kind;
    h.name = name;
    sendFrame(FrameKind::hello, 0, wire::bytesOf(wire::encode(h)));
    Frame f;
    REQUIRE(receive(f) == Got::frame);
    REQUIRE(f.header.kind == FrameKind::welcome);
    auto welcome = wire::decodeWelcome(kj::ArrayPtr<const capnp::word>(f.message.data(), f.message.size()));
    REQUIRE_MESSAGE(welcome.ok(), welcome.error());
    return *welcome;
  }

  // Closes the connection from this side.
  void closeNow() { fd_.reset(); }

  msg::Welcome hello(const std::string& name, msg::MountKind kind = msg::MountKind::basic) {
    msg::Welcome welcome = handshake(name, kind);
    REQUIRE_MESSAGE(welcome.error == 0, "handshake refused: ", welcome.message);
    return welcome;
  }

  static Answer decode(const Frame& f) {
    REQUIRE(f.header.kind == FrameKind::reply);
    auto reply = wire::decodeReply(kj::ArrayPtr<const capnp::word>(f.message.data(), f.message.size()));
    REQUIRE_MESSAGE(reply.ok(), "the host sent a malformed reply: ", reply.error());
    return Answer{*reply, f.payload};
  }

  // One request and its reply (replies to other ids are not expected here).
  Answer call(const msg::Request& r, std::span<const std::byte> payload = {}) {
    std::uint64_t id = nextId_++;
    sendRequest(id, r, payload);
    Frame f;
    Got got = receive(f);
    REQUIRE_MESSAGE(got == Got::frame, "no reply to ", msg::opName(r.op));
    REQUIRE(f.header.id == id);
    return decode(f);
  }

  // True if the host closes the connection within `limit`; frames before that are counted.
  bool closedByHost(std::chrono::milliseconds limit = 5s, int* framesSeen = nullptr) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      Frame f;
      switch (receive(f, left)) {
        case Got::closed: return true;
        case Got::timeout: return false;
        case Got::frame:
          if (framesSeen != nullptr) ++*framesSeen;
          break;
      }
    }
  }

 private:
  UniqueFd fd_;
  FrameAssembler in_;
  std::uint64_t nextId_ = 1;
};

msg::Request req(msg::NodeId node, msg::Op op, std::string name = "", msg::HandleId handle = 0) {
  msg::Request r;
  r.node = node;
  r.handle = handle;
  r.name = std::move(name);
  r.op = std::move(op);
  return r;
}

const msg::Entry* entryOf(const RawClient::Answer& a) { return std::get_if<msg::Entry>(&a.reply.body); }

// Looks `name` up in `parent` and insists on success.
msg::Entry lookup(RawClient& c, msg::NodeId parent, const std::string& name) {
  auto a = c.call(req(parent, msg::op::Lookup{}, name));
  REQUIRE_MESSAGE(a.error() == 0, "lookup of '", name, "': ", errName(a.error()));
  const msg::Entry* e = entryOf(a);
  REQUIRE(e != nullptr);
  return *e;
}

msg::HandleId openHandle(RawClient& c, msg::NodeId node, std::uint32_t flags) {
  auto a = c.call(req(node, msg::op::Open{flags}));
  REQUIRE_MESSAGE(a.error() == 0, "open: ", errName(a.error()));
  const auto* opened = std::get_if<msg::body::Opened>(&a.reply.body);
  REQUIRE(opened != nullptr);
  return opened->handle;
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::uint64_t inodeOf(const std::string& path) {
  struct stat st;
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st.st_ino;
}

std::uint32_t modeOf(const std::string& path) {
  struct stat st;
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st.st_mode;
}

// How many of the log's lines contain `text`.
std::size_t linesWith(const std::string& log, const std::string& text) {
  std::size_t n = 0;
  for (const auto& line : linesOf(log)) n += line.find(text) != std::string::npos;
  return n;
}

std::span<const std::byte> asBytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

std::string octal(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0%o", v);
  return buf;
}

// A directory to export, a sibling directory outside it (the escape target), and a server.
struct Scene {
  TempDir dir;
  std::string exportDir = dir / "export";
  std::string outside = dir / "outside";
  std::unique_ptr<HostServer> server;

  explicit Scene(bool readOnly = false) {
    ::mkdir(exportDir.c_str(), 0755);
    ::mkdir(outside.c_str(), 0755);
    ::mkdir((exportDir + "/sub").c_str(), 0755);
    writeFile(exportDir + "/file", "inside\n");
    writeFile(outside + "/secret", "outside\n");
    ::chmod((outside + "/secret").c_str(), 0600);
    server = std::make_unique<HostServer>(
        dir / "sock", std::vector<std::string>{readOnly ? "--export-ro" : "--export",
                                               "data=" + exportDir});
  }
  std::string in(const std::string& name) const { return exportDir + "/" + name; }
};

// Undoes a bind mount whatever happens.
struct BindMount {
  std::string target;
  bool mounted = false;
  BindMount(const std::string& source, const std::string& t) : target(t) {
    mounted = ::mount(source.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) == 0;
  }
  ~BindMount() {
    if (mounted) ::umount2(target.c_str(), MNT_DETACH);
  }
};

}  // namespace

TEST_CASE("names that are not one plain component are refused with EINVAL") {
  Scene scene;
  RawClient c(scene.server->address());
  c.hello("data");
  msg::Entry file = lookup(c, msg::kRootNode, "file");
  msg::Entry sub = lookup(c, msg::kRootNode, "sub");

  for (const std::string name : {"..", ".", "a/b", "/etc", "", "../outside", "sub/..", "sub/",
                                 "../../../../etc/passwd"}) {
    CAPTURE(name);
    for (msg::NodeId parent : {msg::kRootNode, sub.node}) {
      auto a = c.call(req(parent, msg::op::Lookup{}, name));
      CHECK_MESSAGE(a.error() == EINVAL, "lookup gave ", errName(a.error()));
      CHECK(entryOf(a) == nullptr);
    }
    CHECK(c.call(req(msg::kRootNode, msg::op::Create{0644, O_WRONLY}, name)).error() == EINVAL);
    CHECK(c.call(req(msg::kRootNode, msg::op::MakeDir{0755}, name)).error() == EINVAL);
    CHECK(c.call(req(msg::kRootNode, msg::op::MakeNode{S_IFREG | 0644, 0}, name)).error() == EINVAL);
    CHECK(c.call(req(msg::kRootNode, msg::op::Symlink{"/etc"}, name)).error() == EINVAL);
    CHECK(c.call(req(msg::kRootNode, msg::op::Unlink{}, name)).error() == EINVAL);
    CHECK(c.call(req(msg::kRootNode, msg::op::RemoveDir{}, name)).error() == EINVAL);
    CHECK(c.call(req(msg::kRootNode, msg::op::Rename{msg::kRootNode, "renamed", 0}, name)).error() ==
          EINVAL);
    CHECK(c.call(req(msg::kRootNode, msg::op::Rename{msg::kRootNode, name, 0}, "file")).error() ==
          EINVAL);
    CHECK(c.call(req(file.node, msg::op::Link{msg::kRootNode, name})).error() == EINVAL);
  }
  // Nothing was made or moved anywhere.
  CHECK(exists(scene.in("file")));
  CHECK_FALSE(exists(scene.in("renamed")));
  CHECK_FALSE(exists(scene.dir / "etc"));
  CHECK_FALSE(exists(scene.outside + "/../renamed"));
  // A plain name that exists only outside the export is simply not there.
  CHECK(c.call(req(msg::kRootNode, msg::op::Lookup{}, "outside")).error() == ENOENT);
  CHECK(c.call(req(msg::kRootNode, msg::op::Lookup{}, "etc")).error() == ENOENT);
}

TEST_CASE("a symlink pointing out of the export is handed out as a link and never followed") {
  Scene scene;
  REQUIRE(::symlink("/", scene.in("to-root").c_str()) == 0);
  REQUIRE(::symlink("../..", scene.in("up-up").c_str()) == 0);
  REQUIRE(::symlink("/etc", scene.in("to-etc").c_str()) == 0);
  REQUIRE(::symlink((scene.outside + "/secret").c_str(), scene.in("to-secret").c_str()) == 0);
  RawClient c(scene.server->address());
  c.hello("data");

  for (const std::string link : {"to-root", "up-up", "to-etc"}) {
    CAPTURE(link);
    msg::Entry e = lookup(c, msg::kRootNode, link);
    CHECK((e.attr.mode & S_IFMT) == S_IFLNK);
    CHECK(e.attr.ino == inodeOf(scene.in(link)));
    for (const std::string name : {"etc", "passwd", "tmp"}) {
      auto a = c.call(req(e.node, msg::op::Lookup{}, name));
      CHECK_MESSAGE((a.error() == ENOTDIR || a.error() == ESTALE), "lookup of '", name,
                    "' through the link gave ", errName(a.error()));
      CHECK(entryOf(a) == nullptr);
    }
    CHECK(c.call(req(e.node, msg::op::OpenDir{})).error() == ENOTDIR);
    CHECK(c.call(req(e.node, msg::op::Open{O_RDONLY})).error() != 0);
    auto attr = c.call(req(e.node, msg::op::GetAttr{}));
    REQUIRE(attr.error() == 0);
    CHECK((std::get<msg::Attr>(attr.reply.body).mode & S_IFMT) == S_IFLNK);
  }

  // Through a link to a file outside: no data, no attribute change, no hard link to it.
  msg::Entry secretLink = lookup(c, msg::kRootNode, "to-secret");
  CHECK((secretLink.attr.mode & S_IFMT) == S_IFLNK);
  CHECK(c.call(req(secretLink.node, msg::op::Open{O_RDONLY})).error() != 0);
  CHECK(c.call(req(secretLink.node, msg::op::Open{O_RDWR | O_TRUNC})).error() != 0);
  msg::op::SetAttr chmod;
  chmod.valid = msg::op::kMode;
  chmod.mode = 0777;
  (void)c.call(req(secretLink.node, chmod));
  msg::op::SetAttr truncate;
  truncate.valid = msg::op::kSize;
  truncate.size = 0;
  CHECK(c.call(req(secretLink.node, truncate)).error() != 0);
  CHECK(c.call(req(secretLink.node, msg::op::SetXattr{0}, "user.x"), std::as_bytes(std::span("v", 1)))
            .error() != 0);
  auto linked = c.call(req(secretLink.node, msg::op::Link{msg::kRootNode, "hard"}));
  if (linked.error() == 0) {
    CHECK_MESSAGE(inodeOf(scene.in("hard")) != inodeOf(scene.outside + "/secret"),
                  "Link made a hard link inside the export to a file outside it");
  }
  CHECK((modeOf(scene.outside + "/secret") & 07777) == 0600);
  CHECK(readFile(scene.outside + "/secret") == "outside\n");
}

TEST_CASE("a mount point inside the export is refused with EACCES, not crossed") {
  Scene scene;
  ::mkdir(scene.in("mnt").c_str(), 0755);
  BindMount bind("/etc", scene.in("mnt"));
  REQUIRE_MESSAGE(bind.mounted, "mount --bind /etc failed: ", std::strerror(errno));
  RawClient c(scene.server->address());
  c.hello("data");

  auto a = c.call(req(msg::kRootNode, msg::op::Lookup{}, "mnt"));
  CHECK_MESSAGE(a.error() == EACCES, "lookup of the mount point gave ", errName(a.error()));
  CHECK(entryOf(a) == nullptr);

  // A listing names the mount point but hands out no node for it.
  auto opened = c.call(req(msg::kRootNode, msg::op::OpenDir{}));
  REQUIRE(opened.error() == 0);
  msg::HandleId dir = std::get<msg::body::Opened>(opened.reply.body).handle;
  auto listed = c.call(req(msg::kRootNode, msg::op::ReadDir{0, 64 * 1024, true}, "", dir));
  REQUIRE(listed.error() == 0);
  bool sawMnt = false;
  std::uint64_t etcIno = inodeOf("/etc");
  for (const auto& d : std::get<msg::body::Entries>(listed.reply.body).items) {
    CHECK(d.name != "passwd");
    if (d.name != "mnt") continue;
    sawMnt = true;
    CHECK_FALSE(d.entry.has_value());
    if (d.entry) CHECK(d.entry->attr.ino != etcIno);
  }
  CHECK(sawMnt);
  CHECK(c.call(req(msg::kRootNode, msg::op::Create{0644, O_WRONLY}, "mnt")).error() != 0);
}

TEST_CASE("handles and nodes that were never issued are refused") {
  Scene scene;
  RawClient c(scene.server->address());
  c.hello("data");
  msg::Entry file = lookup(c, msg::kRootNode, "file");
  msg::Entry sub = lookup(c, msg::kRootNode, "sub");

  SUBCASE("a handle never issued gives EBADF") {
    for (msg::HandleId h : {msg::HandleId{0}, msg::HandleId{7}, msg::HandleId{12345},
                            ~msg::HandleId{0}}) {
      CAPTURE(h);
      CHECK(c.call(req(file.node, msg::op::Read{0, 100}, "", h)).error() == EBADF);
      const std::byte data[4] = {};
      CHECK(c.call(req(file.node, msg::op::Write{0, 0}, "", h), data).error() == EBADF);
      CHECK(c.call(req(file.node, msg::op::Flush{}, "", h)).error() == EBADF);
      CHECK(c.call(req(file.node, msg::op::Fsync{false}, "", h)).error() == EBADF);
      CHECK(c.call(req(file.node, msg::op::Fallocate{0, 0, 10}, "", h)).error() == EBADF);
      CHECK(c.call(req(file.node, msg::op::Lseek{0, SEEK_DATA}, "", h)).error() == EBADF);
      CHECK(c.call(req(file.node, msg::op::Release{}, "", h)).error() == EBADF);
      CHECK(c.call(req(sub.node, msg::op::ReadDir{0, 4096, false}, "", h)).error() == EBADF);
      CHECK(c.call(req(sub.node, msg::op::ReleaseDir{}, "", h)).error() == EBADF);
      CHECK(c.call(req(sub.node, msg::op::FsyncDir{false}, "", h)).error() == EBADF);
      if (h != 0) {
        msg::op::SetAttr truncate;
        truncate.valid = msg::op::kSize;
        CHECK(c.call(req(file.node, truncate, "", h)).error() == EBADF);
      }
    }
    CHECK(readFile(scene.in("file")) == "inside\n");
  }

  SUBCASE("a handle of the wrong kind, or already released, gives EBADF") {
    msg::HandleId fh = openHandle(c, file.node, O_RDONLY);
    auto opened = c.call(req(sub.node, msg::op::OpenDir{}));
    REQUIRE(opened.error() == 0);
    msg::HandleId dh = std::get<msg::body::Opened>(opened.reply.body).handle;
    CHECK(c.call(req(file.node, msg::op::Read{0, 100}, "", dh)).error() == EBADF);
    CHECK(c.call(req(sub.node, msg::op::ReadDir{0, 4096, false}, "", fh)).error() == EBADF);
    // A file handle used on another node's setattr.
    msg::op::SetAttr truncate;
    truncate.valid = msg::op::kSize;
    msg::Entry other = lookup(c, msg::kRootNode, "sub");
    CHECK(c.call(req(other.node, truncate, "", fh)).error() == EBADF);
    CHECK(c.call(req(file.node, msg::op::Release{}, "", fh)).error() == 0);
    CHECK(c.call(req(file.node, msg::op::Read{0, 100}, "", fh)).error() == EBADF);
    CHECK(c.call(req(file.node, msg::op::Release{}, "", fh)).error() == EBADF);
  }

  SUBCASE("a node never issued gives ESTALE") {
    for (msg::NodeId n : {msg::NodeId{0}, msg::NodeId{999999}, ~msg::NodeId{0}}) {
      CAPTURE(n);
      CHECK(c.call(req(n, msg::op::GetAttr{})).error() == ESTALE);
      CHECK(c.call(req(n, msg::op::Lookup{}, "file")).error() == ESTALE);
      CHECK(c.call(req(n, msg::op::Open{O_RDONLY})).error() == ESTALE);
      CHECK(c.call(req(n, msg::op::OpenDir{})).error() == ESTALE);
      CHECK(c.call(req(n, msg::op::ReadLink{})).error() == ESTALE);
      CHECK(c.call(req(n, msg::op::StatFs{})).error() == ESTALE);
      CHECK(c.call(req(n, msg::op::ListXattr{0})).error() == ESTALE);
      CHECK(c.call(req(n, msg::op::Create{0644, O_WRONLY}, "made")).error() == ESTALE);
      msg::op::SetAttr chmod;
      chmod.valid = msg::op::kMode;
      chmod.mode = 0777;
      CHECK(c.call(req(n, chmod)).error() == ESTALE);
      CHECK(c.call(req(file.node, msg::op::Link{n, "made"})).error() == ESTALE);
      CHECK(c.call(req(msg::kRootNode, msg::op::Rename{n, "made", 0}, "file")).error() == ESTALE);
    }
    CHECK_FALSE(exists(scene.in("made")));
    CHECK(exists(scene.in("file")));
  }

  SUBCASE("forgetting unknown nodes, or the root, is harmless") {
    msg::op::Forget forget;
    forget.items = {{999999, 5}, {0, 1}, {msg::kRootNode, ~0ull}, {~0ull, ~0ull}};
    c.sendRequest(4242, req(0, forget));
    // Forget is one-way: the next thing on the wire is the next reply.
    auto root = c.call(req(msg::kRootNode, msg::op::GetAttr{}));
    CHECK(root.error() == 0);
    CHECK(lookup(c, msg::kRootNode, "file").node == file.node);
    // Forgetting more than was looked up drops the node, and only that.
    forget.items = {{file.node, 1000}};
    c.sendRequest(4243, req(0, forget));
    CHECK(c.call(req(file.node, msg::op::GetAttr{})).error() == ESTALE);
    CHECK(c.call(req(sub.node, msg::op::GetAttr{})).error() == 0);
    CHECK(c.call(req(msg::kRootNode, msg::op::Lookup{}, "file")).error() == 0);
  }
}

TEST_CASE("a frame with an oversized length closes that connection only") {
  Scene scene;
  RawClient bad(scene.server->address());
  bad.hello("data");
  RawClient bystander(scene.server->address());
  bystander.hello("data");

  FrameHeader header{limits::kMaxMessageBytes + 8, 0, 1, FrameKind::request};
  SUBCASE("message length") {}
  SUBCASE("payload length") { header = {64, limits::kMaxPayloadBytes + 1, 1, FrameKind::request}; }
  SUBCASE("message length 4 GiB - 8") { header = {0xfffffff8u, 0, 1, FrameKind::request}; }
  auto raw = encodeHeader(header);
  bad.sendRaw(raw);  // and nothing after it: the host must not wait for the rest
  int frames = 0;
  CHECK(bad.closedByHost(5s, &frames));
  CHECK(frames == 0);

  CHECK(bystander.call(req(msg::kRootNode, msg::op::GetAttr{})).error() == 0);
  RawClient fresh(scene.server->address());
  fresh.hello("data");
  CHECK(lookup(fresh, msg::kRootNode, "file").attr.ino == inodeOf(scene.in("file")));
  CHECK(::kill(scene.server->pid(), 0) == 0);
}

TEST_CASE("a request before the handshake closes the connection") {
  Scene scene;
  RawClient c(scene.server->address());
  SUBCASE("a getattr") { c.sendRequest(1, req(msg::kRootNode, msg::op::GetAttr{})); }
  SUBCASE("a lookup") { c.sendRequest(1, req(msg::kRootNode, msg::op::Lookup{}, "file")); }
  SUBCASE("a reply frame") {
    c.sendFrame(FrameKind::reply, 1, wire::bytesOf(wire::encode(msg::Reply{0, msg::body::None{}, {}})));
  }
  SUBCASE("garbage") {
    std::vector<std::byte> junk(64, std::byte{0xa5});
    c.sendRaw(junk);
  }
  int frames = 0;
  CHECK(c.closedByHost(5s, &frames));
  CHECK(frames == 0);  // not even a refusal carrying data
  RawClient fresh(scene.server->address());
  fresh.hello("data");
  CHECK(fresh.call(req(msg::kRootNode, msg::op::GetAttr{})).error() == 0);
}

TEST_CASE("a second hello after the handshake is a protocol fault") {
  Scene scene;
  RawClient c(scene.server->address());
  c.hello("data");
  msg::Hello h;
  h.version = msg::kProtocolVersion;
  h.name = "data";
  c.sendFrame(FrameKind::hello, 0, wire::bytesOf(wire::encode(h)));
  CHECK(c.closedByHost());
}

TEST_CASE("a read-only export refuses every change, even from a client that ignores readOnly") {
  Scene scene(true);
  RawClient c(scene.server->address());
  msg::Welcome welcome = c.hello("data");
  CHECK(welcome.readOnly);
  msg::Entry file = lookup(c, msg::kRootNode, "file");
  msg::Entry sub = lookup(c, msg::kRootNode, "sub");
  const std::uint32_t fileMode = modeOf(scene.in("file"));

  auto refused = [&](const msg::Request& r, std::span<const std::byte> payload = {}) {
    CAPTURE(msg::opName(r.op));
    auto a = c.call(r, payload);
    CHECK_MESSAGE(a.error() == EROFS, msg::opName(r.op), " gave ", errName(a.error()));
  };
  refused(req(msg::kRootNode, msg::op::Create{0644, O_WRONLY}, "new"));
  refused(req(msg::kRootNode, msg::op::Create{0644, O_RDONLY}, "new"));
  refused(req(msg::kRootNode, msg::op::MakeDir{0755}, "newdir"));
  refused(req(msg::kRootNode, msg::op::MakeNode{S_IFREG | 0644, 0}, "newnode"));
  refused(req(msg::kRootNode, msg::op::MakeNode{S_IFIFO | 0644, 0}, "newfifo"));
  refused(req(msg::kRootNode, msg::op::Symlink{"file"}, "newlink"));
  refused(req(msg::kRootNode, msg::op::Unlink{}, "file"));
  refused(req(msg::kRootNode, msg::op::RemoveDir{}, "sub"));
  refused(req(msg::kRootNode, msg::op::Rename{msg::kRootNode, "moved", 0}, "file"));
  refused(req(file.node, msg::op::Link{msg::kRootNode, "hard"}));
  msg::op::SetAttr chmod;
  chmod.valid = msg::op::kMode;
  chmod.mode = 0777;
  refused(req(file.node, chmod));
  msg::op::SetAttr truncate;
  truncate.valid = msg::op::kSize;
  refused(req(file.node, truncate));
  msg::op::SetAttr touch;
  touch.valid = msg::op::kMtimeNow | msg::op::kAtimeNow;
  refused(req(sub.node, touch));
  const std::byte value[3] = {std::byte{'v'}, std::byte{'a'}, std::byte{'l'}};
  refused(req(file.node, msg::op::SetXattr{0}, "user.x"), value);
  refused(req(file.node, msg::op::RemoveXattr{}, "user.x"));
  for (std::uint32_t flags : {std::uint32_t{O_WRONLY}, std::uint32_t{O_RDWR},
                              std::uint32_t{O_RDONLY | O_TRUNC}, std::uint32_t{O_WRONLY | O_APPEND},
                              std::uint32_t{O_WRONLY | O_CREAT | O_TRUNC}}) {
    CAPTURE(flags);
    refused(req(file.node, msg::op::Open{flags}));
  }
  // A read handle does not become a write handle.
  msg::HandleId h = openHandle(c, file.node, O_RDONLY);
  const std::byte data[4] = {std::byte{'e'}, std::byte{'v'}, std::byte{'i'}, std::byte{'l'}};
  refused(req(file.node, msg::op::Write{0, 0}, "", h), data);
  refused(req(file.node, msg::op::Fallocate{0, 0, 1 << 20}, "", h));
  refused(req(file.node, truncate, "", h));
  // Reading is still fine.
  auto read = c.call(req(file.node, msg::op::Read{0, 100}, "", h));
  CHECK(read.error() == 0);
  CHECK(std::string(reinterpret_cast<const char*>(read.payload.data()), read.payload.size()) ==
        "inside\n");

  CHECK(readFile(scene.in("file")) == "inside\n");
  CHECK(modeOf(scene.in("file")) == fileMode);
  for (const char* name : {"new", "newdir", "newnode", "newfifo", "newlink", "moved", "hard"}) {
    CHECK_FALSE(exists(scene.in(name)));
  }
  CHECK(exists(scene.in("sub")));
  CHECK(::getxattr(scene.in("file").c_str(), "user.x", nullptr, 0) < 0);
}

TEST_CASE("Open with O_CREAT creates nothing, not even through a dangling symlink") {
  Scene scene;
  const std::string outsideTarget = scene.outside + "/created-by-open";
  REQUIRE(::symlink(outsideTarget.c_str(), scene.in("dangle-out").c_str()) == 0);
  REQUIRE(::symlink("created-inside", scene.in("dangle-in").c_str()) == 0);
  RawClient c(scene.server->address());
  c.hello("data");

  for (const std::string link : {"dangle-out", "dangle-in"}) {
    CAPTURE(link);
    msg::Entry e = lookup(c, msg::kRootNode, link);
    CHECK((e.attr.mode & S_IFMT) == S_IFLNK);
    for (std::uint32_t flags : {std::uint32_t{O_CREAT | O_WRONLY}, std::uint32_t{O_CREAT | O_EXCL | O_RDWR},
                                std::uint32_t{O_CREAT | O_WRONLY | O_TRUNC}}) {
      CAPTURE(flags);
      CHECK(c.call(req(e.node, msg::op::Open{flags})).error() != 0);
    }
    // Create by name does not follow the link either.
    CHECK(c.call(req(msg::kRootNode, msg::op::Create{0644, O_CREAT | O_WRONLY}, link)).error() != 0);
    CHECK((modeOf(scene.in(link)) & S_IFMT) == S_IFLNK);
  }
  // O_CREAT on an existing file's node opens that file and makes nothing new.
  msg::Entry file = lookup(c, msg::kRootNode, "file");
  auto opened = c.call(req(file.node, msg::op::Open{O_CREAT | O_WRONLY}));
  if (opened.error() == 0) {
    c.call(req(file.node, msg::op::Release{}, "", std::get<msg::body::Opened>(opened.reply.body).handle));
  }
  // The directory's own node with O_CREAT is no way to make files either.
  CHECK(c.call(req(msg::kRootNode, msg::op::Open{O_CREAT | O_WRONLY})).error() != 0);

  CHECK_FALSE(exists(outsideTarget));
  CHECK_FALSE(exists(scene.in("created-inside")));
  CHECK(readFile(scene.in("file")) == "inside\n");
}

TEST_CASE("device nodes cannot be made") {
  Scene scene;
  RawClient c(scene.server->address());
  c.hello("data");
  const std::uint32_t null = static_cast<std::uint32_t>(makedev(1, 3));
  const std::uint32_t disk = static_cast<std::uint32_t>(makedev(8, 0));
  auto a = c.call(req(msg::kRootNode, msg::op::MakeNode{S_IFCHR | 0666, null}, "chr"));
  CHECK_MESSAGE(a.error() == EPERM, "char device: ", errName(a.error()));
  a = c.call(req(msg::kRootNode, msg::op::MakeNode{S_IFBLK | 0666, disk}, "blk"));
  CHECK_MESSAGE(a.error() == EPERM, "block device: ", errName(a.error()));
  // A type no file system knows.
  a = c.call(req(msg::kRootNode, msg::op::MakeNode{0170000 | 0666, null}, "odd"));
  CHECK(a.error() != 0);
  CHECK_FALSE(exists(scene.in("chr")));
  CHECK_FALSE(exists(scene.in("blk")));
  CHECK_FALSE(exists(scene.in("odd")));
  // Create refuses to smuggle a device type in its mode.
  a = c.call(req(msg::kRootNode, msg::op::Create{S_IFCHR | 0666, O_WRONLY}, "chr2"));
  CHECK(a.error() != 0);
  if (exists(scene.in("chr2"))) CHECK(S_ISREG(modeOf(scene.in("chr2"))));
}

TEST_CASE("a create that names a FIFO fails at once, and the host goes on serving") {
  Scene scene;
  REQUIRE(::mkfifo(scene.in("fifo").c_str(), 0666) == 0);
  RawClient c(scene.server->address());
  c.hello("data");
  // Without O_EXCL the create opens what is there: a FIFO with no writer would wait.
  for (std::uint32_t flags : {std::uint32_t(O_RDONLY), std::uint32_t(O_RDWR)}) {
    auto a = c.call(req(msg::kRootNode, msg::op::Create{0644, flags}, "fifo"));
    CHECK(a.error() != 0);
  }
  CHECK(c.call(req(msg::kRootNode, msg::op::GetAttr{})).error() == 0);
}

TEST_CASE("privileged extended attributes cannot be set or removed") {
  Scene scene;
  RawClient c(scene.server->address());
  c.hello("data");
  msg::Entry file = lookup(c, msg::kRootNode, "file");
  // A v2 file capability granting everything.
  std::vector<std::byte> cap(20, std::byte{0xff});
  cap[0] = std::byte{0x00};
  cap[1] = std::byte{0x00};
  cap[2] = std::byte{0x00};
  cap[3] = std::byte{0x02};
  for (const std::string name : {"security.capability", "trusted.x", "security.selinux",
                                 "system.posix_acl_access", "system.posix_acl_default"}) {
    CAPTURE(name);
    auto set = c.call(req(file.node, msg::op::SetXattr{0}, name), cap);
    CHECK_MESSAGE(set.error() == EPERM, "setxattr gave ", errName(set.error()));
    auto removed = c.call(req(file.node, msg::op::RemoveXattr{}, name));
    CHECK_MESSAGE(removed.error() == EPERM, "removexattr gave ", errName(removed.error()));
    CHECK(::getxattr(scene.in("file").c_str(), name.c_str(), nullptr, 0) < 0);
  }
}

TEST_CASE("set-user-ID never reaches a host file") {
  Scene scene;
  RawClient c(scene.server->address());
  c.hello("data");
  msg::Entry file = lookup(c, msg::kRootNode, "file");

  msg::op::SetAttr chmod;
  chmod.valid = msg::op::kMode;
  chmod.mode = S_IFREG | S_ISUID | S_ISGID | 0755;
  auto a = c.call(req(file.node, chmod));
  if (a.error() == 0) CHECK((std::get<msg::Attr>(a.reply.body).mode & (S_ISUID | S_ISGID)) == 0);
  CHECK((modeOf(scene.in("file")) & (S_ISUID | S_ISGID)) == 0);

  a = c.call(req(msg::kRootNode, msg::op::Create{S_IFREG | S_ISUID | 0755, O_WRONLY}, "created"));
  CHECK(a.error() == 0);
  if (exists(scene.in("created"))) CHECK((modeOf(scene.in("created")) & S_ISUID) == 0);
  a = c.call(req(msg::kRootNode, msg::op::MakeNode{S_IFREG | S_ISUID | S_ISGID | 0755, 0}, "made"));
  CHECK(a.error() == 0);
  if (exists(scene.in("made"))) CHECK((modeOf(scene.in("made")) & (S_ISUID | S_ISGID)) == 0);
  a = c.call(req(msg::kRootNode, msg::op::MakeDir{S_ISUID | 0755}, "dir"));
  CHECK(a.error() == 0);
  if (exists(scene.in("dir"))) CHECK((modeOf(scene.in("dir")) & S_ISUID) == 0);
}

TEST_CASE("a file type in a setattr mode cannot smuggle set-group-ID onto a regular file") {
  // Set-group-ID is kept for directories only; the host must judge by the file's real type,
  // not by the type bits the client put into the mode.
  Scene scene;
  RawClient c(scene.server->address());
  c.hello("data");
  msg::Entry file = lookup(c, msg::kRootNode, "file");
  for (std::uint32_t type : {std::uint32_t{S_IFDIR}, std::uint32_t{0}, std::uint32_t{S_IFREG}}) {
    CAPTURE(type);
    msg::op::SetAttr chmod;
    chmod.valid = msg::op::kMode;
    chmod.mode = type | S_ISUID | S_ISGID | 0755;
    auto a = c.call(req(file.node, chmod));
    CHECK(a.error() == 0);
    CHECK_MESSAGE((modeOf(scene.in("file")) & (S_ISUID | S_ISGID)) == 0,
                  "host file mode bits are now ", octal(modeOf(scene.in("file")) & 07777));
  }
}

TEST_CASE("a name with a NUL byte is a protocol fault, not a shorter name") {
  Scene scene;
  RawClient c(scene.server->address());
  c.hello("data");
  c.sendRequest(1, req(msg::kRootNode, msg::op::Create{0644, O_WRONLY}, std::string("file\0evil", 9)));
  int frames = 0;
  CHECK(c.closedByHost(5s, &frames));
  CHECK(frames == 0);
  CHECK(readFile(scene.in("file")) == "inside\n");
}

TEST_CASE("open handles per client are bounded, and one greedy client does not starve another") {
  TempDir dir;
  ::mkdir((dir / "export").c_str(), 0755);
  writeFile(dir / "export/file", "inside\n");
  HostServer server(dir / "sock", {"--export", "data=" + (dir / "export"), "--max-handles", "16"});
  RawClient greedy(server.address());
  greedy.hello("data");
  msg::Entry file = lookup(greedy, msg::kRootNode, "file");
  int opened = 0, refused = 0;
  for (int i = 0; i < 30; ++i) {
    auto a = greedy.call(req(file.node, msg::op::Open{O_RDONLY}));
    if (a.error() == 0) {
      ++opened;
    } else {
      CHECK(a.error() == EMFILE);
      ++refused;
    }
  }
  CHECK(opened == 16);
  CHECK(refused == 14);
  RawClient other(server.address());
  other.hello("data");
  msg::Entry f2 = lookup(other, msg::kRootNode, "file");
  msg::HandleId h = openHandle(other, f2.node, O_RDONLY);
  auto read = other.call(req(f2.node, msg::op::Read{0, 100}, "", h));
  CHECK(read.error() == 0);
  CHECK(read.payload.size() == 7);
}

TEST_CASE("a thousand pipelined requests are all answered, matched by id") {
  Scene scene;
  RawClient c(scene.server->address());
  c.hello("data");
  msg::Entry file = lookup(c, msg::kRootNode, "file");
  const std::uint64_t rootIno = inodeOf(scene.exportDir);
  const std::uint64_t fileIno = inodeOf(scene.in("file"));

  constexpr int kCount = 1000;
  // Ids far apart and out of order, each naming which node was asked about.
  std::map<std::uint64_t, std::uint64_t> expected;  // id -> inode
  std::vector<std::pair<std::uint64_t, msg::NodeId>> sends;
  for (int i = 0; i < kCount; ++i) {
    std::uint64_t id = 0x9e3779b97f4a7c15ull * static_cast<std::uint64_t>(i + 1);
    bool onFile = i % 3 == 0;
    expected[id] = onFile ? fileIno : rootIno;
    sends.emplace_back(id, onFile ? file.node : msg::kRootNode);
  }
  REQUIRE(expected.size() == kCount);
  // Sent from another thread, without waiting for any answer.
  std::thread sender([&] {
    for (const auto& [id, node] : sends) c.sendRequest(id, req(node, msg::op::GetAttr{}));
  });
  struct Join {
    std::thread& t;
    ~Join() {
      if (t.joinable()) t.join();
    }
  } joinSender{sender};
  std::set<std::uint64_t> answered;
  int wrong = 0;
  for (int i = 0; i < kCount; ++i) {
    RawClient::Frame f;
    auto got = c.receive(f, 10s);
    if (got != RawClient::Got::frame) {
      FAIL_CHECK("only ", i, " of ", kCount, " replies arrived");
      break;
    }
    auto it = expected.find(f.header.id);
    if (it == expected.end() || !answered.insert(f.header.id).second) {
      ++wrong;
      continue;
    }
    auto a = RawClient::decode(f);
    const auto* attr = std::get_if<msg::Attr>(&a.reply.body);
    if (a.error() != 0 || attr == nullptr || attr->ino != it->second) ++wrong;
  }
  sender.join();
  CHECK(wrong == 0);
  CHECK(answered.size() == kCount);
  // And the connection is still in order afterwards.
  CHECK(c.call(req(msg::kRootNode, msg::op::GetAttr{})).error() == 0);
}

TEST_CASE("connections that end before or right after their hello leave the host serving") {
  // Each of these disarms the handshake timer, whose removal once completed into the session
  // it was made for, after the timer's own completion could have freed it: always on kernels
  // before 5.19, by a race on later ones. In the sanitizer build a completion into freed memory
  // ends the server, and the last client sees it.
  TempDir dir;
  ::mkdir((dir / "export").c_str(), 0755);
  HostServer server(dir / "sock",
                    {"--export", "data=" + (dir / "export"), "--max-clients", "1024"});
  for (int i = 0; i < 100; ++i) {
    RawClient quiet(server.address());  // connects, says nothing, leaves
  }
  for (int i = 0; i < 100; ++i) {
    RawClient refused(server.address());
    CHECK(errName(refused.handshake("nosuch", msg::MountKind::basic).error) == "ENOENT");
    CHECK(refused.closedByHost());
  }
  // A hello and a broken frame in one segment: the handshake disarms the timer, and the
  // protocol fault right after it would disarm it again.
  msg::Hello hello;
  hello.version = msg::kProtocolVersion;
  hello.name = "data";
  auto bytes = RawClient::frameBytes(FrameKind::hello, 0, wire::bytesOf(wire::encode(hello)));
  bytes.resize(bytes.size() + 64, std::byte{0xa5});
  for (int i = 0; i < 50; ++i) {
    RawClient faulty(server.address());
    faulty.sendRaw(bytes);
    CHECK(faulty.closedByHost());
  }
  RawClient fresh(server.address());
  fresh.hello("data");
  CHECK(fresh.call(req(msg::kRootNode, msg::op::GetAttr{})).error() == 0);
  CHECK(::kill(server.pid(), 0) == 0);
}

TEST_CASE("replies a client leaves unread hold no more memory than the reply cap allows") {
  // A read past the end of a file answers no bytes, but its buffer was allocated for the
  // size asked; a client that never reads its socket could make the host keep one such
  // buffer per reply while the cap counted only the bytes read. Few requests in flight, so
  // that what they hold while being served is small beside what queued replies could hold.
  TempDir dir;
  ::mkdir((dir / "export").c_str(), 0755);
  writeFile(dir / "export/file", "inside\n");
  writeFile(dir / "export/big", std::string(1 << 20, 'b'));
  HostServer server(dir / "sock",
                    {"--export", "data=" + (dir / "export"), "--max-in-flight", "16"});
  RawClient greedy(server.address());
  greedy.hello("data");
  msg::Entry big = lookup(greedy, msg::kRootNode, "big");
  msg::Entry file = lookup(greedy, msg::kRootNode, "file");
  const msg::HandleId bigHandle = openHandle(greedy, big.node, O_RDONLY);
  const msg::HandleId handle = openHandle(greedy, file.node, O_RDONLY);
  // Whole-file reads first, to fill the socket: the replies after them wait on the host.
  for (std::uint64_t id = 100; id < 104; ++id) {
    greedy.sendRequest(id, req(big.node, msg::op::Read{0, 1 << 20}, "", bigHandle));
  }
  RawClient other(server.address());
  other.hello("data");
  REQUIRE(other.call(req(msg::kRootNode, msg::op::GetAttr{})).error() == 0);
  const pid_t pid = server.pid();
  const long rssBefore = memoryKiB(pid, "VmRSS");
  const long sizeBefore = memoryKiB(pid, "VmSize");
  REQUIRE(rssBefore > 0);
  REQUIRE(sizeBefore > 0);

  constexpr int kReads = 2000;
  std::vector<std::byte> reads;
  for (int i = 0; i < kReads; ++i) {
    auto frame = RawClient::requestBytes(
        1000 + i, req(file.node, msg::op::Read{1ull << 40, 1 << 20}, "", handle));
    reads.insert(reads.end(), frame.begin(), frame.end());
  }
  // The host may stop reading before it has them all: that is the cap at work.
  greedy.sendWithoutWaiting(reads, 500ms);
  REQUIRE(other.call(req(msg::kRootNode, msg::op::GetAttr{})).error() == 0);
  std::this_thread::sleep_for(200ms);
  auto growth = [&](const char* field, long before) {
    const long now = memoryKiB(pid, field);
    return now > before ? now - before : 0L;
  };
  const long rssGrowth = growth("VmRSS", rssBefore);
  const long sizeGrowth = growth("VmSize", sizeBefore);
  MESSAGE("after ", kReads, " unread reads past the end: VmRSS +", rssGrowth, " KiB, VmSize +",
          sizeGrowth, " KiB");
  // Resident memory shows little in the optimised build (the buffers are never written), so
  // the address space is checked too. The sanitizer keeps up to 256 MiB of freed memory
  // mapped (its quarantine).
#ifdef __SANITIZE_ADDRESS__
  constexpr long kMostSizeGrowthKiB = (256 + 128) * 1024;
#else
  constexpr long kMostSizeGrowthKiB = 128 * 1024;
#endif
  CHECK(rssGrowth < 64 * 1024);
  CHECK(sizeGrowth < kMostSizeGrowthKiB);
  // Everyone else is still served.
  CHECK(other.call(req(msg::kRootNode, msg::op::GetAttr{})).error() == 0);
  RawClient fresh(server.address());
  fresh.hello("data");
  CHECK(lookup(fresh, msg::kRootNode, "file").attr.ino == inodeOf(dir / "export/file"));
}
TEST_CASE("a payload on a request that takes none is a protocol fault") {
  Scene scene;
  const std::string junk(4096, 'j');
  SUBCASE("write and setxattr carry theirs as before") {
    RawClient c(scene.server->address());
    c.hello("data");
    msg::Entry file = lookup(c, msg::kRootNode, "file");
    const msg::HandleId h = openHandle(c, file.node, O_RDWR);
    auto written = c.call(req(file.node, msg::op::Write{0, 0}, "", h), asBytes("INSIDE"));
    REQUIRE(written.error() == 0);
    CHECK(std::get<msg::body::Written>(written.reply.body).count == 6);
    CHECK(c.call(req(file.node, msg::op::SetXattr{0}, "user.x"), asBytes("value")).error() == 0);
    CHECK(readFile(scene.in("file")) == "INSIDE\n");
  }
  for (const auto& [what, request] : std::vector<std::pair<std::string, msg::Request>>{
           {"getattr", req(msg::kRootNode, msg::op::GetAttr{})},
           {"lookup", req(msg::kRootNode, msg::op::Lookup{}, "file")},
           {"read", req(msg::kRootNode, msg::op::Read{0, 100}, "", 1)},
           {"fsync", req(msg::kRootNode, msg::op::Fsync{false}, "", 1)},
           {"forget", req(0, msg::op::Forget{{{msg::kRootNode, 1}}})}}) {
    CAPTURE(what);
    RawClient c(scene.server->address());
    c.hello("data");
    c.sendRequest(7, request, asBytes(junk));
    int frames = 0;
    CHECK(c.closedByHost(5s, &frames));
    CHECK(frames == 0);
  }
  RawClient fresh(scene.server->address());
  fresh.hello("data");
  CHECK(fresh.call(req(msg::kRootNode, msg::op::GetAttr{})).error() == 0);
}

TEST_CASE("rewriting a set-ID file clears its set-ID bits, whatever the client asks") {
  // A root server may keep set-ID bits on a write (CAP_FSETID). A client that does not ask
  // for them to be cleared (killSetId) must still not leave a set-user-ID program with its
  // contents on the host.
  Scene scene;
  RawClient c(scene.server->address());
  c.hello("data");
  std::uint32_t bits = 04755;
  SUBCASE("set-user-ID") {}
  SUBCASE("set-group-ID, group-executable") {
    bits = 02775;
  }
  SUBCASE("both") {
    bits = 06775;
  }
  CAPTURE(octal(bits));
  auto prepared = [&](const std::string& name) {
    writeFile(scene.in(name), "#!/bin/sh\necho host\n");
    REQUIRE(::chmod(scene.in(name).c_str(), bits) == 0);
    return lookup(c, msg::kRootNode, name);
  };
  auto keptBits = [&](const std::string& name) {
    return modeOf(scene.in(name)) & (S_ISUID | S_ISGID);
  };
  {
    msg::Entry e = prepared("write");
    const msg::HandleId h = openHandle(c, e.node, O_WRONLY);
    REQUIRE(c.call(req(e.node, msg::op::Write{0, 0}, "", h), asBytes("#!/bin/sh\nid\n#")).error() ==
            0);
    CHECK_MESSAGE(keptBits("write") == 0, "a write left ",
                  octal(modeOf(scene.in("write")) & 07777));
  }
  {
    msg::Entry e = prepared("truncate");
    msg::op::SetAttr truncate;
    truncate.valid = msg::op::kSize;
    truncate.size = 3;
    REQUIRE(c.call(req(e.node, truncate)).error() == 0);
    CHECK_MESSAGE(keptBits("truncate") == 0, "a truncate left ",
                  octal(modeOf(scene.in("truncate")) & 07777));
  }
  {
    msg::Entry e = prepared("otrunc");
    openHandle(c, e.node, O_WRONLY | O_TRUNC);
    CHECK_MESSAGE(keptBits("otrunc") == 0, "O_TRUNC left ",
                  octal(modeOf(scene.in("otrunc")) & 07777));
  }
  {
    prepared("create");
    REQUIRE(
        c.call(req(msg::kRootNode, msg::op::Create{0755, O_WRONLY | O_TRUNC}, "create")).error() ==
        0);
    CHECK_MESSAGE(keptBits("create") == 0, "create with O_TRUNC left ",
                  octal(modeOf(scene.in("create")) & 07777));
  }
  {
    msg::Entry e = prepared("fallocate");
    const msg::HandleId h = openHandle(c, e.node, O_WRONLY);
    REQUIRE(c.call(req(e.node, msg::op::Fallocate{0, 0, 8192}, "", h)).error() == 0);
    CHECK_MESSAGE(keptBits("fallocate") == 0, "fallocate left ",
                  octal(modeOf(scene.in("fallocate")) & 07777));
  }
}

TEST_CASE("an export name with line breaks and escapes cannot forge lines in the host's log") {
  Scene scene;
  const std::string forged =
      "2026-01-01T00:00:00.000 info [session] client 99 (cid 3) mounted export 'data'";
  const std::string name = "x'\n" + forged + "\r\x1b[2J";
  for (msg::MountKind kind : {msg::MountKind::basic, msg::MountKind::block}) {
    RawClient c(scene.server->address());
    msg::Welcome refused = c.handshake(name, kind);
    CHECK(errName(refused.error) == "ENOENT");
    CHECK(refused.message.find_first_of("\n\r\x1b") == std::string::npos);
    CHECK(c.closedByHost());
  }
  REQUIRE(waitUntil([&] { return linesWith(scene.server->log(), "refused") >= 2; }, 5s));
  const std::string log = scene.server->log();
  CHECK(log.find_first_of("\r\x1b") == std::string::npos);
  for (const auto& line : linesOf(log)) {
    CHECK_MESSAGE(line.rfind(forged, 0) != 0, "a forged log line: ", line);
  }
}

TEST_CASE("read, write and fallocate at offsets past INT64_MAX answer EINVAL, as lseek does") {
  // Through io_uring an offset of 2^64-1 means "the file's current position".
  Scene scene;
  RawClient c(scene.server->address());
  c.hello("data");
  msg::Entry file = lookup(c, msg::kRootNode, "file");
  const msg::HandleId h = openHandle(c, file.node, O_RDWR);
  for (std::uint64_t offset : {UINT64_MAX, std::uint64_t{1} << 63}) {
    CAPTURE(offset);
    for (std::uint32_t size : {100u, 512u * 1024}) {  // copied, and spliced through a pipe
      auto read = c.call(req(file.node, msg::op::Read{offset, size}, "", h));
      CHECK(errName(read.error()) == "EINVAL");
      CHECK(read.payload.empty());
    }
    CHECK(errName(
              c.call(req(file.node, msg::op::Write{offset, 0}, "", h), asBytes("evil")).error()) ==
          "EINVAL");
    CHECK(errName(c.call(req(file.node, msg::op::Fallocate{0, offset, 4096}, "", h)).error()) ==
          "EINVAL");
    CHECK(errName(c.call(req(file.node, msg::op::Fallocate{0, 0, offset}, "", h)).error()) ==
          "EINVAL");
  }
  CHECK(readFile(scene.in("file")) == "inside\n");
}

TEST_CASE("connections refused for want of room are logged as a count, not one line each") {
  TempDir dir;
  ::mkdir((dir / "export").c_str(), 0755);
  HostServer server(dir / "sock", {"--export", "data=" + (dir / "export"), "--max-clients", "1"});
  RawClient holder(server.address());
  holder.hello("data");
  for (int i = 0; i < 200; ++i) {
    RawClient refused(server.address());
    CHECK(refused.closedByHost());
  }
  CHECK(holder.call(req(msg::kRootNode, msg::op::GetAttr{})).error() == 0);
  const std::size_t lines = linesWith(server.log(), "refusing");
  CHECK(lines >= 1);
  CHECK(lines <= 3);
}

// ---- block volumes ---------------------------------------------------------------------------

namespace {

constexpr std::uint64_t kVolumeBytes = 16 << 20;
constexpr std::uint64_t kDataOffset = 4096;  // the image's header comes first

// An export and a 16 MiB volume on one server.
struct VolumeScene {
  TempDir dir;
  std::string image = dir / "db.img";
  std::unique_ptr<HostServer> server;

  VolumeScene() {
    ::mkdir((dir / "export").c_str(), 0755);
    auto made = run({volumeToolPath(), "create", "--size", "16M", "--volume", image});
    REQUIRE_MESSAGE(made.exitCode == 0, made.output);
    server = std::make_unique<HostServer>(
        dir / "sock", std::vector<std::string>{"--export", "data=" + (dir / "export"),
                                               "--volume", "db=" + image});
  }
};

msg::Request sector(msg::Op op) {
  msg::Request r;
  r.op = std::move(op);
  return r;
}

std::string imageBytes(const std::string& image, std::uint64_t offset, std::size_t length) {
  std::string bytes(length, '\0');
  int fd = ::open(image.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(::pread(fd, bytes.data(), length, static_cast<off_t>(offset)) == static_cast<ssize_t>(length));
  ::close(fd);
  return bytes;
}

}  // namespace

TEST_CASE("sector ranges outside the volume, unaligned, empty or overflowing are refused") {
  VolumeScene scene;
  RawClient c(scene.server->address());
  msg::Welcome welcome = c.hello("db", msg::MountKind::block);
  REQUIRE(welcome.volumeSize == kVolumeBytes);
  REQUIRE(welcome.sectorSize == 4096);
  const std::string headerBefore = imageBytes(scene.image, 0, kDataOffset);
  const auto sizeBefore = std::filesystem::file_size(scene.image);

  struct Case {
    const char* what;
    std::uint64_t offset, length;
  };
  const Case bad[] = {
      {"at the end", kVolumeBytes, 4096},
      {"across the end", kVolumeBytes - 4096, 8192},
      {"wrapping around", UINT64_MAX - 4095, 8192},
      {"unaligned offset", 1, 4096},
      {"unaligned length", 0, 100},
      {"empty", 0, 0},
  };
  for (const Case& k : bad) {
    CAPTURE(k.what);
    CHECK(errName(c.call(sector(msg::op::SectorRead{k.offset, k.length})).error()) == "EINVAL");
    CHECK(errName(c.call(sector(msg::op::SectorTrim{k.offset, k.length})).error()) == "EINVAL");
    CHECK(errName(c.call(sector(msg::op::SectorWriteZeroes{k.offset, k.length})).error()) == "EINVAL");
    std::string data(static_cast<std::size_t>(std::min<std::uint64_t>(k.length, 8192)), 'w');
    CHECK(errName(c.call(sector(msg::op::SectorWrite{k.offset, false}), asBytes(data)).error()) ==
          "EINVAL");
  }
  CHECK(errName(c.call(sector(msg::op::SectorRead{0, limits::kMaxIoBytes + 4096})).error()) == "EINVAL");
  CHECK(imageBytes(scene.image, 0, kDataOffset) == headerBefore);
  CHECK(std::filesystem::file_size(scene.image) == sizeBefore);

  // The last sector is inside, and lands right after the header in the image.
  std::string last(4096, 'L');
  auto written = c.call(sector(msg::op::SectorWrite{kVolumeBytes - 4096, true}), asBytes(last));
  REQUIRE(written.error() == 0);
  CHECK(std::get<msg::body::Written>(written.reply.body).count == 4096);
  CHECK(imageBytes(scene.image, kDataOffset + kVolumeBytes - 4096, 4096) == last);
  std::string first(8192, 'F');
  REQUIRE(c.call(sector(msg::op::SectorWrite{0, false}), asBytes(first)).error() == 0);
  CHECK(imageBytes(scene.image, kDataOffset, 8192) == first);
  CHECK(imageBytes(scene.image, 0, kDataOffset) == headerBefore);
  auto read = c.call(sector(msg::op::SectorRead{0, 8192}));
  REQUIRE(read.error() == 0);
  CHECK(std::string(reinterpret_cast<const char*>(read.payload.data()), read.payload.size()) == first);
  CHECK(c.call(sector(msg::op::SectorFlush{})).error() == 0);
  REQUIRE(c.call(sector(msg::op::SectorWriteZeroes{0, 4096})).error() == 0);
  CHECK(imageBytes(scene.image, kDataOffset, 8192) == std::string(4096, '\0') + std::string(4096, 'F'));
  REQUIRE(c.call(sector(msg::op::SectorTrim{4096, 4096})).error() == 0);
  CHECK(imageBytes(scene.image, kDataOffset, 8192) == std::string(8192, '\0'));
}

TEST_CASE("file operations on a volume, and sector operations on an export, are refused") {
  VolumeScene scene;
  RawClient block(scene.server->address());
  block.hello("db", msg::MountKind::block);
  CHECK(errName(block.call(req(msg::kRootNode, msg::op::Lookup{}, "x")).error()) == "EOPNOTSUPP");
  CHECK(errName(block.call(req(msg::kRootNode, msg::op::GetAttr{})).error()) == "EOPNOTSUPP");
  RawClient basic(scene.server->address());
  basic.hello("data");
  CHECK(errName(basic.call(sector(msg::op::SectorRead{0, 4096})).error()) == "EOPNOTSUPP");
  CHECK(errName(basic.call(sector(msg::op::SectorWrite{0, false}), asBytes(std::string(4096, 'x'))).error()) ==
        "EOPNOTSUPP");
  CHECK(errName(basic.call(sector(msg::op::SectorFlush{})).error()) == "EOPNOTSUPP");
}

TEST_CASE("a held volume is refused to a second client, naming the holder, until the holder leaves") {
  VolumeScene scene;
  auto holder = std::make_unique<RawClient>(scene.server->address());
  holder->hello("db", msg::MountKind::block);
  RawClient second(scene.server->address());
  msg::Welcome refused = second.handshake("db", msg::MountKind::block);
  CHECK(errName(refused.error) == "EBUSY");
  CHECK_MESSAGE(refused.message.find("volume db is in use by uid " + std::to_string(::getuid()) +
                                     " pid " + std::to_string(::getpid()) + " since 20") == 0,
                refused.message);
  CHECK(second.closedByHost());
  RawClient unknown(scene.server->address());
  CHECK(errName(unknown.handshake("nosuch", msg::MountKind::block).error) == "ENOENT");

  holder.reset();  // the holder disconnects: the lease ends with its connection
  bool taken = false;
  for (int i = 0; i < 100 && !taken; ++i) {
    RawClient next(scene.server->address());
    taken = next.handshake("db", msg::MountKind::block).error == 0;
    if (!taken) std::this_thread::sleep_for(20ms);
  }
  CHECK(taken);
}

TEST_CASE("a flood of invalid sector ranges is logged once per connection, with a count") {
  VolumeScene scene;
  RawClient c(scene.server->address());
  c.hello("db", msg::MountKind::block);
  constexpr int kCount = 1000;
  std::vector<std::byte> requests;
  for (int i = 0; i < kCount; ++i) {
    auto frame = RawClient::requestBytes(i + 1, sector(msg::op::SectorRead{1, 4096}));
    requests.insert(requests.end(), frame.begin(), frame.end());
  }
  std::thread sender([&] { c.sendRaw(requests); });
  int invalid = 0;
  for (int i = 0; i < kCount; ++i) {
    RawClient::Frame f;
    if (c.receive(f, 10s) != RawClient::Got::frame) break;
    invalid += RawClient::decode(f).error() == EINVAL;
  }
  sender.join();
  CHECK(invalid == kCount);
  CHECK(c.call(sector(msg::op::SectorRead{0, 4096})).error() == 0);
  const std::size_t whileConnected = linesWith(scene.server->log(), "sectorRead");
  CHECK(whileConnected >= 1);
  CHECK(whileConnected <= 2);
  // The count comes when the client leaves.
  c.closeNow();
  CHECK(waitUntil(
      [&] {
        return scene.server->log().find(std::to_string(kCount) + " invalid") != std::string::npos;
      },
      5s));
  CHECK(linesWith(scene.server->log(), "sector") <= 3);
}
TEST_CASE(
    "a volume the host cannot open is refused without telling the client where its image lies") {
  VolumeScene scene;
  REQUIRE(::rename(scene.image.c_str(), (scene.image + ".moved").c_str()) == 0);
  RawClient c(scene.server->address());
  msg::Welcome refused = c.handshake("db", msg::MountKind::block);
  CHECK(errName(refused.error) == "EIO");
  CHECK_MESSAGE(refused.message.find(scene.dir.path()) == std::string::npos, refused.message);
  CHECK_MESSAGE(refused.message.find("db.img") == std::string::npos, refused.message);
  CHECK(refused.message.find("volume 'db'") != std::string::npos);
  // The operator still learns which file it was.
  CHECK(waitUntil([&] { return scene.server->log().find(scene.image) != std::string::npos; }, 5s));
}
