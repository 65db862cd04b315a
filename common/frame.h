// Framing: a fixed header, one Cap'n Proto message, and an optional raw payload.
//
//   offset  size  field
//        0     4  messageBytes   (a multiple of 8, 8 .. kMaxMessageBytes)
//        4     4  payloadBytes   (0 .. kMaxPayloadBytes)
//        8     8  id             (request id; a reply carries the id of its request)
//       16     2  kind           (FrameKind)
//       18     2  flags          (must be 0)
//       20     4  magic          (kFrameMagic)
//       24        message, then payload, then zero padding to a multiple of 8
//
// All fields are little-endian. Every length is checked before anything is allocated.
#pragma once

#include <capnp/common.h>
#include <kj/array.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "common/result.h"

namespace enclavefs {

enum class FrameKind : std::uint16_t {
  hello = 1,
  welcome = 2,
  request = 3,
  reply = 4,
  notify = 5,
};

constexpr std::size_t kFrameHeaderBytes = 24;
constexpr std::uint32_t kFrameMagic = 0x31534645;  // "EFS1"

struct FrameHeader {
  std::uint32_t messageBytes = 0;
  std::uint32_t payloadBytes = 0;
  std::uint64_t id = 0;
  FrameKind kind = FrameKind::request;

  // Bytes the whole frame occupies on the stream, padding included.
  std::size_t frameBytes() const;
};

using HeaderBytes = std::array<std::byte, kFrameHeaderBytes>;

HeaderBytes encodeHeader(const FrameHeader& header);

// Checks every field against the limits; the error says which one is wrong.
Result<FrameHeader, std::string> decodeHeader(std::span<const std::byte, kFrameHeaderBytes> raw);

// Zero bytes to pad a payload of `payloadBytes` to the next multiple of 8.
std::span<const std::byte> payloadPadding(std::uint32_t payloadBytes);

// A complete frame inside a FrameAssembler's buffer; valid until the assembler is next used.
struct FrameView {
  FrameHeader header;
  kj::ArrayPtr<const capnp::word> message;  // 8-byte aligned, as Cap'n Proto requires
  std::span<const std::byte> payload;
};

// Turns a byte stream into frames. The caller reads into writable(), reports the count with
// commit(), then takes frames with next() until it yields none. The buffer holds the largest
// legal frame, so a legal stream never stalls, and it is 8-byte aligned so messages can be
// read in place.
class FrameAssembler {
 public:
  FrameAssembler();
  FrameAssembler(const FrameAssembler&) = delete;
  FrameAssembler& operator=(const FrameAssembler&) = delete;

  std::span<std::byte> writable();
  void commit(std::size_t bytes);

  // The next complete frame; nullopt when more bytes are needed; an error for a malformed
  // header (the stream cannot be resynchronised after that). A returned view stays valid
  // until the next call of any member.
  Result<std::optional<FrameView>, std::string> next();

 private:
  std::byte* data() { return reinterpret_cast<std::byte*>(storage_.get()); }
  void compact();

  std::unique_ptr<capnp::word[]> storage_;
  std::size_t capacity_;
  std::size_t begin_ = 0;  // first unconsumed byte, always 8-aligned
  std::size_t end_ = 0;    // one past the last received byte
};

}  // namespace enclavefs
