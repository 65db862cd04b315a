// How enclavefs-inspect shows what enclavefs-hostd's control socket answers: the status as
// tables, trace events as strace-like lines. Answers are read leniently: a field that is
// missing or of another type shows as "-", so that a server one version apart still prints.
// Every string from the server is made printable first (names come from enclaves).
#pragma once

#include <cstdio>
#include <string>

#include "tools/inspect/control_client.h"

namespace enclavefs::inspect {

// The answer to {"command":"status"}: the server, then exports, clients (each with its
// latency per operation) and volumes.
void printStatus(const Json& status, std::FILE* out);

// One trace event as a line (without the newline):
//   17:30:05.123456 client 3 lookup node 1 "name" = ENOENT (12 us)
std::string traceLine(const Json& event);

}  // namespace enclavefs::inspect
