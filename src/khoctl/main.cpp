// khoctl: the command-line face of khod. Commands that only read kernel state
// call lib/ directly and work without the daemon.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <string>

#include "commands.hpp"
#include "khod-config.h"

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

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    return selected ? selected() : 1;
}
