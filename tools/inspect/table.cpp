#include "tools/inspect/table.h"

#include <algorithm>
#include <cmath>

#include "host-server/volume_file.h"

namespace enclavefs::inspect {
namespace {

// One or no decimals: "12.5", "35" (a whole number keeps none).
std::string oneDecimal(double value) {
  char text[64];
  std::snprintf(text, sizeof text, "%.1f", value);
  std::string out = text;
  if (out.ends_with(".0")) out.resize(out.size() - 2);
  return out;
}

}  // namespace

void Table::print(std::FILE* out, const std::string& indent) const {
  std::vector<std::size_t> widths;
  for (const auto& row : rows_) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows_) {
    std::string line = indent;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(widths[i] - row[i].size() + 2, ' ');
    }
    std::fprintf(out, "%s\n", line.c_str());
  }
}

std::string formatMicros(double micros) {
  if (!std::isfinite(micros) || micros < 0) return "-";
  if (micros < 10) return oneDecimal(micros) + " us";
  if (micros < 10'000) return oneDecimal(std::round(micros)) + " us";
  if (micros < 10'000'000) return oneDecimal(micros / 1000) + " ms";
  char text[64];
  std::snprintf(text, sizeof text, "%.2f s", micros / 1e6);
  return text;
}

std::string formatRate(double bytesPerSecond) {
  if (!std::isfinite(bytesPerSecond) || bytesPerSecond < 0 || bytesPerSecond >= 1e18) return "-";
  return host::formatBytes(static_cast<std::uint64_t>(std::llround(bytesPerSecond))) + "/s";
}

std::string formatPerSecond(double perSecond) {
  if (!std::isfinite(perSecond) || perSecond < 0) return "-";
  return perSecond < 100 ? oneDecimal(perSecond) : oneDecimal(std::round(perSecond));
}

}  // namespace enclavefs::inspect
