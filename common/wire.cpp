#include "common/wire.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>

#include "common/hard_limits.h"
#include "common/overloaded.h"
#include "enclavefs.capnp.h"

namespace enclavefs::wire {

static_assert(msg::kProtocolVersion == PROTOCOL_VERSION);

namespace {

// Thrown inside decoders for a value that is well-formed Cap'n Proto but breaks our limits;
// caught, with Cap'n Proto's own exceptions, at the decode entry points.
struct DecodeError {
  std::string what;
};

capnp::ReaderOptions hostileInputOptions() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = limits::kTraversalLimitWords;
  options.nestingLimit = limits::kNestingLimit;
  return options;
}

std::string text(capnp::Text::Reader t, std::size_t maxBytes, const char* field) {
  if (t.size() > maxBytes) {
    throw DecodeError{std::string(field) + " is " + std::to_string(t.size()) +
                      " bytes, more than " + std::to_string(maxBytes)};
  }
  if (std::memchr(t.cStr(), '\0', t.size()) != nullptr) {
    throw DecodeError{std::string(field) + " contains a NUL byte"};
  }
  return std::string(t.cStr(), t.size());
}

kj::StringPtr textPtr(const std::string& s) { return kj::StringPtr(s.c_str(), s.size()); }

// Runs a decoder, turning every way it can fail into an error string.
template <class T, class F>
Result<T, std::string> guarded(F&& decode) {
  try {
    return decode();
  } catch (const DecodeError& e) {
    return Fail{e.what};
  } catch (const kj::Exception& e) {
    return Fail{std::string("malformed message: ") + e.getDescription().cStr()};
  }
}

// ---- shared structs -------------------------------------------------------------------------

void put(Timespec::Builder b, const msg::Timespec& t) {
  b.setSec(t.sec);
  b.setNsec(t.nsec);
}

msg::Timespec get(Timespec::Reader r) {
  if (r.getNsec() >= 1'000'000'000u) throw DecodeError{"nanoseconds out of range"};
  return {r.getSec(), r.getNsec()};
}

void put(Attr::Builder b, const msg::Attr& a) {
  b.setIno(a.ino);
  b.setMode(a.mode);
  b.setNlink(a.nlink);
  b.setUid(a.uid);
  b.setGid(a.gid);
  b.setRdev(a.rdev);
  b.setSize(a.size);
  b.setBlocks(a.blocks);
  b.setBlksize(a.blksize);
  put(b.initAtime(), a.atime);
  put(b.initMtime(), a.mtime);
  put(b.initCtime(), a.ctime);
}

msg::Attr get(Attr::Reader r) {
  msg::Attr a;
  a.ino = r.getIno();
  a.mode = r.getMode();
  a.nlink = r.getNlink();
  a.uid = r.getUid();
  a.gid = r.getGid();
  a.rdev = r.getRdev();
  a.size = r.getSize();
  a.blocks = r.getBlocks();
  a.blksize = r.getBlksize();
  a.atime = get(r.getAtime());
  a.mtime = get(r.getMtime());
  a.ctime = get(r.getCtime());
  return a;
}

void putNodeAttrs(capnp::List<NodeAttr>::Builder list, const std::vector<msg::NodeAttr>& from) {
  for (unsigned i = 0; i < from.size(); ++i) {
    list[i].setNode(from[i].node);
    put(list[i].initAttr(), from[i].attr);
  }
}

std::vector<msg::NodeAttr> getNodeAttrs(capnp::List<NodeAttr>::Reader list, std::size_t most) {
  if (list.size() > most) throw DecodeError{"too many directory attributes"};
  std::vector<msg::NodeAttr> out;
  out.reserve(list.size());
  for (auto item : list) out.push_back({item.getNode(), get(item.getAttr())});
  return out;
}

void put(Lock::Builder b, const msg::Lock& l) {
  b.setStart(l.start);
  b.setEnd(l.end);
  b.setType(l.type);
  b.setPid(l.pid);
}

msg::Lock get(Lock::Reader r) {
  if (r.getStart() > r.getEnd()) throw DecodeError{"lock range ends before it starts"};
  return {r.getStart(), r.getEnd(), r.getType(), r.getPid()};
}

void put(LockRequest::Builder b, std::uint64_t owner, const msg::Lock& lock, bool wait) {
  b.setOwner(owner);
  put(b.initLock(), lock);
  b.setWait(wait);
}

void put(SectorRange::Builder b, std::uint64_t offset, std::uint64_t length) {
  b.setOffset(offset);
  b.setLength(length);
}

void put(Entry::Builder b, const msg::Entry& e) {
  b.setNode(e.node);
  b.setGeneration(e.generation);
  put(b.initAttr(), e.attr);
}

msg::Entry get(Entry::Reader r) {
  return {r.getNode(), r.getGeneration(), get(r.getAttr())};
}

// ---- requests -------------------------------------------------------------------------------

void putOp(Request::Builder b, const msg::Op& op) {
  std::visit(
      Overloaded{
          [&](const msg::op::Lookup&) { b.setLookup(); },
          [&](const msg::op::Forget& f) {
            auto list = b.initForget(static_cast<unsigned>(f.items.size()));
            for (unsigned i = 0; i < f.items.size(); ++i) {
              list[i].setNode(f.items[i].node);
              list[i].setCount(f.items[i].count);
            }
          },
          [&](const msg::op::GetAttr&) { b.setGetattr(); },
          [&](const msg::op::SetAttr& s) {
            auto w = b.initSetattr();
            w.setValid(s.valid);
            w.setMode(s.mode);
            w.setUid(s.uid);
            w.setGid(s.gid);
            w.setSize(s.size);
            put(w.initAtime(), s.atime);
            put(w.initMtime(), s.mtime);
          },
          [&](const msg::op::ReadLink&) { b.setReadlink(); },
          [&](const msg::op::MakeNode& m) {
            auto w = b.initMknod();
            w.setMode(m.mode);
            w.setRdev(m.rdev);
          },
          [&](const msg::op::MakeDir& m) { b.initMkdir().setMode(m.mode); },
          [&](const msg::op::Unlink&) { b.setUnlink(); },
          [&](const msg::op::RemoveDir&) { b.setRmdir(); },
          [&](const msg::op::Symlink& s) { b.setSymlink(textPtr(s.target)); },
          [&](const msg::op::Rename& r) {
            auto w = b.initRename();
            w.setNewParent(r.newParent);
            w.setNewName(textPtr(r.newName));
            w.setFlags(r.flags);
          },
          [&](const msg::op::Link& l) {
            auto w = b.initLink();
            w.setNewParent(l.newParent);
            w.setNewName(textPtr(l.newName));
          },
          [&](const msg::op::Open& o) { b.setOpen(o.flags); },
          [&](const msg::op::Create& c) {
            auto w = b.initCreate();
            w.setMode(c.mode);
            w.setFlags(c.flags);
          },
          [&](const msg::op::Read& r) {
            auto w = b.initRead();
            w.setOffset(r.offset);
            w.setSize(r.size);
          },
          [&](const msg::op::Write& wr) {
            auto w = b.initWrite();
            w.setOffset(wr.offset);
            w.setFlags(wr.flags);
          },
          [&](const msg::op::Flush&) { b.setFlush(); },
          [&](const msg::op::Release&) { b.setRelease(); },
          [&](const msg::op::Fsync& f) { b.setFsync(f.datasync); },
          [&](const msg::op::Fallocate& f) {
            auto w = b.initFallocate();
            w.setMode(f.mode);
            w.setOffset(f.offset);
            w.setLength(f.length);
          },
          [&](const msg::op::OpenDir&) { b.setOpendir(); },
          [&](const msg::op::ReadDir& r) {
            auto w = b.initReaddir();
            w.setOffset(r.offset);
            w.setSize(r.size);
            w.setPlus(r.plus);
          },
          [&](const msg::op::ReleaseDir&) { b.setReleasedir(); },
          [&](const msg::op::FsyncDir& f) { b.setFsyncdir(f.datasync); },
          [&](const msg::op::StatFs&) { b.setStatfs(); },
          [&](const msg::op::SetXattr& s) { b.setSetxattr(s.flags); },
          [&](const msg::op::GetXattr& g) { b.setGetxattr(g.size); },
          [&](const msg::op::ListXattr& l) { b.setListxattr(l.size); },
          [&](const msg::op::RemoveXattr&) { b.setRemovexattr(); },
          [&](const msg::op::Lseek& l) {
            auto w = b.initLseek();
            w.setOffset(l.offset);
            w.setWhence(l.whence);
          },
          [&](const msg::op::GetLock& l) { put(b.initGetlk(), l.owner, l.lock, false); },
          [&](const msg::op::SetLock& l) { put(b.initSetlk(), l.owner, l.lock, l.wait); },
          [&](const msg::op::Flock& f) { b.setFlock(f.operation); },
          [&](const msg::op::SectorRead& s) { put(b.initSectorRead(), s.offset, s.length); },
          [&](const msg::op::SectorWrite& s) {
            auto w = b.initSectorWrite();
            w.setOffset(s.offset);
            w.setFua(s.fua);
          },
          [&](const msg::op::SectorFlush&) { b.setSectorFlush(); },
          [&](const msg::op::SectorTrim& s) { put(b.initSectorTrim(), s.offset, s.length); },
          [&](const msg::op::SectorWriteZeroes& s) {
            put(b.initSectorWriteZeroes(), s.offset, s.length);
          },
      },
      op);
}

msg::Op getOp(Request::Reader r) {
  switch (r.which()) {
    case Request::LOOKUP: return msg::op::Lookup{};
    case Request::FORGET: {
      auto list = r.getForget();
      if (list.size() > limits::kMaxForgetItems) throw DecodeError{"forget batch too large"};
      msg::op::Forget f;
      f.items.reserve(list.size());
      for (auto item : list) f.items.push_back({item.getNode(), item.getCount()});
      return f;
    }
    case Request::GETATTR: return msg::op::GetAttr{};
    case Request::SETATTR: {
      auto s = r.getSetattr();
      return msg::op::SetAttr{s.getValid(), s.getMode(), s.getUid(), s.getGid(),
                              s.getSize(), get(s.getAtime()), get(s.getMtime())};
    }
    case Request::READLINK: return msg::op::ReadLink{};
    case Request::MKNOD: return msg::op::MakeNode{r.getMknod().getMode(), r.getMknod().getRdev()};
    case Request::MKDIR: return msg::op::MakeDir{r.getMkdir().getMode()};
    case Request::UNLINK: return msg::op::Unlink{};
    case Request::RMDIR: return msg::op::RemoveDir{};
    case Request::SYMLINK:
      return msg::op::Symlink{text(r.getSymlink(), limits::kMaxPathBytes, "symlink target")};
    case Request::RENAME: {
      auto w = r.getRename();
      return msg::op::Rename{w.getNewParent(),
                             text(w.getNewName(), limits::kMaxNameBytes, "new name"),
                             w.getFlags()};
    }
    case Request::LINK: {
      auto w = r.getLink();
      return msg::op::Link{w.getNewParent(),
                           text(w.getNewName(), limits::kMaxNameBytes, "new name")};
    }
    case Request::OPEN: return msg::op::Open{r.getOpen()};
    case Request::CREATE:
      return msg::op::Create{r.getCreate().getMode(), r.getCreate().getFlags()};
    case Request::READ: return msg::op::Read{r.getRead().getOffset(), r.getRead().getSize()};
    case Request::WRITE: return msg::op::Write{r.getWrite().getOffset(), r.getWrite().getFlags()};
    case Request::FLUSH: return msg::op::Flush{};
    case Request::RELEASE: return msg::op::Release{};
    case Request::FSYNC: return msg::op::Fsync{r.getFsync()};
    case Request::FALLOCATE: {
      auto f = r.getFallocate();
      return msg::op::Fallocate{f.getMode(), f.getOffset(), f.getLength()};
    }
    case Request::OPENDIR: return msg::op::OpenDir{};
    case Request::READDIR: {
      auto d = r.getReaddir();
      return msg::op::ReadDir{d.getOffset(), d.getSize(), d.getPlus()};
    }
    case Request::RELEASEDIR: return msg::op::ReleaseDir{};
    case Request::FSYNCDIR: return msg::op::FsyncDir{r.getFsyncdir()};
    case Request::STATFS: return msg::op::StatFs{};
    case Request::SETXATTR: return msg::op::SetXattr{r.getSetxattr()};
    case Request::GETXATTR: return msg::op::GetXattr{r.getGetxattr()};
    case Request::LISTXATTR: return msg::op::ListXattr{r.getListxattr()};
    case Request::REMOVEXATTR: return msg::op::RemoveXattr{};
    case Request::LSEEK: return msg::op::Lseek{r.getLseek().getOffset(), r.getLseek().getWhence()};
    case Request::GETLK: return msg::op::GetLock{r.getGetlk().getOwner(), get(r.getGetlk().getLock())};
    case Request::SETLK: {
      auto l = r.getSetlk();
      return msg::op::SetLock{l.getOwner(), get(l.getLock()), l.getWait()};
    }
    case Request::FLOCK: return msg::op::Flock{r.getFlock()};
    case Request::SECTOR_READ:
      return msg::op::SectorRead{r.getSectorRead().getOffset(), r.getSectorRead().getLength()};
    case Request::SECTOR_WRITE:
      return msg::op::SectorWrite{r.getSectorWrite().getOffset(), r.getSectorWrite().getFua()};
    case Request::SECTOR_FLUSH: return msg::op::SectorFlush{};
    case Request::SECTOR_TRIM:
      return msg::op::SectorTrim{r.getSectorTrim().getOffset(), r.getSectorTrim().getLength()};
    case Request::SECTOR_WRITE_ZEROES: {
      auto z = r.getSectorWriteZeroes();
      return msg::op::SectorWriteZeroes{z.getOffset(), z.getLength()};
    }
  }
  throw DecodeError{"unknown operation " + std::to_string(static_cast<int>(r.which()))};
}

// ---- replies --------------------------------------------------------------------------------

void putBody(Reply::Builder b, const msg::Body& body) {
  std::visit(
      Overloaded{
          [&](const msg::body::None&) { b.setNone(); },
          [&](const msg::Entry& e) { put(b.initEntry(), e); },
          [&](const msg::Attr& a) { put(b.initAttr(), a); },
          [&](const msg::body::Opened& o) { b.setOpened(o.handle); },
          [&](const msg::body::Created& c) {
            auto w = b.initCreated();
            put(w.initEntry(), c.entry);
            w.setHandle(c.handle);
          },
          [&](const msg::body::Written& w) { b.setWritten(w.count); },
          [&](const msg::body::Data&) { b.setData(); },
          [&](const msg::body::Size& s) { b.setSize(s.size); },
          [&](const msg::body::Target& t) { b.setTarget(textPtr(t.path)); },
          [&](const msg::body::Entries& entries) {
            auto list = b.initEntries(static_cast<unsigned>(entries.items.size()));
            for (unsigned i = 0; i < entries.items.size(); ++i) {
              const auto& d = entries.items[i];
              auto w = list[i];
              w.setName(textPtr(d.name));
              w.setIno(d.ino);
              w.setType(d.type);
              w.setNextOffset(d.nextOffset);
              if (d.entry) put(w.initEntry(), *d.entry);
            }
          },
          [&](const msg::body::StatFs& s) {
            auto w = b.initStatfs();
            w.setBlocks(s.blocks);
            w.setBfree(s.bfree);
            w.setBavail(s.bavail);
            w.setFiles(s.files);
            w.setFfree(s.ffree);
            w.setBsize(s.bsize);
            w.setFrsize(s.frsize);
            w.setNamemax(s.namemax);
          },
          [&](const msg::body::Offset& o) { b.setOffset(o.offset); },
          [&](const msg::Lock& l) { put(b.initLock(), l); },
      },
      body);
}

msg::Body getBody(Reply::Reader r) {
  switch (r.which()) {
    case Reply::NONE: return msg::body::None{};
    case Reply::ENTRY: return get(r.getEntry());
    case Reply::ATTR: return get(r.getAttr());
    case Reply::OPENED: return msg::body::Opened{r.getOpened()};
    case Reply::CREATED:
      return msg::body::Created{get(r.getCreated().getEntry()), r.getCreated().getHandle()};
    case Reply::WRITTEN: return msg::body::Written{r.getWritten()};
    case Reply::DATA: return msg::body::Data{};
    case Reply::SIZE: return msg::body::Size{r.getSize()};
    case Reply::TARGET:
      return msg::body::Target{text(r.getTarget(), limits::kMaxPathBytes, "link target")};
    case Reply::ENTRIES: {
      auto list = r.getEntries();
      // Each kernel dirent takes at least 32 bytes, so a legal reply has at most this many.
      if (list.size() > limits::kMaxReadDirBytes / 32) throw DecodeError{"too many entries"};
      msg::body::Entries entries;
      entries.items.reserve(list.size());
      for (auto d : list) {
        msg::body::DirEntry item;
        item.name = text(d.getName(), limits::kMaxNameBytes, "entry name");
        item.ino = d.getIno();
        item.type = d.getType();
        item.nextOffset = d.getNextOffset();
        if (d.hasEntry()) item.entry = get(d.getEntry());
        entries.items.push_back(std::move(item));
      }
      return entries;
    }
    case Reply::STATFS: {
      auto s = r.getStatfs();
      return msg::body::StatFs{s.getBlocks(), s.getBfree(), s.getBavail(), s.getFiles(),
                               s.getFfree(),  s.getBsize(), s.getFrsize(), s.getNamemax()};
    }
    case Reply::OFFSET: return msg::body::Offset{r.getOffset()};
    case Reply::LOCK: return get(r.getLock());
  }
  throw DecodeError{"unknown reply body " + std::to_string(static_cast<int>(r.which()))};
}

}  // namespace

std::span<const std::byte> bytesOf(const wire::Words& words) {
  auto b = words.asBytes();
  return {reinterpret_cast<const std::byte*>(b.begin()), b.size()};
}

Words encode(const msg::Hello& hello) {
  capnp::MallocMessageBuilder builder(64);
  auto b = builder.initRoot<Hello>();
  b.setVersion(hello.version);
  b.setKind(hello.kind == msg::MountKind::block ? MountKind::BLOCK : MountKind::BASIC);
  b.setName(textPtr(hello.name));
  b.setFeatures(hello.features);
  return capnp::messageToFlatArray(builder);
}

Words encode(const msg::Welcome& welcome) {
  capnp::MallocMessageBuilder builder(128);
  auto b = builder.initRoot<Welcome>();
  b.setError(welcome.error);
  b.setMessage(textPtr(welcome.message));
  b.setVersion(welcome.version);
  b.setFeatures(welcome.features);
  b.setReadOnly(welcome.readOnly);
  b.setMaxWrite(welcome.maxWrite);
  b.setMaxRead(welcome.maxRead);
  put(b.initRoot(), welcome.root);
  b.setVolumeSize(welcome.volumeSize);
  b.setSectorSize(welcome.sectorSize);
  return capnp::messageToFlatArray(builder);
}

Words encode(const msg::Request& request) {
  capnp::MallocMessageBuilder builder(64);
  auto b = builder.initRoot<Request>();
  b.setNode(request.node);
  b.setHandle(request.handle);
  if (!request.name.empty()) b.setName(textPtr(request.name));
  auto caller = b.initCaller();
  caller.setUid(request.caller.uid);
  caller.setGid(request.caller.gid);
  putOp(b, request.op);
  b.setLockOwner(request.lockOwner);
  b.setOpenData(request.openData);
  b.setNoAtime(request.noAtime);
  b.setKillSetId(request.killSetId);
  return capnp::messageToFlatArray(builder);
}

Words encode(const msg::Reply& reply) {
  capnp::MallocMessageBuilder builder(
      std::holds_alternative<msg::body::Entries>(reply.body) ? 1024 : 64);
  auto b = builder.initRoot<Reply>();
  b.setError(reply.error);
  putBody(b, reply.body);
  if (!reply.dirAttrs.empty()) putNodeAttrs(b.initDirAttrs(static_cast<unsigned>(reply.dirAttrs.size())), reply.dirAttrs);
  return capnp::messageToFlatArray(builder);
}

Words encode(const msg::Notify& notify) {
  capnp::MallocMessageBuilder builder(256);
  auto b = builder.initRoot<Notify>();
  auto entries = b.initEntries(static_cast<unsigned>(notify.entries.size()));
  for (unsigned i = 0; i < notify.entries.size(); ++i) {
    entries[i].setParent(notify.entries[i].parent);
    entries[i].setName(textPtr(notify.entries[i].name));
  }
  auto inodes = b.initInodes(static_cast<unsigned>(notify.inodes.size()));
  for (unsigned i = 0; i < notify.inodes.size(); ++i) inodes.set(i, notify.inodes[i]);
  putNodeAttrs(b.initDirAttrs(static_cast<unsigned>(notify.dirAttrs.size())), notify.dirAttrs);
  return capnp::messageToFlatArray(builder);
}

Result<msg::Hello, std::string> decodeHello(WordsView words) {
  return guarded<msg::Hello>([&] {
    capnp::FlatArrayMessageReader reader(words, hostileInputOptions());
    auto r = reader.getRoot<Hello>();
    msg::Hello hello;
    hello.version = r.getVersion();
    switch (r.getKind()) {
      case MountKind::BASIC: hello.kind = msg::MountKind::basic; break;
      case MountKind::BLOCK: hello.kind = msg::MountKind::block; break;
      default: throw DecodeError{"unknown mount kind"};
    }
    hello.name = text(r.getName(), limits::kMaxNameBytes, "export name");
    hello.features = r.getFeatures();
    return hello;
  });
}

Result<msg::Welcome, std::string> decodeWelcome(WordsView words) {
  return guarded<msg::Welcome>([&] {
    capnp::FlatArrayMessageReader reader(words, hostileInputOptions());
    auto r = reader.getRoot<Welcome>();
    msg::Welcome welcome;
    welcome.error = r.getError();
    welcome.message = text(r.getMessage(), 512, "welcome message");
    welcome.version = r.getVersion();
    welcome.features = r.getFeatures();
    welcome.readOnly = r.getReadOnly();
    welcome.maxWrite = r.getMaxWrite();
    welcome.maxRead = r.getMaxRead();
    welcome.root = get(r.getRoot());
    welcome.volumeSize = r.getVolumeSize();
    welcome.sectorSize = r.getSectorSize();
    return welcome;
  });
}

Result<msg::Request, std::string> decodeRequest(WordsView words) {
  return guarded<msg::Request>([&] {
    capnp::FlatArrayMessageReader reader(words, hostileInputOptions());
    auto r = reader.getRoot<Request>();
    msg::Request request;
    request.node = r.getNode();
    request.handle = r.getHandle();
    request.name = text(r.getName(), limits::kMaxNameBytes, "name");
    request.caller = {r.getCaller().getUid(), r.getCaller().getGid()};
    request.op = getOp(r);
    request.lockOwner = r.getLockOwner();
    request.openData = r.getOpenData();
    request.noAtime = r.getNoAtime();
    request.killSetId = r.getKillSetId();
    return request;
  });
}

Result<msg::Notify, std::string> decodeNotify(WordsView words) {
  return guarded<msg::Notify>([&] {
    capnp::FlatArrayMessageReader reader(words, hostileInputOptions());
    auto r = reader.getRoot<Notify>();
    auto entries = r.getEntries();
    auto inodes = r.getInodes();
    if (entries.size() > limits::kMaxNotifyItems || inodes.size() > limits::kMaxNotifyItems) {
      throw DecodeError{"notify batch too large"};
    }
    msg::Notify notify;
    notify.entries.reserve(entries.size());
    for (auto e : entries) {
      notify.entries.push_back({e.getParent(), text(e.getName(), limits::kMaxNameBytes, "name")});
    }
    notify.inodes.reserve(inodes.size());
    for (auto node : inodes) notify.inodes.push_back(node);
    notify.dirAttrs = getNodeAttrs(r.getDirAttrs(), limits::kMaxNotifyItems);
    return notify;
  });
}

Result<msg::Reply, std::string> decodeReply(WordsView words) {
  return guarded<msg::Reply>([&] {
    capnp::FlatArrayMessageReader reader(words, hostileInputOptions());
    auto r = reader.getRoot<Reply>();
    msg::Reply reply;
    reply.error = r.getError();
    reply.body = getBody(r);
    reply.dirAttrs = getNodeAttrs(r.getDirAttrs(), 2);
    return reply;
  });
}

}  // namespace enclavefs::wire
