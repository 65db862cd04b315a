// host-server/change_watch.h: which changes in a watched directory reach which session, and
// above all the rule for a session's own changes. Real inotify on a scratch directory and a
// real ring; the test plays both the host's operation (expect / done around a change it makes
// itself) and the other party, and decides when the change watch reads its events, so every
// ordering of event and system call is made on purpose rather than by chance.
#include "host-server/change_watch.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "host-server/uring.h"
#include "support/harness.h"

using namespace enclavefs;
using namespace enclavefs::host;

namespace {

constexpr msg::NodeId kDir = 7;

// A session as the change watch sees it: what it was told, and how often it was asked to
// push.
struct Recorder : ChangeListener {
  std::vector<std::string> entries;  // names noted as changed in kDir
  int pushes = 0;
  bool everything = false;

  void noteChangedNode(msg::NodeId) override {}
  void noteChangedEntry(msg::NodeId parent, const std::string& name) override {
    CHECK(parent == kDir);
    entries.push_back(name);
  }
  void noteChangedInode(std::uint64_t, std::uint64_t) override {}
  void noteEverythingChanged() override { everything = true; }
  void pushChanges() override { ++pushes; }

  bool heard(const std::string& name) const {
    return std::find(entries.begin(), entries.end(), name) != entries.end();
  }
};

struct Rig {
  test::TempDir scratch;
  Ring ring{64};
  ChangeWatch watch{ring};
  Node dir;
  int marks = 0;

  Rig() {
    REQUIRE(watch.available());
    dir.id = kDir;
    dir.fd = UniqueFd(::open(scratch.path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    REQUIRE(dir.fd);
    dir.type = S_IFDIR;
  }

  std::shared_ptr<Recorder> session(std::uint64_t id) {
    auto recorder = std::make_shared<Recorder>();
    watch.watch(recorder, id, dir);
    return recorder;
  }

  // Another party's change: a file made or removed in the directory.
  void make(const std::string& name) {
    int fd = ::open((scratch / name).c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    REQUIRE(fd >= 0);
    ::close(fd);
  }
  void remove(const std::string& name) { REQUIRE(::unlink((scratch / name).c_str()) == 0); }

  // Runs the ring until the change watch has dispatched every event so far: it makes a
  // marker file after them and waits until `witness` hears of it.
  void readEvents(const Recorder& witness) {
    const std::string mark = "mark-" + std::to_string(++marks);
    make(mark);
    for (int round = 0; round < 1000 && !witness.heard(mark); ++round) ring.runOnce();
    REQUIRE(witness.heard(mark));
  }
};

}  // namespace

TEST_CASE("an own change whose event is read while its call runs is not pushed back") {
  Rig rig;
  auto own = rig.session(1);
  std::uint64_t ticket = rig.watch.expect(1, kDir, "made", IN_CREATE);
  REQUIRE(ticket != 0);
  rig.make("made");      // the call succeeds ...
  rig.readEvents(*own);  // ... and its event is read before the host has its outcome
  CHECK_FALSE(own->heard("made"));
  rig.watch.done(ticket, true);
  rig.readEvents(*own);
  CHECK_FALSE(own->heard("made"));
}

TEST_CASE("an own change whose event is read after its call ended is not pushed back") {
  Rig rig;
  auto own = rig.session(1);
  std::uint64_t ticket = rig.watch.expect(1, kDir, "made", IN_DELETE);
  rig.make("made");  // not the own change (another kind of event): pushed
  rig.readEvents(*own);
  CHECK(own->heard("made"));
  own->entries.clear();
  rig.remove("made");
  rig.watch.done(ticket, true);
  rig.readEvents(*own);
  CHECK_FALSE(own->heard("made"));
}

TEST_CASE("an own change hides only one event: the same name changed again by another is pushed") {
  Rig rig;
  auto own = rig.session(1);
  std::uint64_t ticket = rig.watch.expect(1, kDir, "again", IN_CREATE);
  rig.make("again");
  rig.watch.done(ticket, true);
  rig.readEvents(*own);
  CHECK_FALSE(own->heard("again"));
  rig.remove("again");  // another party removes the name and makes it again
  rig.make("again");
  rig.readEvents(*own);
  CHECK(std::count(own->entries.begin(), own->entries.end(), "again") == 2);
}

TEST_CASE("an event held back for a call that then failed was another's, and is pushed") {
  Rig rig;
  auto own = rig.session(1);
  // The session's create of "raced" is under way; another party makes the name first, and
  // the change watch reads that event while the call still runs.
  std::uint64_t ticket = rig.watch.expect(1, kDir, "raced", IN_CREATE);
  rig.make("raced");
  rig.readEvents(*own);
  CHECK_FALSE(own->heard("raced"));  // held back: it may be the session's own
  const int pushesBefore = own->pushes;
  rig.watch.done(ticket, false);  // the create failed (EEXIST): the event was the other's
  CHECK(own->heard("raced"));
  CHECK(own->pushes == pushesBefore + 1);
}

TEST_CASE("a failed own change that held nothing back pushes nothing") {
  Rig rig;
  auto own = rig.session(1);
  std::uint64_t ticket = rig.watch.expect(1, kDir, "never", IN_CREATE);
  rig.watch.done(ticket, false);
  rig.readEvents(*own);
  CHECK_FALSE(own->heard("never"));
  // And the name's next event, by anyone, is pushed: nothing waits for it any more.
  rig.make("never");
  rig.readEvents(*own);
  CHECK(own->heard("never"));
}

TEST_CASE("another session watching the same directory hears a session's own change") {
  Rig rig;
  auto own = rig.session(1);
  auto other = rig.session(2);
  std::uint64_t ticket = rig.watch.expect(1, kDir, "shared", IN_CREATE);
  rig.make("shared");
  rig.readEvents(*own);
  rig.watch.done(ticket, true);
  rig.readEvents(*other);
  CHECK_FALSE(own->heard("shared"));
  CHECK(other->heard("shared"));
}

TEST_CASE("a session no longer watching hears nothing; one that ended is skipped") {
  Rig rig;
  auto gone = rig.session(1);
  auto unwatched = rig.session(2);
  auto witness = rig.session(3);
  rig.watch.unwatchSession(2);
  std::weak_ptr<Recorder> goneRef = gone;
  gone.reset();  // the session ended without unwatching (it is held weakly)
  REQUIRE(goneRef.expired());
  rig.make("late");
  rig.readEvents(*witness);
  CHECK(witness->heard("late"));
  CHECK(unwatched->entries.empty());
}
