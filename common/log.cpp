#include "common/log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

namespace enclavefs {
namespace {

constexpr const char* kPattern = "%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v";

// Where new loggers write; replaced once by logToFile.
spdlog::sink_ptr& currentSink() {
  static spdlog::sink_ptr sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  return sink;
}

}  // namespace

std::shared_ptr<spdlog::logger> logger(const std::string& component) {
  if (auto existing = spdlog::get(component)) return existing;
  auto created = std::make_shared<spdlog::logger>(component, currentSink());
  spdlog::initialize_logger(created);  // registers it, with the global level and pattern
  created->set_pattern(kPattern);
  created->flush_on(spdlog::level::info);  // a daemon's log file is read while it runs
  return created;
}

std::optional<std::string> logToFile(const std::string& path) {
  try {
    currentSink() = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path);
  } catch (const spdlog::spdlog_ex& e) {
    return "cannot open log file " + path + ": " + e.what();
  }
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) {
    l->sinks() = {currentSink()};
    l->set_pattern(kPattern);
    l->flush_on(spdlog::level::info);
  });
  return std::nullopt;
}

std::string printable(std::string_view text, std::size_t maxBytes) {
  std::string out;
  for (char c : text.substr(0, maxBytes)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

std::optional<spdlog::level::level_enum> parseLogLevel(const std::string& text) {
  auto level = spdlog::level::from_str(text);
  // from_str answers `off` for anything it does not know.
  if (level == spdlog::level::off && text != "off") return std::nullopt;
  return level;
}

void setLogLevel(spdlog::level::level_enum level) { spdlog::set_level(level); }

}  // namespace enclavefs
