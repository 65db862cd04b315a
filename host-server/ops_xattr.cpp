// setxattr, getxattr, listxattr, removexattr.
//
// A client may set or remove only `user.` attributes: `security.capability` would grant
// capabilities to a host program, `trusted.` and `system.` reach host policy. Any attribute
// may be read.
#include <sys/stat.h>
#include <sys/xattr.h>

#include <cerrno>

#include "common/hard_limits.h"
#include "host-server/operations.h"

namespace enclavefs::host::ops {
namespace {

bool clientMayChange(const std::string& name) { return name.starts_with("user."); }

// Extended attributes live on the file, reached through its O_PATH descriptor's proc path.
// Symbolic links carry no user attributes, and the proc path would name the link's target.
Result<NodeRef> xattrNode(Session& s, const msg::Request& r) {
  auto node = findNode(s, r.node);
  if (!node) return node;
  if ((*node)->type == S_IFLNK) return Errno{EPERM};
  return node;
}

}  // namespace

Co<Outcome> setxattr(Session& s, const msg::Request& r, const msg::op::SetXattr& op, Bytes& value) {
  auto node = xattrNode(s, r);
  if (!node) co_return failure(node.error().value);
  if (r.name.empty()) co_return failure(EINVAL);
  if (!clientMayChange(r.name)) co_return failure(EPERM);
  if (value.size() > limits::kMaxXattrValueBytes) co_return failure(E2BIG);
  if ((op.flags & ~static_cast<std::uint32_t>(XATTR_CREATE | XATTR_REPLACE)) != 0) {
    co_return failure(EINVAL);
  }
  const std::string path = procPath((*node)->fd.get());
  int err = co_await inMemoryOrPool(s, [&] {
    return ::setxattr(path.c_str(), r.name.c_str(), value.data(), value.size(),
                      static_cast<int>(op.flags)) == 0
               ? 0
               : errno;
  });
  if (err != 0) co_return failure(err);
  co_return success();
}

Co<Outcome> getxattr(Session& s, const msg::Request& r, const msg::op::GetXattr& op) {
  auto node = xattrNode(s, r);
  if (!node) co_return failure(node.error().value == EPERM ? ENODATA : node.error().value);
  if (r.name.empty()) co_return failure(EINVAL);
  std::uint32_t size = std::min(op.size, limits::kMaxXattrValueBytes);
  Bytes value = Bytes::allocate(size);
  const std::string path = procPath((*node)->fd.get());
  ssize_t n = 0;
  int err = co_await inMemoryOrPool(s, [&] {
    n = ::getxattr(path.c_str(), r.name.c_str(), value.data(), size);
    return n < 0 ? errno : 0;
  });
  if (err != 0) co_return failure(err);
  if (op.size == 0) co_return success(msg::body::Size{static_cast<std::uint32_t>(n)});
  value.shrinkTo(static_cast<std::size_t>(n));
  Outcome out = success(msg::body::Data{});
  out.payload = std::move(value);
  co_return out;
}

Co<Outcome> listxattr(Session& s, const msg::Request& r, const msg::op::ListXattr& op) {
  auto node = findNode(s, r.node);
  if (!node) co_return failure(node.error().value);
  if ((*node)->type == S_IFLNK) {
    co_return op.size == 0 ? success(msg::body::Size{0}) : success(msg::body::Data{});
  }
  std::uint32_t size = std::min(op.size, limits::kMaxXattrValueBytes);
  Bytes names = Bytes::allocate(size);
  const std::string path = procPath((*node)->fd.get());
  ssize_t n = 0;
  int err = co_await inMemoryOrPool(s, [&] {
    n = ::listxattr(path.c_str(), reinterpret_cast<char*>(names.data()), size);
    return n < 0 ? errno : 0;
  });
  if (err != 0) co_return failure(err);
  if (op.size == 0) co_return success(msg::body::Size{static_cast<std::uint32_t>(n)});
  names.shrinkTo(static_cast<std::size_t>(n));
  Outcome out = success(msg::body::Data{});
  out.payload = std::move(names);
  co_return out;
}

Co<Outcome> removexattr(Session& s, const msg::Request& r) {
  auto node = xattrNode(s, r);
  if (!node) co_return failure(node.error().value);
  if (!clientMayChange(r.name)) co_return failure(EPERM);
  const std::string path = procPath((*node)->fd.get());
  int err = co_await inMemoryOrPool(s, [&] {
    return ::removexattr(path.c_str(), r.name.c_str()) == 0 ? 0 : errno;
  });
  if (err != 0) co_return failure(err);
  co_return success();
}

}  // namespace enclavefs::host::ops
