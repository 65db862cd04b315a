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

std::optional<std::size_t> opIndex(std::string_view name) {
  for (std::size_t i = 0; i < std::size(kNames); ++i) {
    if (name == kNames[i]) return i;
  }
  return std::nullopt;
}

}  // namespace enclavefs::msg
