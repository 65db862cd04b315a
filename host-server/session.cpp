#include "host-server/session.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/socket.h>
#include <sys/vfs.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <tuple>

#include "common/hard_limits.h"
#include "common/log.h"
#include "common/overloaded.h"
#include "host-server/operations.h"
#include "host-server/server.h"

namespace enclavefs::host {

namespace {
constexpr std::size_t kMaxFramesPerSend = 64;

bool onMemoryFileSystem(int fd) {
  struct statfs fs;
  return ::fstatfs(fd, &fs) == 0 && (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC);
}

// The writes a client may answer before the host does (write-behind), which therefore run in
// order (write_order.h): a basic mount's writes, and a block mount's writes without FUA.
bool answeredEarly(const msg::Op& op) {
  if (std::holds_alternative<msg::op::Write>(op)) return true;
  const auto* sectors = std::get_if<msg::op::SectorWrite>(&op);
  return sectors != nullptr && !sectors->fua;
}
}  // namespace

Bytes Bytes::allocate(std::size_t n) {
  Bytes bytes;
  if (n == 0) return bytes;
  bytes.data_.reset(static_cast<std::byte*>(std::malloc(n)));
  if (!bytes.data_) throw std::bad_alloc();
  bytes.size_ = n;
  return bytes;
}

void Bytes::shrinkTo(std::size_t n) {
  if (n >= size_) return;
  if (n == 0) {
    data_.reset();
  } else {
    auto* smaller = static_cast<std::byte*>(std::realloc(data_.get(), n));
    if (smaller == nullptr) throw std::bad_alloc();  // the old buffer is still data_'s
    static_cast<void>(data_.release());
    data_.reset(smaller);
  }
  size_ = n;
}

std::size_t payloadSize(const Payload& payload) {
  return std::visit(Overloaded{[](const Bytes& bytes) { return bytes.size(); },
                               [](const PipedBytes& piped) { return piped.size; }},
                    payload);
}

std::size_t Session::OutFrame::bytes() const {
  const std::size_t size = payloadSize(payload);
  return kFrameHeaderBytes + message.asBytes().size() + size +
         payloadPadding(static_cast<std::uint32_t>(size)).size();
}

Session::Session(Server& server, UniqueFd socket, Peer peer, std::uint64_t id)
    : server_(server),
      socket_(std::move(socket)),
      peer_(peer),
      id_(id),
      log_(logger("session")),
      limits_(server.limits()),
      nodes_(limits_.maxNodes),
      handles_(limits_.maxHandles) {}

Session::~Session() {
  log_->info("client {} ({}) disconnected", id_, peer_.describe());
  if (invalidRanges_ > 1)
    log_->warn("client {} sent {} invalid sector ranges", id_, invalidRanges_);
  if (volume_ != nullptr) log_->info("client {} released volume '{}'", id_, volume_->name);
  server_.changes().unwatchSession(id_);
  if (usage_) --usage_->connections;
  server_.sessionEnded(id_);
}

Ring& Session::ring() { return server_.ring(); }
BlockingPool& Session::pool() { return server_.pool(); }
spdlog::logger& Session::log() const { return *log_; }

void Session::start() {
  log_->info("client {} connected ({})", id_, peer_.describe());
  handshakeTimer_.arm();
  receive_.arm();
}

void Session::close(const std::string& why) {
  if (closed_) return;
  closed_ = true;
  log_->info("client {}: closing: {}", id_, why);
  handshakeTimer_.disarm();
  // Wakes the armed receive (and any send) so their references go away.
  ::shutdown(socket_.get(), SHUT_RDWR);
  // An armed send still points into the queued frames; it drops them when it completes.
  if (!send_.armed()) {
    out_.clear();
    outBytes_ = 0;
  }
}

// ---- receiving ------------------------------------------------------------------------------

void Session::Receive::arm() {
  auto space = session_.in_.writable();
  keepAlive_ = session_.shared_from_this();
  session_.receiving_ = true;
  io_uring_prep_recv(session_.ring().prepare(this), session_.socket_.get(), space.data(),
                     space.size(), 0);
}

void Session::Receive::complete(int result) {
  auto self = std::move(keepAlive_);
  Session& s = session_;
  s.receiving_ = false;
  if (s.closed_) return;
  if (result == 0) {
    s.close("end of stream");
    return;
  }
  if (result < 0) {
    if (result == -EINTR || result == -EAGAIN) {
      arm();
      return;
    }
    s.close(std::string("receive failed: ") + std::strerror(-result));
    return;
  }
  s.in_.commit(static_cast<std::size_t>(result));
  s.processFrames();
}

bool Session::mayTakeRequests() const {
  return inFlight_ < limits_.maxInFlight && outBytes_ < limits_.maxQueuedReplyBytes;
}

void Session::resumeReading() {
  if (paused_ && !closed_ && mayTakeRequests()) {
    paused_ = false;
    processFrames();
  }
}

void Session::processFrames() {
  // After a refused handshake nothing more is read: the refusal goes out, then the close.
  while (!closed_ && !closeAfterSend_) {
    if (!mayTakeRequests()) {
      paused_ = true;  // operationDone() or a finished send resumes
      return;
    }
    auto next = in_.next();
    if (!next) {
      log_->warn("client {}: protocol fault: {}", id_, next.error());
      close("protocol fault");
      return;
    }
    if (!next->has_value()) {
      if (!receiving_) receive_.arm();
      return;
    }
    handleFrame(**next);
  }
}

void Session::handleFrame(const FrameView& frame) {
  if (!established()) {
    if (frame.header.kind != FrameKind::hello) {
      log_->warn("client {}: protocol fault: first frame is not a hello", id_);
      close("protocol fault");
      return;
    }
    handleHello(frame);
    return;
  }
  if (frame.header.kind != FrameKind::request) {
    log_->warn("client {}: protocol fault: unexpected frame kind {}", id_,
               static_cast<int>(frame.header.kind));
    close("protocol fault");
    return;
  }
  handleRequest(frame);
}

void Session::refuse(int error, const std::string& message, const std::string& hostOnly) {
  log_->warn("client {} ({}) refused: {}{}", id_, peer_.describe(), message,
             hostOnly.empty() ? "" : ": " + hostOnly);
  server_.noteRefusedHandshake();
  msg::Welcome welcome;
  welcome.error = error;
  welcome.message = message;
  welcome.version = msg::kProtocolVersion;
  enqueue(FrameKind::welcome, 0, wire::encode(welcome), {});
  closeAfterSend_ = true;
}

void Session::handleHello(const FrameView& frame) {
  auto hello = wire::decodeHello(frame.message);
  if (!hello) {
    log_->warn("client {}: protocol fault in hello: {}", id_, hello.error());
    close("protocol fault");
    return;
  }
  if (hello->version != msg::kProtocolVersion) {
    refuse(EPROTO, "protocol version " + std::to_string(hello->version) +
                       " is not supported (this host speaks " +
                       std::to_string(msg::kProtocolVersion) + ")");
    return;
  }
  if (hello->kind == msg::MountKind::block) {
    acceptVolume(*hello);
  } else {
    acceptExport(*hello);
  }
}

void Session::acceptExport(const msg::Hello& hello) {
  const Export* exported = server_.exports().find(hello.name);
  if (exported == nullptr) {
    // The name is the client's: made printable, so it cannot forge log lines or send terminal
    // escapes to whoever reads the log.
    refuse(ENOENT, "no export named '" + printable(hello.name) + "'");
    return;
  }
  if (!exported->allow.allows(peer_)) {
    refuse(EACCES, "peer " + peer_.describe() + " may not mount export '" + exported->name + "'");
    return;
  }
  auto usage = server_.usageOf(*exported, peer_);
  if (exported->maxConnectionsPerPeer != 0 &&
      usage->connections >= exported->maxConnectionsPerPeer) {
    refuse(EUSERS, "export '" + exported->name + "' already has " +
                       std::to_string(usage->connections) + " connections from peer " +
                       peer_.describe());
    return;
  }
  UniqueFd root(::fcntl(exported->root.get(), F_DUPFD_CLOEXEC, 0));
  struct statx st;
  if (!root || ::statx(root.get(), "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS,
                       &st) != 0) {
    refuse(EIO, "export '" + exported->name + "' is unavailable: " + std::strerror(errno));
    return;
  }
  export_ = exported;
  inMemory_ = onMemoryFileSystem(root.get());
  pushChanges_ = (hello.features & msg::kFeatureChangeNotify) && server_.changes().available();
  if (pushChanges_) {
    nodes_.observe(
        {[this](const Node& dir) { server_.changes().watch(shared_from_this(), id_, dir); },
         [this](const Node& node) { server_.changes().unwatch(id_, node.id); }});
  }
  usage_ = std::move(usage);
  ++usage_->connections;
  if (exported->maxHandlesPerPeer) handles_.shareWithPeer(usage_, *exported->maxHandlesPerPeer);
  handshakeTimer_.disarm();
  nodes_.setRoot(std::move(root), st.stx_mode & S_IFMT);
  if (pushChanges_) server_.changes().watch(shared_from_this(), id_, *nodes_.find(msg::kRootNode));

  msg::Welcome welcome;
  welcome.version = msg::kProtocolVersion;
  welcome.readOnly = exported->readOnly;
  welcome.features = (pushChanges_ ? msg::kFeatureChangeNotify : 0) |
                     (hello.features & msg::kFeatureOrderedWrites) |  // write_order.h
                     (hello.features & msg::kFeatureClearsSetId);     // clearSetIdBits
  welcome.maxWrite = limits::kMaxIoBytes;
  welcome.maxRead = limits::kMaxIoBytes;
  welcome.root = toAttr(st);
  enqueue(FrameKind::welcome, 0, wire::encode(welcome), {});
  log_->info("client {} ({}) mounted export '{}'{}", id_, peer_.describe(), exported->name,
             exported->readOnly ? " read-only" : "");
}

// The lease is the image's lock: it is taken here and dropped when the session ends (the
// image closes with it), whether the client left, died, or was disconnected.
void Session::acceptVolume(const msg::Hello& hello) {
  const Volume* volume = server_.volumes().find(hello.name);
  if (volume == nullptr) {
    refuse(ENOENT, "no volume named '" + printable(hello.name) + "'");  // as for an export
    return;
  }
  if (!volume->allow.allows(peer_)) {
    refuse(EACCES, "peer " + peer_.describe() + " may not mount volume '" + volume->name + "'");
    return;
  }
  // Where the image lies on the host is the operator's business, not the client's: errors
  // that name its path go to the log only.
  auto image = VolumeFile::open(volume->path, true);
  if (!image) {
    refuse(EIO, "volume '" + volume->name + "' is unavailable", image.error());
    return;
  }
  Lease lease{peer_, ::time(nullptr), static_cast<std::uint32_t>(::getpid()), id_};
  if (auto held = image->acquire(lease, "volume " + volume->name); !held) {
    // "volume NAME is in use by …" is for the client; a failure to lock or to write the
    // lease names the image.
    if (held.error().find(volume->path) == std::string::npos) {
      refuse(EBUSY, held.error());
    } else {
      refuse(EBUSY, "volume '" + volume->name + "' cannot be leased", held.error());
    }
    return;
  }
  volume_ = volume;
  image_ = std::move(*image);
  inMemory_ = onMemoryFileSystem(image_->fd());
  handshakeTimer_.disarm();

  msg::Welcome welcome;
  welcome.version = msg::kProtocolVersion;
  welcome.maxWrite = limits::kMaxIoBytes;
  welcome.maxRead = limits::kMaxIoBytes;
  welcome.volumeSize = image_->header().size;
  welcome.sectorSize = image_->header().sectorSize;
  welcome.features = hello.features & msg::kFeatureOrderedWrites;  // write_order.h
  enqueue(FrameKind::welcome, 0, wire::encode(welcome), {});
  log_->info("client {} ({}) holds volume '{}' ({})", id_, peer_.describe(), volume->name,
             formatBytes(welcome.volumeSize));
}

void Session::handleRequest(const FrameView& frame) {
  auto request = wire::decodeRequest(frame.message);
  if (!request) {
    log_->warn("client {}: protocol fault in request {}: {}", id_, frame.header.id,
               request.error());
    close("protocol fault");
    return;
  }
  // A payload elsewhere would only be memory the request holds for its life, up to 1 MiB a
  // request (and a waiting lock request may live as long as the connection).
  if (!frame.payload.empty() && !msg::takesPayload(request->op)) {
    log_->warn("client {}: protocol fault in request {}: {} carries a payload of {} bytes", id_,
               frame.header.id, msg::opName(request->op), frame.payload.size());
    close("protocol fault");
    return;
  }
  // Forgets are one-way: the kernel expects no answer, so neither does the client.
  if (auto* forget = std::get_if<msg::op::Forget>(&request->op)) {
    for (const auto& item : forget->items) nodes_.forget(item.node, item.count);
    return;
  }
  Bytes payload;
  if (!frame.payload.empty()) {
    payload = Bytes::allocate(frame.payload.size());
    std::memcpy(payload.data(), frame.payload.data(), frame.payload.size());
  }
  ++inFlight_;
  serve(frame.header.id, std::move(*request), std::move(payload));
}

Detached Session::serve(std::uint64_t requestId, msg::Request request, Bytes payload) {
  auto self = shared_from_this();
  const auto started = std::chrono::steady_clock::now();
  const std::size_t payloadBytes = payload.size();
  const bool isWrite = answeredEarly(request.op);
  co_await writeOrder_.turn(isWrite);
  // Two statements: GCC 12 destroys a conditional's coroutine temporaries too early.
  Outcome outcome;
  if (volume_ != nullptr) {
    outcome = co_await performBlock(*this, request, payload);
  } else {
    outcome = co_await perform(*this, request, payload);
  }
  const int error = outcome.reply.error;
  if (error != 0) {
    log_->debug("client {}: {} on node {} failed: {}", id_, msg::opName(request.op), request.node,
                std::strerror(error));
  }
  const auto latency = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - started);
  const auto [bytesRead, bytesWritten] =
      bytesMoved(request.op, outcome.reply, payloadBytes, payloadSize(outcome.payload));
  stats_.record(request.op.index(), error, bytesRead, bytesWritten, latency);
  server_.totals().record(request.op.index(), error, bytesRead, bytesWritten, latency);
  if (server_.tracing()) server_.traced(traceEvent(id_, request, payloadBytes, error, latency));
  if (!closed_) {
    enqueue(FrameKind::reply, requestId, wire::encode(outcome.reply), std::move(outcome.payload));
  }
  operationDone();
  if (isWrite) writeOrder_.finished();
}

