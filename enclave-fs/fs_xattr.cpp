// setxattr, getxattr, listxattr, removexattr.
#include <cerrno>
#include <cstring>
#include <string_view>

#include "common/hard_limits.h"
#include "enclave-fs/basic_fs.h"

namespace enclavefs::enclave::fs {
namespace {

bool badName(fuse_req_t req, const char* name) {
  if (std::strlen(name) <= limits::kMaxXattrNameBytes) return false;
  fuse_reply_err(req, ERANGE);
  return true;
}

// getxattr and listxattr answer a size probe (size 0) with the size, else with the bytes.
void replyXattr(BasicFs& fs, fuse_req_t req, const char* op, size_t size, bool isList,
                const Result<Answer>& a) {
  if (size == 0) {
    auto probe = expect<msg::body::Size>(fs, op, a);
    if (!probe) {
      fuse_reply_err(req, probe.error().value);
    } else if ((*probe)->size > limits::kMaxXattrValueBytes) {
      fuse_reply_err(req, fs.refuse(op, "size out of range"));
    } else {
      fuse_reply_xattr(req, (*probe)->size);
    }
    return;
  }
  auto data = expect<msg::body::Data>(fs, op, a);
  if (!data) {
    fuse_reply_err(req, data.error().value);
    return;
  }
  Check valid = checkDataSize(a->payload.size(), size);
  if (valid && isList) valid = checkXattrList(a->payload);
  if (!valid) {
    fuse_reply_err(req, fs.refuse(op, valid.error()));
    return;
  }
  fuse_reply_buf(req, reinterpret_cast<const char*>(a->payload.data()), a->payload.size());
}

}  // namespace

void setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
              int flags) {
  if (badName(req, name)) return;
  if (size > limits::kMaxXattrValueBytes) {
    fuse_reply_err(req, E2BIG);
    return;
  }
  BasicFs& fs = BasicFs::of(req);
  fs.send(
      fs.request(req, ino, msg::op::SetXattr{static_cast<std::uint32_t>(flags)}, name),
      [&fs, req](Result<Answer> a) { replyStatus(fs, req, "setxattr", a); },
      std::span(reinterpret_cast<const std::byte*>(value), size));
}

void getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  if (badName(req, name)) return;
  // The kernel asks for file capabilities before a write, to drop them: before every write
  // when it clears set-ID bits itself, else until it has seen a file has none
  // (set_id_bits.h). A basic mount is always nosuid, so capabilities on its files never take
  // effect in the enclave: answer "none" here and save the host the round trips.
  if (std::string_view(name) == "security.capability") {
    fuse_reply_err(req, ENODATA);
    return;
  }
  BasicFs& fs = BasicFs::of(req);
  size = std::min<size_t>(size, limits::kMaxXattrValueBytes);
  fs.send(fs.request(req, ino, msg::op::GetXattr{static_cast<std::uint32_t>(size)}, name),
          [&fs, req, size](Result<Answer> a) { replyXattr(fs, req, "getxattr", size, false, a); });
}

void listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  BasicFs& fs = BasicFs::of(req);
  size = std::min<size_t>(size, limits::kMaxXattrValueBytes);
  fs.send(fs.request(req, ino, msg::op::ListXattr{static_cast<std::uint32_t>(size)}),
          [&fs, req, size](Result<Answer> a) { replyXattr(fs, req, "listxattr", size, true, a); });
}

void removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  if (badName(req, name)) return;
  BasicFs& fs = BasicFs::of(req);
  fs.send(fs.request(req, ino, msg::op::RemoveXattr{}, name),
          [&fs, req](Result<Answer> a) { replyStatus(fs, req, "removexattr", a); });
}

}  // namespace enclavefs::enclave::fs
