// Integration tests mount file systems: without root or /dev/fuse they cannot run at all.
// They then say so loudly and exit 77, which meson reports as skipped.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace enclavefs::test {

struct RequireRoot {
  RequireRoot() {
    if (::geteuid() != 0 || ::access("/dev/fuse", R_OK | W_OK) != 0) {
      std::fprintf(stderr,
                   "SKIPPED: this integration test needs root and /dev/fuse to mount "
                   "file systems (CI runs it as root)\n");
      std::exit(77);
    }
  }
};

inline const RequireRoot requireRoot;

}  // namespace enclavefs::test
