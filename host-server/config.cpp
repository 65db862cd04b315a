#include "host-server/config.h"

#include <functional>
#include <map>
#include <optional>
#include <utility>

#include "common/log.h"
#include "common/yaml_config.h"
#include "common/names.h"

namespace enclavefs::host {
namespace {

constexpr std::uint32_t kSchemaVersion = 1;

constexpr ConfigRange kAnyId{0, UINT32_MAX};
// (uid_t)-1 tells chown "leave this id unchanged", so squashing to it would silently keep
// whatever owner the file had.
constexpr ConfigRange kOwnerId{0, UINT32_MAX - 1};

using Status = ConfigStatus;
using Field = ConfigField;

// What a number is stored in: T itself, or the T inside std::optional<T>.
template <class T>
struct StoredAs {
  using type = T;
};
template <class T>
struct StoredAs<std::optional<T>> {
  using type = T;
};

// Reads one document into a HostConfig, stopping at the first problem. Each reader answers
// the error sentence for the first thing wrong in its part of the document.
class HostConfigReader : public ConfigReader {
 public:
  explicit HostConfigReader(std::string sourceName)
      : ConfigReader(std::move(sourceName), "enclavefs-hostd", kSchemaVersion) {}

  Status read(const std::vector<YAML::Node>& documents, HostConfig& config) const;

 private:
  Result<std::vector<std::uint32_t>, std::string> readIdList(const Field& field) const;

  // A key reader that stores a number in `out`.
  template <class T>
  std::function<Status(const Field&)> number(T& out, ConfigRange range) const;

