#include "common/messages.h"

namespace enclavefs::msg {

namespace {
constexpr const char* kNames[] = {
      "lookup",  "forget",     "getattr",  "setattr", "readlink", "mknod",      "mkdir",
      "unlink",  "rmdir",      "symlink",  "rename",  "link",     "open",       "create",
      "read",    "write",      "flush",    "release", "fsync",    "fallocate",  "opendir",
      "readdir", "releasedir", "fsyncdir", "statfs",  "setxattr", "getxattr",   "listxattr",
      "removexattr", "lseek",      "getlk",    "setlk",   "flock",    "sectorRead", "sectorWrite",
      "sectorFlush", "sectorTrim", "sectorWriteZeroes"};
static_assert(std::size(kNames) == std::variant_size_v<Op>);
}  // namespace

const char* opName(const Op& op) { return kNames[op.index()]; }

const char* opName(std::size_t index) { return index < std::size(kNames) ? kNames[index] : "?"; }

bool takesPayload(const Op& op) {
  return std::holds_alternative<op::Write>(op) || std::holds_alternative<op::SetXattr>(op) ||
         std::holds_alternative<op::SectorWrite>(op);
}

std::optional<std::size_t> opIndex(std::string_view name) {
  for (std::size_t i = 0; i < std::size(kNames); ++i) {
    if (name == kNames[i]) return i;
  }
  return std::nullopt;
}

std::vector<NodeId> directoriesChanged(const Request& request) {
  return std::visit(
      [&](const auto& op) -> std::vector<NodeId> {
        using T = std::decay_t<decltype(op)>;
        if constexpr (std::is_same_v<T, op::Rename>) {
          if (op.newParent == request.node) return {request.node};
          return {request.node, op.newParent};
        } else if constexpr (std::is_same_v<T, op::Link>) {
          return {op.newParent};
        } else if constexpr (std::is_same_v<T, op::Create> || std::is_same_v<T, op::MakeNode> ||
                             std::is_same_v<T, op::MakeDir> || std::is_same_v<T, op::Symlink> ||
                             std::is_same_v<T, op::Unlink> || std::is_same_v<T, op::RemoveDir> ||
                             std::is_same_v<T, op::SetAttr> || std::is_same_v<T, op::SetXattr> ||
                             std::is_same_v<T, op::RemoveXattr>) {
          return {request.node};
        } else {
          return {};
        }
      },
      request.op);
}

}  // namespace enclavefs::msg
