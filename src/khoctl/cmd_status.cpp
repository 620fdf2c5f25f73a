#include <iostream>
#include <memory>

#include "commands.hpp"
#include "khod/base/sysroot.hpp"
#include "khod/status.hpp"

namespace khoctl {

void add_status_commands(CLI::App& app, const GlobalOptions& global, Runner& selected) {
    auto no_mount = std::make_shared<bool>(false);
    CLI::App* status = app.add_subcommand("status", "Report KHO, live update, kexec and crash kernel state");
    status->add_flag("--no-mount", *no_mount, "Do not mount debugfs when it is not mounted");
    status->callback([&global, &selected, no_mount] {
        selected = [&global, no_mount] {
            khod::Sysroot root(global.sysroot);
            khod::StatusOptions options;
            options.may_mount_debugfs = !*no_mount;
            khod::Status status = khod::probe_status(root, options);
            if (global.json)
                std::cout << khod::to_json(status).dump(2, ' ', false,
                                                        nlohmann::json::error_handler_t::replace)
                          << '\n';
            else
                std::cout << khod::format_status(status);
            return 0;
        };
    });
}

}  // namespace khoctl