  Status readLimits(const Field& field, LimitsConfig& limits) const;
  // A list of entries (exports, volumes), each read by `readEntry`; `namesSeen` maps each
  // entry name read so far to the line it is on.
  template <class Settings>
  Status readList(const Field& field, const char* kind, std::vector<Settings>& out,
                  Status (HostConfigReader::*readEntry)(const Field&, std::map<std::string, int>&,
                                                        Settings&) const) const;
  Status readExport(const Field& field, std::map<std::string, int>& namesSeen,
                    ExportSettings& out) const;
  Status readVolume(const Field& field, std::map<std::string, int>& namesSeen,
                    VolumeSettings& out) const;
  // Key readers for an entry's name (a plain name, unique in its list) and its host path.
  std::function<Status(const Field&)> entryName(std::map<std::string, int>& namesSeen,
                                                const char* kind, std::string& out) const;
  std::function<Status(const Field&)> hostPath(std::string& out) const;
  Status readOwner(const Field& field, OwnerMapping& owner) const;
  Status readAllow(const Field& field, AccessPolicy& allow) const;
};

Result<std::vector<std::uint32_t>, std::string> HostConfigReader::readIdList(
    const Field& field) const {
  if (!field.node.IsSequence()) return mustBe(field, "a list of numbers, like [16, 17]");
  std::vector<std::uint32_t> ids;
  for (std::size_t i = 0; i < field.node.size(); ++i) {
    auto id = readNumber(item(field, i), kAnyId.min, kAnyId.max);
    if (!id) return Fail{id.error()};
    ids.push_back(static_cast<std::uint32_t>(*id));
  }
  return ids;
}

template <class T>
std::function<Status(const Field&)> HostConfigReader::number(T& out, ConfigRange range) const {
  return [this, target = &out, range](const Field& field) -> Status {
    auto value = readNumber(field, range.min, range.max);
    if (!value) return Fail{value.error()};
    *target = static_cast<typename StoredAs<T>::type>(*value);
    return {};
  };
}

Status HostConfigReader::readLimits(const Field& field, LimitsConfig& limits) const {
  return readMap(field, {
                            {"maxClients", false, number(limits.maxClients, kMaxClientsRange)},
                            {"maxInFlight", false, number(limits.maxInFlight, kMaxInFlightRange)},
                            {"maxNodes", false, number(limits.maxNodes, kMaxNodesRange)},
                            {"maxHandles", false, number(limits.maxHandles, kMaxHandlesRange)},
                            {"poolThreads", false, number(limits.poolThreads, kPoolThreadsRange)},
                        });
}

Status HostConfigReader::readOwner(const Field& field, OwnerMapping& owner) const {
  std::optional<Field> uid, gid;  // as given, for the passthrough check
  auto ownerId = [this](std::optional<std::uint32_t>& out, std::optional<Field>& given) {
    return [given = &given, read = number(out, kOwnerId)](const Field& id) -> Status {
      *given = id;
      return read(id);
    };
  };
  auto mode = [&](const Field& mapping) -> Status {
    auto text = readText(mapping);
    if (!text) return Fail{text.error()};
    if (*text == "squash") {
      owner.mode = OwnerMapping::Mode::squash;
    } else if (*text == "passthrough") {
      owner.mode = OwnerMapping::Mode::passthrough;
    } else {
      return mustBe(mapping, "squash or passthrough");
    }
    return {};
  };
  auto read = readMap(field, {
                                 {"mapping", false, mode},
                                 {"uid", false, ownerId(owner.uid, uid)},
                                 {"gid", false, ownerId(owner.gid, gid)},
                             });
  if (!read) return read;
  if (owner.mode == OwnerMapping::Mode::passthrough && (uid || gid)) {
    const Field& id = uid && (!gid || uid->mark.line <= gid->mark.line) ? *uid : *gid;
    return error(id.mark, id.path +
                              " cannot be given with mapping passthrough, which keeps "
                              "the enclave's own ids");
  }
  return {};
}

Status HostConfigReader::readAllow(const Field& field, AccessPolicy& allow) const {
  auto ids = [this](std::optional<std::vector<std::uint32_t>>& out) {
    return [this, target = &out](const Field& list) -> Status {
      auto read = readIdList(list);
      if (!read) return Fail{read.error()};
      *target = std::move(*read);
      return {};
    };
  };
  return readMap(field, {
                            {"cids", false, ids(allow.cids)},
                            {"uids", false, ids(allow.uids)},
                        });
}

std::function<Status(const Field&)> HostConfigReader::entryName(
    std::map<std::string, int>& namesSeen, const char* kind, std::string& out) const {
  return [this, &namesSeen, kind, &out](const Field& nameField) -> Status {
    auto text = readText(nameField);
    if (!text) return Fail{text.error()};
    if (!isPlainName(*text)) {
      return error(nameField.mark, nameField.path + " '" + printable(*text) +
                                       "' must be 1-255 bytes without '/' and not . or ..");
    }
    int line = nameField.mark.line + 1;
    if (auto [earlier, added] = namesSeen.emplace(*text, line); !added) {
      return error(nameField.mark, nameField.path + ": the " + kind + " name '" + printable(*text) +
                                       "' is already used on line " +
                                       std::to_string(earlier->second));
    }
    out = std::move(*text);
    return {};
  };
}

std::function<Status(const Field&)> HostConfigReader::hostPath(std::string& out) const {
  return [this, &out](const Field& pathField) -> Status {
    auto text = readText(pathField);
    if (!text) return Fail{text.error()};
    if (text->empty()) return mustBe(pathField, "a host path");
    // A NUL (written "\0" in YAML) would silently cut the path short at open().
    if (text->find('\0') != std::string::npos) {
      return error(pathField.mark, pathField.path + " must not contain a NUL byte");
    }
    out = std::move(*text);
    return {};
  };
}

Status HostConfigReader::readExport(const Field& field, std::map<std::string, int>& namesSeen,
                                    ExportSettings& out) const {
  out.origin = at(field.mark);
  auto owner = [&](const Field& ownerField) { return readOwner(ownerField, out.owner); };
  auto allow = [&](const Field& allowField) { return readAllow(allowField, out.allow); };
  return readMap(field, {
                            {"name", true, entryName(namesSeen, "export", out.name)},
                            {"path", true, hostPath(out.path)},
                            {"readOnly", false, flag(out.readOnly)},
                            {"owner", false, owner},
                            {"allow", false, allow},
                            {"maxConnectionsPerPeer", false,
                             number(out.maxConnectionsPerPeer, kMaxConnectionsPerPeerRange)},
                            {"maxHandlesPerPeer", false,
                             number(out.maxHandlesPerPeer, kMaxHandlesPerPeerRange)},
                        });
}

Status HostConfigReader::readVolume(const Field& field, std::map<std::string, int>& namesSeen,
                                    VolumeSettings& out) const {
  out.origin = at(field.mark);
  auto allow = [&](const Field& allowField) { return readAllow(allowField, out.allow); };
  return readMap(field, {
                            {"name", true, entryName(namesSeen, "volume", out.name)},
                            {"path", true, hostPath(out.path)},
                            {"allow", false, allow},
                        });
}

template <class Settings>
Status HostConfigReader::readList(const Field& field, const char* kind, std::vector<Settings>& out,
                                  Status (HostConfigReader::*readEntry)(const Field&,
                                                                        std::map<std::string, int>&,
                                                                        Settings&) const) const {
  if (!field.node.IsSequence()) {
    return mustBe(field, std::string("a list of ") + kind + "s, each starting with '- name:'");
  }
  std::map<std::string, int> namesSeen;
  for (std::size_t i = 0; i < field.node.size(); ++i) {
    Settings entry;
    if (auto read = (this->*readEntry)(item(field, i), namesSeen, entry); !read) {
      return Fail{read.error()};
    }
    out.push_back(std::move(entry));
  }
  return {};
}

Status HostConfigReader::read(const std::vector<YAML::Node>& documents, HostConfig& config) const {
  auto top = document(documents);
  if (!top) return Fail{top.error()};

  auto logLevel = [&](const Field& field) -> Status {
    auto text = readText(field);
    auto level = text ? parseLogLevel(*text) : std::nullopt;
    if (!level) return mustBe(field, "one of trace, debug, info, warn, error, critical, off");
    config.logLevel = *level;
    return {};
  };
  auto metricsEndpoint = [&](const Field& field) -> Status {
    auto text = readText(field);
    if (!text) return Fail{text.error()};
    config.metrics = std::move(*text);
    return {};
  };
  auto limits = [&](const Field& field) { return readLimits(field, config.limits); };
  auto exports = [&](const Field& field) {
    return readList(field, "export", config.exports, &HostConfigReader::readExport);
  };
  auto volumes = [&](const Field& field) {
    return readList(field, "volume", config.volumes, &HostConfigReader::readVolume);
  };
  return readMap(*top, {
                           versionKey(),
                           {"listen", false, address(config.listen)},
                           {"control", false, address(config.control)},
                           {"metrics", false, metricsEndpoint},
                           {"logLevel", false, logLevel},
                           {"limits", false, limits},
                           {"exports", false, exports},
                           {"volumes", false, volumes},
                       });
}

}  // namespace

Result<HostConfig, std::string> parseHostConfig(const std::string& yamlText,
                                                const std::string& sourceName) {
  return parseConfig<HostConfig, HostConfigReader>(yamlText, sourceName);
}

Result<HostConfig, std::string> loadHostConfig(const std::string& path) {
  return loadConfig<HostConfig, HostConfigReader>(path);
}

}  // namespace enclavefs::host
