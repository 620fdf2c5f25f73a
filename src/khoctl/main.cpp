// khoctl: the command-line face of khod. Commands that only read kernel state
// work without the daemon; they call lib/ directly.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <string>

#include "khod-config.h"
#include "khod/status.hpp"
#include "khod/sysroot.hpp"

namespace {

struct GlobalOptions {
    std::string sysroot = "/";
    bool json = false;
};

int run_status(const GlobalOptions& g, bool no_mount) {
    khod::Sysroot root(g.sysroot);
    khod::StatusOptions options;
    options.may_mount_debugfs = !no_mount;
    khod::Status status = khod::probe_status(root, options);
    if (g.json) {
        std::cout << khod::to_json(status).dump(2) << '\n';
    } else {
        std::cout << khod::format_status(status);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"khoctl - kexec handover and kdump control"};
    app.set_version_flag("--version", std::string("khoctl ") + KHOD_VERSION);
    app.require_subcommand(1);
    app.fallthrough();

    GlobalOptions g;
    app.add_option("--sysroot", g.sysroot, "Read kernel files under DIR instead of / (for fixture trees)")
        ->type_name("DIR");
    app.add_flag("--json", g.json, "Print machine-readable JSON (documented in khoctl(1))");

    bool no_mount = false;
    CLI::App* status = app.add_subcommand("status", "Report KHO, live update, kexec and crash kernel state");
    status->add_flag("--no-mount", no_mount, "Do not mount debugfs when it is not mounted");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }

    if (status->parsed()) return run_status(g, no_mount);
    return 1;
}
