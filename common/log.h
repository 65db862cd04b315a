// Logging: one spdlog logger per component, all to stderr.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <optional>
#include <string>

namespace enclavefs {

// The logger for a component ("hostd", "session", "mount", ...), created on first use.
std::shared_ptr<spdlog::logger> logger(const std::string& component);

// Parses trace|debug|info|warn|error|critical|off.
std::optional<spdlog::level::level_enum> parseLogLevel(const std::string& text);

// Sets the level for every logger, present and future.
void setLogLevel(spdlog::level::level_enum level);

}  // namespace enclavefs
