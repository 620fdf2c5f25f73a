// The checks before a KHO live update loads its target (the `Prepare` step and
// `khoctl check`): every reason the later kexec_file_load would fail that can
// be seen without loading. Read-only: nothing is loaded or written (debugfs
// may be mounted, as for `khoctl status`).
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "khod/base/sysroot.hpp"
#include "khod/kexec/bzimage.hpp"
#include "khod/kexec/kexec_file.hpp"
#include "khod/kho/kexec_placement.hpp"
#include "khod/kho/kho.hpp"

namespace khod {

inline constexpr int preflight_schema_version = 1;

enum class CheckStatus {
    ok,
    warning,  // the load may still fail for a reason userspace cannot verify (e.g. a signature)
    failed,   // the load would fail, or KHO would not be handed over
    skipped,  // not checked because an earlier check failed or it does not apply
};
const char* to_string(CheckStatus status);

// Check names, in report order.
namespace check {
inline constexpr const char* debugfs = "debugfs";
inline constexpr const char* kho = "kho";
inline constexpr const char* kernel = "kernel";
inline constexpr const char* initrd = "initrd";
inline constexpr const char* cmdline = "cmdline";
inline constexpr const char* scratch_fit = "scratch-fit";
inline constexpr const char* kexec_allowed = "kexec-allowed";
inline constexpr const char* signature = "signature";
}  // namespace check

struct PreflightCheck {
    std::string name;
    CheckStatus status = CheckStatus::skipped;
    std::string message;         // for a person: what was found, and what to do when it is not ok
    std::optional<Error> error;  // the underlying failure (path, errno), when there is one
};

struct PreflightRequest {
    std::filesystem::path kernel;                 // host paths, not resolved under the sysroot
    std::optional<std::filesystem::path> initrd;  // nullopt: load without one
    // How to build the next command line. scratch_param is replaced by the
    // name the running kernel reads (kho_scratch, or kho_bootmem on 7.4+).
    NextCmdlineRequest cmdline;
    bool may_mount_debugfs = true;
    // What the running kernel adds (purgatory size, EFI map, IMA); nullopt:
    // the defaults, adjusted from what /sys and /boot/config-<release> show.
    std::optional<KexecLoaderModel> model;
};

struct PreflightReport {
    std::string sysroot;
    std::vector<PreflightCheck> checks;
    std::optional<bool> kho_active;
    KhoAbi kho_abi = KhoAbi::unknown;
    bool kho_without_debugfs = false;  // KhoStatus::without_debugfs
    std::vector<ScratchArea> scratch;
    std::optional<BzImageInfo> kernel;
    std::optional<std::filesystem::path> initrd;
    std::optional<std::uint64_t> initrd_size;
    NextCmdline cmdline;            // what Finalize should pass to kexec_file_load
    std::uint64_t cmdline_max = 0;  // longest accepted, with the NUL (0: kernel unknown)
    KexecLoaderModel model;
    std::vector<std::string> model_notes;  // where the model's numbers came from
    std::optional<Placement> placement;
    KexecPolicy policy;

    bool ok() const;  // no check failed (warnings allowed)
    const PreflightCheck* find(const std::string& name) const;
};

// May mount debugfs on a live sysroot (on a copy of root pointed at it; root
// itself is not changed). Pure otherwise: no global state, nothing loaded.
PreflightReport run_preflight(const Sysroot& root, const PreflightRequest& request);

nlohmann::json to_json(const PreflightReport& report);
std::string format_preflight(const PreflightReport& report);

}  // namespace khod
