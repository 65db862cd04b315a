// The block volumes this server offers: a name, an image file made by enclavefs-volume, and
// who may hold it. The image is opened (and its header checked) at start-up, so a typo stops
// the server; it is opened again for each lease, so the volume tool can resize or delete a
// volume that no enclave holds while the server runs.
#pragma once

#include <map>
#include <string>

#include "common/result.h"
#include "host-server/access.h"

namespace enclavefs::host {

// A volume as configured (command line or config file).
struct VolumeSettings {
  std::string name;  // a plain name (isPlainName), unique among volumes
  std::string path;
  AccessPolicy allow;
  std::string origin;  // "FILE:LINE" of the config entry; empty for the command line
};

struct Volume {
  std::string name;
  std::string path;
  AccessPolicy allow;
};

class VolumeTable {
 public:
  // Checks that the image is a volume; the error names the volume and what is wrong.
  Result<void, std::string> add(const VolumeSettings& settings);
  const Volume* find(const std::string& name) const;
  const std::map<std::string, Volume>& all() const { return volumes_; }

 private:
  std::map<std::string, Volume> volumes_;
};

}  // namespace enclavefs::host
