// Runs other programs: the system tools the enclave image carries (mkfs.ext4, resize2fs), and
// enclavefs-mount itself for each entry of a configuration file.
#pragma once

#include <string>
#include <vector>

#include "common/result.h"

namespace enclavefs::enclave {

// How a program ended.
struct Finished {
  bool succeeded = false;     // it exited with a status no higher than the caller accepts
  std::string how;            // "exited with status 1", "was killed by signal 9"
  std::string lastErrorLine;  // the last line it wrote to stderr
};

// Runs `program` with `argv` (argv[0] included), stdin and stdout on /dev/null and stderr
// captured, and waits for it. Fails only if it cannot be started.
Result<Finished, std::string> runProgram(const std::string& program,
                                         const std::vector<std::string>& argv,
                                         int highestSuccess = 0);

// Runs the system tool argv[0], found in the system directories (/usr/sbin, /sbin, /usr/bin,
// /bin) whatever PATH says. An exit status above `highestSuccess` is a failure, named with
// the tool, how it ended and the last line it wrote to stderr.
Result<void, std::string> runTool(const std::vector<std::string>& argv, int highestSuccess = 0);

}  // namespace enclavefs::enclave