void Session::operationDone() {
  --inFlight_;
  resumeReading();
}

void Session::HandshakeTimer::arm() {
  timeout_.tv_sec = session_.limits_.handshakeTimeout.count();
  keepAlive_ = session_.shared_from_this();
  io_uring_prep_timeout(session_.ring().prepare(this), &timeout_, 0, 0);
}

void Session::HandshakeTimer::disarm() {
  if (!keepAlive_ || removing_) return;
  removing_ = true;
  // The removal's completion names nothing of the session: the timer's own completion
  // (-ECANCELED) may come first and drop the last reference, which kernels before 5.19
  // always do (they post it inside the removal) and later ones may, when the timer fired in
  // the same batch. A removal queued by a session that then ends cannot hit a timer of a
  // later session built at the same address: it is submitted before that timer is.
  io_uring_prep_timeout_remove(session_.ring().prepare(nullptr),
                               reinterpret_cast<std::uint64_t>(static_cast<Completion*>(this)), 0);
}

void Session::HandshakeTimer::complete(int result) {
  auto self = std::move(keepAlive_);
  if (result == -ETIME && !session_.established()) {
    session_.close("no handshake within " +
                   std::to_string(session_.limits_.handshakeTimeout.count()) + " s");
  }
}

// ---- pushing changes ------------------------------------------------------------------------

