// Directory listings that answer lookups (enclave-fs/listed_dirs.h), and the host lookups
// they hold: every lookup a listing took is handed to the kernel or given back, once.
#include "enclave-fs/listed_dirs.h"

#include <doctest/doctest.h>

#include <map>
#include <string>
#include <thread>

using enclavefs::enclave::ListedDirs;
namespace msg = enclavefs::msg;

namespace {

constexpr msg::NodeId kDir = 10;

struct Rig {
  std::map<msg::NodeId, std::uint64_t> givenBack;
  ListedDirs dirs;

  explicit Rig(std::chrono::duration<double> lifetime = std::chrono::seconds(30))
      : dirs(lifetime, [this](std::vector<msg::op::ForgetItem> items) {
          for (const auto& i : items) givenBack[i.node] += i.count;
        }) {}

  // Names found on the host in `dir` until the last one asks for the listing.
  void startListing(msg::NodeId dir) {
    for (int i = 1; i < ListedDirs::kMissesToList; ++i) CHECK(!dirs.foundOnHost(dir));
    REQUIRE(dirs.foundOnHost(dir));
  }
  // A listing of `dir` holding `items`.
  void listed(msg::NodeId dir, const std::vector<msg::body::DirEntry>& items) {
    startListing(dir);
    dirs.add(dir, items);
    dirs.finished(dir);
  }
  std::uint64_t totalGivenBack() const {
    std::uint64_t n = 0;
    for (const auto& [node, count] : givenBack) n += count;
    return n;
  }
};

msg::body::DirEntry item(const std::string& name, msg::NodeId node) {
  msg::body::DirEntry d;
  d.name = name;
  d.ino = node;
  d.type = 8;
  d.entry = msg::Entry{node, 0, {}};
  d.entry->attr.mode = 0100644;
  return d;
}

}  // namespace

TEST_CASE("names found on the host one after another list the directory, whose entries answer once") {
  Rig rig;
  rig.startListing(kDir);
  CHECK(!rig.dirs.foundOnHost(kDir));  // listed already
  rig.dirs.add(kDir, {item(".", kDir), item("a", 11), item("b", 12)});
  CHECK(rig.givenBack == std::map<msg::NodeId, std::uint64_t>{{kDir, 1}});  // "." is not kept
  CHECK(!rig.dirs.take(kDir, "a"));  // nothing answers while the listing is fetched
  rig.dirs.finished(kDir);
  CHECK(rig.dirs.heldLookups() == 2);

  auto a = rig.dirs.take(kDir, "a");
  REQUIRE(a);
  CHECK(a->node == 11);
  CHECK(rig.dirs.heldLookups() == 1);
  CHECK(!rig.dirs.take(kDir, "a"));  // the kernel's now; asked of the host from here on
  CHECK(!rig.dirs.take(kDir, "never"));
  CHECK(!rig.dirs.take(kDir + 1, "b"));
  CHECK(rig.totalGivenBack() == 1);
}

TEST_CASE("names found more than a second apart list nothing") {
  Rig rig;
  for (int i = 1; i < ListedDirs::kMissesToList; ++i) CHECK(!rig.dirs.foundOnHost(kDir));
  std::this_thread::sleep_for(ListedDirs::kMissWindow + std::chrono::milliseconds(10));
  CHECK(!rig.dirs.foundOnHost(kDir));
}

TEST_CASE("a name listed without attributes is not kept") {
  Rig rig;
  msg::body::DirEntry bare = item("bare", 11);
  bare.entry.reset();
  rig.listed(kDir, {bare, item("a", 12)});
  CHECK(!rig.dirs.take(kDir, "bare"));
  CHECK(rig.dirs.take(kDir, "a"));
}

TEST_CASE("a changed name or node ends or trims the listing, and gives its lookups back") {
  Rig rig;
  rig.listed(kDir, {item("a", 11), item("b", 12), item("link", 12)});

  rig.dirs.attrsSeen(12);  // both names of node 12 go
  CHECK(rig.givenBack[12] == 2);
  CHECK(!rig.dirs.take(kDir, "b"));
  CHECK(!rig.dirs.take(kDir, "link"));
  CHECK(rig.dirs.heldLookups() == 1);

  rig.dirs.nameChanged(kDir);
  CHECK(rig.givenBack[11] == 1);
  CHECK(rig.dirs.heldLookups() == 0);
  CHECK(!rig.dirs.take(kDir, "a"));
}

