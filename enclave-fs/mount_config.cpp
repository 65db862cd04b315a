#include "enclave-fs/mount_config.h"

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <utility>

#include "common/hard_limits.h"
#include "common/names.h"
#include "common/log.h"
#include "common/yaml_config.h"

namespace enclavefs::enclave {
namespace {

constexpr std::uint32_t kSchemaVersion = 1;

struct FlagName {
  ForceMountFlag flag;
  std::string_view name;
};
constexpr FlagName kForceMountFlags[] = {
    {kForceEmpty, "empty"}, {kForceFile, "file"}, {kForceFull, "full"}, {kForceAll, "all"}};

std::optional<ForceMountFlag> forceMountFlag(std::string_view name) {
  for (const FlagName& known : kForceMountFlags) {
    if (known.name == name) return known.flag;
  }
  return std::nullopt;
}

// "empty, file, full, all".
std::string knownFlags() {
  std::string names;
  for (const FlagName& known : kForceMountFlags) {
    names += (names.empty() ? "" : ", ") + std::string(known.name);
  }
  return names;
}

// What is wrong with `path` as a mount path (completing "mounts[0].mountPath '...' "), or
// nothing. A normalized absolute path is what makes two mounts comparable by their text.
std::optional<std::string> mountPathProblem(const std::string& path) {
  if (path.size() > limits::kMaxPathBytes) {
    return "is longer than " + std::to_string(limits::kMaxPathBytes) + " bytes";
  }
  if (!path.starts_with('/')) return "must be an absolute path";
  if (path == "/") return "cannot be '/', which would cover the whole enclave";
  if (path.ends_with('/')) return "must not end with '/'";
  for (std::size_t start = 1; start <= path.size();) {
    std::size_t end = std::min(path.find('/', start), path.size());
    std::string_view component = std::string_view(path).substr(start, end - start);
    if (component.empty() || component == "." || component == "..") {
      return "must be normalized, without empty, '.' or '..' components";
    }
    start = end + 1;
  }
  return std::nullopt;
}

// Whether `inner` lies below `outer` (both normalized): /data/x is inside /data, /database
// is not.
bool isInside(std::string_view inner, std::string_view outer) {
  return inner.size() > outer.size() && inner.starts_with(outer) && inner[outer.size()] == '/';
}

// Where a mount read so far stands in the file, for the errors of the mounts after it.
struct Placed {
  std::string path;  // "mounts[0]"
  YAML::Mark mark;
  YAML::Mark mountPathMark;
};

std::string lineOf(const YAML::Mark& mark) {
  return std::to_string(mark.line + 1);
}

// Reads one document into a MountConfig, stopping at the first problem. Each reader answers
// the error sentence for the first thing wrong in its part of the document.
class MountConfigReader : public ConfigReader {
 public:
  explicit MountConfigReader(std::string sourceName)
      : ConfigReader(std::move(sourceName), "enclavefs-mount", kSchemaVersion) {}

  ConfigStatus read(const std::vector<YAML::Node>& documents, MountConfig& config) const;

