// What every configuration file of enclavefs has in common: one YAML document, a map whose
// `version` is checked before anything else, and strict reading of each value (unknown or
// repeated keys, wrong types and out-of-range numbers are refused, never guessed at).
//
// Every error is one sentence that starts with "SOURCE:LINE: " and names the key path at
// fault ("exports[0].owner.uid"), so a typo in a security setting stops the program with a
// message that says where to look. Nothing here throws: yaml-cpp's exceptions are turned into
// such sentences by parseYaml().
//
// A file's own reader derives from ConfigReader and describes each map it knows as a list of
// ConfigKeys, each with the function that reads and stores its value.
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/address.h"
#include "common/result.h"

namespace enclavefs {

using ConfigStatus = Result<void, std::string>;

// A node of the document and how an error about it is told: its key path
// ("exports[0].owner.uid", empty for the whole document) and where it is.
struct ConfigField {
  std::string path;
  YAML::Node node;
  YAML::Mark mark;
};

// One key a map may hold, and what reads its value.
struct ConfigKey {
  std::string_view name;
  bool required;
  std::function<ConfigStatus(const ConfigField&)> read;
};

// The value as an error quotes it: "'x'", "the quoted text 'x'", "a list", "an empty value".
std::string describeYaml(const YAML::Node& node);

class ConfigReader {
 public:
  // `program` is the one that reads this kind of file ("enclavefs-hostd"), named when a file
  // is for another schema version than `schemaVersion`, the only one it knows.
  ConfigReader(std::string sourceName, std::string program, std::uint32_t schemaVersion);

  // "SOURCE:LINE" of `mark` (line 1 for a null mark).
  std::string at(const YAML::Mark& mark) const;
  Fail<std::string> error(const YAML::Mark& mark, const std::string& sentence) const;
  // "PATH must be EXPECTED, not VALUE".
  Fail<std::string> mustBe(const ConfigField& field, const std::string& expected) const;

  // The single document's top-level map, once its `version` (if given) has been checked.
  // Refuses an empty text and more than one document.
  Result<ConfigField, std::string> document(const std::vector<YAML::Node>& documents) const;
  // The `version` key of the top-level map.
  ConfigKey versionKey() const;

  // Reads a map: first refuses unknown, repeated and non-word keys (so a misspelt required
  // key is reported as unknown, naming the spelling to fix, rather than as missing), then
  // runs the reader of each key present in the order of `keys`, whatever the order in the
  // file, refusing a missing required key when its turn comes.
  ConfigStatus readMap(const ConfigField& map, std::initializer_list<ConfigKey> keys) const;
  // Item `index` of a list, with its key path ("mounts[2]").
  ConfigField item(const ConfigField& list, std::size_t index) const;

  // A plain or int-tagged decimal number from `min` to `max`.
  Result<std::uint64_t, std::string> readNumber(const ConfigField& field, std::uint64_t min,
                                                std::uint64_t max) const;
  // Only the YAML 1.2 spellings of true and false.
  Result<bool, std::string> readBool(const ConfigField& field) const;
  // Any scalar, quoted or not.
  Result<std::string, std::string> readText(const ConfigField& field) const;

  // A key reader that stores a transport address (parseAddress) in `out`, an Address or a
  // std::optional<Address>; parseAddress's reason follows "PATH: ".
  template <class T>
  std::function<ConfigStatus(const ConfigField&)> address(T& out) const {
    return [this, target = &out](const ConfigField& field) -> ConfigStatus {
      auto text = readText(field);
      if (!text) return Fail{text.error()};
      auto parsed = parseAddress(*text);
      if (!parsed) return error(field.mark, field.path + ": " + parsed.error());
      *target = std::move(*parsed);
      return {};
    };
  }
  // A key reader that stores a boolean in `out` (a bool or a std::optional<bool>).
  template <class T>
  std::function<ConfigStatus(const ConfigField&)> flag(T& out) const {
    return [this, target = &out](const ConfigField& field) -> ConfigStatus {
      auto value = readBool(field);
      if (!value) return Fail{value.error()};
      *target = *value;
      return {};
    };
  }

 private:
  ConfigStatus readVersion(const ConfigField& field) const;

  std::string source_;
  std::string program_;
  std::uint32_t schemaVersion_;
};

// Parses `yamlText` into its documents and hands them to `read`. A YAML syntax error becomes
// "SOURCE:LINE: YAML syntax error: ...", any other yaml-cpp exception a sentence as well.
ConfigStatus parseYaml(const std::string& yamlText, const std::string& sourceName,
                       const std::function<ConfigStatus(const std::vector<YAML::Node>&)>& read);

// The text of the configuration file at `path`, at most 1 MiB (so `--config /dev/zero` does
// not read forever). The error is "cannot read config file PATH: WHY".
Result<std::string, std::string> readConfigFile(const std::string& path);

// A whole configuration of type Config, read by `Reader(sourceName).read(documents, config)`.
template <class Config, class Reader>
Result<Config, std::string> parseConfig(const std::string& yamlText,
                                        const std::string& sourceName) {
  Config config;
  auto read = parseYaml(yamlText, sourceName, [&](const std::vector<YAML::Node>& documents) {
    return Reader(sourceName).read(documents, config);
  });
  if (!read) return Fail{read.error()};
  return config;
}

// The same from the file at `path`, which names the source in every error.
template <class Config, class Reader>
Result<Config, std::string> loadConfig(const std::string& path) {
  auto text = readConfigFile(path);
  if (!text) return Fail{text.error()};
  return parseConfig<Config, Reader>(*text, path);
}

}  // namespace enclavefs
