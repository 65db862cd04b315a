#include "common/messages.h"

namespace enclavefs::msg {

const char* opName(const Op& op) {
  static constexpr const char* kNames[] = {
      "lookup",  "forget",     "getattr",  "setattr", "readlink", "mknod",      "mkdir",
      "unlink",  "rmdir",      "symlink",  "rename",  "link",     "open",       "create",
      "read",    "write",      "flush",    "release", "fsync",    "fallocate",  "opendir",
      "readdir", "releasedir", "fsyncdir", "statfs",  "setxattr", "getxattr",   "listxattr",
      "removexattr", "lseek",      "getlk",    "setlk",   "flock",    "sectorRead", "sectorWrite",
      "sectorFlush", "sectorTrim", "sectorWriteZeroes"};
  static_assert(std::size(kNames) == std::variant_size_v<Op>);
  return kNames[op.index()];
}

}  // namespace enclavefs::msg
