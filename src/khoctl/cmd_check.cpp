// khoctl check: the live update preflight, read-only. Says whether a target
// kernel and initrd would load for a KHO kexec, where each segment would go,
// and whether it can take what this kernel hands over (the compat strings).
#include <iostream>
#include <memory>

#include "bus_client.hpp"
#include "commands.hpp"
#include "khod/base/sysroot.hpp"
#include "khod/kho/preflight.hpp"
#include "khod/kho/target_compat.hpp"

namespace khoctl {

namespace {

// What khod would hand over now (its Outgoing sessions), so the check says
// what a wrong target would drop, as Prepare does. Without khod: nothing
// known beyond --memfds.
khod::CarriedState carried_by_khod(bool memfds) {
    khod::CarriedState carried;
    carried.memfds = memfds;
    BusFailure ignored;
    auto client = KhodClient::connect(ignored);
    nlohmann::json props;
    if (!client || !client->properties(khod1::liveupdate_interface, props, ignored)) return carried;
    for (const auto& session : props.value("Outgoing", nlohmann::json::array())) {
        if (!session.is_array() || session.size() < 4 || !session[3].is_array()) continue;
        ++carried.sessions;
        for (const auto& file : session[3]) {
            if (!file.is_array() || file.size() < 2 || !file[1].is_number_unsigned()) continue;
            carried.bytes += file[1].get<std::uint64_t>();
            carried.memfds = true;
        }
    }
    return carried;
}

}  // namespace

void add_check_commands(CLI::App& app, const GlobalOptions& global, Runner& selected) {
    struct CheckOptions {
        std::string kernel, initrd, append;
        bool reuse = false, keep = false, no_mount = false, memfds = false;
    };
    auto o = std::make_shared<CheckOptions>();
    CLI::App* cmd = app.add_subcommand(
        "check", "Check that a target kernel would load for a KHO live update (nothing is loaded)");
    cmd->add_option("--kernel", o->kernel, "Target bzImage")->required()->type_name("FILE");
    cmd->add_option("--initrd", o->initrd, "Target initrd")->type_name("FILE");
    auto* append =
        cmd->add_option("--append", o->append, "Command line for the target kernel")->type_name("CMDLINE");
    cmd->add_flag("--reuse-cmdline", o->reuse, "Start from the running kernel's command line")
        ->excludes(append);
    cmd->add_flag("--keep-cmdline", o->keep, "Do not add kho=on or the scratch parameter");
    cmd->add_flag("--no-mount", o->no_mount, "Do not mount debugfs when it is not mounted");
    cmd->add_flag("--memfds", o->memfds,
                  "Require the memfd handler (memfd-v2) even when khod holds no memfds (it is required "
                  "anyway while khod holds any)");
    cmd->callback([&global, &selected, o, append] {
        selected = [&global, o, append] {
            khod::Sysroot root(global.sysroot);
            khod::PreflightRequest req;
            req.kernel = o->kernel;
            if (!o->initrd.empty()) req.initrd = o->initrd;
            req.cmdline.reuse = o->reuse;
            if (append->count() > 0) req.cmdline.append = o->append;
            req.cmdline.keep_kho = !o->keep;
            req.may_mount_debugfs = !o->no_mount;
            khod::PreflightReport report = khod::run_preflight(root, req);
            // The compat strings come from kho/out: without KHO there is nothing to hand over.
            std::optional<khod::TargetCompatReport> compat;
            if (report.kho_active.value_or(false)) {
                compat = khod::check_target_for_handover(root, o->kernel, carried_by_khod(o->memfds));
            }
            if (global.json) {
                nlohmann::json j = khod::to_json(report);
                j["target_compat"] = compat ? khod::to_json(*compat) : nlohmann::json(nullptr);
                std::cout << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
            } else {
                std::cout << khod::format_preflight(report);
                if (!compat)
                    std::cout << "target-compat skipped  KHO is not active: nothing is handed over\n";
                else if (std::cout << khod::format_target_compat(*compat); !compat->ok())
                    std::cout << "\nthe target cannot take the handover\n";
            }
            return report.ok() && (!compat || compat->ok()) ? 0 : 1;
        };
    });
}

}  // namespace khoctl
