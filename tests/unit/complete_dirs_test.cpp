// Directories this mount made, whose every entry it knows (enclave-fs/complete_dirs.h): which
// names they answer as absent, and the bounds that keep a host from filling the enclave's
// memory through the names it reports.
#include "enclave-fs/complete_dirs.h"

#include <doctest/doctest.h>

#include <map>
#include <string>
#include <thread>

using enclavefs::enclave::CompleteDirs;
namespace msg = enclavefs::msg;

namespace {

struct Rig {
  std::map<msg::NodeId, std::uint64_t> givenBack;
  CompleteDirs dirs;

  explicit Rig(std::chrono::duration<double> lifetime = std::chrono::seconds(30))
      : dirs(lifetime, [this](std::vector<msg::op::ForgetItem> items) {
          for (const auto& i : items) givenBack[i.node] += i.count;
        }) {}

  // A notification from the host naming `name` in `dir`.
  void hostReports(msg::NodeId dir, const std::string& name) {
    msg::Notify n;
    n.entries.push_back({dir, name});
    dirs.changed(n);
  }
};

}  // namespace

TEST_CASE("a directory this mount made answers every name absent but those that may be made") {
  Rig rig;
  rig.dirs.madeEmpty(10);
  CHECK(rig.dirs.surelyAbsent(10, "a"));
  rig.dirs.mayBePresent(10, "a");
  rig.hostReports(10, "b");
  CHECK_FALSE(rig.dirs.surelyAbsent(10, "a"));
  CHECK_FALSE(rig.dirs.surelyAbsent(10, "b"));
  CHECK(rig.dirs.surelyAbsent(10, "c"));
  CHECK_FALSE(rig.dirs.surelyAbsent(11, "c"));  // not made here: the host is asked
}

TEST_CASE(
    "names reported over all directories are bounded: past the bound every one is forgotten") {
  Rig rig;
  for (msg::NodeId dir = 10; dir < 14; ++dir) rig.dirs.madeEmpty(dir);
  REQUIRE(rig.dirs.holdLookups(12, 3));
  // The same name twice counts once.
  rig.hostReports(10, "twice");
  rig.hostReports(10, "twice");
  for (std::size_t i = 1; i < CompleteDirs::kMaxNames; ++i) {
    rig.hostReports(10 + i % 4, "name-" + std::to_string(i));
  }
  for (msg::NodeId dir = 10; dir < 14; ++dir) CHECK(rig.dirs.surelyAbsent(dir, "never"));
  CHECK(rig.givenBack.empty());

  rig.hostReports(13, "one-too-many");
  for (msg::NodeId dir = 10; dir < 14; ++dir) CHECK_FALSE(rig.dirs.surelyAbsent(dir, "never"));
  CHECK(rig.givenBack == std::map<msg::NodeId, std::uint64_t>{{12, 3}});

  // Counting starts again from nothing: a new directory takes names once more.
  rig.dirs.madeEmpty(20);
  rig.hostReports(20, "x");
  CHECK(rig.dirs.surelyAbsent(20, "y"));
}

TEST_CASE("a directory made again starts with no names, and its old ones leave the count") {
  Rig rig;
  rig.dirs.madeEmpty(10);
  for (std::size_t i = 0; i < CompleteDirs::kMaxNames; ++i) {
    rig.hostReports(10, "name-" + std::to_string(i));
  }
  rig.dirs.madeEmpty(10);  // the same node made empty again (removed and made on the host)
  CHECK(rig.dirs.surelyAbsent(10, "name-1"));
  rig.dirs.madeEmpty(11);
  rig.hostReports(11, "a");
  CHECK(rig.dirs.surelyAbsent(11, "b"));  // the bound was not reached: 11 is still complete
}

TEST_CASE("an expired directory takes no more names and gives back the lookups it held") {
  Rig rig(std::chrono::milliseconds(50));
  rig.dirs.madeEmpty(10);
  REQUIRE(rig.dirs.holdLookups(10, 2));
  std::this_thread::sleep_for(std::chrono::milliseconds(80));
  rig.hostReports(10, "late");
  CHECK(rig.givenBack == std::map<msg::NodeId, std::uint64_t>{{10, 2}});
  CHECK_FALSE(rig.dirs.surelyAbsent(10, "other"));
}
