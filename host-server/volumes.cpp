#include "host-server/volumes.h"

#include "host-server/volume_file.h"

namespace enclavefs::host {

Result<void, std::string> VolumeTable::add(const VolumeSettings& settings) {
  const std::string where = settings.origin.empty() ? "" : settings.origin + ": ";
  if (volumes_.contains(settings.name)) {
    return Fail{where + "volume '" + settings.name + "' is given twice"};
  }
  if (auto image = VolumeFile::open(settings.path, true); !image) {
    return Fail{where + "volume '" + settings.name + "': " + image.error()};
  }
  volumes_.emplace(settings.name, Volume{settings.name, settings.path, settings.allow});
  return {};
}

const Volume* VolumeTable::find(const std::string& name) const {
  auto it = volumes_.find(name);
  return it == volumes_.end() ? nullptr : &it->second;
}

}  // namespace enclavefs::host
