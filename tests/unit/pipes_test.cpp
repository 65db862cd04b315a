// The pool of pipes large reads are spliced through (host-server/pipes.h).
#include "host-server/pipes.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <optional>
#include <vector>

#include "common/hard_limits.h"

using enclavefs::host::PipedBytes;
using enclavefs::host::PipePool;
namespace limits = enclavefs::limits;

namespace {

// Puts `n` bytes into the pipe, as a read would.
void fill(PipedBytes& piped, std::size_t n) {
  std::vector<char> bytes(n, 'p');
  REQUIRE(::write(piped.writeEnd(), bytes.data(), n) == static_cast<ssize_t>(n));
  piped.size += n;
}

// Takes them out again, as the send would.
void drain(PipedBytes& piped) {
  std::vector<char> bytes(piped.size - piped.sent);
  REQUIRE(::read(piped.readEnd(), bytes.data(), bytes.size()) ==
          static_cast<ssize_t>(bytes.size()));
  piped.sent = piped.size;
}

bool isOpen(int fd) { return ::fcntl(fd, F_GETFD) >= 0; }

}  // namespace

TEST_CASE("each pipe holds the largest payload") {
  PipePool pool;
  auto piped = pool.take();
  REQUIRE(piped);
  CHECK(::fcntl(piped->writeEnd(), F_GETPIPE_SZ) >= static_cast<int>(limits::kMaxPayloadBytes));
  fill(*piped, limits::kMaxPayloadBytes);  // would block (and hang the test) if it could not
}

TEST_CASE("no more than kMaxPipesInUse pipes are handed out at once") {
  PipePool pool;
  std::vector<PipedBytes> taken;
  for (std::size_t i = 0; i < PipePool::kMaxPipesInUse; ++i) {
    auto piped = pool.take();
    REQUIRE(piped);
    taken.push_back(std::move(*piped));
  }
  CHECK_FALSE(pool.take());
  taken.pop_back();  // empty: back in the pool
  CHECK(pool.take());
}

TEST_CASE("an emptied pipe is used again; one with bytes left in it is closed") {
  PipePool pool;
  int emptiedEnd = -1;
  {
    auto piped = pool.take();
    REQUIRE(piped);
    fill(*piped, 70000);
    drain(*piped);
    emptiedEnd = piped->readEnd();
  }
  int leftEnd = -1;
  {
    auto piped = pool.take();
    REQUIRE(piped);
    CHECK(piped->readEnd() == emptiedEnd);  // the same pipe, and nothing in it
    int queued = -1;
    REQUIRE(::ioctl(piped->readEnd(), FIONREAD, &queued) == 0);
    CHECK(queued == 0);
    fill(*piped, 70000);
    leftEnd = piped->readEnd();
  }
  CHECK_FALSE(isOpen(leftEnd));
  auto fresh = pool.take();
  REQUIRE(fresh);
  int queued = -1;
  REQUIRE(::ioctl(fresh->readEnd(), FIONREAD, &queued) == 0);
  CHECK(queued == 0);
}

TEST_CASE("moving a piped payload hands its pipe on once") {
  PipePool pool;
  auto piped = pool.take();
  REQUIRE(piped);
  const int end = piped->readEnd();
  PipedBytes moved = std::move(*piped);
  piped.reset();  // the moved-from object gives nothing back
  CHECK(isOpen(end));
  CHECK(moved.readEnd() == end);
}
