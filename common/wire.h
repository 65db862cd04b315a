// Conversion between the plain messages of common/messages.h and their Cap'n Proto form.
// The only file that includes the generated schema code.
//
// Decoding checks structure and size (lengths within common/hard_limits.h, no NUL inside names);
// what a value means is checked where it is used (host: common/names.h; enclave:
// enclave-fs/reply_check.h). A decode error means the peer is broken or hostile: the host
// drops the connection; the enclave, whose framing is still intact, answers that one request
// with EIO.
#pragma once

#include <capnp/common.h>
#include <kj/array.h>

#include <span>
#include <string>

#include "common/messages.h"
#include "common/result.h"

namespace enclavefs::wire {

using Words = kj::Array<capnp::word>;
using WordsView = kj::ArrayPtr<const capnp::word>;

// A message's words as the bytes that go on the wire.
std::span<const std::byte> bytesOf(const Words& words);

Words encode(const msg::Hello& hello);
Words encode(const msg::Welcome& welcome);
Words encode(const msg::Request& request);
Words encode(const msg::Reply& reply);
Words encode(const msg::Notify& notify);

Result<msg::Hello, std::string> decodeHello(WordsView words);
Result<msg::Welcome, std::string> decodeWelcome(WordsView words);
Result<msg::Request, std::string> decodeRequest(WordsView words);
Result<msg::Reply, std::string> decodeReply(WordsView words);
Result<msg::Notify, std::string> decodeNotify(WordsView words);

}  // namespace enclavefs::wire
