// Locks across enclaves and the host. Two enclavefs-mount mounts of the same export stand
// for two enclaves; a plain process on the exported directory stands for the host. Every
// lock is taken with real system calls (flock, fcntl F_SETLK/F_SETLKW/F_GETLK, F_OFD_*) by
// a separate process per lock owner, since POSIX locks belong to processes: each "agent" is
// a forked child that executes one command at a time, sent down a pipe, and answers on
// another pipe ("ok ..." or "err ERRNO"). A blocking command keeps the agent busy, so the
// test can see that no answer comes while the lock is held and when the answer comes after
// the release.
//
// Each test case starts its own enclavefs-hostd and two mounts (the Shared fixture), so a
// failure in one cannot leak locks into the next. A lock is only useful if it also orders
// data: two enclaves increment a counter under a lock and none may be lost. SQLite closes
// the file: (a) rollback journal and (b) WAL on one mount, (c) two writers on two mounts of
// the same database.
//
// flock and OFD locks end with the open file description; FUSE tells the daemon with
// RELEASE, which the kernel sends asynchronously after the last close() has returned, so
// those releases are awaited briefly (kReleaseGrace). POSIX locks end with flush, which
// close() waits for: those are checked at once.
#include <dirent.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <future>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/harness.h"
#include "support/require_root.h"

using namespace enclavefs::test;
using namespace std::chrono_literals;

namespace {

std::string made(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0) {
    throw std::runtime_error("mkdir " + path + ": " + std::strerror(errno));
  }
  return path;
}

// One host directory exported as "data" by a fresh enclavefs-hostd and mounted twice: mount
// A and mount B, two enclaves sharing the export.
struct Shared {
  Shared()
      : host(made(dir / "export")),
        mntA(made(dir / "a")),
        mntB(made(dir / "b")),
        server(dir / "sock", {"--export", "data=" + host, "--owner", "passthrough"}),
        a(server.address(), "data", mntA),
        b(server.address(), "data", mntB) {}

  // The same file on the host, through mount A and through mount B.
  std::string h(const std::string& name) const { return host + "/" + name; }
  std::string inA(const std::string& name) const { return a / name; }
  std::string inB(const std::string& name) const { return b / name; }

  TempDir dir;
  std::string host;
  std::string mntA;
  std::string mntB;
  HostServer server;
  Mount a;
  Mount b;
};

