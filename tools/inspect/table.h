// Text output of enclavefs-inspect: aligned columns, and the units people read (durations,
// rates, counts). Every cell that came from a peer or from inside a volume goes through
// printable() before it gets here, so a name cannot steer the terminal.
#pragma once

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace enclavefs::inspect {

// Columns as wide as their widest cell, two spaces apart; the last column is not padded.
class Table {
 public:
  explicit Table(std::vector<std::string> headers) : rows_{std::move(headers)} {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  bool empty() const { return rows_.size() == 1; }
  // Writes the header and the rows, each line after `indent`.
  void print(std::FILE* out, const std::string& indent = "") const;

 private:
  std::vector<std::vector<std::string>> rows_;  // rows_[0] is the header
};

// Microseconds as "0.4 us", "35 us", "12.5 ms", "2.25 s".
std::string formatMicros(double micros);
// Bytes per second as "1.5 MiB/s".
std::string formatRate(double bytesPerSecond);
// A count per second: "0", "12.5", "1200".
std::string formatPerSecond(double perSecond);

}  // namespace enclavefs::inspect