namespace {
// Changes held for a client that is not reading its socket, before they collapse into
// "everything changed" (which costs the client its caches, not the host its memory).
constexpr std::size_t kMaxHeldChanges = 16 * limits::kMaxNotifyItems;
}  // namespace

void Session::noteChangedNode(msg::NodeId node) {
  if (!everythingChanged_) changes_.inodes.push_back(node);
}

void Session::noteChangedEntry(msg::NodeId parent, const std::string& name) {
  if (!everythingChanged_) changes_.entries.push_back({parent, name});
}

void Session::noteChangedInode(std::uint64_t dev, std::uint64_t ino) {
  if (everythingChanged_) return;
  if (msg::NodeId node = nodes_.findByInode(dev, ino)) changes_.inodes.push_back(node);
}

ChangeWatch* Session::changeWatch() { return pushChanges_ ? &server_.changes() : nullptr; }

void Session::noteEverythingChanged() {
  everythingChanged_ = true;
  changes_ = {};
}

void Session::pushChanges() {
  if (closed_ || export_ == nullptr) {
    changes_ = {};
    everythingChanged_ = false;
    return;
  }
  if (changes_.entries.size() + changes_.inodes.size() > kMaxHeldChanges) noteEverythingChanged();
  // Like replies, changes wait while the client leaves its socket full; a finished send
  // pushes them.
  if (outBytes_ >= limits_.maxQueuedReplyBytes) return;
  if (everythingChanged_) {
    changes_.inodes = nodes_.ids();
    everythingChanged_ = false;
  }
  // One change is often seen many times in a batch (a write is many IN_MODIFY events).
  std::sort(changes_.inodes.begin(), changes_.inodes.end());
  changes_.inodes.erase(std::unique(changes_.inodes.begin(), changes_.inodes.end()),
                        changes_.inodes.end());
  auto byPlace = [](const auto& a, const auto& b) {
    return std::tie(a.parent, a.name) < std::tie(b.parent, b.name);
  };
  std::sort(changes_.entries.begin(), changes_.entries.end(), byPlace);
  changes_.entries.erase(std::unique(changes_.entries.begin(), changes_.entries.end()),
                         changes_.entries.end());
  while (!changes_.empty()) {
    msg::Notify frame;
    auto take = [](auto& from, auto& to) {
      std::size_t n = std::min(from.size(), limits::kMaxNotifyItems);
      to.assign(std::make_move_iterator(from.begin()), std::make_move_iterator(from.begin() + n));
      from.erase(from.begin(), from.begin() + n);
    };
    take(changes_.entries, frame.entries);
    take(changes_.inodes, frame.inodes);
    frame.dirAttrs = directoryAttrs(*this, frame.inodes);
    pushedEntries_ += frame.entries.size();
    pushedInodes_ += frame.inodes.size();
    enqueue(FrameKind::notify, 0, wire::encode(frame), {});
  }
}

