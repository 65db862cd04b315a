// Windows of a volume kept around small reads (read_around.h).
#include "enclave-fs/read_around.h"

#include <doctest/doctest.h>

#include <vector>

using enclavefs::enclave::ReadAround;

namespace {

constexpr std::uint64_t kWindow = ReadAround::kWindowBytes;

// The volume's bytes in [offset, offset + length), as the host would send them.
std::vector<std::byte> volumeBytes(std::uint64_t offset, std::uint32_t length) {
  std::vector<std::byte> out(length);
  for (std::uint32_t i = 0; i < length; ++i) out[i] = static_cast<std::byte>((offset + i) / 4096 % 251);
  return out;
}

// A read that misses and is answered: fetches its window when it qualifies.
void readFromHost(ReadAround& cache, std::uint64_t offset, std::uint32_t length) {
  if (auto fetch = cache.around(offset, length)) {
    cache.fetched(*fetch, volumeBytes(fetch->offset, fetch->length));
  }
}

}  // namespace

TEST_CASE("small reads that follow each other fetch their window, and the next reads are kept") {
  ReadAround cache(1 << 30);
  CHECK_FALSE(cache.kept(10 * kWindow, 4096));
  // The first read has nothing before it: it goes as it is.
  CHECK_FALSE(cache.around(10 * kWindow, 4096));
  // The next, near it, fetches the aligned window around it.
  auto fetch = cache.around(10 * kWindow + 4096, 4096);
  REQUIRE(fetch);
  CHECK(fetch->offset == 10 * kWindow);
  CHECK(fetch->length == kWindow);
  cache.fetched(*fetch, volumeBytes(fetch->offset, fetch->length));
  CHECK(cache.keptBytes() == kWindow);
  for (std::uint64_t at = 10 * kWindow; at < 11 * kWindow; at += 4096) {
    auto slice = cache.kept(at, 4096);
    REQUIRE(slice);
    CHECK(std::vector<std::byte>(slice->view.begin(), slice->view.end()) == volumeBytes(at, 4096));
  }
  // A read that crosses the window's end is not answered from it.
  CHECK_FALSE(cache.kept(11 * kWindow - 4096, 8192));
}

TEST_CASE("reads that wander over the volume fetch nothing more than they ask") {
  ReadAround cache(1 << 30);
  for (std::uint64_t i = 0; i < 100; ++i) {
    const std::uint64_t offset = (i * 7919 % 4096) * kWindow;  // far from each other
    CHECK_FALSE(cache.around(offset, 4096));
  }
  CHECK(cache.keptBytes() == 0);
  // Large reads (the kernel's read-ahead) never qualify.
  CHECK_FALSE(cache.around(0, 1 << 20));
  CHECK_FALSE(cache.around(1 << 20, kWindow));
}

TEST_CASE("a write, trim or zeroing drops what it touches, and spoils a window being fetched") {
  ReadAround cache(1 << 30);
  readFromHost(cache, 0, 4096);
  readFromHost(cache, 4096, 4096);
  readFromHost(cache, kWindow, 4096);
  REQUIRE(cache.kept(8192, 4096));
  REQUIRE(cache.kept(kWindow + 8192, 4096));

  const std::uint64_t change = cache.changing(kWindow - 512, 1024);  // touches both windows
  CHECK_FALSE(cache.kept(8192, 4096));
  CHECK_FALSE(cache.kept(kWindow + 8192, 4096));
  // While the change is on its way, its windows are not fetched.
  CHECK_FALSE(cache.around(8192, 4096));
  cache.changed(change);
  auto fetch = cache.around(12288, 4096);
  REQUIRE(fetch);
  // A change sent while the window is fetched: the host may have read it before.
  cache.changed(cache.changing(fetch->offset + 4096, 4096));
  cache.fetched(*fetch, volumeBytes(fetch->offset, fetch->length));
  CHECK_FALSE(cache.kept(16384, 4096));
  // A change elsewhere leaves a window alone.
  fetch = cache.around(20480, 4096);
  REQUIRE(fetch);
  cache.changed(cache.changing(100 * kWindow, 4096));
  cache.fetched(*fetch, volumeBytes(fetch->offset, fetch->length));
  CHECK(cache.kept(16384, 4096));
}

TEST_CASE("a failed or short fetch keeps nothing; one window is fetched at a time") {
  ReadAround cache(1 << 30);
  CHECK_FALSE(cache.around(0, 4096));
  auto fetch = cache.around(4096, 4096);
  REQUIRE(fetch);
  CHECK_FALSE(cache.around(8192, 4096));  // its window is already on its way
  cache.fetched(*fetch, {});
  CHECK(cache.keptBytes() == 0);
  fetch = cache.around(8192, 4096);
  REQUIRE(fetch);
  cache.fetched(*fetch, volumeBytes(0, 4096));
  CHECK(cache.keptBytes() == 0);
}

TEST_CASE("the window at the volume's end stops there, and the budget holds") {
  const std::uint64_t size = 3 * kWindow + 8192;
  ReadAround end(size);
  CHECK_FALSE(end.around(3 * kWindow, 4096));
  auto fetch = end.around(3 * kWindow + 4096, 4096);
  REQUIRE(fetch);
  CHECK(fetch->length == 8192);

  ReadAround cache(1ull << 40);
  const std::size_t windows = ReadAround::kBudgetBytes / kWindow;
  readFromHost(cache, 0, 4096);
  for (std::uint64_t w = 0; w < windows + 10; ++w) readFromHost(cache, w * kWindow + 4096, 4096);
  CHECK(cache.keptBytes() == ReadAround::kBudgetBytes);
  CHECK_FALSE(cache.kept(0, 4096));  // the least recently used went first
  CHECK(cache.kept((windows + 9) * kWindow, 4096));
}
