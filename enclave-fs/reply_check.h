// Every reply from the host is hostile input. This module is the one place that decides
// whether a decoded reply may be believed: each check answers ok or an error sentence, and
// the caller turns any error into EIO for the application and one log line.
//
// Common/wire.cpp has already bounded every length; here we check meaning: attribute sanity,
// names, sizes against what was asked, node and handle numbers, offsets.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <variant>

#include "common/messages.h"
#include "common/result.h"
#include "enclave-fs/connection.h"

namespace enclavefs::enclave {

using Check = Result<void, std::string>;

// An errno a host may answer with: 1..4095 and not one that changes how the kernel treats
// the file system (ENOSYS would disable an operation for the life of the mount).
int acceptableErrno(int error);

Check checkAttr(const msg::Attr& attr);
// A node the host hands out: never 0, never the root, with sane attributes.
Check checkEntry(const msg::Entry& entry);
// A node made by mknod/mkdir/symlink/create/link must be of the kind that was asked for.
Check checkEntryType(const msg::Entry& entry, std::uint32_t expectedType);
Check checkName(const std::string& name);
Check checkDirEntries(const msg::body::Entries& entries, std::uint64_t requestOffset, bool plus);
Check checkHandle(msg::HandleId handle);
Check checkDataSize(std::size_t got, std::size_t asked);
Check checkLinkTarget(const std::string& target);
// Policy, not sanity: a target that is absolute or has a ".." component could lead an
// enclave program out of the mount to an enclave file (/proc/self/environ, keys). Without
// knowing how deep the link sits, any ".." is treated as leaving.
Check checkLinkStaysInside(const std::string& target);
Check checkStatFs(const msg::body::StatFs& st);
Check checkLock(const msg::Lock& lock);
Check checkNotify(const msg::Notify& notify);
Check checkXattrList(std::span<const std::byte> names);
// A block volume's welcome: the sector size this client speaks, and a size that is a whole
// number of sectors within the volume limits.
Check checkVolumeWelcome(const msg::Welcome& welcome);
// An export's welcome: the root is a directory or a regular file with sound attributes, and
// the largest read and write are at least a page.
Check checkExportWelcome(const msg::Welcome& welcome);

// The body of type Body in an answer, or the errno the application should see: the transport's,
// the host's own (if acceptable), or EIO for a reply of the wrong shape. `fs` is the file
// system that logs a refused reply (BasicFs, BlockFs).
template <class Body, class Fs>
Result<const Body*> expect(Fs& fs, const char* op, const Result<Answer>& answer) {
  if (!answer) return answer.error();
  const msg::Reply& reply = answer->reply;
  if (reply.error != 0) {
    int error = acceptableErrno(reply.error);
    if (error != reply.error) return Errno{fs.refuse(op, "errno " + std::to_string(reply.error))};
    return Errno{error};
  }
  const Body* body = std::get_if<Body>(&reply.body);
  if (body == nullptr) return Errno{fs.refuse(op, "reply has the wrong body")};
  // Data comes with a read, and the file's first bytes with an open that asked for them.
  constexpr bool mayCarryPayload =
      std::is_same_v<Body, msg::body::Data> || std::is_same_v<Body, msg::body::Opened>;
  if (!mayCarryPayload && !answer->payload.empty()) {
    return Errno{fs.refuse(op, "reply carries an unexpected payload")};
  }
  return body;
}

}  // namespace enclavefs::enclave
