// Reading the kernel's set-ID marks from raw FUSE requests (set_id_bits.h).
#include "enclave-fs/set_id_bits.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/fuse.h>

#include <cstring>
#include <vector>

namespace sib = enclavefs::enclave::set_id_bits;

namespace {

// A request as the kernel would send it: the header, then `argument`.
template <typename Argument>
std::vector<std::byte> request(std::uint32_t opcode, std::uint64_t node, const Argument& argument) {
  fuse_in_header header{};
  header.len = sizeof header + sizeof argument;
  header.opcode = opcode;
  header.unique = 42;
  header.nodeid = node;
  std::vector<std::byte> out(sizeof header + sizeof argument);
  std::memcpy(out.data(), &header, sizeof header);
  std::memcpy(out.data() + sizeof header, &argument, sizeof argument);
  return out;
}

}  // namespace

TEST_CASE("a write, setattr, open or create carries the kernel's mark, and nothing else does") {
  fuse_write_in write{};
  write.write_flags = FUSE_WRITE_KILL_SUIDGID | FUSE_WRITE_LOCKOWNER;
  auto marked = sib::inspect(request(FUSE_WRITE, 7, write));
  CHECK(marked.opcode == FUSE_WRITE);
  CHECK(marked.node == 7);
  CHECK(marked.unique == 42);
  CHECK(marked.killSetId);
  write.write_flags = FUSE_WRITE_LOCKOWNER;
  CHECK_FALSE(sib::inspect(request(FUSE_WRITE, 7, write)).killSetId);

  fuse_setattr_in setattr{};
  setattr.valid = FATTR_SIZE | FATTR_KILL_SUIDGID;
  CHECK(sib::inspect(request(FUSE_SETATTR, 8, setattr)).killSetId);
  setattr.valid = FATTR_SIZE;
  CHECK_FALSE(sib::inspect(request(FUSE_SETATTR, 8, setattr)).killSetId);

  fuse_open_in open{};
  open.flags = O_WRONLY | O_TRUNC;
  open.open_flags = FUSE_OPEN_KILL_SUIDGID;
  CHECK(sib::inspect(request(FUSE_OPEN, 9, open)).killSetId);
  open.open_flags = 0;
  CHECK_FALSE(sib::inspect(request(FUSE_OPEN, 9, open)).killSetId);

  fuse_create_in create{};
  create.open_flags = FUSE_OPEN_KILL_SUIDGID;
  CHECK(sib::inspect(request(FUSE_CREATE, 1, create)).killSetId);

  // The same bit in another request's argument means something else.
  fuse_read_in read{};
  read.read_flags = ~0u;
  read.flags = ~0u;
  CHECK_FALSE(sib::inspect(request(FUSE_READ, 9, read)).killSetId);
  CHECK_FALSE(sib::inspect(request(FUSE_READ, 9, read)).offersHandover);
}

TEST_CASE("FUSE_INIT tells whether the kernel offers the hand-over") {
  fuse_init_in init{};
  init.major = FUSE_KERNEL_VERSION;
  init.minor = 31;
  init.flags = FUSE_ASYNC_READ | FUSE_HANDLE_KILLPRIV_V2;
  CHECK(sib::inspect(request(FUSE_INIT, 0, init)).offersHandover);
  init.flags = FUSE_ASYNC_READ;
  CHECK_FALSE(sib::inspect(request(FUSE_INIT, 0, init)).offersHandover);
}

TEST_CASE("a request cut short is read as far as it goes, never beyond") {
  fuse_write_in write{};
  write.write_flags = FUSE_WRITE_KILL_SUIDGID;
  auto whole = request(FUSE_WRITE, 7, write);
  // Cut before write_flags: no mark can be read, so none is reported.
  std::vector<std::byte> cut(whole.begin(),
                             whole.begin() + sizeof(fuse_in_header) + offsetof(fuse_write_in, write_flags));
  auto seen = sib::inspect(cut);
  CHECK(seen.opcode == FUSE_WRITE);
  CHECK_FALSE(seen.killSetId);
  std::vector<std::byte> header(whole.begin(), whole.begin() + sizeof(fuse_in_header) - 1);
  CHECK(sib::inspect(header).opcode == 0);
  CHECK(sib::inspect({}).opcode == 0);
}

TEST_CASE("before the kernel took the hand-over, no request asks the host to clear the bits") {
  CHECK_FALSE(sib::hostClears());
  CHECK_FALSE(sib::requested(sib::Marked::write, 7));
}
