// Busy polling, shared by the threads of a mount that wait for the next message: the
// receiver for the host's next answer (connection.h), a FUSE worker for the kernel's next
// request (fuse_device.h). On a virtual machine a thread that sleeps lets its CPU halt, and
// waking a halted CPU costs tens of microseconds: more than a message that follows at once
// takes to come. Between tries the CPU goes to any other runnable thread (sched_yield), so
// polling never holds back the work that produces the message.
#pragma once

#include <sched.h>

#include <chrono>

namespace enclavefs::enclave {

// Calls `attempt` until it returns true or `limit` has passed; returns its last result.
// `limit` 0: not even one try.
template <typename Attempt>
bool busyPoll(std::chrono::microseconds limit, Attempt&& attempt) {
  if (limit.count() == 0) return false;
  const auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (attempt()) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    ::sched_yield();
  }
}

}  // namespace enclavefs::enclave
