#include "common/frame.h"

#include <bit>
#include <cstring>

#include "common/hard_limits.h"

namespace enclavefs {

static_assert(std::endian::native == std::endian::little,
              "the frame header is little-endian and written with memcpy");

namespace {

constexpr std::size_t alignUp8(std::size_t n) { return (n + 7) & ~std::size_t{7}; }

template <class T>
void put(std::byte* at, T value) {
  std::memcpy(at, &value, sizeof value);
}

template <class T>
T get(const std::byte* at) {
  T value;
  std::memcpy(&value, at, sizeof value);
  return value;
}

constexpr std::size_t kLargestFrame =
    kFrameHeaderBytes + limits::kMaxMessageBytes + alignUp8(limits::kMaxPayloadBytes);

}  // namespace

std::size_t FrameHeader::frameBytes() const {
  return kFrameHeaderBytes + messageBytes + alignUp8(payloadBytes);
}

HeaderBytes encodeHeader(const FrameHeader& header) {
  HeaderBytes raw{};
  put<std::uint32_t>(&raw[0], header.messageBytes);
  put<std::uint32_t>(&raw[4], header.payloadBytes);
  put<std::uint64_t>(&raw[8], header.id);
  put<std::uint16_t>(&raw[16], static_cast<std::uint16_t>(header.kind));
  put<std::uint16_t>(&raw[18], 0);
  put<std::uint32_t>(&raw[20], kFrameMagic);
  return raw;
}

Result<FrameHeader, std::string> decodeHeader(std::span<const std::byte, kFrameHeaderBytes> raw) {
  if (get<std::uint32_t>(&raw[20]) != kFrameMagic) return Fail{std::string("bad frame magic")};
  if (get<std::uint16_t>(&raw[18]) != 0) return Fail{std::string("unknown frame flags")};
  FrameHeader h;
  h.messageBytes = get<std::uint32_t>(&raw[0]);
  h.payloadBytes = get<std::uint32_t>(&raw[4]);
  h.id = get<std::uint64_t>(&raw[8]);
  auto kind = get<std::uint16_t>(&raw[16]);
  if (kind < static_cast<std::uint16_t>(FrameKind::hello) ||
      kind > static_cast<std::uint16_t>(FrameKind::notify)) {
    return Fail{"unknown frame kind " + std::to_string(kind)};
  }
  h.kind = static_cast<FrameKind>(kind);
  if (h.messageBytes == 0 || h.messageBytes % 8 != 0 ||
      h.messageBytes > limits::kMaxMessageBytes) {
    return Fail{"message length " + std::to_string(h.messageBytes) + " out of range"};
  }
  if (h.payloadBytes > limits::kMaxPayloadBytes) {
    return Fail{"payload length " + std::to_string(h.payloadBytes) + " exceeds the limit"};
  }
  return h;
}

std::span<const std::byte> payloadPadding(std::uint32_t payloadBytes) {
  static constexpr std::byte zeros[8] = {};
  return {zeros, alignUp8(payloadBytes) - payloadBytes};
}

FrameAssembler::FrameAssembler()
    : storage_(new capnp::word[kLargestFrame / sizeof(capnp::word)]), capacity_(kLargestFrame) {}

void FrameAssembler::compact() {
  std::memmove(data(), data() + begin_, end_ - begin_);
  end_ -= begin_;
  begin_ = 0;
}

std::span<std::byte> FrameAssembler::writable() {
  // Move the unconsumed bytes to the front once room behind them runs short.
  if (begin_ > 0 && (begin_ == end_ || capacity_ - end_ < capacity_ / 4)) compact();
  return {data() + end_, capacity_ - end_};
}

void FrameAssembler::commit(std::size_t bytes) { end_ += bytes; }

Result<std::optional<FrameView>, std::string> FrameAssembler::next() {
  if (end_ - begin_ < kFrameHeaderBytes) return std::optional<FrameView>{};
  auto header = decodeHeader(std::span<const std::byte, kFrameHeaderBytes>(data() + begin_,
                                                                           kFrameHeaderBytes));
  if (!header) return Fail{header.error()};
  std::size_t size = header->frameBytes();
  if (end_ - begin_ < size) {
    // Make sure the whole frame will fit once the front is reclaimed.
    if (capacity_ - begin_ < size) compact();
    return std::optional<FrameView>{};
  }
  const std::byte* frame = data() + begin_;
  FrameView view;
  view.header = *header;
  view.message = kj::ArrayPtr<const capnp::word>(
      reinterpret_cast<const capnp::word*>(frame + kFrameHeaderBytes),
      header->messageBytes / sizeof(capnp::word));
  view.payload = {frame + kFrameHeaderBytes + header->messageBytes, header->payloadBytes};
  begin_ += size;
  return std::optional<FrameView>{view};
}

}  // namespace enclavefs