std::int64_t monotonicNs() {
  timespec t{};
  ::clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<std::int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

std::vector<std::string> words(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// ---- the agent: a child process that takes locks on command ------------------------------
//
// Commands (one a line; FD is the number an "open" answered):
//   open PATH [ro|wo]                       -> ok FD
//   close FD                                -> ok
//   flock FD sh|ex|un [nb]                  -> ok T   (T: CLOCK_MONOTONIC ns at return)
//   setlk FD r|w|u START LEN [wait] [ofd]   -> ok T   (F_SETLK, F_SETLKW, F_OFD_SETLK(W))
//   getlk FD r|w START LEN [ofd]            -> ok unlocked | ok r|w START LEN PID
//   pid                                     -> ok PID
// A failing call answers "err ERRNO".

short lockType(const std::string& t) {
  if (t == "r") return F_RDLCK;
  if (t == "w") return F_WRLCK;
  return F_UNLCK;
}

std::string agentExecute(const std::vector<std::string>& w) {
  auto err = [](int e) { return "err " + std::to_string(e); };
  auto has = [&w](const char* flag) {
    for (std::size_t i = 1; i < w.size(); ++i) {
      if (w[i] == flag) return true;
    }
    return false;
  };
  if (w.empty()) return "err " + std::to_string(EINVAL);
  const std::string& cmd = w[0];
  if (cmd == "pid") return "ok " + std::to_string(::getpid());
  if (cmd == "open" && w.size() >= 2) {
    int flags = has("ro") ? O_RDONLY : has("wo") ? O_WRONLY : O_RDWR;
    int fd = ::open(w[1].c_str(), flags);
    return fd < 0 ? err(errno) : "ok " + std::to_string(fd);
  }
  if (cmd == "close" && w.size() >= 2) {
    return ::close(std::stoi(w[1])) == 0 ? "ok" : err(errno);
  }
  if (cmd == "flock" && w.size() >= 3) {
    int op = w[2] == "sh" ? LOCK_SH : w[2] == "ex" ? LOCK_EX : LOCK_UN;
    if (has("nb")) op |= LOCK_NB;
    int rc = ::flock(std::stoi(w[1]), op);
    return rc == 0 ? "ok " + std::to_string(monotonicNs()) : err(errno);
  }
  if (cmd == "setlk" && w.size() >= 5) {
    struct flock fl {};
    fl.l_type = lockType(w[2]);
    fl.l_whence = SEEK_SET;
    fl.l_start = std::stoll(w[3]);
    fl.l_len = std::stoll(w[4]);
    const bool ofd = has("ofd");
    const bool wait = has("wait");
    int op = ofd ? (wait ? F_OFD_SETLKW : F_OFD_SETLK) : (wait ? F_SETLKW : F_SETLK);
    int rc = ::fcntl(std::stoi(w[1]), op, &fl);
    return rc == 0 ? "ok " + std::to_string(monotonicNs()) : err(errno);
  }
  if (cmd == "getlk" && w.size() >= 5) {
    struct flock fl {};
    fl.l_type = lockType(w[2]);
    fl.l_whence = SEEK_SET;
    fl.l_start = std::stoll(w[3]);
    fl.l_len = std::stoll(w[4]);
    int rc = ::fcntl(std::stoi(w[1]), has("ofd") ? F_OFD_GETLK : F_GETLK, &fl);
    if (rc != 0) return err(errno);
    if (fl.l_type == F_UNLCK) return "ok unlocked";
    return std::string("ok ") + (fl.l_type == F_RDLCK ? "r" : fl.l_type == F_WRLCK ? "w" : "?") +
           " " + std::to_string(fl.l_start) + " " + std::to_string(fl.l_len) + " " +
           std::to_string(fl.l_pid);
  }
  return err(EINVAL);
}

bool writeAll(int fd, const std::string& s) {
  std::size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

[[noreturn]] void agentMain(int in, int out) {
  std::string buffer;
  char chunk[512];
  for (;;) {
    std::size_t nl;
    while ((nl = buffer.find('\n')) == std::string::npos) {
      ssize_t n = ::read(in, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) ::_exit(0);
      buffer.append(chunk, static_cast<std::size_t>(n));
    }
    std::string line = buffer.substr(0, nl);
    buffer.erase(0, nl + 1);
    std::string answer;
    try {
      answer = agentExecute(words(line));
    } catch (const std::exception&) {
      answer = "err " + std::to_string(EINVAL);
    }
    if (!writeAll(out, answer + "\n")) ::_exit(1);
  }
}

// The parent's side of an agent. Destruction kills it (its descriptors, and with them its
// locks, go away with it).
class Agent {
 public:
  explicit Agent(std::string name) : name_(std::move(name)) {
    int toChild[2], fromChild[2];
    if (::pipe2(toChild, O_CLOEXEC) != 0 || ::pipe2(fromChild, O_CLOEXEC) != 0) {
      throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
    }
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
    if (pid_ == 0) {
      // Keep only the two pipe ends: a descriptor inherited from the test (or another
      // agent) would keep open file descriptions, and their locks, alive.
      int in = toChild[0];
      int out = fromChild[1];
      int lo = std::min(in, out);
      int hi = std::max(in, out);
      if (lo > 3) ::close_range(3, static_cast<unsigned>(lo - 1), 0);
      if (hi > lo + 1) ::close_range(static_cast<unsigned>(lo + 1), static_cast<unsigned>(hi - 1), 0);
      ::close_range(static_cast<unsigned>(hi + 1), ~0u, 0);
      agentMain(in, out);
    }
    ::close(toChild[0]);
    ::close(fromChild[1]);
    to_ = toChild[1];
    from_ = fromChild[0];
  }
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;
  ~Agent() { kill(); }

  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }

  // Sends a command without waiting for its answer.
  void send(const std::string& command) {
    if (!writeAll(to_, command + "\n")) {
      throw std::runtime_error("agent " + name_ + " is gone (sending '" + command + "')");
    }
  }

  // The next answer, or nullopt if none came within `limit`.
  std::optional<std::string> answer(std::chrono::milliseconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      if (auto nl = buffer_.find('\n'); nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() < 0) return std::nullopt;
      pollfd p{from_, POLLIN, 0};
      int rc = ::poll(&p, 1, static_cast<int>(left.count()));
      if (rc < 0 && errno == EINTR) continue;
      if (rc <= 0) continue;  // the deadline check above ends the wait
      char chunk[512];
      ssize_t n = ::read(from_, chunk, sizeof chunk);
      if (n <= 0) throw std::runtime_error("agent " + name_ + " died");
      buffer_.append(chunk, static_cast<std::size_t>(n));
    }
  }

  // Sends a command and waits for its answer (a lost answer fails the test).
  std::string call(const std::string& command, std::chrono::milliseconds limit = 10s) {
    send(command);
    auto a = answer(limit);
    if (!a) throw std::runtime_error("agent " + name_ + ": no answer to '" + command + "'");
    return *a;
  }

  // Opens `path` in the agent and answers the agent's descriptor number.
  std::string open(const std::string& path, const std::string& mode = "") {
    std::string a = call("open " + path + (mode.empty() ? "" : " " + mode));
    auto w = words(a);
    if (w.size() != 2 || w[0] != "ok") {
      throw std::runtime_error("agent " + name_ + ": open " + path + ": " + a);
    }
    return w[1];
  }

  void kill() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
    if (to_ >= 0) ::close(std::exchange(to_, -1));
    if (from_ >= 0) ::close(std::exchange(from_, -1));
  }

 private:
  std::string name_;
  pid_t pid_ = -1;
  int to_ = -1;
  int from_ = -1;
  std::string buffer_;
};

// The errno of an answer: 0 for "ok ...", ERRNO for "err ERRNO", -1 for anything else.
int errOf(const std::string& answer) {
  auto w = words(answer);
  if (!w.empty() && w[0] == "ok") return 0;
  if (w.size() == 2 && w[0] == "err") return std::stoi(w[1]);
  return -1;
}

bool ok(const std::string& answer) { return errOf(answer) == 0; }

// fcntl F_SETLK reports a conflict as EAGAIN or EACCES (POSIX allows both).
bool lockConflict(const std::string& answer) {
  int e = errOf(answer);
  return e == EAGAIN || e == EACCES;
}

// The time stamp of an "ok T" answer.
std::int64_t stampOf(const std::string& answer) {
  auto w = words(answer);
  if (w.size() != 2 || w[0] != "ok") throw std::runtime_error("no time stamp in '" + answer + "'");
  return std::stoll(w[1]);
}

