#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "bus_client.hpp"
#include "commands.hpp"
#include "khod/base/sysroot.hpp"
#include "khod/status.hpp"
#include "khod1-names.hpp"

namespace khoctl {

namespace {

// khod's own view beside the kernel's: its handover state, the crash kernel
// it manages and the sessions it holds. The call starts khod by D-Bus
// activation when it is not running, as any client's first call would.
nlohmann::json daemon_state() {
    BusFailure failure;
    auto client = KhodClient::connect(failure);
    nlohmann::json out = nlohmann::json::object();
    const std::pair<const char*, const char*> interfaces[] = {{"handover", khod1::handover_interface},
                                                              {"kdump", khod1::kdump_interface},
                                                              {"liveupdate", khod1::liveupdate_interface}};
    for (const auto& [key, interface] : interfaces) {
        nlohmann::json props;
        if (!client || !client->properties(interface, props, failure))
            return nlohmann::json{
                {"reachable", false}, {"error", failure.name}, {"message", failure.message}};
        out[key] = std::move(props);
    }
    out["reachable"] = true;
    return out;
}

std::string format_daemon(const nlohmann::json& daemon) {
    if (!daemon.value("reachable", false))
        return "khod:        not reachable: " + daemon.value("message", std::string("?")) + '\n';
    const auto& kdump = daemon["kdump"];
    const auto& liveupdate = daemon["liveupdate"];
    std::string s = "khod:        handover " + daemon["handover"].value("State", std::string("?"));
    s += ", crash kernel " + std::string(kdump.value("Loaded", false) ? "loaded" : "not loaded");
    if (kdump.value("Managed", false)) s += " (managed)";
    s += ", " + std::to_string(liveupdate.value("Outgoing", nlohmann::json::array()).size()) +
         " outgoing and " + std::to_string(liveupdate.value("Incoming", nlohmann::json::array()).size()) +
         " incoming LUO sessions\n";
    return s;
}

}  // namespace

void add_status_commands(CLI::App& app, const GlobalOptions& global, Runner& selected) {
    auto no_mount = std::make_shared<bool>(false);
    auto daemon = std::make_shared<std::string>("auto");
    CLI::App* status = app.add_subcommand("status", "Report KHO, live update, kexec and crash kernel state");
    status->add_flag("--no-mount", *no_mount, "Do not mount debugfs when it is not mounted");
    status
        ->add_option("--daemon", *daemon,
                     "Also report khod's state, starting it through D-Bus if needed: auto (when "
                     "--sysroot is /, the host khod serves), yes or no")
        ->check(CLI::IsMember({"auto", "yes", "no"}));
    status->callback([&global, &selected, no_mount, daemon] {
        selected = [&global, no_mount, daemon] {
            khod::Sysroot root(global.sysroot);
            khod::StatusOptions options;
            options.may_mount_debugfs = !*no_mount;
            khod::Status status = khod::probe_status(root, options);
            const bool ask = *daemon == "yes" || (*daemon == "auto" && root.is_live());
            const nlohmann::json daemon_json = ask ? daemon_state() : nlohmann::json();
            if (global.json) {
                nlohmann::json out = khod::to_json(status);
                if (ask) out["daemon"] = daemon_json;
                std::cout << out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
            } else {
                std::cout << khod::format_status(status);
                if (ask) std::cout << format_daemon(daemon_json);
            }
            return 0;
        };
    });
}

}  // namespace khoctl
