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
  // Serves requests on up to `maxThreads` worker threads until the file system is unmounted
  // or the session is told to exit; returns fuse_session_loop_mt's result. Workers are kept
  // once started: libfuse ends a worker whenever more than the idle limit wait, and with a
  // lower limit than the maximum a worker that blocks (an fsync waiting for write-behind)
  // makes the loop start and end threads continually (thousands per second under fio).
  int serve(unsigned maxThreads) {
    fuse_loop_config* loop = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(loop, maxThreads);
    fuse_loop_cfg_set_idle_threads(loop, maxThreads);
    int rc = fuse_session_loop_mt(session, loop);
    fuse_loop_cfg_destroy(loop);
    return rc;
  }

  ~FuseSession() {
    if (session == nullptr) return;
    if (signalsInstalled) fuse_remove_signal_handlers(session);
    if (mounted) fuse_session_unmount(session);
    fuse_session_destroy(session);
  }
};

}  // namespace enclavefs::enclave
