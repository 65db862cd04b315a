// File bytes that come with an open, kept for the next read (enclave-fs/open_data.h).
#include "enclave-fs/open_data.h"

#include <doctest/doctest.h>

#include <string>

#include "common/hard_limits.h"

using enclavefs::enclave::OpenData;
namespace limits = enclavefs::limits;

namespace {

std::vector<std::byte> bytesOf(const std::string& s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return {p, p + s.size()};
}

std::string stringOf(const std::optional<OpenData::Slice>& slice) {
  REQUIRE(slice.has_value());
  return {reinterpret_cast<const char*>(slice->view.data()), slice->view.size()};
}

// An open of `node` that asked for data and got `content` with handle `handle`.
void openWith(OpenData& data, std::uint64_t node, std::uint64_t handle,
              const std::string& content) {
  const std::uint32_t asked = data.asking(node);
  REQUIRE(asked == limits::kMaxOpenDataBytes);
  data.opened(node, handle, bytesOf(content), asked);
}

}  // namespace

TEST_CASE("a whole small file is read once from what came with its open") {
  OpenData data;
  openWith(data, 5, 50, "hello");
  CHECK(data.keptBytes() == 5);
  CHECK(!data.read(51, 5, 0, 4096));  // another handle
  CHECK(!data.read(50, 6, 0, 4096));  // another node
  auto slice = data.read(50, 5, 0, 4096);
  CHECK(data.keptBytes() == 0);
  CHECK(stringOf(slice) == "hello");  // still valid once given out
  CHECK(!data.read(50, 5, 0, 4096));
}

TEST_CASE("the first bytes of a larger file serve reads inside them, and nothing past them") {
  OpenData data;
  const std::string head(limits::kMaxOpenDataBytes, 'h');
  openWith(data, 5, 50, head);
  CHECK(!data.read(50, 5, limits::kMaxOpenDataBytes - 4096, 8192));  // needs bytes not kept
  CHECK(stringOf(data.read(50, 5, 0, 4096)) == head.substr(0, 4096));
  CHECK(stringOf(data.read(50, 5, 4096, 4096)) == head.substr(4096, 4096));
  CHECK(data.read(50, 5, limits::kMaxOpenDataBytes - 4096, 4096).has_value());
  CHECK(data.keptBytes() == 0);  // given out to the end
}

TEST_CASE("a change, a write, a release or a change during the open drops the bytes") {
  OpenData data;
  openWith(data, 5, 50, "one");
  data.changed(5);
  CHECK(!data.read(50, 5, 0, 4096));

  openWith(data, 5, 51, "two");
  data.drop(5);
  CHECK(!data.read(51, 5, 0, 4096));

  openWith(data, 5, 52, "three");
  data.released(52);
  CHECK(!data.read(52, 5, 0, 4096));

  const std::uint32_t asked = data.asking(5);
  data.drop(5);  // between the request and its reply
  data.opened(5, 53, bytesOf("stale"), asked);
  CHECK(!data.read(53, 5, 0, 4096));
  CHECK(data.keptBytes() == 0);
}

TEST_CASE("an open after the file was read asks for nothing, until the file changes") {
  OpenData data;
  data.wasRead(5);
  CHECK(data.asking(5) == 0);
  data.drop(5);  // the kernel's pages follow this mount's own writes
  CHECK(data.asking(5) == 0);
  data.changed(5);
  CHECK(data.asking(5) == limits::kMaxOpenDataBytes);
  data.opened(5, std::nullopt, {}, limits::kMaxOpenDataBytes);
  data.forgotten(5);
  CHECK(data.asking(5) == limits::kMaxOpenDataBytes);
}

TEST_CASE("more bytes than were asked for, or than the budget allows, are not kept") {
  OpenData data;
  const std::uint32_t asked = data.asking(5);
  data.opened(5, 50, std::vector<std::byte>(asked + 1), asked);
  CHECK(data.keptBytes() == 0);
  std::uint64_t handle = 100;
  while (data.keptBytes() + limits::kMaxOpenDataBytes <= OpenData::kBudgetBytes) {
    openWith(data, 6, handle++, std::string(limits::kMaxOpenDataBytes, 'x'));
  }
  const std::size_t full = data.keptBytes();
  openWith(data, 6, handle, std::string(limits::kMaxOpenDataBytes, 'x'));
  CHECK(data.keptBytes() == full);
  CHECK(!data.read(handle, 6, 0, 4096));
}
