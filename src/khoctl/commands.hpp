// khoctl's commands. Each add_*_commands() adds its subcommands to the app;
// when one of them is parsed, it stores what to run in `selected`.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

namespace khoctl {

struct GlobalOptions {
    std::string sysroot = "/";
    bool json = false;
};

using Runner = std::function<int()>;

// A path as khod must get it: absolute, since khod does not share our working directory.
std::string absolute_path(const std::string& path);

void add_status_commands(CLI::App& app, const GlobalOptions& global, Runner& selected);
void add_show_commands(CLI::App& app, const GlobalOptions& global, Runner& selected);
void add_handover_commands(CLI::App& app, const GlobalOptions& global, Runner& selected);
void add_scratch_commands(CLI::App& app, const GlobalOptions& global, Runner& selected);
void add_check_commands(CLI::App& app, const GlobalOptions& global, Runner& selected);
void add_kdump_commands(CLI::App& app, const GlobalOptions& global, Runner& selected);
void add_luo_commands(CLI::App& app, const GlobalOptions& global, Runner& selected);
void add_metrics_commands(CLI::App& app, const GlobalOptions& global, Runner& selected);
void add_elfcorehdr_commands(CLI::App& app, const GlobalOptions& global, Runner& selected);

}  // namespace khoctl
