#include "host-server/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <string_view>
#include <utility>

#include "common/log.h"
#include "common/unique_fd.h"
#include "host-server/names.h"

namespace enclavefs::host {
namespace {

// Far above any real configuration; stops `--config /dev/zero` from reading forever.
constexpr std::size_t kMaxConfigBytes = 1 << 20;

constexpr std::uint32_t kSchemaVersion = 1;

constexpr ConfigRange kAnyId{0, UINT32_MAX};
// (uid_t)-1 tells chown "leave this id unchanged", so squashing to it would silently keep
// whatever owner the file had.
constexpr ConfigRange kOwnerId{0, UINT32_MAX - 1};

// yaml-cpp tags a plain (unquoted) scalar "?" and a quoted one "!". A number or a boolean
// must be plain or explicitly tagged, so `maxClients: "64"` is refused as text.
constexpr std::string_view kPlainTag = "?";
constexpr std::string_view kIntTag = "tag:yaml.org,2002:int";
constexpr std::string_view kBoolTag = "tag:yaml.org,2002:bool";

using Status = Result<void, std::string>;

// A node of the document and how an error about it is told: its key path
// ("exports[0].owner.uid", empty for the whole document) and where it is.
struct Field {
  std::string path;
  YAML::Node node;
  YAML::Mark mark;
};

// One key a map may hold, and what reads its value.
struct Key {
  std::string_view name;
  bool required;
  std::function<Status(const Field&)> read;
};

std::string nameOf(const Field& field) {
  return field.path.empty() ? "the configuration" : field.path;
}

// The value as an error quotes it.
std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      return "an empty value";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Scalar:
      break;
  }
  std::string quoted = "'" + printable(node.Scalar()) + "'";
  return node.Tag() == kPlainTag ? quoted : "the quoted text " + quoted;
}

// What a number is stored in: T itself, or the T inside std::optional<T>.
template <class T>
struct StoredAs {
  using type = T;
};
template <class T>
struct StoredAs<std::optional<T>> {
  using type = T;
};

std::string wholeNumberIn(ConfigRange range) {
  return "a whole number from " + std::to_string(range.min) + " to " + std::to_string(range.max);
}

// Reads one document into a HostConfig, stopping at the first problem. Each reader answers
// the error sentence for the first thing wrong in its part of the document.
class ConfigReader {
 public:
  explicit ConfigReader(std::string sourceName) : source_(std::move(sourceName)) {}

  Result<HostConfig, std::string> read(const std::vector<YAML::Node>& documents) const;

 private:
  Fail<std::string> error(const YAML::Mark& mark, const std::string& sentence) const {
    return Fail{at(mark) + ": " + sentence};
  }
  Fail<std::string> mustBe(const Field& field, const std::string& expected) const {
    return error(field.mark,
                 nameOf(field) + " must be " + expected + ", not " + describe(field.node));
  }
  std::string at(const YAML::Mark& mark) const {
    return source_ + ":" + std::to_string(mark.is_null() ? 1 : mark.line + 1);
  }

  Status readMap(const Field& map, std::initializer_list<Key> keys) const;
  Result<std::uint64_t, std::string> readNumber(const Field& field, ConfigRange range) const;
  Result<bool, std::string> readBool(const Field& field) const;
  Result<std::string, std::string> readText(const Field& field) const;
  Result<std::vector<std::uint32_t>, std::string> readIdList(const Field& field) const;
  Status readVersion(const Field& field) const;

  // Key readers that store a value in `out`.
  template <class T>
  std::function<Status(const Field&)> number(T& out, ConfigRange range) const;
  std::function<Status(const Field&)> flag(bool& out) const;