 private:
  ConfigStatus readMounts(const ConfigField& field, std::vector<MountEntry>& mounts) const;
  // Reads one entry; `mountPathMark` is where its mountPath is.
  ConfigStatus readEntry(const ConfigField& field, MountEntry& entry,
                         YAML::Mark& mountPathMark) const;
  ConfigStatus readForceMount(const ConfigField& field, ForceMount& out) const;
  // Refuses a mount that clashes with one before it: the same path, one path inside the
  // other, or a second block mount.
  ConfigStatus checkAgainstEarlier(const std::vector<MountEntry>& earlier,
                                   const std::vector<Placed>& places, const MountEntry& entry,
                                   const Placed& place) const;
};

ConfigStatus MountConfigReader::readForceMount(const ConfigField& field, ForceMount& out) const {
  const std::string flagOrList = "one of " + knownFlags() + ", or a list of them";
  if (field.node.IsScalar()) {
    auto flag = forceMountFlag(field.node.Scalar());
    if (!flag) return mustBe(field, flagOrList);
    out = *flag;
    return {};
  }
  if (!field.node.IsSequence()) return mustBe(field, flagOrList);
  if (field.node.size() == 0) {
    return error(field.mark, field.path +
                                 " must list at least one flag; leave it out to require that "
                                 "nothing exists at the mount path");
  }
  for (std::size_t i = 0; i < field.node.size(); ++i) {
    ConfigField flagField = item(field, i);
    auto text = readText(flagField);
    if (!text) return Fail{text.error()};
    auto flag = forceMountFlag(*text);
    if (!flag) return mustBe(flagField, "one of " + knownFlags());
    if (out & *flag) {
      return error(flagField.mark, flagField.path + ": the flag '" + *text + "' is given twice");
    }
    out |= *flag;
  }
  return {};
}

ConfigStatus MountConfigReader::readEntry(const ConfigField& field, MountEntry& entry,
                                          YAML::Mark& mountPathMark) const {
  entry.origin = at(field.mark);
  auto type = [&](const ConfigField& typeField) -> ConfigStatus {
    auto text = readText(typeField);
    if (text && *text == "basic") {
      entry.type = MountEntry::Type::basic;
    } else if (text && *text == "block") {
      entry.type = MountEntry::Type::block;
    } else {
      return mustBe(typeField, "basic or block");
    }
    return {};
  };
  auto name = [&](const ConfigField& nameField) -> ConfigStatus {
    auto text = readText(nameField);
    if (!text) return Fail{text.error()};
    if (!isPlainName(*text)) {
      return error(nameField.mark, nameField.path + " '" + printable(*text) +
                                       "' must be 1-255 bytes without '/' and not . or ..");
    }
    entry.name = std::move(*text);
    return {};
  };
  auto mountPath = [&](const ConfigField& pathField) -> ConfigStatus {
    auto text = readText(pathField);
    if (!text) return Fail{text.error()};
    // A NUL (written "\0" in YAML) would silently cut the path short at mount().
    if (text->find('\0') != std::string::npos) {
      return error(pathField.mark, pathField.path + " must not contain a NUL byte");
    }
    if (auto problem = mountPathProblem(*text)) {
      return error(pathField.mark, pathField.path + " '" + printable(*text) + "' " + *problem);
    }
    entry.mountPath = std::move(*text);
    mountPathMark = pathField.mark;
    return {};
  };
  auto forceMount = [&](const ConfigField& flags) {
    return readForceMount(flags, entry.forceMount);
  };
  auto symlinks = [&](const ConfigField& symlinksField) -> ConfigStatus {
    // `type` is read first, whatever the order in the file.
    if (entry.type != MountEntry::Type::basic) {
      return error(symlinksField.mark, symlinksField.path + " applies to basic mounts only");
    }
    auto text = readText(symlinksField);
    if (text && *text == "inside") {
      entry.followSymlinks = false;
    } else if (text && *text == "follow") {
      entry.followSymlinks = true;
    } else {
      return mustBe(symlinksField, "inside or follow");
    }
    return {};
  };
  return readMap(field, {
                            {"type", true, type},
                            {"name", true, name},
                            {"mountPath", true, mountPath},
                            {"forceMount", false, forceMount},
                            {"readOnly", false, flag(entry.readOnly)},
                            {"exec", false, flag(entry.exec)},
                            {"symlinks", false, symlinks},
                        });
}

ConfigStatus MountConfigReader::checkAgainstEarlier(const std::vector<MountEntry>& earlier,
                                                    const std::vector<Placed>& places,
                                                    const MountEntry& entry,
                                                    const Placed& place) const {
  std::string path = place.path + ".mountPath '" + printable(entry.mountPath) + "'";
  for (std::size_t i = 0; i < earlier.size(); ++i) {
    const std::string& other = earlier[i].mountPath;
    std::string otherPath = places[i].path + ".mountPath '" + printable(other) + "' (line " +
                            lineOf(places[i].mountPathMark) + ")";
    if (other == entry.mountPath) {
      return error(place.mountPathMark, path + " is already used by " + places[i].path +
                                            " on line " + lineOf(places[i].mark));
    }
    if (isInside(entry.mountPath, other)) {
      return error(place.mountPathMark, path + " lies inside " + otherPath);
    }
    if (isInside(other, entry.mountPath)) {
      return error(place.mountPathMark, path + " contains " + otherPath);
    }
  }
  auto isBlock = [](const MountEntry& mount) { return mount.type == MountEntry::Type::block; };
  auto firstBlock = std::find_if(earlier.begin(), earlier.end(), isBlock);
  if (!isBlock(entry) || firstBlock == earlier.end()) return {};
  const Placed& first = places[static_cast<std::size_t>(firstBlock - earlier.begin())];
  return error(place.mark, place.path + " is a second block mount (the first is " + first.path +
                               " on line " + lineOf(first.mark) + "); an enclave has at most one");
}

ConfigStatus MountConfigReader::readMounts(const ConfigField& field,
                                           std::vector<MountEntry>& mounts) const {
  if (!field.node.IsSequence()) {
    return mustBe(field, "a list of mounts, each starting with '- type:'");
  }
  if (field.node.size() == 0) {
    return error(field.mark, field.path + " must list at least one mount");
  }
  std::vector<Placed> places;
  for (std::size_t i = 0; i < field.node.size(); ++i) {
    ConfigField entryField = item(field, i);
    MountEntry entry;
    YAML::Mark mountPathMark;
    if (auto read = readEntry(entryField, entry, mountPathMark); !read) return read;
    Placed place{entryField.path, entryField.mark, mountPathMark};
    if (auto clash = checkAgainstEarlier(mounts, places, entry, place); !clash) return clash;
    mounts.push_back(std::move(entry));
    places.push_back(std::move(place));
  }
  return {};
}

ConfigStatus MountConfigReader::read(const std::vector<YAML::Node>& documents,
                                     MountConfig& config) const {
  auto top = document(documents);
  if (!top) return Fail{top.error()};

  auto mounts = [&](const ConfigField& field) { return readMounts(field, config.mounts); };
  return readMap(*top, {
                           versionKey(),
                           {"host", true, address(config.host)},
                           {"mounts", true, mounts},
                       });
}

}  // namespace

Result<ForceMount, std::string> parseForceMount(const std::string& commaList) {
  ForceMount flags = 0;
  std::string_view rest = commaList;
  for (;;) {
    std::string_view name = rest.substr(0, rest.find(','));
    auto flag = forceMountFlag(name);
    if (!flag) {
      return Fail{"unknown forceMount flag '" + printable(name) +
                  "' (expected one of: " + knownFlags() + ")"};
    }
    if (flags & *flag) {
      return Fail{"the forceMount flag '" + std::string(name) + "' is given twice"};
    }
    flags |= *flag;
    if (name.size() == rest.size()) return flags;
    rest.remove_prefix(name.size() + 1);
  }
}

std::string describeForceMount(ForceMount flags) {
  std::string names;
  for (const FlagName& known : kForceMountFlags) {
    if (flags & known.flag) names += (names.empty() ? "" : ", ") + std::string(known.name);
  }
  return names.empty() ? "none" : "[" + names + "]";
}

Result<MountConfig, std::string> loadMountConfig(const std::string& path) {
  return loadConfig<MountConfig, MountConfigReader>(path);
}

Result<MountConfig, std::string> parseMountConfig(const std::string& yamlText,
                                                  const std::string& sourceName) {
  return parseConfig<MountConfig, MountConfigReader>(yamlText, sourceName);
}

}  // namespace enclavefs::enclave
