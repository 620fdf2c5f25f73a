// Usage errors said the way a person can act on them.
#pragma once

#include <CLI/CLI.hpp>

namespace khoctl {

// Reports a failed parse and returns the exit status. An unknown command is
// named with the commands that exist (CLI11 would only say that one is
// required), on stderr or, with --json, as khoctl's JSON error; exit 2.
// Anything else is CLI11's own message, with 2 as the status too.
int report_parse_error(CLI::App& app, const CLI::ParseError& error);

}  // namespace khoctl
