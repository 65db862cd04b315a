#include "common/yaml_config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <exception>
#include <map>
#include <utility>

#include "common/log.h"
#include "common/unique_fd.h"

namespace enclavefs {
namespace {

// Far above any real configuration; stops `--config /dev/zero` from reading forever.
constexpr std::size_t kMaxConfigBytes = 1 << 20;

// yaml-cpp tags a plain (unquoted) scalar "?" and a quoted one "!". A number or a boolean
// must be plain or explicitly tagged, so `maxClients: "64"` is refused as text.
constexpr std::string_view kPlainTag = "?";
constexpr std::string_view kIntTag = "tag:yaml.org,2002:int";
constexpr std::string_view kBoolTag = "tag:yaml.org,2002:bool";

std::string nameOf(const ConfigField& field) {
  return field.path.empty() ? "the configuration" : field.path;
}

std::string wholeNumberIn(std::uint64_t min, std::uint64_t max) {
  return "a whole number from " + std::to_string(min) + " to " + std::to_string(max);
}

}  // namespace

std::string describeYaml(const YAML::Node& node) {
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

ConfigReader::ConfigReader(std::string sourceName, std::string program, std::uint32_t schemaVersion)
    : source_(std::move(sourceName)), program_(std::move(program)), schemaVersion_(schemaVersion) {}

std::string ConfigReader::at(const YAML::Mark& mark) const {
  return source_ + ":" + std::to_string(mark.is_null() ? 1 : mark.line + 1);
}

Fail<std::string> ConfigReader::error(const YAML::Mark& mark, const std::string& sentence) const {
  return Fail{at(mark) + ": " + sentence};
}

Fail<std::string> ConfigReader::mustBe(const ConfigField& field,
                                       const std::string& expected) const {
  return error(field.mark,
               nameOf(field) + " must be " + expected + ", not " + describeYaml(field.node));
}

Result<ConfigField, std::string> ConfigReader::document(
    const std::vector<YAML::Node>& documents) const {
  if (documents.empty()) {
    return error(YAML::Mark::null_mark(),
                 "the configuration is empty; it needs at least "
                 "'version: " +
                     std::to_string(schemaVersion_) + "'");
  }
  if (documents.size() > 1) {
    return error(documents[1].Mark(),
                 "a second YAML document begins here; the configuration "
                 "must be a single document");
  }
  ConfigField top{"", documents[0], documents[0].Mark()};

  // The version is checked before anything else: a file for a newer schema should say so,
  // not fail on the first key this version does not know.
  if (top.node.IsMap()) {
    for (const auto& entry : top.node) {
      YAML::Node key = entry.first;
      YAML::Node value = entry.second;
      if (key.IsScalar() && key.Scalar() == "version") {
        ConfigField version{"version", value, value.IsNull() ? key.Mark() : value.Mark()};
        if (auto checked = readVersion(version); !checked) return Fail{checked.error()};
        break;
      }
    }
  }
  return top;
}

ConfigKey ConfigReader::versionKey() const {
  return {"version", true, [this](const ConfigField& field) { return readVersion(field); }};
}

ConfigStatus ConfigReader::readVersion(const ConfigField& field) const {
  auto version = readNumber(field, schemaVersion_, schemaVersion_);
  if (!version) {
    return error(field.mark, "version must be " + std::to_string(schemaVersion_) +
                                 " (the only schema this " + program_ + " knows), not " +
                                 describeYaml(field.node));
  }
  return {};
}

ConfigStatus ConfigReader::readMap(const ConfigField& map,
                                   std::initializer_list<ConfigKey> keys) const {
  if (!map.node.IsMap()) return mustBe(map, "a map of settings");
  auto childPath = [&](const std::string& name) {
    return map.path.empty() ? name : map.path + "." + name;
  };

  std::map<std::string, ConfigField, std::less<>> present;
  // Nodes are copied out of the entry: yaml-cpp's iterators hand out temporaries.
  for (const auto& entry : map.node) {
    YAML::Node key = entry.first;
    YAML::Node value = entry.second;
    if (!key.IsScalar()) {
      return error(key.Mark(),
                   "the keys of " + nameOf(map) + " must be words, not " + describeYaml(key));
    }
    const std::string& name = key.Scalar();
    if (auto earlier = present.find(name); earlier != present.end()) {
      return error(key.Mark(), "'" + childPath(name) + "' is given twice (first on line " +
                                   std::to_string(earlier->second.mark.line + 1) + ")");
    }
    bool known =
        std::any_of(keys.begin(), keys.end(), [&](const ConfigKey& k) { return k.name == name; });
    if (!known) {
      std::string expected;
      for (const ConfigKey& k : keys) {
        expected += (expected.empty() ? "" : ", ") + std::string(k.name);
      }
      return error(key.Mark(), "unknown key '" + childPath(printable(name)) +
                                   "' (expected one of: " + expected + ")");
    }
    // An empty value has no position of its own (yaml-cpp places it at the next token), so
    // an error about it points at its key.
    YAML::Mark mark = value.IsNull() ? key.Mark() : value.Mark();
    present.emplace(name, ConfigField{childPath(name), value, mark});
  }

  for (const ConfigKey& k : keys) {
    auto found = present.find(k.name);
    if (found == present.end()) {
      if (!k.required) continue;
      return error(map.mark,
                   nameOf(map) + " is missing the required key '" + std::string(k.name) + "'");
    }
    if (auto read = k.read(found->second); !read) return read;
  }
  return {};
}

ConfigField ConfigReader::item(const ConfigField& list, std::size_t index) const {
  YAML::Node node = list.node[index];
  // An empty item has no position of its own; the list's is the nearest.
  return {list.path + "[" + std::to_string(index) + "]", node,
          node.IsNull() ? list.mark : node.Mark()};
}

Result<std::uint64_t, std::string> ConfigReader::readNumber(const ConfigField& field,
                                                            std::uint64_t min,
                                                            std::uint64_t max) const {
  const YAML::Node& node = field.node;
  if (!node.IsScalar() || (node.Tag() != kPlainTag && node.Tag() != kIntTag)) {
    return mustBe(field, wholeNumberIn(min, max));
  }
  // Decimal digits only: yaml-cpp's own conversions would wrap "-1" into an unsigned type.
  const std::string& text = node.Scalar();
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value < min ||
      value > max) {
    return mustBe(field, wholeNumberIn(min, max));
  }
  return value;
}

// YAML 1.1's yes/no/on/off are refused rather than guessed at.
Result<bool, std::string> ConfigReader::readBool(const ConfigField& field) const {
  const YAML::Node& node = field.node;
  if (node.IsScalar() && (node.Tag() == kPlainTag || node.Tag() == kBoolTag)) {
    const std::string& text = node.Scalar();
    if (text == "true" || text == "True" || text == "TRUE") return true;
    if (text == "false" || text == "False" || text == "FALSE") return false;
  }
  return mustBe(field, "true or false");
}

Result<std::string, std::string> ConfigReader::readText(const ConfigField& field) const {
  if (!field.node.IsScalar()) return mustBe(field, "text");
  return field.node.Scalar();
}

ConfigStatus parseYaml(const std::string& yamlText, const std::string& sourceName,
                       const std::function<ConfigStatus(const std::vector<YAML::Node>&)>& read) {
  try {
    return read(YAML::LoadAll(yamlText));
  } catch (const YAML::ParserException& e) {
    return Fail{sourceName + ":" + std::to_string(e.mark.line + 1) +
                ": YAML syntax error: " + e.msg};
  } catch (const std::exception& e) {
    // yaml-cpp reports other trouble (nesting too deep, ...) by exception as well.
    return Fail{sourceName + ": cannot read the configuration: " + e.what()};
  }
}

Result<std::string, std::string> readConfigFile(const std::string& path) {
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
  return text;
}

}  // namespace enclavefs