TEST_CASE("a name changed while the listing is fetched spoils it: everything goes back") {
  Rig rig;
  rig.startListing(kDir);
  rig.dirs.add(kDir, {item("a", 11)});
  rig.dirs.nameChanged(kDir);
  rig.dirs.add(kDir, {item("b", 12)});
  rig.dirs.finished(kDir);
  CHECK(rig.totalGivenBack() == 2);
  CHECK(rig.dirs.heldLookups() == 0);
  CHECK(!rig.dirs.take(kDir, "b"));
}

TEST_CASE("a directory is listed at most once per lifetime, and never with a lifetime of 0") {
  Rig rig(std::chrono::milliseconds(50));
  rig.listed(kDir, {item("a", 11)});
  rig.dirs.nameChanged(kDir);
  for (int i = 0; i < 2 * ListedDirs::kMissesToList; ++i) CHECK(!rig.dirs.foundOnHost(kDir));
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  rig.startListing(kDir);
  rig.dirs.finished(kDir);

  Rig never(std::chrono::seconds(0));
  for (int i = 0; i < 2 * ListedDirs::kMissesToList; ++i) CHECK(!never.dirs.foundOnHost(kDir));
}

TEST_CASE("a node changed while the listing is fetched is kept out of it") {
  Rig rig;
  rig.startListing(kDir);
  rig.dirs.add(kDir, {item("a", 11)});
  SUBCASE("reported or made here") { rig.dirs.nodeChanged(12); }
  SUBCASE("newer attributes") { rig.dirs.attrsSeen(12); }
  rig.dirs.add(kDir, {item("b", 12), item("c", 13)});
  rig.dirs.finished(kDir);
  CHECK(rig.givenBack == std::map<msg::NodeId, std::uint64_t>{{12, 1}});
  CHECK(!rig.dirs.take(kDir, "b"));
  CHECK(rig.dirs.take(kDir, "a"));
  CHECK(rig.dirs.take(kDir, "c"));
  // Once listed, a change of the node counts no more against later listings.
  rig.listed(kDir + 1, {item("b", 12)});
  CHECK(rig.dirs.take(kDir + 1, "b"));
}

TEST_CASE("the kernel forgetting the directory ends its listing") {
  Rig rig;
  rig.listed(kDir, {item("a", 11)});
  rig.dirs.nodeChanged(kDir);
  CHECK(rig.givenBack[11] == 1);
  CHECK(!rig.dirs.take(kDir, "a"));
}

TEST_CASE("an expired listing answers nothing and gives its lookups back") {
  Rig rig(std::chrono::milliseconds(1));
  rig.listed(kDir, {item("a", 11)});
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  CHECK(!rig.dirs.take(kDir, "a"));
  CHECK(rig.givenBack[11] == 1);
}

TEST_CASE("past its bounds a listing keeps no more") {
  Rig rig;
  std::vector<msg::body::DirEntry> items;
  for (std::size_t i = 0; i <= ListedDirs::kMaxEntries; ++i) {
    items.push_back(item("f" + std::to_string(i), 100 + i));
  }
  rig.listed(kDir, items);
  CHECK(rig.dirs.heldLookups() == ListedDirs::kMaxEntries);
  CHECK(rig.totalGivenBack() == 1);
  CHECK(rig.dirs.take(kDir, "f0"));
  CHECK(!rig.dirs.take(kDir, "f" + std::to_string(ListedDirs::kMaxEntries)));
}

TEST_CASE("at most kMaxDirs listings are kept: the next one ends the oldest") {
  Rig rig;
  for (msg::NodeId d = 1; d <= ListedDirs::kMaxDirs; ++d) rig.listed(1000 + d, {item("x", 2000 + d)});
  rig.listed(kDir, {item("a", 11)});
  CHECK(rig.givenBack[2001] == 1);
  CHECK(rig.dirs.take(kDir, "a"));
  CHECK(rig.dirs.heldLookups() == ListedDirs::kMaxDirs - 1);
}