  Status readLimits(const Field& field, LimitsConfig& limits) const;
  // A list of entries (exports, volumes), each read by `readEntry`; `namesSeen` maps each
  // entry name read so far to the line it is on.
  template <class Settings>
  Status readList(const Field& field, const char* kind, std::vector<Settings>& out,
                  Status (ConfigReader::*readEntry)(const Field&, std::map<std::string, int>&,
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

  std::string source_;
};

// Every key of the map is checked before any value is read, so a misspelt required key is
// reported as unknown (naming the spelling to fix) rather than as missing.
Status ConfigReader::readMap(const Field& map, std::initializer_list<Key> keys) const {
  if (!map.node.IsMap()) return mustBe(map, "a map of settings");
  auto childPath = [&](const std::string& name) {
    return map.path.empty() ? name : map.path + "." + name;
  };

  std::map<std::string, Field, std::less<>> present;
  // Nodes are copied out of the entry: yaml-cpp's iterators hand out temporaries.
  for (const auto& entry : map.node) {
    YAML::Node key = entry.first;
    YAML::Node value = entry.second;
    if (!key.IsScalar()) {
      return error(key.Mark(),
                   "the keys of " + nameOf(map) + " must be words, not " + describe(key));
    }
    const std::string& name = key.Scalar();
    if (auto earlier = present.find(name); earlier != present.end()) {
      return error(key.Mark(), "'" + childPath(name) + "' is given twice (first on line " +
                                   std::to_string(earlier->second.mark.line + 1) + ")");
    }
    bool known =
        std::any_of(keys.begin(), keys.end(), [&](const Key& k) { return k.name == name; });
    if (!known) {
      std::string expected;
      for (const Key& k : keys) expected += (expected.empty() ? "" : ", ") + std::string(k.name);
      return error(key.Mark(), "unknown key '" + childPath(printable(name)) +
                                   "' (expected one of: " + expected + ")");
    }
    // An empty value has no position of its own (yaml-cpp places it at the next token), so
    // an error about it points at its key.
    YAML::Mark mark = value.IsNull() ? key.Mark() : value.Mark();
    present.emplace(name, Field{childPath(name), value, mark});
  }

  for (const Key& k : keys) {
    auto found = present.find(k.name);
    if (found == present.end()) {
      if (!k.required) continue;
      std::string where = map.path.empty() ? "the configuration" : map.path;
      return error(map.mark, where + " is missing the required key '" + std::string(k.name) + "'");
    }
    if (auto read = k.read(found->second); !read) return read;
  }
  return {};
}

Result<std::uint64_t, std::string> ConfigReader::readNumber(const Field& field,
                                                            ConfigRange range) const {
  const YAML::Node& node = field.node;
  if (!node.IsScalar() || (node.Tag() != kPlainTag && node.Tag() != kIntTag)) {
    return mustBe(field, wholeNumberIn(range));
  }
  // Decimal digits only: yaml-cpp's own conversions would wrap "-1" into an unsigned type.
  const std::string& text = node.Scalar();
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value < range.min ||
      value > range.max) {
    return mustBe(field, wholeNumberIn(range));
  }
  return value;
}

// Only the YAML 1.2 spellings: YAML 1.1's yes/no/on/off are refused rather than guessed at.
Result<bool, std::string> ConfigReader::readBool(const Field& field) const {
  const YAML::Node& node = field.node;
  if (node.IsScalar() && (node.Tag() == kPlainTag || node.Tag() == kBoolTag)) {
    const std::string& text = node.Scalar();
    if (text == "true" || text == "True" || text == "TRUE") return true;
    if (text == "false" || text == "False" || text == "FALSE") return false;
  }
  return mustBe(field, "true or false");
}

Result<std::string, std::string> ConfigReader::readText(const Field& field) const {
  if (!field.node.IsScalar()) return mustBe(field, "text");
  return field.node.Scalar();
}

Result<std::vector<std::uint32_t>, std::string> ConfigReader::readIdList(const Field& field) const {
  if (!field.node.IsSequence()) return mustBe(field, "a list of numbers, like [16, 17]");
  std::vector<std::uint32_t> ids;
  for (std::size_t i = 0; i < field.node.size(); ++i) {
    YAML::Node item = field.node[i];
    // An empty item has no position of its own; the list's is the nearest.
    Field itemField{field.path + "[" + std::to_string(i) + "]", item,
                    item.IsNull() ? field.mark : item.Mark()};
    auto id = readNumber(itemField, kAnyId);
    if (!id) return Fail{id.error()};
    ids.push_back(static_cast<std::uint32_t>(*id));
  }
  return ids;
}

Status ConfigReader::readVersion(const Field& field) const {
  auto version = readNumber(field, {kSchemaVersion, kSchemaVersion});
  if (!version) {
    return error(field.mark, "version must be " + std::to_string(kSchemaVersion) +
                                 " (the only schema this enclavefs-hostd knows), not " +
                                 describe(field.node));
  }
  return {};
}

template <class T>
std::function<Status(const Field&)> ConfigReader::number(T& out, ConfigRange range) const {
  return [this, target = &out, range](const Field& field) -> Status {
    auto value = readNumber(field, range);
    if (!value) return Fail{value.error()};
    *target = static_cast<typename StoredAs<T>::type>(*value);
    return {};
  };
}

std::function<Status(const Field&)> ConfigReader::flag(bool& out) const {
  return [this, target = &out](const Field& field) -> Status {
    auto value = readBool(field);
    if (!value) return Fail{value.error()};
    *target = *value;
    return {};
  };
}

Status ConfigReader::readLimits(const Field& field, LimitsConfig& limits) const {
  return readMap(field, {
                            {"maxClients", false, number(limits.maxClients, kMaxClientsRange)},
                            {"maxInFlight", false, number(limits.maxInFlight, kMaxInFlightRange)},
                            {"maxNodes", false, number(limits.maxNodes, kMaxNodesRange)},
                            {"maxHandles", false, number(limits.maxHandles, kMaxHandlesRange)},
                            {"poolThreads", false, number(limits.poolThreads, kPoolThreadsRange)},
                        });
}

Status ConfigReader::readOwner(const Field& field, OwnerMapping& owner) const {
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

Status ConfigReader::readAllow(const Field& field, AccessPolicy& allow) const {
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

std::function<Status(const Field&)> ConfigReader::entryName(std::map<std::string, int>& namesSeen,
                                                           const char* kind,
                                                           std::string& out) const {
  return [this, &namesSeen, kind, &out](const Field& nameField) -> Status {
    auto text = readText(nameField);
    if (!text) return Fail{text.error()};
    if (!isPlainName(*text)) {
      return error(nameField.mark, nameField.path + " '" + printable(*text) +
                                       "' must be 1-255 bytes without '/' and not . or ..");
    }
    int line = nameField.mark.line + 1;
    if (auto [earlier, added] = namesSeen.emplace(*text, line); !added) {
      return error(nameField.mark, nameField.path + ": the " + kind + " name '" +
                                       printable(*text) + "' is already used on line " +
                                       std::to_string(earlier->second));
    }
    out = std::move(*text);
    return {};
  };
}

std::function<Status(const Field&)> ConfigReader::hostPath(std::string& out) const {
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

Status ConfigReader::readExport(const Field& field, std::map<std::string, int>& namesSeen,
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

Status ConfigReader::readVolume(const Field& field, std::map<std::string, int>& namesSeen,
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
Status ConfigReader::readList(const Field& field, const char* kind, std::vector<Settings>& out,
                              Status (ConfigReader::*readEntry)(const Field&,
                                                                std::map<std::string, int>&,
                                                                Settings&) const) const {
  if (!field.node.IsSequence()) {
    return mustBe(field, std::string("a list of ") + kind + "s, each starting with '- name:'");
  }
  std::map<std::string, int> namesSeen;
  for (std::size_t i = 0; i < field.node.size(); ++i) {
    YAML::Node item = field.node[i];
    Field itemField{field.path + "[" + std::to_string(i) + "]", item,
                    item.IsNull() ? field.mark : item.Mark()};
    Settings entry;
    if (auto read = (this->*readEntry)(itemField, namesSeen, entry); !read) {
      return Fail{read.error()};
    }
    out.push_back(std::move(entry));
  }
  return {};
}

Result<HostConfig, std::string> ConfigReader::read(const std::vector<YAML::Node>& documents) const {
  if (documents.empty()) {
    return error(YAML::Mark::null_mark(),
                 "the configuration is empty; it needs at least "
                 "'version: " +
                     std::to_string(kSchemaVersion) + "'");
  }
  if (documents.size() > 1) {
    return error(documents[1].Mark(),
                 "a second YAML document begins here; the configuration "
                 "must be a single document");
  }
  Field top{"", documents[0], documents[0].Mark()};

  // The version is checked before anything else: a file for a newer schema should say so,
  // not fail on the first key this version does not know.
  if (top.node.IsMap()) {
    for (const auto& entry : top.node) {
      YAML::Node key = entry.first;
      YAML::Node value = entry.second;
      if (key.IsScalar() && key.Scalar() == "version") {
        Field version{"version", value, value.IsNull() ? key.Mark() : value.Mark()};
        if (auto checked = readVersion(version); !checked) return Fail{checked.error()};
        break;
      }
    }
  }

  HostConfig config;
  auto listen = [&](const Field& field) -> Status {
    auto text = readText(field);
    if (!text) return Fail{text.error()};
    auto address = parseAddress(*text);
    if (!address) return error(field.mark, "listen: " + address.error());
    config.listen = std::move(*address);
    return {};
  };
  auto logLevel = [&](const Field& field) -> Status {
    auto text = readText(field);
    auto level = text ? parseLogLevel(*text) : std::nullopt;
    if (!level) return mustBe(field, "one of trace, debug, info, warn, error, critical, off");
    config.logLevel = *level;
    return {};
  };
  auto limits = [&](const Field& field) { return readLimits(field, config.limits); };
  auto exports = [&](const Field& field) {
    return readList(field, "export", config.exports, &ConfigReader::readExport);
  };
  auto volumes = [&](const Field& field) {
    return readList(field, "volume", config.volumes, &ConfigReader::readVolume);
  };
  auto read = readMap(top, {
                               {"version", true, [&](const Field& f) { return readVersion(f); }},
                               {"listen", false, listen},
                               {"logLevel", false, logLevel},
                               {"limits", false, limits},
                               {"exports", false, exports},
                               {"volumes", false, volumes},
                           });
  if (!read) return Fail{read.error()};
  return config;
}

}  // namespace

Result<HostConfig, std::string> parseHostConfig(const std::string& yamlText,
                                                const std::string& sourceName) {
  try {
    std::vector<YAML::Node> documents = YAML::LoadAll(yamlText);
    return ConfigReader(sourceName).read(documents);
  } catch (const YAML::ParserException& e) {
    return Fail{sourceName + ":" + std::to_string(e.mark.line + 1) +
                ": YAML syntax error: " + e.msg};
  } catch (const std::exception& e) {
    // yaml-cpp reports other trouble (nesting too deep, ...) by exception as well.
    return Fail{sourceName + ": cannot read the configuration: " + e.what()};
  }
}

Result<HostConfig, std::string> loadHostConfig(const std::string& path) {
  auto cannot = [&](const std::string& why) {
    return Fail{"cannot read config file " + path + ": " + why};
  };
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return cannot(std::strerror(errno));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return cannot(std::strerror(errno));
  if (S_ISDIR(st.st_mode)) return cannot("it is a directory");

  std::string text;
  char buffer[16384];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return cannot(std::strerror(errno));
    if (n == 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
    if (text.size() > kMaxConfigBytes) {
      return cannot("it is larger than " + std::to_string(kMaxConfigBytes >> 20) + " MiB");
    }
  }
  return parseHostConfig(text, path);
}

}  // namespace enclavefs::host
