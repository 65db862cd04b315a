// Going to the background so that `enclavefs-mount` returns only once the mount answers.
//
// libfuse's fuse_daemonize lets the parent exit as soon as the child exists. Here the parent
// waits until the child reports that the kernel has fetched the root through the mount (so a
// caller can use the mount, and unmount it, at once), and if the child dies first, the parent
// unmounts and fails: nothing is left mounted.
#pragma once

#include <functional>

#include "common/unique_fd.h"

namespace enclavefs::enclave {

class Background {
 public:
  // Forks. Returns in the child only; the parent waits, runs `undo` if the child never became
  // ready, and exits (0 if ready, 1 otherwise) without running any destructor, since those
  // would tear down what the child now owns.
  static Background detach(const std::function<void()>& undo);

  // Child: the mount answers. Lets the parent exit, and lets go of the terminal.
  void ready();
  // Child: the mount failed, and the child has said why on stderr and undone what it did; the
  // parent exits 1 without a word of its own.
  void failed();

 private:
  explicit Background(UniqueFd toParent) : toParent_(std::move(toParent)) {}
  UniqueFd toParent_;
};

}  // namespace enclavefs::enclave
