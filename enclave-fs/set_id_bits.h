// Set-user-ID and set-group-ID bits, cleared by the host (FUSE_HANDLE_KILLPRIV_V2).
//
// A write, a truncate or an O_TRUNC open by a process without CAP_FSETID clears the file's
// set-ID bits. Left to itself the enclave's kernel does this, and to do it asks the file
// system for the file's `security.capability` before every write(): a second FUSE request
// per write. A file system that declares FUSE_HANDLE_KILLPRIV_V2 takes the clearing over:
// the kernel then asks only until a write finds neither set-ID bits nor capabilities (again
// after the file's attributes are refreshed), and instead marks each write, truncate and
// O_TRUNC open whose caller lacks CAP_FSETID. The mount passes the mark on
// (Request.killSetId), and the host clears the bits from the file as it is on the host.
//
// libfuse 3.14 can neither declare the flag nor hand the marks on, so the session's
// /dev/fuse reads and writes come here (fuse_device.h): each read notes what the request it
// brought asks for, for the FUSE worker that read it (libfuse's workers handle the request
// they read on the same thread), and the answer to FUSE_INIT gets the flag added when the
// kernel offers it.
#pragma once

#include <fuse_lowlevel.h>
#include <sys/uio.h>

#include <cstdint>
#include <span>

namespace enclavefs::enclave::set_id_bits {

// What one raw FUSE request from the kernel says about set-ID bits.
struct KernelRequest {
  std::uint32_t opcode = 0;
  std::uint64_t unique = 0;
  std::uint64_t node = 0;
  bool killSetId = false;       // a write, truncate or O_TRUNC open marked by the kernel
  bool offersHandover = false;  // FUSE_INIT: the kernel offers FUSE_HANDLE_KILLPRIV_V2
};
KernelRequest inspect(std::span<const std::byte> request);

// Notes the raw request the calling FUSE worker has just read from /dev/fuse (empty: the
// read brought none).
void noteRequest(std::span<const std::byte> request);

// Writes an answer to /dev/fuse like writev, adding FUSE_HANDLE_KILLPRIV_V2 to the answer to
// a FUSE_INIT that offered it.
ssize_t writeAnswer(int fd, iovec* iov, int count);

// Whether the kernel took the offer: from then on the mount marks requests for the host.
bool hostClears();

// The requests the kernel marks.
enum class Marked { write, setattr, open, create };

// Whether the request the calling FUSE worker handles, `operation` on `node` (the parent
// for a create), must clear the file's set-ID bits. If the worker's last read did not bring
// that request (a libfuse that handed requests between threads), the answer is yes: a write
// as root may then lose the bits, but a write without CAP_FSETID never keeps them.
bool requested(Marked operation, fuse_ino_t node);

}  // namespace enclavefs::enclave::set_id_bits
