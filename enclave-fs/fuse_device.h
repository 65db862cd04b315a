// The FUSE session's /dev/fuse reads and writes, taken over through libfuse's custom I/O
// hooks for two things libfuse 3.14 cannot do itself:
//
// * Busy polling (busy_poll.h). A FUSE worker that has just answered a request looks for
//   the next one (poll with no timeout) for up to `busyPoll` before it sleeps in its
//   blocking read: an application's requests follow each other by a few microseconds.
//   One worker polls at a time; the others sleep in read as before, so an idle mount, or
//   one whose requests come far apart, spends no CPU on it.
// * Set-ID bits cleared by the host (set_id_bits.h): each read notes the request it
//   brought for the worker that handles it, and the answer to FUSE_INIT takes the flag.
//
// One FUSE session per process (a mount process serves one).
#pragma once

#include <fuse_lowlevel.h>

#include <chrono>

namespace enclavefs::enclave::fuse_device {

struct Hooks {
  std::chrono::microseconds busyPoll{0};
  bool hostClearsSetId = false;  // the host offered to clear set-ID bits (set_id_bits.h)
};

// Sends the session's device reads and writes through the hooks. Call after
// fuse_session_mount and before serving; false if libfuse refuses.
bool takeOver(fuse_session* session, Hooks hooks);

}  // namespace enclavefs::enclave::fuse_device
