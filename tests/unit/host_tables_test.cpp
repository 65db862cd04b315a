// common/names.h, node_table.h and handle_table.h: what a client may name, and the
// per-connection tables that turn its node and handle numbers into host descriptors. The
// numbers come from counters and are bounded, so a hostile client can neither guess its way to
// another object nor exhaust the host.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>

#include "support/harness.h"
#include "common/hard_limits.h"
#include "host-server/handle_table.h"
#include "common/names.h"
#include "host-server/node_table.h"

using namespace enclavefs;
using namespace enclavefs::host;
using namespace std::literals;

namespace {

using ScratchDir = enclavefs::test::TempDir;

UniqueFd openPath(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  REQUIRE(fd);
  return fd;
}

struct statx statOf(const UniqueFd& fd) {
  struct statx st {};
  REQUIRE(::statx(fd.get(), "", AT_EMPTY_PATH, STATX_BASIC_STATS, &st) == 0);
  return st;
}

void touch(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644));
  REQUIRE(fd);
}

// A made-up inode on a made-up device, with a descriptor that is cheap to have many of.
struct statx fakeInode(std::uint64_t ino) {
  struct statx st {};
  st.stx_dev_major = 250;
  st.stx_dev_minor = 7;
  st.stx_ino = ino;
  st.stx_mode = S_IFREG | 0644;
  return st;
}

UniqueFd anyFd() {
  UniqueFd fd(::open("/dev/null", O_PATH | O_CLOEXEC));
  REQUIRE(fd);
  return fd;
}

bool isOpen(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

OpenFileRef openFile() {
  auto f = std::make_shared<OpenFile>();
  f->fd = anyFd();
  return f;
}

}  // namespace

// ---- names ----------------------------------------------------------------------------------

TEST_CASE("a plain name is one path component of 1 to 255 bytes") {
  for (std::string_view name : {"a", "file.txt", ".hidden", "...", "..a", "a..", "with space",
                                "\xc3\xa9t\xc3\xa9", "-", "~", "a\\b"}) {
    CAPTURE(name);
    CHECK(isPlainName(name));
  }
  CHECK(isPlainName(std::string(limits::kMaxNameBytes, 'x')));
}

TEST_CASE("empty, dot, dot-dot, slash-carrying, NUL-carrying and over-long names are not plain") {
  for (std::string_view name : {""sv, "."sv, ".."sv, "/"sv, "a/b"sv, "../etc"sv, "a/"sv,
                                "/etc"sv, "a\0b"sv, "\0"sv, "..\0x"sv}) {
    CAPTURE(std::string(name));
    CHECK_FALSE(isPlainName(name));
  }
  CHECK_FALSE(isPlainName(std::string(limits::kMaxNameBytes + 1, 'x')));
}

// ---- node table -----------------------------------------------------------------------------

TEST_CASE("adopting the same inode twice gives the same node with two lookups") {
  ScratchDir dir;
  touch(dir / "f");
  NodeTable nodes(100);
  nodes.setRoot(openPath(dir.path()), S_IFDIR);

  auto firstFd = openPath(dir / "f");
  auto st = statOf(firstFd);
  int keptFd = firstFd.get();
  auto first = nodes.adopt(std::move(firstFd), st);
  REQUIRE(first.ok());
  NodeRef node = *first;
  CHECK(node->id != msg::kRootNode);
  CHECK(node->id != 0);
  CHECK(node->lookups == 1);
  CHECK(node->type == S_IFREG);
  CHECK(node->fd.get() == keptFd);

  // Another descriptor of the same file (through a hard link, even) is the same node.
  REQUIRE(::link((dir / "f").c_str(), (dir / "g").c_str()) == 0);
  auto secondFd = openPath(dir / "g");
  auto second = nodes.adopt(std::move(secondFd), statOf(openPath(dir / "g")));
  REQUIRE(second.ok());
  CHECK((*second)->id == node->id);
  CHECK((*second).get() == node.get());
  CHECK(node->lookups == 2);
  CHECK(node->fd.get() == keptFd);  // the first descriptor stays
  CHECK(nodes.size() == 2);         // root and f
  CHECK(nodes.find(node->id) == node);
}

