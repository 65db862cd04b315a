// What the enclavefs operator tools (enclavefs-volume, enclavefs-inspect) do alike at their
// edges: every failure is one line on stderr, "PROGRAM: error: SENTENCE", and exit status 1;
// a CLI11 mistake names the subcommand it is about; output that cannot be written is a
// failure too; and an exception that escapes (a bug, or memory running out) is still one line.
#pragma once

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <string>

#include "common/result.h"

namespace enclavefs::cli {

// Prints the error line; returns the exit status for it.
inline int fail(const std::string& program, const std::string& message) {
  std::fprintf(stderr, "%s: error: %s\n", program.c_str(), message.c_str());
  return 1;
}

// Parses the command line of `app` (named after its program). nullopt: go on; otherwise the
// exit status, after --help or the error line.
inline std::optional<int> parse(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    // CLI11 says "--size is required" without saying of which command.
    auto given = app.get_subcommands();
    return fail(app.get_name(),
                given.empty() ? e.what() : given.front()->get_name() + ": " + e.what());
  }
  return std::nullopt;
}

// The exit status of a command that ended with `done`, once its output is out.
inline int finish(const std::string& program, const Result<void, std::string>& done) {
  if (!done) return fail(program, done.error());
  return std::fflush(stdout) == 0
             ? 0
             : fail(program, std::string("cannot write output: ") + std::strerror(errno));
}

// main() of a tool: `run(argc, argv)`, with an escaping exception made an error line.
template <class Run>
int guardedMain(const char* program, Run run, int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    return fail(program, e.what());
  }
}

}  // namespace enclavefs::cli
