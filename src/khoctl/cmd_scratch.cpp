// scratch show / scratch plan: the KHO scratch areas, and how big they should be.
#include <iostream>
#include <memory>

#include "commands.hpp"
#include "khod/base/debugfs.hpp"
#include "khod/base/sysroot.hpp"
#include "khod/kho/kho.hpp"
#include "khod/scratch/scratch_plan.hpp"

namespace khoctl {

namespace {

void print_error(const khod::Error& e, bool json) {
    if (json)
        std::cout << nlohmann::json{{"ok", false}, {"error", e.describe()}, {"errno", e.code}}.dump(
                         2, ' ', false, nlohmann::json::error_handler_t::replace)
                  << '\n';
    else
        std::cerr << "khoctl: " << e.describe() << '\n';
}

}  // namespace

void add_scratch_commands(CLI::App& app, const GlobalOptions& global, Runner& selected) {
    CLI::App* scratch = app.add_subcommand("scratch", "KHO scratch areas: list them, or plan their sizes");
    scratch->require_subcommand(1);

    auto show_no_mount = std::make_shared<bool>(false);
    CLI::App* show = scratch->add_subcommand("show", "List the current KHO scratch areas (debugfs)");
    show->add_flag("--no-mount", *show_no_mount, "Do not mount debugfs when it is not mounted");
    show->callback([&global, &selected, show_no_mount] {
        selected = [&global, show_no_mount] {
            khod::Sysroot root(global.sysroot);
            auto cmdline_text = khod::read_trimmed(root.proc("cmdline"));
            khod::Cmdline cmdline = khod::Cmdline::parse(cmdline_text ? *cmdline_text : "");
            khod::DebugfsState debugfs = khod::ensure_debugfs(root, !*show_no_mount);
            khod::KhoStatus kho = khod::probe_kho(root, cmdline, debugfs);
            if (global.json)
                std::cout << khod::scratch_show_json(kho).dump(2, ' ', false,
                                                               nlohmann::json::error_handler_t::replace)
                          << '\n';
            else
                std::cout << khod::format_scratch_show(kho);
            if (kho.scratch.state == khod::ProbeState::error) return 1;
            return kho.scratch.ok() ? 0 : 2;
        };
    });

    struct PlanOptions {
        std::string kernel, initrd, cmdline;
        unsigned headroom = 25;
        bool no_mount = false;
    };
    auto p = std::make_shared<PlanOptions>();
    CLI::App* plan = scratch->add_subcommand(
        "plan",
        "Predict this boot's scratch areas, check the next kexec against them, recommend kho_scratch=");
    plan->add_option("--kernel", p->kernel, "The next kernel's bzImage")->type_name("FILE");
    plan->add_option("--initrd", p->initrd, "The next kernel's initrd")->type_name("FILE");
    plan->add_option("--cmdline", p->cmdline,
                     "The next kernel's command line (default: the running one); its crashkernel=, swiotlb= "
                     "and log_buf_len= size the early allocations")
        ->type_name("CMDLINE");
    plan->add_option("--headroom", p->headroom, "Percent added to each area's need (default 25)")
        ->type_name("PCT")
        ->check(CLI::Range(0u, 1000u));
    plan->add_flag("--no-mount", p->no_mount, "Do not mount debugfs when it is not mounted");
    plan->callback([&global, &selected, p] {
        selected = [&global, p] {
            khod::Sysroot root(global.sysroot);
            khod::ScratchPlanRequest request;
            if (!p->kernel.empty()) request.kernel = p->kernel;
            if (!p->initrd.empty()) request.initrd = p->initrd;
            if (!p->cmdline.empty()) request.next_cmdline = p->cmdline;
            request.headroom_percent = p->headroom;
            request.may_mount_debugfs = !p->no_mount;
            auto plan = khod::plan_scratch_for(root, request);
            if (!plan) {
                print_error(plan.error(), global.json);
                return 1;
            }
            if (global.json)
                std::cout << khod::to_json(*plan).dump(2, ' ', false,
                                                       nlohmann::json::error_handler_t::replace)
                          << '\n';
            else
                std::cout << khod::format_scratch_plan(*plan);
            if (!plan->fits_ok) return 2;
            return plan->verdict == khod::ScratchVerdict::mismatch ? 3 : 0;
        };
    });
}

}  // namespace khoctl
