#include "common/names.h"

#include "common/hard_limits.h"

namespace enclavefs {

bool isPlainName(std::string_view name) {
  return !name.empty() && name.size() <= limits::kMaxNameBytes && name != "." && name != ".." &&
         name.find('/') == std::string_view::npos && name.find('\0') == std::string_view::npos;
}

}  // namespace enclavefs
