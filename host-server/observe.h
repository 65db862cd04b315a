// What an operator sees of a running server: the `status` report and the Prometheus metrics,
// built from the server's state on the loop thread. The control socket (control.h) and the
// metrics endpoint (metrics_http.h) only carry these.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace enclavefs::host {

class Server;

// The status report: server, exports, clients, volumes (docs/operations.md, *Inspecting*).
nlohmann::json statusReport(const Server& server);

// Every counter and gauge, in the Prometheus text exposition format (version 0.0.4).
std::string metricsText(const Server& server);

}  // namespace enclavefs::host