// Repeats `command` in `agent` until it succeeds or `limit` passes; answers the last answer.
std::string callUntilOk(Agent& agent, const std::string& command, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    std::string a = agent.call(command);
    if (ok(a) || std::chrono::steady_clock::now() > deadline) return a;
    std::this_thread::sleep_for(20ms);
  }
}

// flock and OFD locks end with the open file description, which FUSE reports to the
// daemon with RELEASE, sent by the kernel asynchronously just after the last close()
// returns: a lock freed that way may take a moment to reach the host.
constexpr auto kReleaseGrace = 2s;

// Finds the enclavefs-mount process serving `mountPoint` by its command line.
std::vector<pid_t> mountDaemonsOf(const std::string& mountPoint) {
  std::vector<pid_t> found;
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return found;
  while (dirent* e = ::readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    std::ifstream in(std::string("/proc/") + e->d_name + "/cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<std::string> args;
    for (std::size_t pos = 0; pos < cmdline.size();) {
      std::size_t zero = cmdline.find('\0', pos);
      if (zero == std::string::npos) zero = cmdline.size();
      args.push_back(cmdline.substr(pos, zero - pos));
      pos = zero + 1;
    }
    if (args.empty() || args[0].find("enclavefs-mount") == std::string::npos) continue;
    for (const auto& a : args) {
      if (a == mountPoint) {
        found.push_back(static_cast<pid_t>(pid));
        break;
      }
    }
  }
  ::closedir(proc);
  return found;
}

// Runs `body` in a forked child and answers its exit status (-1 if killed or too slow).
template <class Body>
int inChild(Body body, std::chrono::milliseconds limit = 60s) {
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    int code = 125;
    try {
      code = body();
    } catch (...) {
    }
    ::_exit(code);
  }
  if (auto code = waitFor(pid, limit)) return *code;
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return -1;
}

// `rounds` times: take the lock on the whole file, read the counter at offset 0, write it
// back plus one, unlock. The lock is F_SETLKW or flock LOCK_EX, or (spinning) F_SETLK or
// LOCK_EX|LOCK_NB retried at once, which takes the lock the moment the other side lets it
// go. The file stays open throughout, so what it reads may come from the page cache: the
// lock must make the other side's writes visible. Exit status 0, or 1 on a failed call.
int incrementUnderLock(const std::string& path, int rounds, bool useFlock, bool spin) {
  int fd = ::open(path.c_str(), O_RDWR);
  if (fd < 0) return 1;
  auto lock = [&](short type) {
    struct flock fl {};
    fl.l_whence = SEEK_SET;
    fl.l_type = type;
    for (;;) {
      int rc;
      if (useFlock) {
        rc = ::flock(fd, (type == F_UNLCK ? LOCK_UN : LOCK_EX) | (spin ? LOCK_NB : 0));
      } else {
        rc = ::fcntl(fd, spin || type == F_UNLCK ? F_SETLK : F_SETLKW, &fl);
      }
      if (rc == 0) return true;
      if (!spin || (errno != EAGAIN && errno != EACCES && errno != EWOULDBLOCK)) return false;
    }
  };
  for (int i = 0; i < rounds; ++i) {
    if (!lock(F_WRLCK)) return 1;
    char buf[16] = {};
    if (::pread(fd, buf, sizeof buf - 1, 0) < 0) return 1;
    std::string next = std::to_string(std::strtoll(buf, nullptr, 10) + 1);
    next.resize(12, ' ');
    if (::pwrite(fd, next.data(), next.size(), 0) != static_cast<ssize_t>(next.size())) return 1;
    if (!lock(F_UNLCK)) return 1;
  }
  ::close(fd);
  return 0;
}

// ---- SQLite through python3's sqlite3 module -----------------------------------------------

bool havePythonSqlite() {
  return run({"/usr/bin/env", "python3", "-c", "import sqlite3"}).exitCode == 0;
}

// Creates table t and makes `transactions` transactions of `rowsEach` inserts, in the given
// journal mode; then reads everything back and checks it. Prints "OK" at the end.
const char* kSqliteSingle = R"PY(
import sqlite3, sys
db, mode, txns, each = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
con = sqlite3.connect(db, timeout=30, isolation_level=None)
got = con.execute("PRAGMA journal_mode=" + mode).fetchone()[0]
if got.lower() != mode.lower():
    sys.exit("journal_mode is %s, wanted %s" % (got, mode))
con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, txn INTEGER, k INTEGER, v TEXT)")
for i in range(txns):
    con.execute("BEGIN")
    for j in range(each):
        con.execute("INSERT INTO t(txn, k, v) VALUES (?, ?, ?)", (i, j, "value-%d-%d" % (i, j) * 4))
    con.execute("COMMIT")
con.close()
con = sqlite3.connect(db, timeout=30, isolation_level=None)
n = con.execute("SELECT count(*) FROM t").fetchone()[0]
if n != txns * each:
    sys.exit("count %d, wanted %d" % (n, txns * each))
for (txn, k, v) in con.execute("SELECT txn, k, v FROM t ORDER BY id"):
    if v != "value-%d-%d" % (txn, k) * 4:
        sys.exit("row %d/%d holds %r" % (txn, k, v))
check = con.execute("PRAGMA integrity_check").fetchall()
if check != [("ok",)]:
    sys.exit("integrity_check: %r" % (check,))
print("OK")
)PY";

