// Runs a system tool the enclave image carries (mkfs.ext4, resize2fs) and reports its failure
// as one sentence.
#pragma once

#include <string>
#include <vector>

#include "common/result.h"

namespace enclavefs::enclave {

// Runs argv[0], found in the system directories (/usr/sbin, /sbin, /usr/bin, /bin) whatever
// PATH says, with stdin and stdout on /dev/null. An exit status above `highestSuccess` is a
// failure, named with the tool, how it ended and the last line it wrote to stderr.
Result<void, std::string> runTool(const std::vector<std::string>& argv, int highestSuccess = 0);

}  // namespace enclavefs::enclave