// ---- sending --------------------------------------------------------------------------------

void Session::enqueue(FrameKind kind, std::uint64_t id, wire::Words message, Payload payload) {
  OutFrame frame;
  frame.header = encodeHeader({static_cast<std::uint32_t>(message.asBytes().size()),
                               static_cast<std::uint32_t>(payloadSize(payload)), id, kind});
  frame.message = std::move(message);
  frame.payload = std::move(payload);
  outBytes_ += frame.bytes();
  out_.push_back(std::move(frame));
  if (!send_.armed()) send_.arm();
}

void Session::Send::arm() {
  Session& s = session_;
  iov_.clear();
  splicing_ = nullptr;
  std::size_t skip = s.outSentOfFront_;
  auto add = [&](const void* base, std::size_t len) {
    if (len <= skip) {
      skip -= len;
      return;
    }
    iov_.push_back({const_cast<char*>(static_cast<const char*>(base)) + skip, len - skip});
    skip = 0;
  };
  for (std::size_t i = 0; i < s.out_.size() && i < kMaxFramesPerSend; ++i) {
    OutFrame& f = s.out_[i];
    add(f.header.data(), f.header.size());
    auto bytes = f.message.asBytes();
    add(bytes.begin(), bytes.size());
    if (auto* piped = std::get_if<PipedBytes>(&f.payload)) {
      if (!iov_.empty()) break;  // what comes before the pipe's bytes goes first
      if (skip < piped->size) {
        splicing_ = piped;
        break;
      }
      skip -= piped->size;
    } else {
      const Bytes& payload = std::get<Bytes>(f.payload);
      add(payload.data(), payload.size());
    }
    auto pad = payloadPadding(static_cast<std::uint32_t>(payloadSize(f.payload)));
    add(pad.data(), pad.size());
  }
  keepAlive_ = s.shared_from_this();
  if (splicing_ != nullptr) {
    const std::size_t left = splicing_->size - splicing_->sent;
    io_uring_prep_splice(s.ring().prepare(this), splicing_->readEnd(), -1, s.socket_.get(), -1,
                         static_cast<unsigned>(left), 0);
    return;
  }
  msg_ = {};
  msg_.msg_iov = iov_.data();
  msg_.msg_iovlen = iov_.size();
  io_uring_prep_sendmsg(s.ring().prepare(this), s.socket_.get(), &msg_, MSG_NOSIGNAL);
}