// One of several concurrent writers: `txns` write transactions of `each` inserts tagged
// `tag`, with a busy timeout, in rollback-journal mode.
const char* kSqliteWriter = R"PY(
import sqlite3, sys, time
db, tag, txns, each = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
con = sqlite3.connect(db, timeout=60, isolation_level=None)
con.execute("PRAGMA busy_timeout=60000")
for i in range(txns):
    con.execute("BEGIN IMMEDIATE")
    for j in range(each):
        con.execute("INSERT INTO t(tag, txn, k) VALUES (?, ?, ?)", (tag, i, j))
    con.execute("COMMIT")
con.close()
print("OK")
)PY";

const char* kSqliteCreate = R"PY(
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
mode = con.execute("PRAGMA journal_mode=DELETE").fetchone()[0]
if mode.lower() != "delete":
    sys.exit("journal_mode is " + mode)
con.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, tag TEXT, txn INTEGER, k INTEGER)")
con.close()
print("OK")
)PY";

// Prints, for each tag, the number of distinct transactions and of rows, then the
// integrity check.
const char* kSqliteSummary = R"PY(
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
for (tag, txns, rows) in con.execute("SELECT tag, count(DISTINCT txn), count(*) FROM t GROUP BY tag ORDER BY tag"):
    print("%s %d %d" % (tag, txns, rows))
print("integrity " + ",".join(r[0] for r in con.execute("PRAGMA integrity_check")))
)PY";

// Prints the row count and the integrity check of table t.
const char* kSqliteCount = R"PY(
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
print("rows %d" % con.execute("SELECT count(*) FROM t").fetchone()[0])
print("integrity " + ",".join(r[0] for r in con.execute("PRAGMA integrity_check")))
)PY";

RunResult python(const char* script, const std::vector<std::string>& args,
                 std::chrono::milliseconds limit = 60s) {
  std::vector<std::string> argv = {"/usr/bin/env", "python3", "-c", script};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, limit);
}

}  // namespace

// ---- flock -------------------------------------------------------------------------------

TEST_CASE("flock LOCK_EX in one enclave excludes the other enclave and the host until released") {
  Shared s;
  writeFile(s.h("f"), "content");
  Agent a("A"), b("B"), host("host");
  std::string fa = a.open(s.inA("f"));
  std::string fb = b.open(s.inB("f"));
  std::string fh = host.open(s.h("f"));

  REQUIRE(ok(a.call("flock " + fa + " ex nb")));
  CHECK(errOf(b.call("flock " + fb + " ex nb")) == EWOULDBLOCK);
  CHECK(errOf(b.call("flock " + fb + " sh nb")) == EWOULDBLOCK);
  CHECK(errOf(host.call("flock " + fh + " ex nb")) == EWOULDBLOCK);

  // LOCK_UN releases it for B.
  REQUIRE(ok(a.call("flock " + fa + " un")));
  CHECK(ok(b.call("flock " + fb + " ex nb")));
  CHECK(errOf(a.call("flock " + fa + " ex nb")) == EWOULDBLOCK);
  CHECK(errOf(host.call("flock " + fh + " sh nb")) == EWOULDBLOCK);

  // So does closing the descriptor.
  REQUIRE(ok(b.call("close " + fb)));
  CHECK(ok(callUntilOk(a, "flock " + fa + " ex nb", kReleaseGrace)));
  CHECK(errOf(host.call("flock " + fh + " ex nb")) == EWOULDBLOCK);
  REQUIRE(ok(a.call("close " + fa)));
  CHECK(ok(callUntilOk(host, "flock " + fh + " ex nb", kReleaseGrace)));

  // And a host process's flock keeps the enclaves out.
  fa = a.open(s.inA("f"));
  CHECK(errOf(a.call("flock " + fa + " sh nb")) == EWOULDBLOCK);
  REQUIRE(ok(host.call("flock " + fh + " un")));
  CHECK(ok(a.call("flock " + fa + " ex nb")));
}

TEST_CASE("flock LOCK_SH in both enclaves and on the host coexist and keep LOCK_EX out") {
  Shared s;
  writeFile(s.h("f"), "content");
  Agent a("A"), b("B"), host("host");
  std::string fa = a.open(s.inA("f"), "ro");
  std::string fb = b.open(s.inB("f"), "ro");
  std::string fh = host.open(s.h("f"), "ro");

  CHECK(ok(a.call("flock " + fa + " sh nb")));
  CHECK(ok(b.call("flock " + fb + " sh nb")));
  CHECK(ok(host.call("flock " + fh + " sh nb")));

  Agent b2("B2"), host2("host2");
  std::string fb2 = b2.open(s.inB("f"));
  std::string fh2 = host2.open(s.h("f"));
  CHECK(errOf(b2.call("flock " + fb2 + " ex nb")) == EWOULDBLOCK);
  CHECK(errOf(host2.call("flock " + fh2 + " ex nb")) == EWOULDBLOCK);

  // Once every shared lock is gone the exclusive one is granted.
  REQUIRE(ok(a.call("flock " + fa + " un")));
  REQUIRE(ok(b.call("flock " + fb + " un")));
  CHECK(errOf(b2.call("flock " + fb2 + " ex nb")) == EWOULDBLOCK);  // the host still shares
  REQUIRE(ok(host.call("flock " + fh + " un")));
  CHECK(ok(b2.call("flock " + fb2 + " ex nb")));
}