TEST_CASE("different inodes get different nodes with the right file types") {
  ScratchDir dir;
  touch(dir / "f");
  REQUIRE(::mkdir((dir / "d").c_str(), 0755) == 0);
  REQUIRE(::symlink("f", (dir / "l").c_str()) == 0);
  NodeTable nodes(100);
  std::set<msg::NodeId> ids;
  for (auto [name, type] : {std::pair{"f", S_IFREG}, std::pair{"d", S_IFDIR},
                            std::pair{"l", S_IFLNK}}) {
    auto fd = openPath(dir / name);
    auto st = statOf(fd);
    auto node = nodes.adopt(std::move(fd), st);
    REQUIRE(node.ok());
    CHECK((*node)->type == static_cast<std::uint32_t>(type));
    ids.insert((*node)->id);
  }
  CHECK(ids.size() == 3);
  CHECK(ids.count(0) == 0);
  CHECK(ids.count(msg::kRootNode) == 0);
}

TEST_CASE("forgetting every lookup removes the node, and not before") {
  NodeTable nodes(100);
  auto a = nodes.adopt(anyFd(), fakeInode(10));
  REQUIRE(a.ok());
  REQUIRE(nodes.adopt(anyFd(), fakeInode(10)).ok());
  REQUIRE(nodes.adopt(anyFd(), fakeInode(10)).ok());
  msg::NodeId id = (*a)->id;
  CHECK((*a)->lookups == 3);

  nodes.forget(id, 2);
  REQUIRE(nodes.find(id) != nullptr);
  CHECK(nodes.find(id)->lookups == 1);
  nodes.forget(id, 1);
  CHECK(nodes.find(id) == nullptr);
  CHECK(nodes.size() == 0);
}

TEST_CASE("forgetting more than was looked up removes the node without underflow") {
  NodeTable nodes(100);
  auto a = nodes.adopt(anyFd(), fakeInode(11));
  REQUIRE(a.ok());
  msg::NodeId id = (*a)->id;
  nodes.forget(id, UINT64_MAX);
  CHECK(nodes.find(id) == nullptr);
  CHECK(nodes.size() == 0);
  // The inode is free again: adopting it makes a fresh node with one lookup.
  auto again = nodes.adopt(anyFd(), fakeInode(11));
  REQUIRE(again.ok());
  CHECK((*again)->lookups == 1);
}

