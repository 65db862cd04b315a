// common/wire.h: every message survives encode/decode with all its fields, and hostile bytes
// (over-long or NUL-carrying text, over-long lists, bad timestamps, garbage, truncation, wild
// pointers) are refused with an error sentence instead of crashing, hanging or allocating.
//
// Hostile messages are built with the generated Cap'n Proto code directly, since the encoders
// only ever produce well-formed ones.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <dirent.h>
#include <unistd.h>

#include <capnp/message.h>
#include <capnp/schema.h>
#include <capnp/serialize.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include "common/hard_limits.h"
#include "common/messages.h"
#include "common/wire.h"
#include "enclavefs.capnp.h"

using namespace enclavefs;
namespace w = enclavefs::wire;

namespace {

// ---- sample values --------------------------------------------------------------------------

// Every field distinct, non-zero and using high bits, so a dropped, truncated or swapped field
// shows.
msg::Attr sampleAttr(std::uint64_t seed = 0) {
  msg::Attr a;
  a.ino = 0x1234'5678'9abc'def0ull + seed;
  a.mode = S_IFREG | 04755;
  a.nlink = 3;
  a.uid = 0xffff'fffeu;
  a.gid = 65534;
  a.rdev = 0x0001'0305;
  a.size = (1ull << 45) + 17;
  a.blocks = 0x0000'0012'3456'789aull;
  a.blksize = 4096;
  a.atime = {-1, 0};
  a.mtime = {1'700'000'000, 999'999'999};
  a.ctime = {std::numeric_limits<std::int64_t>::max(), 5};
  return a;
}

msg::Entry sampleEntry(std::uint64_t seed = 0) {
  msg::Entry e;
  e.node = 0xfeed'0000'0000'0042ull + seed;
  e.generation = (1ull << 60) + seed;
  e.attr = sampleAttr(seed);
  return e;
}

std::vector<msg::Op> sampleOps() {
  using namespace msg::op;
  std::vector<msg::Op> ops;
  ops.push_back(Lookup{});
  ops.push_back(Forget{{{2, 1}, {0xffff'ffff'ffff'ffffull, 1ull << 40}, {77, 3}}});
  ops.push_back(Forget{});
  ops.push_back(GetAttr{});
  ops.push_back(SetAttr{0x1ff, S_ISUID | 0644, 1001, 1002, (1ull << 40) + 5, {-5, 999'999'999},
                        {1'700'000'000, 1}});
  ops.push_back(ReadLink{});
  ops.push_back(MakeNode{S_IFIFO | 0640, 0x0801});
  ops.push_back(MakeDir{S_ISVTX | 0755});
  ops.push_back(Unlink{});
  ops.push_back(RemoveDir{});
  ops.push_back(Symlink{"../a/b c/\xc3\xa9"});
  ops.push_back(Symlink{std::string(limits::kMaxPathBytes, 't')});
  ops.push_back(Rename{42, "new name", RENAME_NOREPLACE});
  ops.push_back(Rename{0xffff'ffff'ffff'fff0ull, std::string(limits::kMaxNameBytes, 'r'),
                       RENAME_EXCHANGE});
  ops.push_back(Link{43, "hard"});
  ops.push_back(Open{O_RDWR | O_APPEND | O_DIRECT});
  ops.push_back(Create{S_IFREG | 0600, O_CREAT | O_EXCL | O_WRONLY});
  ops.push_back(Read{1ull << 50, 131072});
  ops.push_back(Write{(1ull << 33) + 7, 0x8000});
  ops.push_back(Flush{});
  ops.push_back(Release{});
  ops.push_back(Fsync{true});
  ops.push_back(Fsync{false});
  ops.push_back(Fallocate{-2, 1ull << 41, (1ull << 42) + 3});
  ops.push_back(OpenDir{});
  ops.push_back(ReadDir{0xffff'ffff'ffff'fff0ull, 4096, true});
  ops.push_back(ReadDir{3, 8192, false});
  ops.push_back(ReleaseDir{});
  ops.push_back(FsyncDir{true});
  ops.push_back(StatFs{});
  ops.push_back(SetXattr{XATTR_REPLACE});
  ops.push_back(GetXattr{65536});
  ops.push_back(ListXattr{4096});
  ops.push_back(RemoveXattr{});
  ops.push_back(Lseek{123'456'789'012ull, SEEK_HOLE});
  ops.push_back(GetLock{0xabcd'ef01'2345'6789ull, {10, 19, F_WRLCK, 4242}});
  ops.push_back(SetLock{7, {0, UINT64_MAX, F_RDLCK, 1}, true});
  ops.push_back(SetLock{8, {1ull << 40, (1ull << 40) + 1, F_UNLCK, 0}, false});
  ops.push_back(Flock{LOCK_EX | LOCK_NB});
  ops.push_back(SectorRead{(1ull << 43) - 4096, 1u << 20});
  ops.push_back(SectorWrite{1ull << 42, true});
  ops.push_back(SectorWrite{4096, false});
  ops.push_back(SectorFlush{});
  ops.push_back(SectorTrim{8192, (1ull << 40) + 4096});
  ops.push_back(SectorWriteZeroes{1ull << 30, 1ull << 33});
  return ops;
}

std::vector<msg::Body> sampleBodies() {
  using namespace msg::body;
  std::vector<msg::Body> bodies;
  bodies.push_back(None{});
  bodies.push_back(sampleEntry(1));
  bodies.push_back(sampleAttr(2));
  bodies.push_back(Opened{0xfedc'ba98'7654'3210ull});
  bodies.push_back(Created{sampleEntry(3), 9});
  bodies.push_back(Written{1u << 20});
  bodies.push_back(Data{});
  bodies.push_back(Size{65536});
  bodies.push_back(Target{"/abs/target with space"});
  bodies.push_back(Target{std::string(limits::kMaxPathBytes, 'p')});
  Entries entries;
  entries.items.push_back({".", 1, DT_DIR, 1, std::nullopt});
  entries.items.push_back({"file", 12, DT_REG, 2, sampleEntry(4)});
  entries.items.push_back({"\xc3\xbcnicode name", 0xffff'ffff'ffff'ffffull, DT_LNK,
                           0x8000'0000'0000'0000ull, sampleEntry(5)});
  entries.items.push_back({std::string(limits::kMaxNameBytes, 'n'), 14, DT_UNKNOWN, 4,
                           std::nullopt});
  bodies.push_back(entries);
  bodies.push_back(Entries{});
  bodies.push_back(StatFs{1ull << 40, (1ull << 39) + 1, (1ull << 38) + 2, 1ull << 33,
                          (1ull << 32) + 3, 4096, 512, 255});
  bodies.push_back(Offset{1ull << 62});
  bodies.push_back(msg::Lock{5, 1ull << 50, F_WRLCK, 31337});
  return bodies;
}

// ---- field-by-field comparison --------------------------------------------------------------

void expectSame(const msg::Attr& a, const msg::Attr& b) { CHECK(a == b); }

void expectSame(const msg::Entry& a, const msg::Entry& b) {
  CHECK(a.node == b.node);
  CHECK(a.generation == b.generation);
  CHECK(a.attr == b.attr);
}

template <class T>
  requires std::is_empty_v<T>
void expectSame(const T&, const T&) {}

void expectSame(const msg::op::Forget& a, const msg::op::Forget& b) {
  REQUIRE(a.items.size() == b.items.size());
  for (std::size_t i = 0; i < a.items.size(); ++i) {
    CHECK(a.items[i].node == b.items[i].node);
    CHECK(a.items[i].count == b.items[i].count);
  }
}
void expectSame(const msg::op::SetAttr& a, const msg::op::SetAttr& b) {
  CHECK(a.valid == b.valid);
  CHECK(a.mode == b.mode);
  CHECK(a.uid == b.uid);
  CHECK(a.gid == b.gid);
  CHECK(a.size == b.size);
  CHECK(a.atime == b.atime);
  CHECK(a.mtime == b.mtime);
}
void expectSame(const msg::op::MakeNode& a, const msg::op::MakeNode& b) {
  CHECK(a.mode == b.mode);
  CHECK(a.rdev == b.rdev);
}
void expectSame(const msg::op::MakeDir& a, const msg::op::MakeDir& b) { CHECK(a.mode == b.mode); }
void expectSame(const msg::op::Symlink& a, const msg::op::Symlink& b) {
  CHECK(a.target == b.target);
}
void expectSame(const msg::op::Rename& a, const msg::op::Rename& b) {
  CHECK(a.newParent == b.newParent);
  CHECK(a.newName == b.newName);
  CHECK(a.flags == b.flags);
}
void expectSame(const msg::op::Link& a, const msg::op::Link& b) {
  CHECK(a.newParent == b.newParent);
  CHECK(a.newName == b.newName);
}
void expectSame(const msg::op::Open& a, const msg::op::Open& b) { CHECK(a.flags == b.flags); }
void expectSame(const msg::op::Create& a, const msg::op::Create& b) {
  CHECK(a.mode == b.mode);
  CHECK(a.flags == b.flags);
}
void expectSame(const msg::op::Read& a, const msg::op::Read& b) {
  CHECK(a.offset == b.offset);
  CHECK(a.size == b.size);
}
void expectSame(const msg::op::Write& a, const msg::op::Write& b) {
  CHECK(a.offset == b.offset);
  CHECK(a.flags == b.flags);
}
void expectSame(const msg::op::Fsync& a, const msg::op::Fsync& b) {
  CHECK(a.datasync == b.datasync);
}
void expectSame(const msg::op::Fallocate& a, const msg::op::Fallocate& b) {
  CHECK(a.mode == b.mode);
  CHECK(a.offset == b.offset);
  CHECK(a.length == b.length);
}
void expectSame(const msg::op::ReadDir& a, const msg::op::ReadDir& b) {
  CHECK(a.offset == b.offset);
  CHECK(a.size == b.size);
  CHECK(a.plus == b.plus);
}
void expectSame(const msg::op::FsyncDir& a, const msg::op::FsyncDir& b) {
  CHECK(a.datasync == b.datasync);
}
void expectSame(const msg::op::SetXattr& a, const msg::op::SetXattr& b) {
  CHECK(a.flags == b.flags);
}
void expectSame(const msg::op::GetXattr& a, const msg::op::GetXattr& b) {
  CHECK(a.size == b.size);
}
void expectSame(const msg::op::ListXattr& a, const msg::op::ListXattr& b) {
  CHECK(a.size == b.size);
}
void expectSame(const msg::op::Lseek& a, const msg::op::Lseek& b) {
  CHECK(a.offset == b.offset);
  CHECK(a.whence == b.whence);
}

void expectSame(const msg::op::GetLock& a, const msg::op::GetLock& b) {
  CHECK(a.owner == b.owner);
  CHECK(a.lock == b.lock);
}
void expectSame(const msg::op::SetLock& a, const msg::op::SetLock& b) {
  CHECK(a.owner == b.owner);
  CHECK(a.lock == b.lock);
  CHECK(a.wait == b.wait);
}
void expectSame(const msg::op::Flock& a, const msg::op::Flock& b) {
  CHECK(a.operation == b.operation);
}
void expectSame(const msg::op::SectorRead& a, const msg::op::SectorRead& b) {
  CHECK(a.offset == b.offset);
  CHECK(a.length == b.length);
}
void expectSame(const msg::op::SectorWrite& a, const msg::op::SectorWrite& b) {
  CHECK(a.offset == b.offset);
  CHECK(a.fua == b.fua);
}
void expectSame(const msg::op::SectorFlush&, const msg::op::SectorFlush&) {}
void expectSame(const msg::op::SectorTrim& a, const msg::op::SectorTrim& b) {
  CHECK(a.offset == b.offset);
  CHECK(a.length == b.length);
}
void expectSame(const msg::op::SectorWriteZeroes& a, const msg::op::SectorWriteZeroes& b) {
  CHECK(a.offset == b.offset);
  CHECK(a.length == b.length);
}
void expectSame(const msg::Lock& a, const msg::Lock& b) { CHECK(a == b); }

void expectSame(const msg::body::Opened& a, const msg::body::Opened& b) {
  CHECK(a.handle == b.handle);
}
void expectSame(const msg::body::Created& a, const msg::body::Created& b) {
  expectSame(a.entry, b.entry);
  CHECK(a.handle == b.handle);
}
void expectSame(const msg::body::Written& a, const msg::body::Written& b) {
  CHECK(a.count == b.count);
}
void expectSame(const msg::body::Size& a, const msg::body::Size& b) { CHECK(a.size == b.size); }
void expectSame(const msg::body::Target& a, const msg::body::Target& b) {
  CHECK(a.path == b.path);
}
void expectSame(const msg::body::Entries& a, const msg::body::Entries& b) {
  REQUIRE(a.items.size() == b.items.size());
  for (std::size_t i = 0; i < a.items.size(); ++i) {
    CAPTURE(i);
    CHECK(a.items[i].name == b.items[i].name);
    CHECK(a.items[i].ino == b.items[i].ino);
    CHECK(a.items[i].type == b.items[i].type);
    CHECK(a.items[i].nextOffset == b.items[i].nextOffset);
    REQUIRE(a.items[i].entry.has_value() == b.items[i].entry.has_value());
    if (a.items[i].entry) expectSame(*a.items[i].entry, *b.items[i].entry);
  }
}
void expectSame(const msg::body::StatFs& a, const msg::body::StatFs& b) {
  CHECK(a.blocks == b.blocks);
  CHECK(a.bfree == b.bfree);
  CHECK(a.bavail == b.bavail);
  CHECK(a.files == b.files);
  CHECK(a.ffree == b.ffree);
  CHECK(a.bsize == b.bsize);
  CHECK(a.frsize == b.frsize);
  CHECK(a.namemax == b.namemax);
}
void expectSame(const msg::body::Offset& a, const msg::body::Offset& b) {
  CHECK(a.offset == b.offset);
}

template <class Variant>
void expectSameVariant(const Variant& a, const Variant& b) {
  REQUIRE(a.index() == b.index());
  std::visit(
      [&](const auto& x) { expectSame(x, std::get<std::decay_t<decltype(x)>>(b)); }, a);
}

// ---- raw words ------------------------------------------------------------------------------

std::uint64_t wordAt(const w::Words& words, std::size_t i) {
  std::uint64_t v;
  std::memcpy(&v, static_cast<const void*>(&words[i]), sizeof v);
  return v;
}

void setWord(w::Words& words, std::size_t i, std::uint64_t v) {
  std::memcpy(static_cast<void*>(&words[i]), &v, sizeof v);
}

w::Words copyOf(w::WordsView words) {
  auto out = kj::heapArray<capnp::word>(words.size());
  if (words.size() > 0) std::memcpy(static_cast<void*>(out.begin()), static_cast<const void*>(words.begin()), words.size() * sizeof(capnp::word));
  return out;
}

// Where the root struct of a single-segment flat message lives. Word 0 is the segment table,
// word 1 the root pointer.
struct RootLayout {
  std::size_t data;      // index of the first data word
  std::size_t pointers;  // index of the first pointer
};

RootLayout rootLayout(const w::Words& words) {
  REQUIRE((wordAt(words, 0) & 0xffff'ffffu) == 0);  // one segment
  std::uint64_t root = wordAt(words, 1);
  REQUIRE((root & 3) == 0);  // a struct pointer
  auto offset = static_cast<std::int32_t>(static_cast<std::uint32_t>(root) & ~3u) >> 2;
  std::size_t data = 2 + static_cast<std::size_t>(offset);
  return {data, data + ((root >> 32) & 0xffff)};
}

template <class Struct>
unsigned pointerSlot(const char* field) {
  return capnp::Schema::from<Struct>().getFieldByName(field).getProto().getSlot().getOffset();
}

template <class Struct>
void setDiscriminant(w::Words& words, std::uint16_t value) {
  auto offset = capnp::Schema::from<Struct>().getProto().getStruct().getDiscriminantOffset();
  auto* bytes = reinterpret_cast<unsigned char*>(static_cast<void*>(&words[rootLayout(words).data]));
  std::memcpy(bytes + 2 * offset, &value, sizeof value);
}

kj::StringPtr ptr(const std::string& s) { return kj::StringPtr(s.c_str(), s.size()); }

template <class Root, class Fill>
w::Words build(Fill&& fill) {
  capnp::MallocMessageBuilder builder;
  fill(builder.initRoot<Root>());
  return capnp::messageToFlatArray(builder);
}

void fillAttr(w::Attr::Builder b, std::uint32_t nsec = 0) {
  b.setMode(S_IFREG | 0644);
  b.setNlink(1);
  b.getAtime().setNsec(nsec);
}

// All four decoders on the same bytes: none may crash; each either decodes or says why not.
// Returns how many refused.
int decodeAll(w::WordsView words) {
  int refused = 0;
  auto note = [&](const auto& r) {
    if (!r.ok()) {
      ++refused;
      CHECK_FALSE(r.error().empty());
    }
  };
  note(w::decodeHello(words));
  note(w::decodeWelcome(words));
  note(w::decodeRequest(words));
  note(w::decodeReply(words));
  return refused;
}

template <class R>
std::string errorOf(const R& r) {
  REQUIRE_FALSE(r.ok());
  return r.error();
}

}  // namespace

// ---- round trips ----------------------------------------------------------------------------

TEST_CASE("every operation round-trips through encode and decode with all its fields") {
  std::set<std::size_t> covered;
  std::uint64_t n = 0;
  for (const auto& op : sampleOps()) {
    CAPTURE(msg::opName(op));
    covered.insert(op.index());
    msg::Request request;
    request.node = 0x8000'0000'0000'0001ull + n;
    request.handle = 0x4000'0000'0000'0002ull + n;
    request.name = "name-" + std::to_string(n);
    request.caller = {1000 + static_cast<std::uint32_t>(n), 0xffff'fff0u};
    request.op = op;
    request.lockOwner = 0x2000'0000'0000'0003ull + n;
    request.openData = 128 * 1024 - static_cast<std::uint32_t>(n);
    request.noAtime = n % 2 == 1;
    request.killSetId = n % 3 == 1;
    ++n;
    auto back = w::decodeRequest(w::encode(request));
    REQUIRE_MESSAGE(back.ok(), back.error());
    CHECK(back->node == request.node);
    CHECK(back->handle == request.handle);
    CHECK(back->name == request.name);
    CHECK(back->caller.uid == request.caller.uid);
    CHECK(back->caller.gid == request.caller.gid);
    CHECK(back->lockOwner == request.lockOwner);
    CHECK(back->openData == request.openData);
    CHECK(back->noAtime == request.noAtime);
    CHECK(back->killSetId == request.killSetId);
    expectSameVariant(request.op, back->op);
  }
  CHECK(covered.size() == std::variant_size_v<msg::Op>);
}

TEST_CASE("each operation goes on the wire as the schema member opName names") {
  auto unionFields = capnp::Schema::from<w::Request>().getUnionFields();
  REQUIRE(unionFields.size() == std::variant_size_v<msg::Op>);
  for (const auto& op : sampleOps()) {
    CAPTURE(msg::opName(op));
    msg::Request request;
    request.op = op;
    auto words = w::encode(request);
    capnp::FlatArrayMessageReader reader(words);
    auto which = static_cast<std::uint16_t>(reader.getRoot<w::Request>().which());
    bool found = false;
    for (auto field : unionFields) {
      if (field.getProto().getDiscriminantValue() != which) continue;
      found = true;
      CHECK(std::string(field.getProto().getName().cStr()) == msg::opName(op));
    }
    CHECK(found);
  }
}

TEST_CASE("a request without a name decodes with an empty name") {
  msg::Request request;
  request.node = 7;
  request.op = msg::op::GetAttr{};
  auto back = w::decodeRequest(w::encode(request));
  REQUIRE(back.ok());
  CHECK(back->name.empty());
  CHECK(back->node == 7);
  CHECK(std::holds_alternative<msg::op::GetAttr>(back->op));
}

TEST_CASE("every reply body round-trips through encode and decode with all its fields") {
  std::set<std::size_t> covered;
  for (const auto& body : sampleBodies()) {
    CAPTURE(body.index());
    covered.insert(body.index());
    msg::Reply reply;
    reply.body = body;
    auto back = w::decodeReply(w::encode(reply));
    REQUIRE_MESSAGE(back.ok(), back.error());
    CHECK(back->error == 0);
    expectSameVariant(reply.body, back->body);
  }
  CHECK(covered.size() == std::variant_size_v<msg::Body>);
}

TEST_CASE("each reply body goes on the wire as the schema member of the same meaning") {
  // Body's alternatives in order, by the name of the schema member each must travel as.
  const char* expected[] = {"none",    "entry",   "attr",    "opened", "created", "written",
                            "data",    "size",    "target",  "entries", "statfs", "offset",
                            "lock"};
  static_assert(std::size(expected) == std::variant_size_v<msg::Body>);
  auto unionFields = capnp::Schema::from<w::Reply>().getUnionFields();
  for (const auto& body : sampleBodies()) {
    CAPTURE(expected[body.index()]);
    msg::Reply reply;
    reply.body = body;
    auto words = w::encode(reply);
    capnp::FlatArrayMessageReader reader(words);
    auto which = static_cast<std::uint16_t>(reader.getRoot<w::Reply>().which());
    bool found = false;
    for (auto field : unionFields) {
      if (field.getProto().getDiscriminantValue() != which) continue;
      found = true;
      CHECK(std::string(field.getProto().getName().cStr()) == expected[body.index()]);
    }
    CHECK(found);
  }
}

TEST_CASE("an error reply keeps its errno") {
  for (int error : {ENOENT, EACCES, ENOTEMPTY, 4095, -3}) {
    msg::Reply reply;
    reply.error = error;
    auto back = w::decodeReply(w::encode(reply));
    REQUIRE(back.ok());
    CHECK(back->error == error);
    CHECK(std::holds_alternative<msg::body::None>(back->body));
  }
}

TEST_CASE("Hello round-trips with version, kind, name and features") {
  for (auto kind : {msg::MountKind::basic, msg::MountKind::block}) {
    msg::Hello hello;
    hello.version = 0xabcd'0001u;
    hello.kind = kind;
    hello.name = std::string(limits::kMaxNameBytes, 'e');
    hello.features = 0x8000'0000'0000'0003ull;
    auto back = w::decodeHello(w::encode(hello));
    REQUIRE_MESSAGE(back.ok(), back.error());
    CHECK(back->version == hello.version);
    CHECK(back->kind == kind);
    CHECK(back->name == hello.name);
    CHECK(back->features == hello.features);
  }
}

TEST_CASE("Welcome round-trips with every field, including the root attributes") {
  for (bool readOnly : {true, false}) {
    msg::Welcome welcome;
    welcome.error = EACCES;
    welcome.message = "export 'x' is not yours";
    welcome.version = 0x0102'0304u;
    welcome.features = 0xf000'0000'0000'000full;
    welcome.readOnly = readOnly;
    welcome.maxWrite = 1u << 20;
    welcome.maxRead = (1u << 19) + 1;
    welcome.root = sampleAttr(9);
    welcome.root.mode = S_IFDIR | 0755;
    welcome.volumeSize = (1ull << 44) - 4096;
    welcome.sectorSize = 4096;
    auto back = w::decodeWelcome(w::encode(welcome));
    REQUIRE_MESSAGE(back.ok(), back.error());
    CHECK(back->error == welcome.error);
    CHECK(back->message == welcome.message);
    CHECK(back->version == welcome.version);
    CHECK(back->features == welcome.features);
    CHECK(back->readOnly == readOnly);
    CHECK(back->maxWrite == welcome.maxWrite);
    CHECK(back->maxRead == welcome.maxRead);
    CHECK(back->root == welcome.root);
    CHECK(back->volumeSize == welcome.volumeSize);
    CHECK(back->sectorSize == welcome.sectorSize);
  }
}

// ---- hostile text ---------------------------------------------------------------------------

TEST_CASE("a request name longer than 255 bytes is refused, 255 bytes is accepted") {
  auto withName = [](std::size_t size) {
    std::string name(size, 'n');
    return build<w::Request>([&](w::Request::Builder r) {
      r.setName(ptr(name));
      r.setLookup();
    });
  };
  auto ok = w::decodeRequest(withName(limits::kMaxNameBytes));
  REQUIRE_MESSAGE(ok.ok(), ok.error());
  CHECK(ok->name.size() == limits::kMaxNameBytes);
  auto e = errorOf(w::decodeRequest(withName(limits::kMaxNameBytes + 1)));
  CHECK(e.find("name") != std::string::npos);
  CHECK(e.find("256") != std::string::npos);
  CHECK_FALSE(w::decodeRequest(withName(100'000)).ok());
}

TEST_CASE("a name containing a NUL byte is refused wherever a name travels") {
  const std::string withNul("evil\0/../x", 10);
  SUBCASE("request name") {
    auto e = errorOf(w::decodeRequest(build<w::Request>([&](w::Request::Builder r) {
      r.setName(ptr(withNul));
      r.setLookup();
    })));
    CHECK(e.find("NUL") != std::string::npos);
  }
  SUBCASE("rename's new name") {
    auto e = errorOf(w::decodeRequest(build<w::Request>([&](w::Request::Builder r) {
      r.setName("a");
      r.initRename().setNewName(ptr(withNul));
    })));
    CHECK(e.find("NUL") != std::string::npos);
  }
  SUBCASE("link's new name") {
    auto e = errorOf(w::decodeRequest(build<w::Request>([&](w::Request::Builder r) {
      r.setName("a");
      r.initLink().setNewName(ptr(withNul));
    })));
    CHECK(e.find("NUL") != std::string::npos);
  }
  SUBCASE("symlink target") {
    auto e = errorOf(w::decodeRequest(build<w::Request>([&](w::Request::Builder r) {
      r.setName("a");
      r.setSymlink(ptr(withNul));
    })));
    CHECK(e.find("NUL") != std::string::npos);
  }
  SUBCASE("hello export name") {
    auto e = errorOf(w::decodeHello(build<w::Hello>([&](w::Hello::Builder h) {
      h.setName(ptr(withNul));
    })));
    CHECK(e.find("NUL") != std::string::npos);
  }
  SUBCASE("directory entry name") {
    auto e = errorOf(w::decodeReply(build<w::Reply>([&](w::Reply::Builder r) {
      auto list = r.initEntries(2);
      list[0].setName("fine");
      list[0].setNextOffset(1);
      list[1].setName(ptr(withNul));
      list[1].setNextOffset(2);
    })));
    CHECK(e.find("NUL") != std::string::npos);
  }
  SUBCASE("readlink target") {
    auto e = errorOf(w::decodeReply(build<w::Reply>([&](w::Reply::Builder r) {
      r.setTarget(ptr(withNul));
    })));
    CHECK(e.find("NUL") != std::string::npos);
  }
}

TEST_CASE("over-long names are refused in rename, link, hello and directory entries") {
  const std::string longName(limits::kMaxNameBytes + 1, 'x');
  CHECK_FALSE(w::decodeRequest(build<w::Request>([&](w::Request::Builder r) {
                r.initRename().setNewName(ptr(longName));
              })).ok());
  CHECK_FALSE(w::decodeRequest(build<w::Request>([&](w::Request::Builder r) {
                r.initLink().setNewName(ptr(longName));
              })).ok());
  CHECK_FALSE(w::decodeHello(build<w::Hello>([&](w::Hello::Builder h) {
                h.setName(ptr(longName));
              })).ok());
  CHECK_FALSE(w::decodeReply(build<w::Reply>([&](w::Reply::Builder r) {
                r.initEntries(1)[0].setName(ptr(longName));
              })).ok());
  const std::string longMessage(100'000, 'm');
  CHECK_FALSE(w::decodeWelcome(build<w::Welcome>([&](w::Welcome::Builder b) {
                b.setMessage(ptr(longMessage));
              })).ok());
}

TEST_CASE("a symlink target longer than 4096 bytes is refused in requests and replies") {
  const std::string atLimit(limits::kMaxPathBytes, 't');
  const std::string tooLong(limits::kMaxPathBytes + 1, 't');
  auto request = [](const std::string& target) {
    return w::decodeRequest(build<w::Request>([&](w::Request::Builder r) {
      r.setName("link");
      r.setSymlink(ptr(target));
    }));
  };
  auto reply = [](const std::string& target) {
    return w::decodeReply(build<w::Reply>([&](w::Reply::Builder r) { r.setTarget(ptr(target)); }));
  };
  CHECK(request(atLimit).ok());
  CHECK(reply(atLimit).ok());
  auto e = errorOf(request(tooLong));
  CHECK(e.find("symlink target") != std::string::npos);
  CHECK(e.find("4097") != std::string::npos);
  e = errorOf(reply(tooLong));
  CHECK(e.find("target") != std::string::npos);
}

TEST_CASE("text missing its NUL terminator is refused") {
  auto words = build<w::Request>([](w::Request::Builder r) {
    auto name = r.initName(3);
    std::memcpy(name.begin(), "abc", 3);
    name.begin()[3] = 'x';  // overwrite the terminator Cap'n Proto requires
    r.setLookup();
  });
  CHECK_FALSE(w::decodeRequest(words).ok());
}

// ---- hostile lists --------------------------------------------------------------------------

TEST_CASE("a forget batch larger than kMaxForgetItems is refused, one at the limit accepted") {
  auto forget = [](std::size_t n) {
    return w::decodeRequest(build<w::Request>([&](w::Request::Builder r) {
      auto list = r.initForget(static_cast<unsigned>(n));
      for (unsigned i = 0; i < n; ++i) {
        list[i].setNode(i + 2);
        list[i].setCount(1);
      }
    }));
  };
  auto ok = forget(limits::kMaxForgetItems);
  REQUIRE_MESSAGE(ok.ok(), ok.error());
  CHECK(std::get<msg::op::Forget>(ok->op).items.size() == limits::kMaxForgetItems);
  auto e = errorOf(forget(limits::kMaxForgetItems + 1));
  CHECK(e.find("forget") != std::string::npos);
}

TEST_CASE("a forget list claiming a million empty items in two words is refused") {
  // Cap'n Proto allows zero-sized struct elements; the element count is then free to lie.
  auto words = build<w::Request>([](w::Request::Builder r) {
    auto list = r.initForget(1);
    list[0].setNode(5);
    list[0].setCount(1);
  });
  auto layout = rootLayout(words);
  std::size_t at = layout.pointers + pointerSlot<w::Request>("forget");
  std::uint64_t listPointer = wordAt(words, at);
  REQUIRE((listPointer & 3) == 1);                // a list pointer
  REQUIRE(((listPointer >> 32) & 7) == 7);        // of inline composite elements
  auto offset = static_cast<std::int32_t>(static_cast<std::uint32_t>(listPointer) & ~3u) >> 2;
  std::size_t tag = at + 1 + static_cast<std::size_t>(offset);
  // Tag word: element count in the offset field, zero data and pointer words per element.
  setWord(words, tag, std::uint64_t{1'000'000} << 2);
  CHECK_FALSE(w::decodeRequest(words).ok());
}

TEST_CASE("a directory listing with more entries than a readdir buffer can hold is refused") {
  const std::size_t kMax = limits::kMaxReadDirBytes / 32;
  auto listing = [](std::size_t n) {
    return w::decodeReply(build<w::Reply>([&](w::Reply::Builder r) {
      auto list = r.initEntries(static_cast<unsigned>(n));
      for (unsigned i = 0; i < n; ++i) {
        list[i].setName("e");
        list[i].setNextOffset(i + 1);
      }
    }));
  };
  auto ok = listing(kMax);
  REQUIRE_MESSAGE(ok.ok(), ok.error());
  CHECK(std::get<msg::body::Entries>(ok->body).items.size() == kMax);
  auto e = errorOf(listing(kMax + 1));
  CHECK(e.find("entries") != std::string::npos);
}

// ---- hostile values -------------------------------------------------------------------------

TEST_CASE("nanoseconds of one second or more are refused in every timestamp") {
  constexpr std::uint32_t kBad = 1'000'000'000u;
  constexpr std::uint32_t kGood = 999'999'999u;
  SUBCASE("attr reply, each of atime, mtime and ctime") {
    for (int which = 0; which < 3; ++which) {
      for (std::uint32_t nsec : {kGood, kBad, 0xffff'ffffu}) {
        CAPTURE(which);
        CAPTURE(nsec);
        auto r = w::decodeReply(build<w::Reply>([&](w::Reply::Builder b) {
          auto a = b.initAttr();
          fillAttr(a);
          (which == 0 ? a.getAtime() : which == 1 ? a.getMtime() : a.getCtime()).setNsec(nsec);
        }));
        CHECK(r.ok() == (nsec == kGood));
        if (!r.ok()) CHECK(r.error().find("nanoseconds") != std::string::npos);
      }
    }
  }
  SUBCASE("entry reply") {
    CHECK_FALSE(w::decodeReply(build<w::Reply>([&](w::Reply::Builder b) {
                  auto e = b.initEntry();
                  e.setNode(2);
                  fillAttr(e.initAttr(), kBad);
                })).ok());
  }
  SUBCASE("created reply") {
    CHECK_FALSE(w::decodeReply(build<w::Reply>([&](w::Reply::Builder b) {
                  auto c = b.initCreated();
                  c.setHandle(1);
                  fillAttr(c.initEntry().initAttr(), kBad);
                })).ok());
  }
  SUBCASE("readdirplus entry") {
    CHECK_FALSE(w::decodeReply(build<w::Reply>([&](w::Reply::Builder b) {
                  auto d = b.initEntries(1)[0];
                  d.setName("f");
                  d.setNextOffset(1);
                  fillAttr(d.initEntry().initAttr(), kBad);
                })).ok());
  }
  SUBCASE("welcome root") {
    CHECK_FALSE(w::decodeWelcome(build<w::Welcome>([&](w::Welcome::Builder b) {
                  fillAttr(b.initRoot(), kBad);
                })).ok());
  }
  SUBCASE("setattr request, atime and mtime") {
    CHECK_FALSE(w::decodeRequest(build<w::Request>([&](w::Request::Builder r) {
                  r.initSetattr().initAtime().setNsec(kBad);
                })).ok());
    CHECK_FALSE(w::decodeRequest(build<w::Request>([&](w::Request::Builder r) {
                  r.initSetattr().initMtime().setNsec(kBad);
                })).ok());
  }
}

TEST_CASE("an operation or reply body unknown to this schema is refused") {
  auto request = w::encode(msg::Request{1, 0, "", {}, msg::op::Lookup{}});
  setDiscriminant<w::Request>(request, 999);
  auto e = errorOf(w::decodeRequest(request));
  CHECK(e.find("999") != std::string::npos);

  auto reply = w::encode(msg::Reply{0, msg::body::None{}, {}});
  setDiscriminant<w::Reply>(reply, 999);
  e = errorOf(w::decodeReply(reply));
  CHECK(e.find("999") != std::string::npos);
}

// ---- hostile structure ----------------------------------------------------------------------

TEST_CASE("random garbage words are refused or decoded, never a crash") {
  std::mt19937_64 random(20240601);
  int refused = 0;
  int tried = 0;
  for (int round = 0; round < 3000; ++round) {
    std::size_t size = random() % 48;
    auto words = kj::heapArray<capnp::word>(size);
    for (std::size_t i = 0; i < size; ++i) setWord(words, i, random());
    // Half the time, a plausible segment table so the garbage reaches the pointers.
    if (size > 1 && round % 2 == 0) {
      setWord(words, 0, static_cast<std::uint64_t>(size - 1) << 32);
    }
    refused += decodeAll(words);
    tried += 4;
  }
  CHECK(refused > tried / 2);
}

TEST_CASE("a segment table claiming huge or many segments is refused") {
  for (std::uint64_t table : {0x0000'0000'ffff'ffffull, 0xffff'ffff'0000'0000ull,
                              0x0000'0001'0000'0200ull, 0x0000'0000'0000'0000ull}) {
    CAPTURE(table);
    auto words = kj::heapArray<capnp::word>(4);
    for (std::size_t i = 0; i < 4; ++i) setWord(words, i, 0);
    setWord(words, 0, table);
    CHECK(decodeAll(words) == 4);
  }
}

TEST_CASE("a message with trailing words dropped is refused at every length") {
  msg::Reply reply;
  reply.body = sampleBodies()[10];  // a listing with readdirplus entries
  REQUIRE(std::holds_alternative<msg::body::Entries>(reply.body));
  auto full = w::encode(reply);
  REQUIRE(w::decodeReply(full).ok());
  for (std::size_t keep = 0; keep < full.size(); ++keep) {
    CAPTURE(keep);
    auto cut = copyOf(full.asPtr().slice(0, keep));
    CHECK_FALSE(w::decodeReply(cut).ok());
  }

  msg::Request request{5, 6, "some-name", {1, 2}, msg::op::Symlink{"target/path"}};
  auto whole = w::encode(request);
  REQUIRE(w::decodeRequest(whole).ok());
  for (std::size_t keep = 0; keep < whole.size(); ++keep) {
    CAPTURE(keep);
    CHECK_FALSE(w::decodeRequest(copyOf(whole.asPtr().slice(0, keep))).ok());
  }
}

TEST_CASE("a root pointer that points outside the message is refused") {
  msg::Reply reply{0, sampleAttr(), {}};
  auto good = w::encode(reply);
  REQUIRE(w::decodeReply(good).ok());
  std::uint64_t root = wordAt(good, 1);
  for (std::int32_t offset : {1000, -5, (1 << 29) - 1, -(1 << 29)}) {
    CAPTURE(offset);
    auto words = copyOf(good);
    std::uint64_t patched = (root & 0xffff'ffff'0000'0000ull) |
                            (static_cast<std::uint32_t>(offset) << 2);
    setWord(words, 1, patched);
    CHECK_FALSE(w::decodeReply(words).ok());
  }
  // A far pointer into a segment that does not exist.
  auto far = copyOf(good);
  setWord(far, 1, (std::uint64_t{7} << 32) | 2);
  CHECK_FALSE(w::decodeReply(far).ok());
}

TEST_CASE("a name pointer that points outside the message is refused") {
  auto good = w::encode(msg::Request{1, 0, "name", {}, msg::op::Lookup{}});
  REQUIRE(w::decodeRequest(good).ok());
  std::size_t at = rootLayout(good).pointers + pointerSlot<w::Request>("name");
  std::uint64_t namePointer = wordAt(good, at);
  REQUIRE((namePointer & 3) == 1);  // a list pointer

  auto wild = copyOf(good);
  setWord(wild, at, (namePointer & 0xffff'ffff'0000'0000ull) | (std::uint64_t{100'000} << 2) | 1);
  CHECK_FALSE(w::decodeRequest(wild).ok());

  auto huge = copyOf(good);  // same place, but half a gigabyte long
  setWord(huge, at, (namePointer & 0x0000'0007'ffff'ffffull) | (std::uint64_t{0x1fff'ffff} << 35));
  CHECK_FALSE(w::decodeRequest(huge).ok());
}

TEST_CASE("a reply carries the attributes of up to two directories it changed") {
  msg::Reply reply{ENOTEMPTY, msg::body::None{}, {{7, sampleAttr(1)}, {9, sampleAttr(2)}}};
  auto back = w::decodeReply(w::encode(reply));
  REQUIRE_MESSAGE(back.ok(), back.error());
  CHECK(back->error == ENOTEMPTY);
  REQUIRE(back->dirAttrs.size() == 2);
  CHECK(back->dirAttrs[0].node == 7);
  CHECK(back->dirAttrs[0].attr == sampleAttr(1));
  CHECK(back->dirAttrs[1].node == 9);
  CHECK(back->dirAttrs[1].attr == sampleAttr(2));

  reply.dirAttrs.push_back({11, sampleAttr(3)});
  CHECK(errorOf(w::decodeReply(w::encode(reply))).find("directory attributes") !=
        std::string::npos);
}

TEST_CASE("a notification round-trips its names, nodes and directory attributes") {
  msg::Notify notify;
  notify.entries = {{3, "made"}, {4, std::string(limits::kMaxNameBytes, 'n')}};
  notify.inodes = {3, 4, 0xffff'ffff'ffff'fff0ull};
  notify.dirAttrs = {{3, sampleAttr(5)}};
  auto back = w::decodeNotify(w::encode(notify));
  REQUIRE_MESSAGE(back.ok(), back.error());
  CHECK(back->entries == notify.entries);
  CHECK(back->inodes == notify.inodes);
  REQUIRE(back->dirAttrs.size() == 1);
  CHECK(back->dirAttrs[0].node == 3);
  CHECK(back->dirAttrs[0].attr == sampleAttr(5));

  notify.dirAttrs.assign(limits::kMaxNotifyItems + 1, {3, sampleAttr()});
  CHECK_FALSE(w::decodeNotify(w::encode(notify)).ok());
}

TEST_CASE("the directories a request changes are the ones whose attributes its reply carries") {
  using namespace msg::op;
  auto changed = [](msg::Op op, msg::NodeId node = 5) {
    return msg::directoriesChanged(msg::Request{node, 0, "n", {}, std::move(op)});
  };
  using Nodes = std::vector<msg::NodeId>;
  CHECK(changed(Create{}) == Nodes{5});
  CHECK(changed(MakeNode{}) == Nodes{5});
  CHECK(changed(MakeDir{}) == Nodes{5});
  CHECK(changed(Symlink{}) == Nodes{5});
  CHECK(changed(Unlink{}) == Nodes{5});
  CHECK(changed(RemoveDir{}) == Nodes{5});
  CHECK(changed(SetAttr{}) == Nodes{5});
  CHECK(changed(SetXattr{}) == Nodes{5});
  CHECK(changed(RemoveXattr{}) == Nodes{5});
  CHECK(changed(Link{8, "l"}) == Nodes{8});
  CHECK(changed(Rename{8, "m", 0}) == Nodes{5, 8});
  CHECK(changed(Rename{5, "m", 0}) == Nodes{5});
  CHECK(changed(Lookup{}).empty());
  CHECK(changed(Write{}).empty());
  CHECK(changed(GetAttr{}).empty());
}

TEST_CASE("only write, setxattr and sectorWrite take a payload") {
  std::set<std::string> taking;
  for (const msg::Op& op : sampleOps()) {
    if (msg::takesPayload(op)) taking.insert(msg::opName(op));
  }
  CHECK(taking == std::set<std::string>{"write", "setxattr", "sectorWrite"});
}
