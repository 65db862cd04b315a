// What a client may name. Every name a request carries is one path component inside a
// directory the client already holds: never empty, never "." or "..", never containing '/'.
// Exports and volumes are named the same way, on the host and in the enclave's configuration.
// With that, and every lookup resolved by openat2 with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS
// | RESOLVE_NO_XDEV | O_NOFOLLOW, no request can reach outside its export.
#pragma once

#include <string_view>

namespace enclavefs {

bool isPlainName(std::string_view name);

}  // namespace enclavefs
