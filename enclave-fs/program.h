// The command's name, and its one way of telling the user what went wrong.
#pragma once

#include <string>

namespace enclavefs::enclave {

inline constexpr const char* kProgram = "enclavefs-mount";

// Prints "enclavefs-mount: error: MESSAGE" on stderr; returns 1, the command's exit status.
int fail(const std::string& message);

}  // namespace enclavefs::enclave
