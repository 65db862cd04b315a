// Logging: one spdlog logger per component, all to stderr.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace enclavefs {

// The logger for a component ("hostd", "session", "mount", ...), created on first use.
std::shared_ptr<spdlog::logger> logger(const std::string& component);

// Parses trace|debug|info|warn|error|critical|off.
std::optional<spdlog::level::level_enum> parseLogLevel(const std::string& text);

// Sets the level for every logger, present and future.
void setLogLevel(spdlog::level::level_enum level);

// Text a peer chose, made safe to print: control and non-ASCII bytes become '?', and it is
// cut to `maxBytes`.
std::string printable(std::string_view text, std::size_t maxBytes = 200);

// Sends every logger, present and future, to `path` (appending) instead of stderr. A
// daemon whose stderr is /dev/null keeps its log this way. The error names the problem.
std::optional<std::string> logToFile(const std::string& path);

}  // namespace enclavefs
