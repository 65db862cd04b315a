// enclavefs-inspect: the operator's look inside enclavefs. Offline, at a volume image that no
// enclave holds (`volume`, in tools/inspect/volume_command.cpp); online, at a running
// enclavefs-hostd through its control socket (`status`, `trace`, `disconnect`, `metrics`;
// the protocol is in tools/inspect/control_client.h). Only `disconnect` changes anything, and
// only by asking the server. Every command prints a table, or with --json the JSON; every
// failure is one line on stderr and exit status 1.
#include <signal.h>
#include <sys/signalfd.h>

#include <CLI/CLI.hpp>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "common/log.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "tools/cli_tool.h"
#include "tools/inspect/control_client.h"
#include "tools/inspect/status_view.h"
#include "tools/inspect/volume_command.h"

namespace enclavefs::inspect {
namespace {

constexpr const char* kProgram = "enclavefs-inspect";

using Status = Result<void, std::string>;

void printJson(const Json& json) {
  std::printf("%s\n", json.dump(2, ' ', false, Json::error_handler_t::replace).c_str());
}

// Prints a line at once: trace output is mostly read through a pipe, as it happens.
void printNow(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

// While it lives, SIGINT does not kill the process but makes fd() readable, so that an
// interrupted trace ends like a finished one.
class InterruptWatch {
 public:
  InterruptWatch() {
    sigemptyset(&blocked_);
    sigaddset(&blocked_, SIGINT);
    ::sigprocmask(SIG_BLOCK, &blocked_, &previous_);
    fd_.reset(::signalfd(-1, &blocked_, SFD_CLOEXEC | SFD_NONBLOCK));
  }
  InterruptWatch(const InterruptWatch&) = delete;
  InterruptWatch& operator=(const InterruptWatch&) = delete;
  ~InterruptWatch() {
    // Take a pending SIGINT, or unblocking would deliver it and kill us after all.
    signalfd_siginfo info;
    while (fd_ && ::read(fd_.get(), &info, sizeof info) == sizeof info) {
    }
    fd_.reset();
    ::sigprocmask(SIG_SETMASK, &previous_, nullptr);
  }
  int fd() const { return fd_.get(); }

 private:
  sigset_t blocked_{}, previous_{};
  UniqueFd fd_;
};

// The trace stream: {"tracing":true}, then one event a line until the server closes the
// connection or the user interrupts. The acknowledgement is waited for like any answer; the
// events as long as they come.
Status trace(ControlConnection& connection, const Json& request, bool json) {
  if (auto sent = connection.send(request); !sent) return sent;
  InterruptWatch interrupt;
  auto ack = connection.next(kAnswerTimeout, interrupt.fd());
  if (!ack) return Fail{ack.error()};
  using Kind = ControlConnection::Next::Kind;
  if (ack->kind == Kind::interrupted) return {};
  if (ack->kind == Kind::closed) {
    return Fail{std::string("the server closed the connection without starting the trace")};
  }
  if (auto tracing = ack->json.find("tracing"); tracing == ack->json.end() || *tracing != true) {
    return Fail{"the server did not start the trace; it answered " +
                printable(ack->json.dump(), 200)};
  }
  for (;;) {
    auto event = connection.next(std::nullopt, interrupt.fd());
    if (!event) return Fail{event.error()};
    if (event->kind != Kind::line) return {};
    printNow(json ? event->json.dump(-1, ' ', false, Json::error_handler_t::replace)
                  : traceLine(event->json));
  }
}

Status status(ControlConnection& connection, bool json) {
  auto answer = connection.request({{"command", "status"}});
  if (!answer) return Fail{answer.error()};
  if (json) {
    printJson(*answer);
  } else {
    printStatus(*answer, stdout);
  }
  return {};
}

Status disconnect(ControlConnection& connection, std::uint64_t client, bool json) {
  auto answer = connection.request({{"command", "disconnect"}, {"client", client}});
  if (!answer) return Fail{answer.error()};
  if (json) {
    printJson(*answer);
  } else {
    std::printf("disconnected client %llu\n", static_cast<unsigned long long>(client));
  }
  return {};
}

Status metrics(ControlConnection& connection, bool json) {
  auto answer = connection.request({{"command", "metrics"}});
  if (!answer) return Fail{answer.error()};
  auto text = answer->find("metrics");
  if (text == answer->end() || !text->is_string()) {
    return Fail{"the server's answer has no metrics text: " + printable(answer->dump(), 200)};
  }
  if (json) {
    printJson(*answer);
    return {};
  }
  std::string body = text->get<std::string>();
  if (!body.empty() && !body.ends_with("\n")) body += '\n';
  std::fputs(body.c_str(), stdout);
  return {};
}

int fail(const std::string& message) {
  return cli::fail(kProgram, message);
}

int run(int argc, char** argv) {
  CLI::App app{
      "enclavefs inspection tool: looks at a volume image that no enclave holds, or asks a "
      "running enclavefs-hostd what it serves, to whom, and how fast",
      kProgram};
  app.require_subcommand(0, 1);
  app.footer(
      "The commands status, trace, disconnect and metrics talk to enclavefs-hostd through its "
      "control socket, given as --control unix:PATH before or after the command. Every command "
      "prints a table, or JSON with --json.");

  const std::string controlHelp = "enclavefs-hostd's control socket";
  std::string control;
  bool json = false;
  app.add_option("--control", control, controlHelp)->type_name("unix:PATH");

  VolumeRequest volumeRequest;
  std::string listDir;
  CLI::App* volume =
      app.add_subcommand("volume",
                         "describe a volume image that no enclave holds: header, allocated ranges, "
                         "content, and (--ls) a directory of its ext4 file system; reads only");
  volume->add_option("PATH", volumeRequest.path, "the volume's image file")->required();
  CLI::Option* ls =
      volume
          ->add_option("--ls", listDir,
                       "list this directory of the ext4 file system on the volume (an absolute "
                       "path inside it; / without a value)")
          ->expected(0, 1)
          ->default_str("/")
          ->type_name("DIR");
  volume->add_flag("--json", json, "print JSON");

  auto controlCommand = [&](const char* name, const char* description) {
    CLI::App* sub = app.add_subcommand(name, description);
    sub->add_option("--control", control, controlHelp)->type_name("unix:PATH");
    sub->add_flag("--json", json, "print JSON");
    return sub;
  };
  CLI::App* statusCommand =
      controlCommand("status",
                     "the server, its exports, its clients with their load and "
                     "latency, and its volumes");
  std::uint64_t client = 0;
  std::uint64_t count = 0;
  std::string op;
  CLI::App* traceCommand =
      controlCommand("trace",
                     "print the operations clients send as they happen, until the server ends the "
                     "trace (--count) or you interrupt it (Ctrl-C)");
  CLI::Option* traceClient =
      traceCommand->add_option("--client", client, "only this client's operations")
          ->type_name("ID");
  CLI::Option* traceOp =
      traceCommand->add_option("--op", op, "only this operation, as in read or lookup")
          ->type_name("OP");
  CLI::Option* traceCount = traceCommand->add_option("--count", count, "stop after N events")
                                ->type_name("N")
                                ->check(CLI::PositiveNumber);
  CLI::App* disconnectCommand =
      controlCommand("disconnect", "drop a client's connection (the enclave may reconnect)");
  disconnectCommand->add_option("--client", client, "the client's id, as status shows it")
      ->required()
      ->type_name("ID");
  CLI::App* metricsCommand =
      controlCommand("metrics", "the server's metrics in the Prometheus text format");

  if (auto exit = cli::parse(app, argc, argv)) return *exit;
  if (app.get_subcommands().empty()) {
    return fail("no command given: use volume, status, trace, disconnect or metrics (see --help)");
  }
  CLI::App* command = app.get_subcommands().front();

  Status done;
  if (command == volume) {
    if (!control.empty()) {
      return fail(
          "volume reads the image file itself; --control is for status, trace, "
          "disconnect and metrics");
    }
    volumeRequest.json = json;
    if (ls->count() > 0) volumeRequest.listDirectory = listDir.empty() ? "/" : listDir;
    done = inspectVolume(volumeRequest);
  } else {
    if (control.empty()) {
      return fail(command->get_name() +
                  " needs --control unix:PATH, the control socket of enclavefs-hostd");
    }
    auto connection = ControlConnection::connect(control);
    if (!connection) return fail(connection.error());
    if (command == statusCommand) {
      done = status(*connection, json);
    } else if (command == traceCommand) {
      Json request = {{"command", "trace"}};
      if (traceClient->count() > 0) request["client"] = client;
      if (traceOp->count() > 0) request["op"] = op;
      if (traceCount->count() > 0) request["count"] = count;
      done = trace(*connection, request, json);
    } else if (command == disconnectCommand) {
      done = disconnect(*connection, client, json);
    } else if (command == metricsCommand) {
      done = metrics(*connection, json);
    }
  }
  return cli::finish(kProgram, done);
}

}  // namespace
}  // namespace enclavefs::inspect

int main(int argc, char** argv) {
  return enclavefs::cli::guardedMain("enclavefs-inspect", enclavefs::inspect::run, argc, argv);
}
