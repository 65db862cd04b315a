// A libfuse lowlevel session and its mount, released in reverse order of creation whatever
// happens.
#pragma once

#include <fuse_lowlevel.h>

namespace enclavefs::enclave {

struct FuseSession {
  fuse_session* session = nullptr;
  bool mounted = false;
  bool signalsInstalled = false;

  FuseSession() = default;
  FuseSession(const FuseSession&) = delete;
  FuseSession& operator=(const FuseSession&) = delete;
  ~FuseSession() {
    if (session == nullptr) return;
    if (signalsInstalled) fuse_remove_signal_handlers(session);
    if (mounted) fuse_session_unmount(session);
    fuse_session_destroy(session);
  }
};

}  // namespace enclavefs::enclave
