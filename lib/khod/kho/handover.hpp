// The live update lifecycle (prepare -> finalize -> exec, or abort) over both
// KHO ABIs. The kernel is the source of truth: state is rebuilt from
// kexec_loaded, the finalize file and the staged-target record, never kept
// only in memory. Knows nothing of D-Bus; khod maps Failure kinds (Errc) to
// named bus errors.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "khod/base/caller_file.hpp"
#include "khod/base/errc.hpp"
#include "khod/base/result.hpp"
#include "khod/base/sysroot.hpp"
#include "khod/kho/kho.hpp"
#include "khod/kho/target_compat.hpp"

namespace khod {

enum class HandoverState { idle, prepared, finalized, loaded, executing };
const char* to_string(HandoverState state);

// Prepare() flags.
inline constexpr std::uint64_t prepare_reuse_cmdline = 1u
                                                       << 0;  // start from the running kernel's command line
inline constexpr std::uint64_t prepare_keep_cmdline = 1u << 1;  // do not add kho=on / the scratch parameter
inline constexpr std::uint64_t prepare_known_flags = prepare_reuse_cmdline | prepare_keep_cmdline;
// Exec() flags.
inline constexpr std::uint64_t exec_force = 1u << 0;  // reboot(2) directly, even when systemd is PID 1
inline constexpr std::uint64_t exec_drop_sessions = 1u
                                                    << 1;  // go on although held LUO sessions would be lost
inline constexpr std::uint64_t exec_known_flags = exec_force | exec_drop_sessions;

struct HandoverTarget {
    std::string kernel;
    std::string initrd;   // empty: none
    std::string cmdline;  // the command line the next kernel gets (final, after Prepare)
    std::uint64_t flags = 0;
    // Opened by the preflight and held until the load, which uses them: what
    // was checked is what is loaded. Absent after a khod restart (the record
    // has paths only) and without a preflight: then the load opens the paths.
    std::optional<HeldFile> kernel_file;
    std::optional<HeldFile> initrd_file;
};

// What actually touches the kernel: syscalls that cannot run against a
// fixture tree. khod uses the real one; tests and --fake-kexec a simulation.
class KexecBackend {
public:
    virtual ~KexecBackend() = default;
    // kexec_file_load of a non-crash image (KHO data goes only that way).
    virtual Result<void> load(const HandoverTarget& target) = 0;
    virtual Result<void> unload() = 0;
    // Reboots into the loaded image; returns only on failure.
    virtual Result<void> reboot_into_loaded(bool via_systemd) = 0;
    // Whether systemd runs as PID 1 (then Exec goes through kexec.target).
    virtual bool systemd_is_pid1() const = 0;
};

struct HandoverHooks {
    // Checks the target and completes target.cmdline; the preflight module.
    std::function<Result<void, Failure>(const Sysroot&, HandoverTarget&)> preflight;
    // Parses kho/out after finalize or load; the FDT decoder.
    std::function<Result<void, Failure>(const Sysroot&)> validate_out;
    // What this kernel carries across the kexec (LUO sessions, their bytes,
    // whether memfds are among them). khod sets it from its LUO broker; the
    // default says nothing is carried, so only kho/out's own strings count.
    std::function<CarriedState()> carried = [] { return CarriedState{}; };
    // Runs after preflight, KHO being active: refuses a target that could not
    // take the handover (Errc::target_incompatible); the target_compat
    // module. Empty: not checked.
    std::function<Result<void, Failure>(const Sysroot&, const HandoverTarget&, const CarriedState&)>
        target_compat;
};

class Handover {
public:
    Handover(Sysroot& root, KexecBackend& backend, std::filesystem::path state_dir, HandoverHooks hooks);

    // Rebuilds state from the kernel and the staged-target record.
    void recover();

    Result<void, Failure> prepare(HandoverTarget target);
    Result<void, Failure> finalize();
    Result<void, Failure> abort();
    // Exec in two steps so a daemon can answer its caller before the reboot
    // syscall: begin_exec() moves to `executing`; complete_exec() reboots and
    // returns only when that failed (back to `loaded`).
    Result<void, Failure> begin_exec(std::uint64_t flags);
    Result<void, Failure> complete_exec();
    // Between the two: the reboot will not happen (back to `loaded`, why in LastError).
    void cancel_exec(const Failure& why);
    // While executing: flags decided after the barrier (exec_force once
    // sessions are held: kexec.target would stop khod and close them).
    void add_exec_flags(std::uint64_t flags) {
        if (state_ == HandoverState::executing) exec_flags_ |= flags & exec_known_flags;
    }

    HandoverState state() const { return state_; }
    KhoAbi abi() const { return abi_; }
    const HandoverTarget& target() const { return target_; }
    const std::string& last_error() const { return last_error_; }
    const std::vector<ScratchArea>& scratch_areas() const { return scratch_; }

    // Called with the names of the properties that changed after each operation.
    void on_change(std::function<void(const std::vector<std::string>&)> listener) {
        listener_ = std::move(listener);
    }

    std::filesystem::path record_path() const { return state_dir_ / "handover.json"; }

private:
    struct Snapshot;
    Snapshot snapshot() const;
    void notify(const Snapshot& before);
    Failure fail(Errc kind, Error error);
    // The hooks' checks; target's files are held by the end (preflight).
    Result<void, Failure> check_target(HandoverTarget& target) const;
    void refresh_kernel_view();
    Result<void> save_record() const;
    void remove_record() const;
    Result<void> write_finalize(bool on);

    Sysroot& root_;
    KexecBackend& backend_;
    std::filesystem::path state_dir_;
    HandoverHooks hooks_;
    std::function<void(const std::vector<std::string>&)> listener_;

    HandoverState state_ = HandoverState::idle;
    KhoAbi abi_ = KhoAbi::unknown;
    std::optional<bool> kho_active_;
    HandoverTarget target_;
    std::string last_error_;
    std::vector<ScratchArea> scratch_;
    std::uint64_t exec_flags_ = 0;
};

// The finalize file's errno as something to act on (6.16-6.18 ABI).
std::string explain_finalize_errno(int code, bool finalizing);

}  // namespace khod
