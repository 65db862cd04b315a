#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include "common/frame.h"
#include "common/hard_limits.h"

using namespace enclavefs;

namespace {

std::vector<std::byte> frameBytes(const FrameHeader& h, std::size_t bodyBytes) {
  auto header = encodeHeader(h);
  std::vector<std::byte> out(header.begin(), header.end());
  out.resize(out.size() + bodyBytes, std::byte{0x5a});
  return out;
}

void feed(FrameAssembler& in, const std::vector<std::byte>& bytes) {
  auto space = in.writable();
  REQUIRE(space.size() >= bytes.size());
  std::memcpy(space.data(), bytes.data(), bytes.size());
  in.commit(bytes.size());
}

}  // namespace

TEST_CASE("a header round-trips through encode and decode") {
  FrameHeader h{64, 13, 0x1122334455667788ull, FrameKind::reply};
  auto raw = encodeHeader(h);
  auto back = decodeHeader(raw);
  REQUIRE(back.ok());
  CHECK(back->messageBytes == 64);
  CHECK(back->payloadBytes == 13);
  CHECK(back->id == 0x1122334455667788ull);
  CHECK(back->kind == FrameKind::reply);
  CHECK(back->frameBytes() == kFrameHeaderBytes + 64 + 16);
}

TEST_CASE("decodeHeader refuses every out-of-range field before anything is allocated") {
  auto bad = [](FrameHeader h) { return !decodeHeader(encodeHeader(h)).ok(); };
  CHECK(bad({0, 0, 1, FrameKind::request}));                              // empty message
  CHECK(bad({12, 0, 1, FrameKind::request}));                             // not words
  CHECK(bad({limits::kMaxMessageBytes + 8, 0, 1, FrameKind::request}));   // message too big
  CHECK(bad({8, limits::kMaxPayloadBytes + 1, 1, FrameKind::request}));   // payload too big
  CHECK_FALSE(bad({limits::kMaxMessageBytes, limits::kMaxPayloadBytes, 1, FrameKind::request}));

  auto raw = encodeHeader({8, 0, 1, FrameKind::request});
  raw[16] = std::byte{99};  // unknown kind
  CHECK_FALSE(decodeHeader(raw).ok());
  raw = encodeHeader({8, 0, 1, FrameKind::request});
  raw[20] = std::byte{0};  // magic
  CHECK_FALSE(decodeHeader(raw).ok());
  raw = encodeHeader({8, 0, 1, FrameKind::request});
  raw[18] = std::byte{1};  // flags
  CHECK_FALSE(decodeHeader(raw).ok());
}

TEST_CASE("the assembler yields nothing until a frame is complete, then the frame in place") {
  FrameAssembler in;
  auto bytes = frameBytes({16, 5, 7, FrameKind::request}, 16 + 8);
  std::vector<std::byte> first(bytes.begin(), bytes.begin() + 30);
  std::vector<std::byte> rest(bytes.begin() + 30, bytes.end());
  feed(in, first);
  auto none = in.next();
  REQUIRE(none.ok());
  CHECK_FALSE(none->has_value());
  feed(in, rest);
  auto frame = in.next();
  REQUIRE(frame.ok());
  REQUIRE(frame->has_value());
  CHECK((*frame)->header.id == 7);
  CHECK((*frame)->message.size() == 2);
  CHECK((*frame)->payload.size() == 5);
  CHECK(reinterpret_cast<std::uintptr_t>((*frame)->message.begin()) % 8 == 0);
  auto after = in.next();
  REQUIRE(after.ok());
  CHECK_FALSE(after->has_value());
}

TEST_CASE("the assembler splits several frames received at once") {
  FrameAssembler in;
  std::vector<std::byte> stream;
  for (std::uint64_t id = 1; id <= 3; ++id) {
    auto f = frameBytes({8, static_cast<std::uint32_t>(id), id, FrameKind::reply}, 8 + 8);
    stream.insert(stream.end(), f.begin(), f.end());
  }
  feed(in, stream);
  for (std::uint64_t id = 1; id <= 3; ++id) {
    auto frame = in.next();
    REQUIRE(frame.ok());
    REQUIRE(frame->has_value());
    CHECK((*frame)->header.id == id);
    CHECK((*frame)->payload.size() == id);
  }
}

TEST_CASE("the assembler reports a corrupt header as an error") {
  FrameAssembler in;
  std::vector<std::byte> junk(kFrameHeaderBytes, std::byte{0xff});
  feed(in, junk);
  CHECK_FALSE(in.next().ok());
}

TEST_CASE("a largest legal frame fits after the buffer has been partly consumed") {
  FrameAssembler in;
  auto small = frameBytes({8, 0, 1, FrameKind::reply}, 8);
  feed(in, small);
  auto big = frameBytes({limits::kMaxMessageBytes, limits::kMaxPayloadBytes, 2, FrameKind::reply},
                        limits::kMaxMessageBytes + limits::kMaxPayloadBytes);
  std::size_t fed = 0;
  bool gotSmall = false, gotBig = false;
  while (fed < big.size() || !gotBig) {
    auto frame = in.next();
    REQUIRE(frame.ok());
    if (frame->has_value()) {
      if ((*frame)->header.id == 1) gotSmall = true;
      if ((*frame)->header.id == 2) gotBig = true;
      continue;
    }
    REQUIRE(fed < big.size());
    auto space = in.writable();
    std::size_t n = std::min(space.size(), std::min<std::size_t>(big.size() - fed, 100000));
    REQUIRE(n > 0);
    std::memcpy(space.data(), big.data() + fed, n);
    in.commit(n);
    fed += n;
  }
  CHECK(gotSmall);
  CHECK(gotBig);
}
