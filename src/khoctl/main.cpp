// khoctl: the command-line face of khod. Commands that only read kernel state
// call lib/ directly and work without the daemon.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <string>

#include "commands.hpp"
#include "completion.hpp"
#include "khod-config.h"
#include "usage.hpp"

std::string khoctl::absolute_path(const std::string& path) {
    if (path.empty()) return path;
    std::error_code ec;
    auto abs = std::filesystem::absolute(path, ec);
    return ec ? path : abs.lexically_normal().string();
}

int main(int argc, char** argv) {
    CLI::App app{"khoctl - kexec handover and kdump control"};
    app.set_version_flag("--version", std::string("khoctl ") + KHOD_VERSION);
    app.require_subcommand(1);
    app.fallthrough();  // global options are accepted after the command too

    khoctl::GlobalOptions global;
    app.add_option("--sysroot", global.sysroot,
                   "Read kernel files under DIR instead of / (for fixture trees)")
        ->type_name("DIR");
    app.add_flag("--json", global.json, "Print machine-readable JSON (documented in khoctl(1))");

    khoctl::Runner selected;
    khoctl::add_status_commands(app, global, selected);
    khoctl::add_show_commands(app, global, selected);
    khoctl::add_handover_commands(app, global, selected);
    khoctl::add_scratch_commands(app, global, selected);
    khoctl::add_check_commands(app, global, selected);
    khoctl::add_kdump_commands(app, global, selected);
    khoctl::add_luo_commands(app, global, selected);
    khoctl::add_metrics_commands(app, global, selected);
    khoctl::add_elfcorehdr_commands(app, global, selected);

    // The build writes the shell completion from this very table (completion.hpp).
    if (argc == 3 && argv[1] == khoctl::generate_completion_flag)
        return khoctl::print_completion(app, argv[2]);

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return khoctl::report_parse_error(app, e);
    }
    return selected ? selected() : 1;
}
