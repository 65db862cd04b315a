// One client connection: handshake, framing, per-connection limits, and the tables of the
// nodes and handles the client holds.
//
// Everything here runs on the loop thread; nothing is locked. A Session is shared_ptr-owned:
// the armed receive and send completions and every operation in flight hold a reference, so
// it lives until the socket is closed and the last operation has answered.
//
// Back-pressure: while `maxInFlight` requests are being served, or replies of more than
// `maxQueuedReplyBytes` wait for a client that does not read them, the session stops reading
// the socket, so a client cannot make the host queue unbounded work or memory.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "common/frame.h"
#include "common/messages.h"
#include "common/wire.h"
#include "host-server/access.h"
#include "host-server/blocking_pool.h"
#include "host-server/change_watch.h"
#include "host-server/exports.h"
#include "host-server/handle_table.h"
#include "host-server/node_table.h"
#include "host-server/pipes.h"
#include "host-server/stats.h"
#include "host-server/uring.h"
#include "host-server/volume_file.h"
#include "host-server/volumes.h"
#include "host-server/write_order.h"

namespace spdlog {
class logger;
}

namespace enclavefs::host {

class Server;

// Owned bytes: a read's data or a write's payload.
//
// The size is always the allocation's: the cap on queued replies (maxQueuedReplyBytes)
// counts sizes, so bytes allocated but not counted would let a client that never reads its
// socket make the host hold memory without bound. A read that fills less than it allocated
// gives the rest back with shrinkTo().
class Bytes {
 public:
  Bytes() = default;
  static Bytes allocate(std::size_t n);

  std::byte* data() { return data_.get(); }
  const std::byte* data() const { return data_.get(); }
  std::size_t size() const { return size_; }
  std::span<const std::byte> view() const { return {data_.get(), size_}; }
  // Keeps the first `n` bytes (n ≤ size()) and frees the rest of the allocation.
  void shrinkTo(std::size_t n);

 private:
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  // malloc'ed, so that shrinkTo can realloc in place rather than copy.
  std::unique_ptr<std::byte[], Free> data_;
  std::size_t size_ = 0;
};

// What a reply carries after its message: bytes in memory, or a large read's bytes waiting
// in a pipe (pipes.h).
using Payload = std::variant<Bytes, PipedBytes>;
std::size_t payloadSize(const Payload& payload);

// What an operation answers: the reply and, for data-bearing replies, its payload.
struct Outcome {
  msg::Reply reply;
  Payload payload;
};

struct SessionLimits {
  std::size_t maxInFlight = 256;
  std::size_t maxQueuedReplyBytes = 8 << 20;
  std::chrono::seconds handshakeTimeout{10};
  std::size_t maxNodes = 65536;
  std::size_t maxHandles = 4096;
  std::size_t maxClients = 64;  // connections per server
};

class Session : public std::enable_shared_from_this<Session>, public ChangeListener {
 public:
  Session(Server& server, UniqueFd socket, Peer peer, std::uint64_t id);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  ~Session();

  void start();
  // Closes the connection; operations in flight finish and their replies are dropped.
  void close(const std::string& why);

  // Changes the change watch saw in what this client holds; pushChanges() sends them.
  void noteChangedNode(msg::NodeId node) override;
  void noteChangedEntry(msg::NodeId parent, const std::string& name) override;
  void noteChangedInode(std::uint64_t dev, std::uint64_t ino) override;
  void noteEverythingChanged() override;
  void pushChanges() override;

  // For operation handlers.
  Ring& ring();
  BlockingPool& pool();
  const Export& exported() const { return *export_; }
  // The export or volume lives on a memory file system (tmpfs, ramfs): no call there waits
  // for a device, so calls are made inline rather than through the ring (inMemoryOrRing).
  bool inMemory() const { return inMemory_; }
  bool readOnly() const { return export_ != nullptr && export_->readOnly; }
  // The image of the volume this session holds (block sessions only).
  const VolumeFile& image() const { return *image_; }
  NodeTable& nodes() { return nodes_; }
  HandleTable& handles() { return handles_; }
  PipePool& pipes() { return pipes_; }
  // The change watch, when this session pushes changes to its client; else null.
  ChangeWatch* changeWatch();
  spdlog::logger& log() const;
  std::uint64_t id() const { return id_; }
  bool closed() const { return closed_; }
  const Peer& peer() const { return peer_; }

  // What enclavefs-inspect shows of a client.
  const RequestStats& stats() const { return stats_; }
  std::size_t inFlight() const { return inFlight_; }
  std::chrono::system_clock::time_point since() const { return since_; }
  const Export* mountedExport() const { return export_; }  // null before the handshake
  const Volume* heldVolume() const { return volume_; }
  std::size_t openHandles() const { return handles_.size(); }
  // Names and inodes pushed to the client as changed, over the connection's life.
  std::uint64_t pushedEntries() const { return pushedEntries_; }
  std::uint64_t pushedInodes() const { return pushedInodes_; }
  std::size_t lockOwners() const { return nodes_.lockOwners(); }

