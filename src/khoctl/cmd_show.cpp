// khoctl show ...: decode kernel state for people and scripts. Reads debugfs
// directly, so it works without khod.
#include <iostream>
#include <memory>
#include <string>

#include "commands.hpp"
#include "khod/base/debugfs.hpp"
#include "khod/base/sysroot.hpp"
#include "khod/kho/kho_fdt.hpp"

namespace khoctl {

namespace {

// Other command groups may add their own `show <thing>`: share the parent.
CLI::App* show_group(CLI::App& app) {
    try {
        return app.get_subcommand("show");
    } catch (const CLI::OptionNotFound&) {
        CLI::App* show = app.add_subcommand("show", "Decode kernel state (works without khod)");
        show->require_subcommand(1);
        return show;
    }
}

int show_fdt(const GlobalOptions& global, const std::string& direction, bool no_mount) {
    khod::Sysroot root(global.sysroot);
    khod::DebugfsState debugfs = khod::ensure_debugfs(root, !no_mount);
    auto dir = direction == "in" ? khod::KhoFdtDirection::in : khod::KhoFdtDirection::out;
    khod::KhoFdtReport report = khod::read_kho_fdt(root, dir, debugfs);
    if (global.json) {
        // Blob-derived strings are escaped already; replace anything left rather than throw.
        std::cout << khod::to_json(report).dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
                  << '\n';
    } else if (report.error) {
        std::cerr << "khoctl: " << khod::printable(report.error->describe()) << '\n';
    } else {
        std::cout << khod::format_kho_fdt(report);
    }
    return report.error ? 1 : 0;
}

}  // namespace

void add_show_commands(CLI::App& app, const GlobalOptions& global, Runner& selected) {
    CLI::App* show = show_group(app);

    auto direction = std::make_shared<std::string>("out");
    auto no_mount = std::make_shared<bool>(false);
    CLI::App* fdt = show->add_subcommand(
        "fdt",
        "Decode the KHO device trees in debugfs: out (what this kernel hands over) or in (what it got)");
    fdt->add_option("direction", *direction, "out (default) or in")
        ->check(CLI::IsMember({"out", "in"}))
        ->type_name("out|in");
    fdt->add_flag("--no-mount", *no_mount, "Do not mount debugfs when it is not mounted");
    fdt->callback([&global, &selected, direction, no_mount] {
        selected = [&global, direction, no_mount] { return show_fdt(global, *direction, *no_mount); };
    });
}

}  // namespace khoctl
