// enclavefs-inspect volume: a look at a volume image that no enclave holds, from the host and
// without mounting it. It reads the header, maps which ranges of the data area the host has
// allocated, tells what the data area holds (blank, ext4 or unknown) and, for ext4, can list
// a directory inside it. It never writes to the image and takes no lock.
#pragma once

#include <optional>
#include <string>

#include "common/result.h"

namespace enclavefs::inspect {

struct VolumeRequest {
  std::string path;
  std::optional<std::string> listDirectory;  // --ls: a directory inside the file system
  bool json = false;
};

// Prints the report on stdout; a volume in use is refused, naming its holder.
Result<void, std::string> inspectVolume(const VolumeRequest& request);

}  // namespace enclavefs::inspect