  // A block request named an invalid sector range. True for the connection's first, the
  // only one logged: the count is logged when the connection ends, so a client cannot fill
  // the host's disk through its log.
  bool noteInvalidRange() { return ++invalidRanges_ == 1; }

 private:
  class Receive : public Completion {
   public:
    explicit Receive(Session& s) : session_(s) {}
    void arm();
    void complete(int result) override;

   private:
    Session& session_;
    std::shared_ptr<Session> keepAlive_;
  };

  class Send : public Completion {
   public:
    explicit Send(Session& s) : session_(s) {}
    void arm();
    void complete(int result) override;
    bool armed() const { return keepAlive_ != nullptr; }

   private:
    // Sends from out_.front() onwards: the frames' bytes in memory with one sendmsg, up to the
    // first payload in a pipe, which is spliced on its own.
    Session& session_;
    std::shared_ptr<Session> keepAlive_;
    std::vector<iovec> iov_;
    msghdr msg_{};
    PipedBytes* splicing_ = nullptr;  // the payload the armed operation takes bytes from
  };

  // Closes a connection that has not completed the handshake in time.
  class HandshakeTimer : public Completion {
   public:
    explicit HandshakeTimer(Session& s) : session_(s) {}
    void arm();
    void disarm();
    void complete(int result) override;

   private:
    Session& session_;
    std::shared_ptr<Session> keepAlive_;
    __kernel_timespec timeout_{};
    bool removing_ = false;  // a removal is queued; a second would find nothing
  };

  struct OutFrame {
    HeaderBytes header;
    wire::Words message;
    Payload payload;
    std::size_t bytes() const;
  };

  // Frames are taken from the assembler until it runs dry or the in-flight limit is reached.
  void processFrames();
  bool mayTakeRequests() const;
  void resumeReading();
  void handleFrame(const FrameView& frame);
  void handleHello(const FrameView& frame);
  void acceptExport(const msg::Hello& hello);
  void acceptVolume(const msg::Hello& hello);
  bool established() const { return export_ != nullptr || volume_ != nullptr; }
  void handleRequest(const FrameView& frame);
  Detached serve(std::uint64_t requestId, msg::Request request, Bytes payload);
  // Answers the hello with `error` and `message`, and logs both; `hostOnly` is logged after
  // them but never sent (what the client may not learn, such as a host path).
  void refuse(int error, const std::string& message, const std::string& hostOnly = {});

  void enqueue(FrameKind kind, std::uint64_t id, wire::Words message, Payload payload);
  void operationDone();

  Server& server_;
  UniqueFd socket_;
  Peer peer_;
  std::uint64_t id_;
  std::chrono::system_clock::time_point since_ = std::chrono::system_clock::now();
  RequestStats stats_;
  std::shared_ptr<spdlog::logger> log_;
  SessionLimits limits_;

  const Export* export_ = nullptr;  // set by the handshake of a basic mount
  const Volume* volume_ = nullptr;  // set by the handshake of a block mount
  bool inMemory_ = false;           // set by the handshake
  std::optional<VolumeFile> image_;  // the volume's image, with its lease, while held
  bool pushChanges_ = false;        // the client understands notify frames, and we can watch
  std::shared_ptr<PeerUsage> usage_;  // what the peer holds of the export
  NodeTable nodes_;
  HandleTable handles_;

  FrameAssembler in_;
  Receive receive_{*this};
  bool receiving_ = false;
  bool closed_ = false;
  bool closeAfterSend_ = false;  // a refused handshake closes once its answer is out
  std::size_t inFlight_ = 0;
  WriteOrder writeOrder_;
  bool paused_ = false;  // reading stopped by back-pressure
  HandshakeTimer handshakeTimer_{*this};

  msg::Notify changes_;  // seen, not yet pushed
  // Too many changes to list while the client is not reading: push every node instead.
  bool everythingChanged_ = false;
  std::uint64_t pushedEntries_ = 0;
  std::uint64_t pushedInodes_ = 0;
  std::uint64_t invalidRanges_ = 0;  // sector ranges refused (noteInvalidRange)

  PipePool pipes_;  // outlives the frames whose payloads wait in its pipes
  std::deque<OutFrame> out_;
  std::size_t outSentOfFront_ = 0;  // bytes of out_.front() already sent
  std::size_t outBytes_ = 0;        // bytes queued in out_, not yet sent
  Send send_{*this};
};

}  // namespace enclavefs::host
