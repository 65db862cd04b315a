#include "common/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace enclavefs {

std::shared_ptr<spdlog::logger> logger(const std::string& component) {
  if (auto existing = spdlog::get(component)) return existing;
  auto created = spdlog::stderr_color_mt(component);
  created->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");
  return created;
}

std::optional<spdlog::level::level_enum> parseLogLevel(const std::string& text) {
  auto level = spdlog::level::from_str(text);
  // from_str answers `off` for anything it does not know.
  if (level == spdlog::level::off && text != "off") return std::nullopt;
  return level;
}

void setLogLevel(spdlog::level::level_enum level) { spdlog::set_level(level); }

}  // namespace enclavefs