TEST_CASE("forgetting an unknown node or with a zero count changes nothing") {
  NodeTable nodes(100);
  auto a = nodes.adopt(anyFd(), fakeInode(12));
  REQUIRE(a.ok());
  nodes.forget(0, 1);
  nodes.forget(999'999, 1);
  nodes.forget(UINT64_MAX, UINT64_MAX);
  nodes.forget((*a)->id, 0);
  CHECK(nodes.size() == 1);
  CHECK((*a)->lookups == 1);
  CHECK(nodes.find(0) == nullptr);
  CHECK(nodes.find(999'999) == nullptr);
}

TEST_CASE("the root is never removed by forget") {
  ScratchDir dir;
  NodeTable nodes(100);
  nodes.setRoot(openPath(dir.path()), S_IFDIR);
  nodes.forget(msg::kRootNode, 1);
  nodes.forget(msg::kRootNode, UINT64_MAX);
  auto root = nodes.find(msg::kRootNode);
  REQUIRE(root != nullptr);
  CHECK(root->type == S_IFDIR);
  CHECK(isOpen(root->fd.get()));
  CHECK(nodes.size() == 1);
}

TEST_CASE("a node in use keeps its descriptor after a forget removes it from the table") {
  NodeTable nodes(100);
  auto a = nodes.adopt(anyFd(), fakeInode(13));
  REQUIRE(a.ok());
  NodeRef inFlight = *a;
  nodes.forget(inFlight->id, 1);
  CHECK(nodes.find(inFlight->id) == nullptr);
  CHECK(isOpen(inFlight->fd.get()));
}

TEST_CASE("node numbers are never reused, even for the same inode") {
  NodeTable nodes(100);
  std::set<msg::NodeId> seen;
  for (int round = 0; round < 50; ++round) {
    auto a = nodes.adopt(anyFd(), fakeInode(14));
    REQUIRE(a.ok());
    CHECK(seen.insert((*a)->id).second);
    nodes.forget((*a)->id, 1);
  }
  CHECK(nodes.size() == 0);
}

TEST_CASE("adopting a new inode at the node limit fails with ENFILE") {
  ScratchDir dir;
  NodeTable nodes(3);
  nodes.setRoot(openPath(dir.path()), S_IFDIR);  // the root counts
  REQUIRE(nodes.adopt(anyFd(), fakeInode(20)).ok());
  auto kept = nodes.adopt(anyFd(), fakeInode(21));
  REQUIRE(kept.ok());
  CHECK(nodes.size() == 3);

  auto over = nodes.adopt(anyFd(), fakeInode(22));
  REQUIRE_FALSE(over.ok());
  CHECK(errnoOf(over) == ENFILE);
  CHECK(nodes.size() == 3);

  // A known inode is only counted again: no new node, so no limit.
  auto known = nodes.adopt(anyFd(), fakeInode(21));
  REQUIRE(known.ok());
  CHECK((*known)->id == (*kept)->id);
  CHECK((*known)->lookups == 2);

  // Forgetting one makes room.
  nodes.forget((*kept)->id, 2);
  CHECK(nodes.adopt(anyFd(), fakeInode(22)).ok());
  CHECK_FALSE(nodes.adopt(anyFd(), fakeInode(23)).ok());
}

TEST_CASE("the same inode number on two devices is two nodes") {
  NodeTable nodes(100);
  auto a = fakeInode(30);
  auto b = fakeInode(30);
  b.stx_dev_minor = 8;
  auto na = nodes.adopt(anyFd(), a);
  auto nb = nodes.adopt(anyFd(), b);
  REQUIRE(na.ok());
  REQUIRE(nb.ok());
  CHECK((*na)->id != (*nb)->id);
}

// ---- handle table ---------------------------------------------------------------------------

TEST_CASE("handles are non-zero, distinct and found until removed") {
  HandleTable handles(10);
  auto f1 = openFile();
  auto f2 = openFile();
  auto h1 = handles.add(f1);
  auto h2 = handles.add(f2);
  REQUIRE(h1.ok());
  REQUIRE(h2.ok());
  CHECK(*h1 != 0);
  CHECK(*h2 != 0);
  CHECK(*h1 != *h2);
  CHECK(handles.find(*h1) == f1);
  CHECK(handles.find(*h2) == f2);
  CHECK(handles.find(0) == nullptr);
  CHECK(handles.find(*h2 + 1000) == nullptr);

  CHECK(handles.remove(*h1) == f1);
  CHECK(handles.find(*h1) == nullptr);
  CHECK(handles.remove(*h1) == nullptr);  // a second release finds nothing
  CHECK(handles.remove(0) == nullptr);
  CHECK(handles.size() == 1);
}

TEST_CASE("adding a handle at the limit fails with EMFILE, and removing one makes room") {
  HandleTable handles(2);
  auto h1 = handles.add(openFile());
  REQUIRE(h1.ok());
  REQUIRE(handles.add(openFile()).ok());
  auto over = handles.add(openFile());
  REQUIRE_FALSE(over.ok());
  CHECK(errnoOf(over) == EMFILE);
  CHECK(handles.size() == 2);

  REQUIRE(handles.remove(*h1) != nullptr);
  CHECK(handles.add(openFile()).ok());
  CHECK(errnoOf(handles.add(openFile())) == EMFILE);
}

TEST_CASE("handle numbers are never reused after a release") {
  HandleTable handles(2);
  std::set<msg::HandleId> seen;
  for (int round = 0; round < 100; ++round) {
    auto h = handles.add(openFile());
    REQUIRE(h.ok());
    CHECK(seen.insert(*h).second);
    REQUIRE(handles.remove(*h) != nullptr);
  }
  CHECK(handles.size() == 0);
}

TEST_CASE("a removed handle's file stays open while an operation still holds it") {
  HandleTable handles(4);
  auto h = handles.add(openFile());
  REQUIRE(h.ok());
  OpenFileRef inFlight = handles.find(*h);
  REQUIRE(inFlight != nullptr);
  int fd = inFlight->fd.get();
  OpenFileRef removed = handles.remove(*h);
  removed.reset();
  CHECK(isOpen(fd));
  inFlight.reset();
  CHECK_FALSE(isOpen(fd));
}