TEST_CASE("a blocking flock in one enclave waits for the other enclave's release and then returns at once") {
  Shared s;
  writeFile(s.h("f"), "content");
  Agent a("A"), b("B");
  std::string fa = a.open(s.inA("f"));
  std::string fb = b.open(s.inB("f"));

  REQUIRE(ok(a.call("flock " + fa + " ex")));
  b.send("flock " + fb + " ex");
  // It waits while A holds the lock...
  CHECK_FALSE(b.answer(400ms).has_value());
  std::this_thread::sleep_for(300ms);  // long enough for the host's retry timer to be at its longest
  const std::int64_t released = monotonicNs();
  REQUIRE(ok(a.call("flock " + fa + " un")));
  // ...and returns soon after the release, not before.
  auto got = b.answer(5s);
  REQUIRE(got.has_value());
  REQUIRE(ok(*got));
  const std::int64_t returned = stampOf(*got);
  CHECK(returned >= released);
  CHECK(returned - released < 1'000'000'000);
  MESSAGE("blocking flock returned " << (returned - released) / 1'000'000 << " ms after the release");
  CHECK(errOf(a.call("flock " + fa + " ex nb")) == EWOULDBLOCK);

  // The same for a host process's lock.
  Agent host("host");
  std::string fh = host.open(s.h("f"));
  REQUIRE(ok(b.call("flock " + fb + " un")));
  REQUIRE(ok(host.call("flock " + fh + " ex nb")));
  a.send("flock " + fa + " sh");
  CHECK_FALSE(a.answer(300ms).has_value());
  const std::int64_t hostReleased = monotonicNs();
  REQUIRE(ok(host.call("flock " + fh + " un")));
  got = a.answer(5s);
  REQUIRE(got.has_value());
  REQUIRE(ok(*got));
  CHECK(stampOf(*got) >= hostReleased);
  CHECK(stampOf(*got) - hostReleased < 1'000'000'000);
}

// ---- POSIX byte-range locks ----------------------------------------------------------------

TEST_CASE("a POSIX write lock on a byte range conflicts across enclaves and with the host, and only on that range") {
  Shared s;
  writeFile(s.h("f"), std::string(4096, 'x'));
  Agent a("A"), b("B"), host("host");
  std::string fa = a.open(s.inA("f"));
  std::string fb = b.open(s.inB("f"));
  std::string fh = host.open(s.h("f"));

  REQUIRE(ok(a.call("setlk " + fa + " w 100 100")));  // bytes 100..199

  // B: the overlapping ranges fail, the ranges beside it succeed.
  CHECK(lockConflict(b.call("setlk " + fb + " w 150 10")));
  CHECK(lockConflict(b.call("setlk " + fb + " r 0 101")));
  CHECK(lockConflict(b.call("setlk " + fb + " w 199 1")));
  CHECK(lockConflict(b.call("setlk " + fb + " r 50 0")));  // 50 to end of file
  CHECK(ok(b.call("setlk " + fb + " w 0 100")));   // 0..99
  CHECK(ok(b.call("setlk " + fb + " w 200 50")));  // 200..249

  // F_GETLK in B names A's lock: its type and range (its pid is not visible across).
  CHECK(b.call("getlk " + fb + " w 0 1000").rfind("ok w 100 100 ", 0) == 0);
  CHECK(b.call("getlk " + fb + " r 120 1").rfind("ok w 100 100 ", 0) == 0);
  CHECK(b.call("getlk " + fb + " w 300 10") == "ok unlocked");
  // B's own locks are not a conflict for B.
  CHECK(b.call("getlk " + fb + " w 0 100") == "ok unlocked");

  // The host sees A's (and B's) locks too.
  CHECK(lockConflict(host.call("setlk " + fh + " w 100 100")));
  CHECK(lockConflict(host.call("setlk " + fh + " r 199 1")));
  CHECK(lockConflict(host.call("setlk " + fh + " r 0 1")));  // B's
  CHECK(ok(host.call("setlk " + fh + " w 300 10")));
  CHECK(host.call("getlk " + fh + " w 150 1").rfind("ok w 100 100 ", 0) == 0);

  // A sees the host's and B's locks.
  CHECK(lockConflict(a.call("setlk " + fa + " w 300 1")));
  CHECK(lockConflict(a.call("setlk " + fa + " r 0 1")));
  CHECK(a.call("getlk " + fa + " w 305 100").rfind("ok w 300 10 ", 0) == 0);

  // Unlocking a range frees exactly that range.
  REQUIRE(ok(a.call("setlk " + fa + " u 100 50")));  // A keeps 150..199
  CHECK(ok(b.call("setlk " + fb + " w 100 50")));
  CHECK(lockConflict(b.call("setlk " + fb + " w 150 1")));
  CHECK(b.call("getlk " + fb + " w 100 200").rfind("ok w 150 50 ", 0) == 0);
}

TEST_CASE("a POSIX lock held by a host process makes an enclave's F_SETLK fail") {
  Shared s;
  writeFile(s.h("f"), std::string(4096, 'x'));
  Agent a("A"), host("host");
  std::string fa = a.open(s.inA("f"));
  std::string fh = host.open(s.h("f"));

  REQUIRE(ok(host.call("setlk " + fh + " w 0 0")));  // the whole file
  CHECK(lockConflict(a.call("setlk " + fa + " w 10 10")));
  CHECK(lockConflict(a.call("setlk " + fa + " r 4000 100")));
  std::string g = a.call("getlk " + fa + " r 10 10");
  CHECK(g.rfind("ok w 0 0 ", 0) == 0);

  // A read lock on the host lets enclaves read-lock, not write-lock.
  REQUIRE(ok(host.call("setlk " + fh + " r 0 0")));
  CHECK(ok(a.call("setlk " + fa + " r 10 10")));
  CHECK(lockConflict(a.call("setlk " + fa + " w 20 10")));

  REQUIRE(ok(host.call("setlk " + fh + " u 0 0")));
  CHECK(ok(a.call("setlk " + fa + " w 0 0")));
  CHECK(lockConflict(host.call("setlk " + fh + " r 0 1")));
}

TEST_CASE("F_SETLKW in one enclave blocks until the other enclave releases the range, then succeeds") {
  Shared s;
  writeFile(s.h("f"), std::string(4096, 'x'));
  Agent a("A"), b("B");
  std::string fa = a.open(s.inA("f"));
  std::string fb = b.open(s.inB("f"));

  REQUIRE(ok(a.call("setlk " + fa + " w 0 1000")));
  b.send("setlk " + fb + " w 500 10 wait");
  CHECK_FALSE(b.answer(500ms).has_value());
  const std::int64_t released = monotonicNs();
  REQUIRE(ok(a.call("setlk " + fa + " u 0 1000")));
  auto got = b.answer(5s);
  REQUIRE(got.has_value());
  REQUIRE(ok(*got));
  CHECK(stampOf(*got) >= released);
  CHECK(stampOf(*got) - released < 1'000'000'000);
  MESSAGE("F_SETLKW returned " << (stampOf(*got) - released) / 1'000'000 << " ms after the release");
  // B holds it now.
  CHECK(lockConflict(a.call("setlk " + fa + " r 505 1")));
  CHECK(ok(a.call("setlk " + fa + " r 0 500")));

  // A waiter whose holder exits (instead of unlocking) is woken as well.
  Agent a2("A2");
  std::string fa2 = a2.open(s.inA("f"));
  REQUIRE(ok(a2.call("setlk " + fa2 + " w 2000 10")));
  b.send("setlk " + fb + " r 2005 1 wait");
  CHECK_FALSE(b.answer(300ms).has_value());
  const std::int64_t killed = monotonicNs();
  a2.kill();
  got = b.answer(5s);
  REQUIRE(got.has_value());
  CHECK(ok(*got));
  if (ok(*got)) CHECK(stampOf(*got) - killed < 1'000'000'000);
}

TEST_CASE("closing any descriptor of a file drops the process's POSIX locks on it, also for the other enclave") {
  Shared s;
  writeFile(s.h("f"), std::string(4096, 'x'));
  Agent a("A"), b("B"), host("host");
  std::string fa1 = a.open(s.inA("f"));
  std::string fa2 = a.open(s.inA("f"), "ro");
  std::string fb = b.open(s.inB("f"));
  std::string fh = host.open(s.h("f"));

  REQUIRE(ok(a.call("setlk " + fa1 + " w 0 100")));
  REQUIRE(lockConflict(b.call("setlk " + fb + " w 0 100")));
  REQUIRE(lockConflict(host.call("setlk " + fh + " w 0 100")));

  // fd1, which carries the lock, stays open; closing fd2 ends the lock.
  REQUIRE(ok(a.call("close " + fa2)));
  CHECK(ok(b.call("setlk " + fb + " w 0 100")));
  CHECK(ok(b.call("setlk " + fb + " u 0 100")));
  CHECK(ok(host.call("setlk " + fh + " w 0 100")));
  CHECK(ok(host.call("setlk " + fh + " u 0 100")));

  // Another process closing its own descriptor of the file leaves A's locks alone.
  REQUIRE(ok(a.call("setlk " + fa1 + " w 0 100")));
  Agent a2("A2");
  std::string fa3 = a2.open(s.inA("f"));
  REQUIRE(ok(a2.call("close " + fa3)));
  CHECK(lockConflict(b.call("setlk " + fb + " w 0 100")));

  // The lock is A's, not fd1's: a descriptor opened later and closed drops it as well.
  std::string fa4 = a.open(s.inA("f"));
  REQUIRE(ok(a.call("close " + fa4)));
  CHECK(ok(b.call("setlk " + fb + " w 0 100")));
}

// ---- OFD locks -------------------------------------------------------------------------------

TEST_CASE("OFD locks conflict with the other enclave's OFD and POSIX locks and end with the last descriptor") {
  Shared s;
  writeFile(s.h("f"), std::string(4096, 'x'));
  Agent a("A"), b("B"), host("host");
  std::string fa = a.open(s.inA("f"));
  std::string fb = b.open(s.inB("f"));
  std::string fh = host.open(s.h("f"));

  REQUIRE(ok(a.call("setlk " + fa + " w 0 100 ofd")));
  CHECK(lockConflict(b.call("setlk " + fb + " w 50 1 ofd")));
  CHECK(lockConflict(b.call("setlk " + fb + " r 0 10")));  // POSIX
  CHECK(lockConflict(host.call("setlk " + fh + " r 99 1 ofd")));
  CHECK(lockConflict(host.call("setlk " + fh + " w 0 1")));
  CHECK(ok(b.call("setlk " + fb + " w 100 10 ofd")));
  CHECK(b.call("getlk " + fb + " r 0 200 ofd").rfind("ok w 0 100 ", 0) == 0);
  CHECK(b.call("getlk " + fb + " r 0 200").rfind("ok w 0 100 ", 0) == 0);

  // An OFD lock belongs to the open file description, not the process: another open in the
  // same process conflicts with it...
  std::string fa2 = a.open(s.inA("f"));
  CHECK(lockConflict(a.call("setlk " + fa2 + " w 10 1 ofd")));
  // ...and closing that other descriptor does not release it (unlike a POSIX lock).
  REQUIRE(ok(a.call("close " + fa2)));
  CHECK(lockConflict(b.call("setlk " + fb + " w 0 1 ofd")));

  // A's POSIX locks conflict with B's OFD lock.
  CHECK(lockConflict(a.call("setlk " + fa + " w 105 1")));

  // Closing the description's last descriptor releases it.
  REQUIRE(ok(a.call("close " + fa)));
  CHECK(ok(callUntilOk(b, "setlk " + fb + " w 0 100 ofd", kReleaseGrace)));
  CHECK(lockConflict(host.call("setlk " + fh + " r 0 1")));
}

// ---- read locks ------------------------------------------------------------------------------

TEST_CASE("read locks are shared by readers in both enclaves and the host, and refuse a writer") {
  Shared s;
  writeFile(s.h("f"), std::string(4096, 'x'));
  Agent a("A"), b("B"), host("host"), writerA("writerA"), writerB("writerB");
  std::string fa = a.open(s.inA("f"), "ro");
  std::string fb = b.open(s.inB("f"), "ro");
  std::string fh = host.open(s.h("f"), "ro");
  std::string fwa = writerA.open(s.inA("f"));
  std::string fwb = writerB.open(s.inB("f"));

  CHECK(ok(a.call("setlk " + fa + " r 0 1000")));
  CHECK(ok(b.call("setlk " + fb + " r 500 1000")));
  CHECK(ok(host.call("setlk " + fh + " r 0 0")));
  // A reader's F_GETLK for a read lock sees no conflict; for a write lock, a read lock.
  CHECK(b.call("getlk " + fb + " r 0 100") == "ok unlocked");
  CHECK(b.call("getlk " + fb + " w 0 100").rfind("ok r ", 0) == 0);

  CHECK(lockConflict(writerA.call("setlk " + fwa + " w 0 1")));
  CHECK(lockConflict(writerB.call("setlk " + fwb + " w 1200 1")));
  CHECK(lockConflict(writerB.call("setlk " + fwb + " w 0 1 ofd")));
  // Writer in the same enclave as a reader too.
  CHECK(lockConflict(writerB.call("setlk " + fwb + " w 600 1")));
  CHECK(ok(writerA.call("setlk " + fwa + " r 0 10")));

  // Readers go, one by one; the writer is refused until the last one is gone.
  REQUIRE(ok(host.call("setlk " + fh + " u 0 0")));
  CHECK(lockConflict(writerB.call("setlk " + fwb + " w 1200 1")));  // B's read lock
  REQUIRE(ok(b.call("close " + fb)));  // POSIX: ends at close() (flush), no grace
  CHECK(ok(writerB.call("setlk " + fwb + " w 1200 1")));
  CHECK(lockConflict(writerB.call("setlk " + fwb + " w 0 1")));  // A's and writerA's
  REQUIRE(ok(a.call("setlk " + fa + " u 0 1000")));
  CHECK(lockConflict(writerB.call("setlk " + fwb + " w 0 1")));  // writerA's
  REQUIRE(ok(writerA.call("setlk " + fwa + " u 0 10")));
  CHECK(ok(writerB.call("setlk " + fwb + " w 0 1")));

  // flock: shared readers, refused writer.
  Agent c("C");
  std::string fc = c.open(s.inA("f"), "ro");
  CHECK(ok(a.call("flock " + fa + " sh nb")));
  CHECK(ok(c.call("flock " + fc + " sh nb")));
  CHECK(errOf(writerB.call("flock " + fwb + " ex nb")) == EWOULDBLOCK);
}

// ---- disconnect ------------------------------------------------------------------------------

TEST_CASE("an enclave that dies loses its flock and POSIX locks to the other enclave and the host") {
  Shared s;
  writeFile(s.h("f"), std::string(4096, 'x'));
  writeFile(s.h("g"), "content");
  Agent a("A"), b("B"), host("host");
  std::string fa = a.open(s.inA("f"));
  std::string ga = a.open(s.inA("g"));
  std::string fb = b.open(s.inB("f"));
  std::string gb = b.open(s.inB("g"));
  std::string fh = host.open(s.h("f"));
  std::string gh = host.open(s.h("g"));

  REQUIRE(ok(a.call("setlk " + fa + " w 0 0")));
  REQUIRE(ok(a.call("flock " + ga + " ex nb")));
  REQUIRE(lockConflict(b.call("setlk " + fb + " w 0 1")));
  REQUIRE(errOf(b.call("flock " + gb + " ex nb")) == EWOULDBLOCK);
  // A waiter in B, parked on the host, must be woken by the disconnect too.
  Agent waiter("waiterB");
  std::string fw = waiter.open(s.inB("f"));
  waiter.send("setlk " + fw + " r 10 1 wait");
  CHECK_FALSE(waiter.answer(200ms).has_value());

  // kill -9 the enclave's daemon, and detach its mount (the process in A keeps its
  // descriptors, which now lead nowhere).
  std::vector<pid_t> daemons = mountDaemonsOf(s.mntA);
  REQUIRE(daemons.size() == 1);
  REQUIRE(::kill(daemons[0], SIGKILL) == 0);
  const auto killed = std::chrono::steady_clock::now();
  REQUIRE(::umount2(s.mntA.c_str(), MNT_DETACH) == 0);

  // Within a couple of seconds both locks are free for B and the host.
  CHECK(ok(callUntilOk(b, "flock " + gb + " ex nb", 3s)));
  CHECK(ok(callUntilOk(b, "setlk " + fb + " w 100 10", 3s)));
  CHECK(ok(callUntilOk(host, "setlk " + fh + " w 0 10", 3s)));
  CHECK(std::chrono::steady_clock::now() - killed < 3s);
  auto woke = waiter.answer(3s);
  REQUIRE(woke.has_value());
  CHECK(ok(*woke));
  CHECK(errOf(host.call("flock " + gh + " ex nb")) == EWOULDBLOCK);  // B holds it now
  REQUIRE(ok(b.call("flock " + gb + " un")));
  CHECK(ok(host.call("flock " + gh + " ex nb")));
  a.kill();
}

// ---- coherence under locks -------------------------------------------------------------------

TEST_CASE("what one enclave wrote under a lock is what the other enclave reads once it holds the lock") {
  Shared s;
  constexpr int kRounds = 300;
  for (auto [useFlock, spin] : {std::pair{false, false}, std::pair{true, false},
                                std::pair{false, true}, std::pair{true, true}}) {
    CAPTURE(useFlock);
    CAPTURE(spin);
    writeFile(s.h("counter"), std::string(12, ' '));
    auto inA = std::async(std::launch::async, [&] {
      return inChild([&] { return incrementUnderLock(s.inA("counter"), kRounds, useFlock, spin); });
    });
    auto inB = std::async(std::launch::async, [&] {
      return inChild([&] { return incrementUnderLock(s.inB("counter"), kRounds, useFlock, spin); });
    });
    CHECK(inA.get() == 0);
    CHECK(inB.get() == 0);
    // A lost increment is a read of stale data after the lock was granted.
    CHECK(std::stoll(readFile(s.h("counter"))) == 2 * kRounds);
  }
}

// ---- SQLite ----------------------------------------------------------------------------------

TEST_CASE("SQLite in rollback-journal mode works on a mount") {
  if (!havePythonSqlite()) {
    MESSAGE("SKIPPED: python3 with its sqlite3 module is not installed");
    return;
  }
  Shared s;
  RunResult r = python(kSqliteSingle, {s.inA("db.sqlite"), "delete", "50", "20"});
  INFO(r.output);
  CHECK(r.exitCode == 0);
  CHECK(r.output.find("OK") != std::string::npos);
  // The host reads the same database.
  RunResult h = python(kSqliteCount, {s.h("db.sqlite")});
  INFO(h.output);
  CHECK(h.exitCode == 0);
  CHECK(h.output == "rows 1000\nintegrity ok\n");
}

TEST_CASE("SQLite in WAL mode works on a mount") {
  if (!havePythonSqlite()) {
    MESSAGE("SKIPPED: python3 with its sqlite3 module is not installed");
    return;
  }
  Shared s;
  RunResult r = python(kSqliteSingle, {s.inA("db.sqlite"), "wal", "50", "20"});
  INFO(r.output);
  CHECK(r.exitCode == 0);
  CHECK(r.output.find("OK") != std::string::npos);
  // Read back through the other mount as well.
  RunResult b = python(kSqliteCount, {s.inB("db.sqlite")});
  INFO(b.output);
  CHECK(b.exitCode == 0);
  CHECK(b.output == "rows 1000\nintegrity ok\n");
}

TEST_CASE("SQLite writers in two enclaves share one rollback-journal database without losing a transaction") {
  if (!havePythonSqlite()) {
    MESSAGE("SKIPPED: python3 with its sqlite3 module is not installed");
    return;
  }
  Shared s;
  RunResult c = python(kSqliteCreate, {s.inA("db.sqlite")});
  INFO(c.output);
  REQUIRE(c.exitCode == 0);

  constexpr int kTxns = 200;
  constexpr int kEach = 3;
  auto writer = [&](std::string path, std::string tag) {
    return python(kSqliteWriter, {path, tag, std::to_string(kTxns), std::to_string(kEach)}, 120s);
  };
  auto start = std::chrono::steady_clock::now();
  auto fromA = std::async(std::launch::async, writer, s.inA("db.sqlite"), "A");
  auto fromB = std::async(std::launch::async, writer, s.inB("db.sqlite"), "B");
  RunResult ra = fromA.get();
  RunResult rb = fromB.get();
  MESSAGE("two writers took " << std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now() - start)
                                     .count()
                              << " ms");
  INFO("writer A: " << ra.output);
  INFO("writer B: " << rb.output);
  CHECK(ra.exitCode == 0);
  CHECK(rb.exitCode == 0);

  // Read on the host, the authority; and through both mounts.
  const std::string expected = "A " + std::to_string(kTxns) + " " + std::to_string(kTxns * kEach) +
                               "\nB " + std::to_string(kTxns) + " " + std::to_string(kTxns * kEach) +
                               "\nintegrity ok\n";
  for (const std::string& path : {s.h("db.sqlite"), s.inA("db.sqlite"), s.inB("db.sqlite")}) {
    RunResult sum = python(kSqliteSummary, {path});
    INFO(path);
    CHECK(sum.exitCode == 0);
    CHECK(sum.output == expected);
  }
}
