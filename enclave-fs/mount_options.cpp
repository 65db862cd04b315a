#include "enclave-fs/mount_options.h"

#include <charconv>
#include <sstream>

namespace enclavefs::enclave {
namespace {

// Without pushed changes a host's change shows within a second; with them, the timeouts only
// bound changes inotify cannot see (writes through a host process's shared mapping).
constexpr double kShortCacheSeconds = 1;
constexpr double kLongCacheSeconds = 30;

bool parseSeconds(const std::string& text, double& out) {
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size() && out >= 0 && out <= 86400;
}

}  // namespace

CacheTimeouts MountOptions::cacheTimeouts(bool hostPushesChanges) const {
  const double fallback = hostPushesChanges ? kLongCacheSeconds : kShortCacheSeconds;
  return {entryTimeout.value_or(fallback), attrTimeout.value_or(fallback)};
}

std::string MountOptions::kernelOptions(const std::string& exportName) const {
  // libfuse splits options at commas; an export name may contain them.
  std::string escapedName;
  for (char c : exportName) {
    if (c == ',' || c == '\\') escapedName += '\\';
    escapedName += c;
  }
  std::string o = "fsname=enclavefs:" + escapedName +
                  ",subtype=enclavefs,default_permissions,allow_other,nosuid,nodev";
  o += exec.value_or(false) ? ",exec" : ",noexec";
  if (readOnly) o += ",ro";
  return o;
}

Result<MountOptions, std::string> parseMountOptions(const std::vector<std::string>& groups) {
  MountOptions options;
  for (const auto& group : groups) {
    std::stringstream split(group);
    std::string item;
    while (std::getline(split, item, ',')) {
      if (item.empty()) continue;
      auto eq = item.find('=');
      std::string key = item.substr(0, eq);
      std::string value = eq == std::string::npos ? "" : item.substr(eq + 1);
      bool hasValue = eq != std::string::npos;
      auto seconds = [&](auto& out) -> Result<void, std::string> {
        double parsed = 0;
        if (!hasValue || !parseSeconds(value, parsed)) {
          return Fail{"mount option '" + item + "' needs a number of seconds (0-86400)"};
        }
        out = parsed;
        return {};
      };
      auto count = [&](unsigned& out, unsigned low, unsigned high,
                       const char* what) -> Result<void, std::string> {
        unsigned n = 0;
        auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
        if (!hasValue || ec != std::errc() || end != value.data() + value.size() || n < low ||
            n > high) {
          return Fail{"mount option '" + item + "' needs " + what + " (" + std::to_string(low) +
                      "-" + std::to_string(high) + ")"};
        }
        out = n;
        return {};
      };
      Result<void, std::string> ok;
      if ((key == "symlinks" || key == "entry_timeout" || key == "attr_timeout" ||
           key == "write_through") &&
          !options.basicOnlyOption) {
        options.basicOnlyOption = item;
      }
      if (key == "ro" && !hasValue) {
        options.readOnly = true;
      } else if (key == "rw" && !hasValue) {
        options.readOnly = false;
      } else if (key == "exec" && !hasValue) {
        options.exec = true;
      } else if (key == "noexec" && !hasValue) {
        options.exec = false;
      } else if ((key == "nosuid" || key == "nodev") && !hasValue) {
        // Always in force.
      } else if ((key == "suid" || key == "dev") && !hasValue) {
        return Fail{"mount option '" + key + "' is refused: files from the host must not gain "
                    "privileges or reach devices in the enclave"};
      } else if (key == "symlinks") {
        if (value == "follow") {
          options.policy.followOutwardSymlinks = true;
        } else if (value == "inside") {
          options.policy.followOutwardSymlinks = false;
        } else {
          return Fail{"mount option '" + item + "' must be symlinks=inside or symlinks=follow"};
        }
      } else if (key == "write_through" && !hasValue) {
        options.writeThrough = true;
      } else if (key == "debug" && !hasValue) {
        options.debug = true;
      } else if (key == "entry_timeout") {
        ok = seconds(options.entryTimeout);
      } else if (key == "attr_timeout") {
        ok = seconds(options.attrTimeout);
      } else if (key == "timeout") {
        ok = seconds(options.requestTimeoutSeconds);
        if (ok && options.requestTimeoutSeconds < 1) {
          return Fail{std::string("mount option 'timeout' must be at least 1 second")};
        }
      } else if (key == "max_threads") {
        ok = count(options.maxThreads, 1, 64, "a thread count");
      } else if (key == "busy_poll") {
        ok = count(options.busyPollMicros, 0, 1000, "microseconds");
      } else {
        return Fail{"unknown mount option '" + item + "'"};
      }
      if (!ok) return Fail{ok.error()};
    }
  }
  return options;
}

}  // namespace enclavefs::enclave
