#include "enclave-fs/program.h"

#include <cstdio>

namespace enclavefs::enclave {

int fail(const std::string& message) {
  std::fprintf(stderr, "%s: error: %s\n", kProgram, message.c_str());
  return 1;
}

}  // namespace enclavefs::enclave
