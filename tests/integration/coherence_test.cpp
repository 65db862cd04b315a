// Coherence between mounts and the host: with the default (long) cache timeouts, a change made
// through one mount or on the host becomes visible in another mount within 100 ms, because
// the host pushes invalidations. The bound is measured over 100 changes.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "support/harness.h"
#include "support/require_root.h"

using namespace enclavefs::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kBound = 100ms;

struct TwoMounts {
  TwoMounts()
      : server(dir / "sock", {"--export", "data=" + made("export")}),
        a(server.address(), "data", made("a")),
        b(server.address(), "data", made("b")) {}

  std::string made(const std::string& name) {
    ::mkdir((dir / name).c_str(), 0755);
    return dir / name;
  }
  std::string host(const std::string& name) const { return dir / ("export/" + name); }

  TempDir dir;
  HostServer server;
  Mount a;
  Mount b;
};

std::string contentOf(const std::string& path) {
  try {
    return readFile(path);
  } catch (const std::exception&) {
    return "<missing>";
  }
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// How long until `seen` holds, polling every 200 µs; fails the test past one second.
std::chrono::microseconds untilSeen(const std::function<bool()>& seen) {
  auto start = Clock::now();
  while (!seen()) {
    if (Clock::now() - start > 1s) {
      FAIL("the change was not seen within a second");
      break;
    }
    ::usleep(200);
  }
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
}

}  // namespace

TEST_CASE("what one mount writes, the other mount reads, though both cache for long") {
  TwoMounts m;
  writeFile(m.a / "shared", "first");
  CHECK(untilSeen([&] { return contentOf(m.b / "shared") == "first"; }) < kBound);
  // Now cached in B; a change through A must drop B's cached pages.
  writeFile(m.a / "shared", "second, longer");
  CHECK(untilSeen([&] { return contentOf(m.b / "shared") == "second, longer"; }) < kBound);
}

TEST_CASE("a rename on the host is seen in a mount that has the old name cached") {
  TwoMounts m;
  writeFile(m.host("old"), "x");
  REQUIRE(exists(m.a / "old"));
  REQUIRE_FALSE(exists(m.a / "new"));  // a cached negative entry for the new name
  REQUIRE(::rename(m.host("old").c_str(), m.host("new").c_str()) == 0);
  CHECK(untilSeen([&] { return !exists(m.a / "old") && exists(m.a / "new"); }) < kBound);
}

TEST_CASE("attributes changed on the host are seen in a mount that cached them") {
  TwoMounts m;
  writeFile(m.host("f"), "x");
  struct stat st;
  REQUIRE(::stat((m.a / "f").c_str(), &st) == 0);
  REQUIRE((st.st_mode & 07777) == 0644);
  REQUIRE(::chmod(m.host("f").c_str(), 0600) == 0);
  CHECK(untilSeen([&] {
          return ::stat((m.a / "f").c_str(), &st) == 0 && (st.st_mode & 07777) == 0600;
        }) < kBound);
}

TEST_CASE("100 changes, on the host and through the other mount, are each seen within 100 ms") {
  TwoMounts m;
  writeFile(m.host("counter"), "start");
  REQUIRE(contentOf(m.a / "counter") == "start");
  std::vector<std::chrono::microseconds> latencies;
  for (int i = 0; i < 100; ++i) {
    const std::string value = "value " + std::to_string(i);
    // Alternate the writer: a host process, and another enclave's mount.
    writeFile(i % 2 == 0 ? m.host("counter") : m.b / "counter", value);
    latencies.push_back(untilSeen([&] { return contentOf(m.a / "counter") == value; }));
  }
  std::sort(latencies.begin(), latencies.end());
  auto median = latencies[latencies.size() / 2];
  auto worst = latencies.back();
  MESSAGE("visibility over 100 changes: median " << median.count() << " us, worst "
                                                 << worst.count() << " us");
  std::printf("coherence: median %lld us, worst %lld us over %zu changes\n",
              static_cast<long long>(median.count()), static_cast<long long>(worst.count()),
              latencies.size());
  CHECK(median < kBound);
  CHECK(worst < kBound);
}
