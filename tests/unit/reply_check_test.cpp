// enclave-fs/reply_check.h and enclave-fs/node_registry.h: what the enclave believes of a
// host reply. Every check is tried with a sane value (accepted) and with each way a hostile
// host could bend it (refused, with a sentence).
#include <doctest/doctest.h>
#include <dirent.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "common/hard_limits.h"
#include "enclave-fs/node_registry.h"
#include "enclave-fs/reply_check.h"

using namespace enclavefs;
using namespace enclavefs::enclave;

namespace {

msg::Attr attrOf(std::uint32_t mode) {
  msg::Attr a;
  a.ino = 1234;
  a.mode = mode;
  a.nlink = 1;
  a.size = 100;
  a.blocks = 8;
  a.blksize = 4096;
  a.mtime = {1'700'000'000, 5};
  return a;
}

msg::Entry entryOf(msg::NodeId node, std::uint32_t mode = S_IFREG | 0644) {
  return {node, 1, attrOf(mode)};
}

msg::body::DirEntry dirEntry(const std::string& name, std::uint64_t next) {
  msg::body::DirEntry d;
  d.name = name;
  d.ino = 99;
  d.type = DT_REG;
  d.nextOffset = next;
  return d;
}

std::vector<std::byte> bytes(const std::string& s) {
  std::vector<std::byte> out(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) out[i] = static_cast<std::byte>(s[i]);
  return out;
}

bool accepted(const Check& c) { return c.ok(); }

std::string refusal(const Check& c) {
  REQUIRE_FALSE(c.ok());
  CHECK_FALSE(c.error().empty());
  return c.error();
}

}  // namespace

// ---- errno ----------------------------------------------------------------------------------

TEST_CASE("acceptableErrno passes ordinary errnos through") {
  for (int e : {EPERM, ENOENT, EIO, EACCES, EEXIST, ENOTDIR, EISDIR, EINVAL, ENOSPC, EROFS,
                ENAMETOOLONG, ENOTEMPTY, ELOOP, ENODATA, ERANGE, EOPNOTSUPP, EXDEV, 4095}) {
    CAPTURE(e);
    CHECK(acceptableErrno(e) == e);
  }
}

TEST_CASE("acceptableErrno turns out-of-range errnos into EIO") {
  for (int e : {0, -1, -ENOENT, 4096, 100000, std::numeric_limits<int>::min(),
                std::numeric_limits<int>::max()}) {
    CAPTURE(e);
    CHECK(acceptableErrno(e) == EIO);
  }
}

TEST_CASE("acceptableErrno turns errnos that would change how the kernel treats the mount into EIO") {
  CHECK(acceptableErrno(ENOSYS) == EIO);
  CHECK(acceptableErrno(ENOTCONN) == EIO);
}

// ---- attributes and entries -----------------------------------------------------------------

TEST_CASE("checkAttr accepts every real file type") {
  for (std::uint32_t type : {S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK}) {
    CAPTURE(type);
    CHECK(accepted(checkAttr(attrOf(type | 0755))));
  }
  auto all = attrOf(S_IFREG | 07777);
  all.blksize = 0;  // "unknown" is allowed
  CHECK(accepted(checkAttr(all)));
}

TEST_CASE("checkAttr refuses a mode without a valid file type") {
  for (std::uint32_t mode : {0u, 0644u, 0030000u, 0050000u, 0070000u, 0110000u, 0130000u,
                             0150000u, 0170000u}) {
    CAPTURE(mode);
    auto e = refusal(checkAttr(attrOf(mode)));
    CHECK(e.find("file type") != std::string::npos);
  }
}

TEST_CASE("checkAttr refuses sizes and block counts a signed 64-bit kernel field cannot hold") {
  auto a = attrOf(S_IFREG | 0644);
  a.size = static_cast<std::uint64_t>(INT64_MAX);
  CHECK(accepted(checkAttr(a)));
  a.size = static_cast<std::uint64_t>(INT64_MAX) + 1;
  CHECK(refusal(checkAttr(a)).find("size") != std::string::npos);
  a.size = UINT64_MAX;
  CHECK_FALSE(accepted(checkAttr(a)));

  auto b = attrOf(S_IFREG | 0644);
  b.blocks = static_cast<std::uint64_t>(INT64_MAX) / 512;
  CHECK(accepted(checkAttr(b)));
  b.blocks += 1;
  CHECK(refusal(checkAttr(b)).find("block count") != std::string::npos);
}

TEST_CASE("checkAttr refuses a block size that is not a power of two or is absurd") {
  auto a = attrOf(S_IFREG | 0644);
  for (std::uint32_t good : {1u, 512u, 4096u, 1u << 16, 1u << 24}) {
    a.blksize = good;
    CAPTURE(good);
    CHECK(accepted(checkAttr(a)));
  }
  for (std::uint32_t bad : {3u, 4095u, 4097u, 6144u, 1u << 25, 1u << 31, 0xffff'ffffu}) {
    a.blksize = bad;
    CAPTURE(bad);
    CHECK(refusal(checkAttr(a)).find("block size") != std::string::npos);
  }
}

TEST_CASE("checkEntry refuses node 0 and the root node, and bad attributes") {
  CHECK(accepted(checkEntry(entryOf(2))));
  CHECK(accepted(checkEntry(entryOf(UINT64_MAX))));
  CHECK(refusal(checkEntry(entryOf(0))).find("node 0") != std::string::npos);
  CHECK(refusal(checkEntry(entryOf(msg::kRootNode))).find("root") != std::string::npos);
  CHECK_FALSE(accepted(checkEntry(entryOf(5, 0644))));  // no file type
}

TEST_CASE("checkEntryType refuses an entry of another kind than was made") {
  CHECK(accepted(checkEntryType(entryOf(3, S_IFDIR | 0755), S_IFDIR)));
  CHECK(accepted(checkEntryType(entryOf(3, S_IFLNK | 0777), S_IFLNK)));
  auto e = refusal(checkEntryType(entryOf(3, S_IFREG | 0755), S_IFDIR));
  CHECK(e.find(std::to_string(S_IFREG)) != std::string::npos);
  CHECK(e.find(std::to_string(S_IFDIR)) != std::string::npos);
  CHECK_FALSE(accepted(checkEntryType(entryOf(3, S_IFDIR | 0755), S_IFLNK)));
  // The entry checks still apply.
  CHECK_FALSE(accepted(checkEntryType(entryOf(0, S_IFDIR | 0755), S_IFDIR)));
  CHECK_FALSE(accepted(checkEntryType(entryOf(msg::kRootNode, S_IFDIR | 0755), S_IFDIR)));
}

// ---- names and listings ---------------------------------------------------------------------

TEST_CASE("checkName accepts one path component up to 255 bytes") {
  CHECK(accepted(checkName("a")));
  CHECK(accepted(checkName(".hidden")));
  CHECK(accepted(checkName("with space and \xc3\xa9")));
  CHECK(accepted(checkName(std::string(limits::kMaxNameBytes, 'x'))));
}

TEST_CASE("checkName refuses empty, over-long and slash-carrying names") {
  CHECK(refusal(checkName("")).find("empty") != std::string::npos);
  CHECK(refusal(checkName(std::string(limits::kMaxNameBytes + 1, 'x'))).find("too long") !=
        std::string::npos);
  for (const char* name : {"a/b", "/", "/etc", "..//x", "x/"}) {
    CAPTURE(name);
    CHECK(refusal(checkName(name)).find("'/'") != std::string::npos);
  }
}

TEST_CASE("checkDirEntries accepts a listing with fresh increasing offsets") {
  msg::body::Entries list;
  list.items = {dirEntry(".", 1), dirEntry("..", 2), dirEntry("a", 3), dirEntry("b", 7)};
  CHECK(accepted(checkDirEntries(list, 0, false)));
  CHECK(accepted(checkDirEntries(msg::body::Entries{}, 5, false)));

  auto plus = list;
  plus.items[2].entry = entryOf(9);
  plus.items[3].entry = entryOf(10, S_IFDIR | 0755);
  CHECK(accepted(checkDirEntries(plus, 0, true)));
}

TEST_CASE("checkDirEntries refuses bad names inside a listing") {
  for (const char* bad : {"", "a/b"}) {
    msg::body::Entries list;
    list.items = {dirEntry("ok", 1), dirEntry(bad, 2)};
    CAPTURE(bad);
    CHECK_FALSE(accepted(checkDirEntries(list, 0, false)));
  }
}

TEST_CASE("checkDirEntries refuses offsets that would make the kernel list forever") {
  msg::body::Entries zero;
  zero.items = {dirEntry("a", 0)};
  CHECK(refusal(checkDirEntries(zero, 0, false)).find("repeat") != std::string::npos);

  msg::body::Entries same;
  same.items = {dirEntry("a", 5)};
  CHECK_FALSE(accepted(checkDirEntries(same, 5, false)));

  msg::body::Entries duplicate;
  duplicate.items = {dirEntry("a", 6), dirEntry("b", 7), dirEntry("c", 6)};
  CHECK(refusal(checkDirEntries(duplicate, 5, false)).find("6") != std::string::npos);
}

TEST_CASE("checkDirEntries refuses attributes in a plain listing or on '.' and '..'") {
  msg::body::Entries list;
  list.items = {dirEntry("a", 1)};
  list.items[0].entry = entryOf(4);
  CHECK(refusal(checkDirEntries(list, 0, false)).find("plain readdir") != std::string::npos);

  for (const char* dot : {".", ".."}) {
    msg::body::Entries dots;
    dots.items = {dirEntry(dot, 1)};
    dots.items[0].entry = entryOf(4, S_IFDIR | 0755);
    CAPTURE(dot);
    CHECK_FALSE(accepted(checkDirEntries(dots, 0, true)));
  }
}

TEST_CASE("checkDirEntries applies the entry checks to readdirplus attributes") {
  for (msg::NodeId node : {msg::NodeId{0}, msg::kRootNode}) {
    msg::body::Entries list;
    list.items = {dirEntry("a", 1)};
    list.items[0].entry = entryOf(node);
    CAPTURE(node);
    CHECK_FALSE(accepted(checkDirEntries(list, 0, true)));
  }
  msg::body::Entries badMode;
  badMode.items = {dirEntry("a", 1)};
  badMode.items[0].entry = entryOf(4, 0777);
  CHECK_FALSE(accepted(checkDirEntries(badMode, 0, true)));
}

// ---- handles, sizes, targets, statfs, xattrs ------------------------------------------------

TEST_CASE("checkHandle refuses handle 0 only") {
  CHECK_FALSE(accepted(checkHandle(0)));
  CHECK(accepted(checkHandle(1)));
  CHECK(accepted(checkHandle(UINT64_MAX)));
}

TEST_CASE("checkDataSize refuses more bytes than were asked for") {
  CHECK(accepted(checkDataSize(0, 0)));
  CHECK(accepted(checkDataSize(0, 4096)));
  CHECK(accepted(checkDataSize(4096, 4096)));
  auto e = refusal(checkDataSize(4097, 4096));
  CHECK(e.find("4097") != std::string::npos);
  CHECK(e.find("4096") != std::string::npos);
  CHECK_FALSE(accepted(checkDataSize(1, 0)));
}

TEST_CASE("checkLinkTarget refuses empty targets and ones the kernel cannot hold") {
  CHECK(accepted(checkLinkTarget("x")));
  CHECK(accepted(checkLinkTarget("/absolute/../path")));
  CHECK(accepted(checkLinkTarget(std::string(limits::kMaxPathBytes - 1, 't'))));
  CHECK(refusal(checkLinkTarget("")).find("empty") != std::string::npos);
  CHECK(refusal(checkLinkTarget(std::string(limits::kMaxPathBytes, 't'))).find("too long") !=
        std::string::npos);
}

TEST_CASE("checkStatFs accepts a sane answer and refuses impossible ones") {
  msg::body::StatFs good{1000, 500, 400, 100, 50, 4096, 4096, 255};
  CHECK(accepted(checkStatFs(good)));
  auto full = good;
  full.bfree = full.bavail = full.blocks;
  full.ffree = full.files;
  CHECK(accepted(checkStatFs(full)));

  auto bad = good;
  bad.bsize = 0;
  CHECK_FALSE(accepted(checkStatFs(bad)));
  bad = good;
  bad.frsize = 0;
  CHECK_FALSE(accepted(checkStatFs(bad)));
  bad = good;
  bad.namemax = 0;
  CHECK(refusal(checkStatFs(bad)).find("name length") != std::string::npos);
  bad = good;
  bad.namemax = 256;
  CHECK(refusal(checkStatFs(bad)).find("256") != std::string::npos);
  bad = good;
  bad.bfree = 1001;
  CHECK_FALSE(accepted(checkStatFs(bad)));
  bad = good;
  bad.bavail = 1001;
  CHECK_FALSE(accepted(checkStatFs(bad)));
  bad = good;
  bad.ffree = 101;
  CHECK_FALSE(accepted(checkStatFs(bad)));
}

TEST_CASE("checkXattrList accepts NUL-separated names and an empty list") {
  CHECK(accepted(checkXattrList({})));
  auto one = bytes(std::string("user.a\0", 7));
  CHECK(accepted(checkXattrList(one)));
  auto several = bytes(std::string("user.a\0security.selinux\0trusted.x\0", 34));
  CHECK(accepted(checkXattrList(several)));
  auto longest = bytes(std::string(limits::kMaxXattrNameBytes, 'n') + '\0');
  CHECK(accepted(checkXattrList(longest)));
}

TEST_CASE("checkXattrList refuses unterminated lists, empty names and over-long names") {
  auto unterminated = bytes("user.a");
  CHECK(refusal(checkXattrList(unterminated)).find("NUL-terminated") != std::string::npos);
  auto lastUnterminated = bytes(std::string("user.a\0user.b", 13));
  CHECK_FALSE(accepted(checkXattrList(lastUnterminated)));
  auto onlyNul = bytes(std::string("\0", 1));
  CHECK(refusal(checkXattrList(onlyNul)).find("empty") != std::string::npos);
  auto doubleNul = bytes(std::string("user.a\0\0", 8));
  CHECK_FALSE(accepted(checkXattrList(doubleNul)));
  auto tooLong = bytes(std::string(limits::kMaxXattrNameBytes + 1, 'n') + '\0');
  CHECK(refusal(checkXattrList(tooLong)).find("too long") != std::string::npos);
}

// ---- node registry --------------------------------------------------------------------------

TEST_CASE(
    "checkExportWelcome wants a directory or file root with sound attributes, and page-sized I/O") {
  msg::Welcome w;
  w.maxRead = w.maxWrite = limits::kMaxIoBytes;
  w.root = attrOf(S_IFDIR | 0755);
  CHECK(checkExportWelcome(w));
  w.root = attrOf(S_IFREG | 0644);  // a single-file export
  CHECK(checkExportWelcome(w));
  for (std::uint32_t type : {S_IFLNK, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK, 0}) {
    w.root = attrOf(type | 0644);
    CHECK_FALSE(checkExportWelcome(w));
  }
  w.root = attrOf(S_IFDIR | 0755);
  w.root.size = std::numeric_limits<std::uint64_t>::max();
  CHECK(checkExportWelcome(w).error().find("file size") != std::string::npos);
  w.root = attrOf(S_IFDIR | 0755);
  w.maxWrite = 0;
  CHECK(checkExportWelcome(w).error().find("largest read") != std::string::npos);
  w.maxWrite = 4096;
  w.maxRead = 4095;
  CHECK_FALSE(checkExportWelcome(w));
  w.maxRead = 4096;
  CHECK(checkExportWelcome(w));
}

TEST_CASE("the registry counts lookups and drops a node when they are all forgotten") {
  NodeRegistry nodes;
  nodes.addRoot(S_IFDIR | 0755);
  CHECK(nodes.size() == 1);
  CHECK(nodes.typeOf(msg::kRootNode) == S_IFDIR);
  CHECK_FALSE(nodes.typeOf(5).has_value());

  CHECK(accepted(nodes.learn(entryOf(5))));
  CHECK(accepted(nodes.learn(entryOf(5))));
  CHECK(accepted(nodes.learn(entryOf(5))));
  CHECK(nodes.size() == 2);
  CHECK(nodes.typeOf(5) == S_IFREG);

  nodes.forget(5, 2);
  CHECK(nodes.typeOf(5) == S_IFREG);
  nodes.forget(5, 1);
  CHECK_FALSE(nodes.typeOf(5).has_value());
  CHECK(nodes.size() == 1);
}

TEST_CASE("forgetting more lookups than were counted, or an unknown node, is harmless") {
  NodeRegistry nodes;
  nodes.addRoot(S_IFDIR);
  CHECK(accepted(nodes.learn(entryOf(6))));
  nodes.forget(6, UINT64_MAX);
  CHECK_FALSE(nodes.typeOf(6).has_value());
  nodes.forget(6, 1);
  nodes.forget(12345, 7);
  CHECK(nodes.size() == 1);
}

TEST_CASE("the root is never forgotten") {
  NodeRegistry nodes;
  nodes.addRoot(S_IFDIR | 0700);
  nodes.forget(msg::kRootNode, 1);
  nodes.forget(msg::kRootNode, UINT64_MAX);
  CHECK(nodes.typeOf(msg::kRootNode) == S_IFDIR);
  CHECK(nodes.size() == 1);
}

TEST_CASE("a known node that the host later calls another file type is refused") {
  NodeRegistry nodes;
  nodes.addRoot(S_IFDIR);
  CHECK(accepted(nodes.learn(entryOf(7, S_IFREG | 0644))));
  CHECK(accepted(nodes.learn(entryOf(7, S_IFREG | 0600))));  // permission changes are fine
  auto e = refusal(nodes.learn(entryOf(7, S_IFDIR | 0755)));
  CHECK(e.find("7") != std::string::npos);
  CHECK(e.find("type") != std::string::npos);
  CHECK(nodes.typeOf(7) == S_IFREG);  // the lie changed nothing

  // The refused learn did not count a lookup: two forgets drop the node.
  nodes.forget(7, 2);
  CHECK_FALSE(nodes.typeOf(7).has_value());
}

TEST_CASE("agrees checks attributes against the known type, and knows nothing of strangers") {
  NodeRegistry nodes;
  nodes.addRoot(S_IFDIR | 0755);
  CHECK(accepted(nodes.agrees(msg::kRootNode, attrOf(S_IFDIR | 0700))));
  CHECK_FALSE(accepted(nodes.agrees(msg::kRootNode, attrOf(S_IFREG | 0644))));
  CHECK(accepted(nodes.learn(entryOf(8, S_IFLNK | 0777))));
  CHECK(accepted(nodes.agrees(8, attrOf(S_IFLNK | 0777))));
  CHECK_FALSE(accepted(nodes.agrees(8, attrOf(S_IFREG | 0777))));
  CHECK(accepted(nodes.agrees(99, attrOf(S_IFREG | 0644))));
}

TEST_CASE("a node learned again after being forgotten may have a new type") {
  NodeRegistry nodes;
  nodes.addRoot(S_IFDIR);
  CHECK(accepted(nodes.learn(entryOf(9, S_IFREG | 0644))));
  nodes.forget(9, 1);
  CHECK(accepted(nodes.learn(entryOf(9, S_IFDIR | 0755))));
  CHECK(nodes.typeOf(9) == S_IFDIR);
}

TEST_CASE("checkLinkStaysInside refuses absolute targets and any '..' component") {
  CHECK(accepted(checkLinkStaysInside("file")));
  CHECK(accepted(checkLinkStaysInside("sub/dir/file")));
  CHECK(accepted(checkLinkStaysInside("..hidden/x")));
  CHECK(accepted(checkLinkStaysInside("a/...")));
  CHECK(refusal(checkLinkStaysInside("/etc/passwd")).find("absolute") != std::string::npos);
  CHECK(refusal(checkLinkStaysInside("..")).find("..") != std::string::npos);
  CHECK_FALSE(checkLinkStaysInside("../x").ok());
  CHECK_FALSE(checkLinkStaysInside("a/../../x").ok());
  CHECK_FALSE(checkLinkStaysInside("a/..").ok());
  CHECK_FALSE(checkLinkStaysInside("a//../b").ok());
}
