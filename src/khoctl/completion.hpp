// Shell completion for khoctl, generated from the CLI11 command table itself
// (`khoctl --generate-completion SHELL`, run by the build), so a command or
// option added to khoctl is completed without anyone editing a script.
#pragma once

#include <CLI/CLI.hpp>
#include <ostream>
#include <string_view>

namespace khoctl {

// The hidden first argument that asks for a script instead of running a command.
inline constexpr std::string_view generate_completion_flag = "--generate-completion";

// Writes the completion script for shell ("bash", "zsh" or "fish") for every
// visible subcommand, option and positional of app; false for another shell.
// Non-const: CLI11 2.1 hands out an option's validators only to a mutable option.
bool write_completion(CLI::App& app, std::string_view shell, std::ostream& out);

// `khoctl --generate-completion SHELL`: the script on stdout and 0, or a
// message on stderr and 2 (a usage error) for a shell it has none for.
int print_completion(CLI::App& app, std::string_view shell);

}  // namespace khoctl