void Session::Send::complete(int result) {
  auto self = std::move(keepAlive_);
  Session& s = session_;
  if (s.closed_) {
    s.out_.clear();
    s.outBytes_ = 0;
    return;
  }
  if (result < 0) {
    if (result == -EINTR || result == -EAGAIN) {
      arm();
      return;
    }
    s.close(std::string("send failed: ") + std::strerror(-result));
    s.out_.clear();
    s.outBytes_ = 0;
    return;
  }
  if (splicing_ != nullptr) {
    if (result == 0) {  // cannot happen while the pipe holds the bytes: never wait on it
      s.close("a reply's bytes went missing from their pipe");
      s.out_.clear();
      s.outBytes_ = 0;
      return;
    }
    splicing_->sent += static_cast<std::size_t>(result);
  }
  std::size_t sent = static_cast<std::size_t>(result) + s.outSentOfFront_;
  while (!s.out_.empty() && sent >= s.out_.front().bytes()) {
    sent -= s.out_.front().bytes();
    s.outBytes_ -= s.out_.front().bytes();
    s.out_.pop_front();
  }
  s.outSentOfFront_ = sent;
  if (!s.out_.empty()) {
    arm();
  } else if (s.closeAfterSend_) {
    s.close("handshake refused");
    return;
  }
  if (s.everythingChanged_ || !s.changes_.empty()) s.pushChanges();
  s.resumeReading();
}

}  // namespace enclavefs::host
