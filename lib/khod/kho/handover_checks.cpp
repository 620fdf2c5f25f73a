#include "khod/kho/handover_checks.hpp"

#include "khod/base/debugfs.hpp"
#include "khod/kho/kho.hpp"
#include "khod/kho/kho_fdt.hpp"
#include "khod/kho/preflight.hpp"

namespace khod {

Result<void, Failure> preflight_target(const Sysroot& root, HandoverTarget& target) {
    // Held from here to the load. A file that cannot be opened is the
    // preflight's to report, with the rest of what it finds.
    auto kernel = HeldFile::open(target.kernel, "the kernel");
    if (kernel) target.kernel_file = std::move(*kernel);
    std::optional<Result<HeldFile>> initrd;
    if (!target.initrd.empty()) {
        initrd = HeldFile::open(target.initrd, "the initrd");
        if (*initrd) target.initrd_file = std::move(**initrd);
    }
    PreflightRequest request;
    request.kernel = target.kernel;
    if (!target.initrd.empty()) request.initrd = target.initrd;
    request.cmdline.reuse = (target.flags & prepare_reuse_cmdline) != 0;
    if (!target.cmdline.empty()) request.cmdline.append = target.cmdline;
    request.cmdline.keep_kho = (target.flags & prepare_keep_cmdline) == 0;
    PreflightReport report = run_preflight(root, request);
    if (!report.ok()) {
        // A failed check's message is already its error's describe(), path and
        // errno text included; an errno code on the joined Error would make
        // describe() say the errno a second time.
        std::string message;
        for (const PreflightCheck& c : report.checks) {
            if (c.status != CheckStatus::failed) continue;
            if (!message.empty()) message += "; ";
            message += c.name + ": " + c.message;
        }
        return Failure{Errc::preflight_failed, plain_error("", std::move(message))};
    }
    // Appeared between the two opens: what passed is not what is held.
    if (!kernel) return Failure{Errc::preflight_failed, kernel.error()};
    if (initrd && !*initrd) return Failure{Errc::preflight_failed, initrd->error()};
    target.cmdline = report.cmdline.text;
    return {};
}

Result<void, Failure> validate_kho_out(const Sysroot& root) {
    Sysroot view = root;
    DebugfsState debugfs = ensure_debugfs(view, true);
    if (kho_without_debugfs(view, debugfs)) return {};  // nothing visible to validate
    KhoFdtReport report = read_kho_fdt(view, KhoFdtDirection::out, debugfs);
    auto fail = [](std::string path, std::string message) {
        return Failure{Errc::kernel_refused, plain_error(std::move(path), std::move(message))};
    };
    if (report.error) return Failure{Errc::kernel_refused, *report.error};
    if (report.root.read_error) return Failure{Errc::kernel_refused, *report.root.read_error};
    if (report.abi == KhoAbi::finalize) {
        if (!report.root.present) return fail(report.root.path, "no root FDT after finalize");
        if (!report.root.fdt.valid)
            return fail(report.root.path,
                        "the root FDT does not parse after finalize: " +
                            (report.root.fdt.error ? report.root.fdt.error->describe() : "?"));
        if (report.root.version == KhoRootVersion::unknown)
            return fail(report.root.path,
                        "unknown KHO root version " + report.root.compatible.value_or("(none)"));
    }
    for (const KhoSubtree& s : report.subtrees) {
        if (s.read_error) return Failure{Errc::kernel_refused, *s.read_error};
        if (!s.errors.empty()) {
            Error e = s.errors.front();
            e.message = "sub-tree " + s.name + " does not decode: " + e.message;
            return Failure{Errc::kernel_refused, e};
        }
    }
    return {};
}

Result<void, Failure> check_target_handover(const Sysroot& root, const HandoverTarget& target,
                                            const CarriedState& carried) {
    TargetCompatReport report = check_target_for_handover(root, target.kernel, carried);
    if (report.failure) return *report.failure;
    return {};
}

HandoverHooks standard_handover_hooks() {
    HandoverHooks hooks;
    hooks.preflight = preflight_target;
    hooks.validate_out = validate_kho_out;
    hooks.target_compat = check_target_handover;
    return hooks;
}

}  // namespace khod
