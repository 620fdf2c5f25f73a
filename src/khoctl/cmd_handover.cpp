// prepare / finalize / abort / exec: the live update lifecycle, carried out by
// khod. These only ask; khod does the work and owns the state.
#include <filesystem>
#include <iostream>
#include <memory>

#include "bus_client.hpp"
#include "commands.hpp"

namespace khoctl {

namespace {

void print_handover(const nlohmann::json& p) {
    auto str = [&](const char* key) { return p.contains(key) ? p[key].get<std::string>() : std::string(); };
    std::cout << "state:   " << str("State") << "  (KHO ABI " << str("Abi") << ")\n";
    if (!str("TargetKernel").empty()) {
        std::cout << "kernel:  " << str("TargetKernel") << '\n';
        std::cout << "initrd:  " << (str("TargetInitrd").empty() ? "(none)" : str("TargetInitrd")) << '\n';
        std::cout << "cmdline: " << str("TargetCmdline") << '\n';
    }
    if (!str("LastError").empty()) std::cout << "last error: " << str("LastError") << '\n';
}

const InterfaceView handover_view{khod1::handover_interface, "handover", nullptr, print_handover};

int call_and_show(const GlobalOptions& global, const char* method, const char* done, const char* signature,
                  auto... args) {
    return khoctl::call_and_show(handover_view, global.json, method, done, signature, args...);
}

// Says who khod will wait for before the reboot (the barrier's inhibitors).
void print_inhibitors(KhodClient& client) {
    BusFailure ignored;
    nlohmann::json inhibitors;
    if (!client.property(khod1::liveupdate_interface, "Inhibitors", inhibitors, ignored) ||
        !inhibitors.is_array())
        return;
    for (const auto& i : inhibitors)
        if (i.is_array() && i.size() == 4)
            std::cout << "waiting for inhibitor " << i[0].get<std::string>() << " ("
                      << i[1].get<std::string>() << "), pid " << i[3] << '\n';
}

// Exec shows no state afterwards: khod may already be gone with the old kernel.
int exec_target(const GlobalOptions& global, std::uint64_t flags) {
    BusFailure failure;
    auto client = KhodClient::connect(failure);
    if (!client) return report_failure(failure, global.json);
    if (!global.json) print_inhibitors(*client);
    if (!client->call(khod1::handover_interface, "Exec", failure, "t", flags))
        return report_failure(failure, global.json);
    if (global.json)
        std::cout << nlohmann::json{{"ok", true}, {"handover", {{"State", "executing"}}}}.dump(
                         2, ' ', false, nlohmann::json::error_handler_t::replace)
                  << std::endl;
    else
        std::cout << "khod is rebooting into the target" << std::endl;
    return 0;
}

}  // namespace

void add_handover_commands(CLI::App& app, const GlobalOptions& global, Runner& selected) {
    struct PrepareOptions {
        std::string kernel, initrd, append;
        bool reuse = false, keep = false;
    };
    auto p = std::make_shared<PrepareOptions>();
    CLI::App* prepare =
        app.add_subcommand("prepare", "Check a target kernel and stage it for a live update (khod)");
    prepare->add_option("--kernel", p->kernel, "Target bzImage")->required()->type_name("FILE");
    prepare->add_option("--initrd", p->initrd, "Target initrd")->type_name("FILE");
    prepare->add_option("--append", p->append, "Command line for the target kernel")->type_name("CMDLINE");
    prepare->add_flag("--reuse-cmdline", p->reuse,
                      "Start from the running kernel's command line (--append then adds to it)");
    prepare->add_flag("--keep-cmdline", p->keep, "Do not add kho=on or the scratch parameter");
    prepare->callback([&global, &selected, p] {
        selected = [&global, p] {
            std::uint64_t flags =
                (p->reuse ? khod1::prepare_reuse_cmdline : 0) | (p->keep ? khod1::prepare_keep_cmdline : 0);
            std::string kernel = absolute_path(p->kernel), initrd = absolute_path(p->initrd);
            return call_and_show(global, "Prepare", "prepared", "ssst", kernel.c_str(), initrd.c_str(),
                                 p->append.c_str(), flags);
        };
    });

    app.add_subcommand("finalize", "Hand the KHO state over: load the target with kexec_file_load (khod)")
        ->callback([&global, &selected] {
            selected = [&global] { return call_and_show(global, "Finalize", "finalized and loaded", ""); };
        });
    app.add_subcommand("abort", "Unload the staged target and return to idle (khod)")
        ->callback([&global, &selected] {
            selected = [&global] { return call_and_show(global, "Abort", "aborted", ""); };
        });

    auto force = std::make_shared<bool>(false);
    CLI::App* exec = app.add_subcommand("exec", "Reboot into the loaded target (khod)");
    exec->add_flag("--force", *force,
                   "Call reboot(2) directly even when systemd is PID 1, and go on although held LUO "
                   "sessions could not reach the target");
    exec->callback([&global, &selected, force] {
        selected = [&global, force] {
            std::uint64_t flags = *force ? (khod1::exec_force | khod1::exec_drop_sessions) : 0;
            return exec_target(global, flags);
        };
    });
}

}  // namespace khoctl
