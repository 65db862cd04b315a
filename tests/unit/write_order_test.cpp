// The host's write order (host-server/write_order.h): requests wait for the writes that
// arrived before them, writes run one at a time, and nothing waits when nothing is written.
#include "host-server/write_order.h"

#include <doctest/doctest.h>

#include <coroutine>
#include <string>
#include <vector>

#include "host-server/uring.h"

using enclavefs::host::Detached;
using enclavefs::host::WriteOrder;

namespace {

// Stands for the I/O a request waits for: suspends until open() is called.
struct Gate {
  std::coroutine_handle<> waiter;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) { waiter = h; }
  void await_resume() const noexcept {}
  void open() { std::exchange(waiter, {}).resume(); }
};

// A request as Session::serve runs it, logging when it starts and ends.
Detached request(WriteOrder& order, std::vector<std::string>& log, std::string name,
                 bool isWrite, Gate* io) {
  co_await order.turn(isWrite);
  log.push_back(name + " starts");
  if (io != nullptr) co_await *io;
  log.push_back(name + " ends");
  if (isWrite) order.finished();
}

}  // namespace

TEST_CASE("a request waits for the writes that arrived before it, and writes run in order") {
  WriteOrder order;
  std::vector<std::string> log;
  Gate writeA, writeC, readE;
  request(order, log, "write A", true, &writeA);
  request(order, log, "read B", false, nullptr);
  request(order, log, "write C", true, &writeC);
  request(order, log, "read D", false, nullptr);
  CHECK(log == std::vector<std::string>{"write A starts"});

  writeA.open();
  CHECK(log == std::vector<std::string>{"write A starts", "write A ends", "read B starts",
                                        "read B ends", "write C starts"});
  log.clear();
  // A request arriving now queues behind the waiting read, though it is no write.
  request(order, log, "read E", false, &readE);
  CHECK(log.empty());
  writeC.open();
  CHECK(log == std::vector<std::string>{"write C ends", "read D starts", "read D ends",
                                        "read E starts"});
  log.clear();
  // A read in progress holds back nothing: a write starts, and a write that finishes at
  // once lets the next request start at once too.
  request(order, log, "write F", true, nullptr);
  request(order, log, "read G", false, nullptr);
  CHECK(log == std::vector<std::string>{"write F starts", "write F ends", "read G starts",
                                        "read G ends"});
  readE.open();
  CHECK(log.back() == "read E ends");
}

TEST_CASE("writes that finish inline let every waiting request through in order") {
  WriteOrder order;
  std::vector<std::string> log;
  Gate first;
  request(order, log, "write 1", true, &first);
  for (int i = 2; i <= 5; ++i) request(order, log, "write " + std::to_string(i), true, nullptr);
  request(order, log, "read 6", false, nullptr);
  first.open();
  std::vector<std::string> expected;
  for (int i = 1; i <= 5; ++i) {
    expected.push_back("write " + std::to_string(i) + " starts");
    expected.push_back("write " + std::to_string(i) + " ends");
  }
  expected.insert(expected.end(), {"read 6 starts", "read 6 ends"});
  CHECK(log == expected);
}
