#include "khod/kho/handover.hpp"

#include <fstream>
#include <nlohmann/json.hpp>
#include <system_error>

#include "khod/base/debugfs.hpp"
#include "khod/base/hex.hpp"
#include "khod/kexec/kexec_state.hpp"

namespace khod {

const char* to_string(HandoverState state) {
    switch (state) {
        case HandoverState::prepared: return "prepared";
        case HandoverState::finalized: return "finalized";
        case HandoverState::loaded: return "loaded";
        case HandoverState::executing: return "executing";
        case HandoverState::idle: break;
    }
    return "idle";
}

std::string explain_finalize_errno(int code, bool finalizing) {
    switch (code) {
        case EEXIST: return "the kernel says KHO is already finalized";
        case ENOENT: return "the kernel says KHO is not finalized, so there is nothing to abort";
        case EBUSY:
            return finalizing ? "a KHO client refused to serialize its state (EBUSY); see dmesg"
                              : "the KHO state is in use (EBUSY): unload the kexec image first";
        case ENOMEM: return "the kernel ran out of memory serializing the KHO state";
        case EPERM:
        case EACCES: return "permission denied: finalize needs root (CAP_SYS_ADMIN)";
        default: return finalizing ? "the kernel refused to finalize" : "the kernel refused to abort";
    }
}

struct Handover::Snapshot {
    HandoverState state;
    KhoAbi abi;
    std::string kernel, initrd, cmdline, last_error;
    std::vector<std::pair<std::uint64_t, std::uint64_t>> scratch;
};

Handover::Handover(Sysroot& root, KexecBackend& backend, std::filesystem::path state_dir, HandoverHooks hooks)
    : root_(root), backend_(backend), state_dir_(std::move(state_dir)), hooks_(std::move(hooks)) {}

Handover::Snapshot Handover::snapshot() const {
    Snapshot s{state_, abi_, target_.kernel, target_.initrd, target_.cmdline, last_error_, {}};
    for (const auto& a : scratch_) s.scratch.emplace_back(a.phys, a.size);
    return s;
}

void Handover::notify(const Snapshot& before) {
    if (!listener_) return;
    std::vector<std::string> changed;
    if (before.state != state_) changed.emplace_back("State");
    if (before.abi != abi_) changed.emplace_back("Abi");
    if (before.kernel != target_.kernel) changed.emplace_back("TargetKernel");
    if (before.initrd != target_.initrd) changed.emplace_back("TargetInitrd");
    if (before.cmdline != target_.cmdline) changed.emplace_back("TargetCmdline");
    if (before.last_error != last_error_) changed.emplace_back("LastError");
    if (before.scratch != snapshot().scratch) changed.emplace_back("ScratchAreas");
    if (!changed.empty()) listener_(changed);
}

Failure Handover::fail(Errc kind, Error error) {
    Failure e{kind, std::move(error)};
    last_error_ = std::string(to_string(kind)) + ": " + e.describe();
    return e;
}

void Handover::refresh_kernel_view() {
    DebugfsState debugfs = ensure_debugfs(root_, true);
    KernelPath cmdline_path = root_.proc("cmdline");
    auto cmdline_text = read_trimmed(cmdline_path);
    KhoStatus kho = probe_kho(root_, Cmdline::parse(cmdline_text ? *cmdline_text : ""), debugfs);
    abi_ = kho.abi;
    kho_active_ = kho.active;
    scratch_ = kho.scratch.value.value_or(std::vector<ScratchArea>{});
}

namespace {

std::string boot_id(const Sysroot& root) {
    auto id = read_trimmed(root.proc("sys/kernel/random/boot_id"));
    return id ? *id : std::string();
}

}  // namespace

Result<void> Handover::save_record() const {
    nlohmann::json j = {
        {"version", 1},
        {"boot_id", boot_id(root_)},
        {"state", to_string(state_)},
        {"kernel", target_.kernel},
        {"initrd", target_.initrd},
        {"cmdline", target_.cmdline},
        {"flags", target_.flags},
    };
    std::error_code ec;
    std::filesystem::create_directories(state_dir_, ec);
    if (ec) return errno_error(ec.value(), state_dir_.string(), "cannot create the state directory");
    // Write then rename, so a crash leaves the old record or the new one, never half of one.
    std::filesystem::path tmp = record_path();
    tmp += ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
        out.flush();
        if (!out) return errno_error(errno, tmp.string(), "cannot write the staged-target record");
    }
    std::filesystem::rename(tmp, record_path(), ec);
    if (ec) return errno_error(ec.value(), record_path().string(), "cannot replace the staged-target record");
    return {};
}

void Handover::remove_record() const {
    std::error_code ec;
    std::filesystem::remove(record_path(), ec);
}

namespace {

bool record_fields_are_typed(const nlohmann::json& j) {
    for (const char* key : {"boot_id", "kernel", "initrd", "cmdline", "state"})
        if (j.contains(key) && !j[key].is_string()) return false;
    for (const char* key : {"version", "flags"})
        if (j.contains(key) && !j[key].is_number_unsigned()) return false;
    return true;
}

}  // namespace

void Handover::recover() {
    Snapshot before = snapshot();
    refresh_kernel_view();

    // The record counts only if it was written during this boot.
    std::optional<nlohmann::json> record;
    if (std::ifstream in(record_path()); in) {
        auto j = nlohmann::json::parse(in, nullptr, false);
        // value() throws on a field of the wrong type (a hand-edited record): such a record is ignored.
        if (!j.is_discarded() && j.is_object() && record_fields_are_typed(j) && j.value("version", 0) == 1 &&
            j.value("boot_id", std::string("?")) == boot_id(root_))
            record = j;
    }
    auto flag = [&](const KernelPath& p) -> std::optional<bool> {
        auto v = read_flag(p);
        return v ? std::optional<bool>(*v) : std::nullopt;
    };
    KexecState kexec = probe_kexec(root_);
    const bool loaded = kexec.loaded.value.value_or(false);
    const bool finalized =
        abi_ == KhoAbi::finalize && flag(root_.debugfs("kho/out/finalize")).value_or(false);

    target_ = {};
    if (record) {
        target_.kernel = record->value("kernel", "");
        target_.initrd = record->value("initrd", "");
        target_.cmdline = record->value("cmdline", "");
        target_.flags = record->value("flags", std::uint64_t{0});
    }
    const std::string recorded = record ? record->value("state", "") : "";
    if (loaded) {
        state_ = HandoverState::loaded;
        if (recorded != "loaded") {
            target_ = {};
            last_error_ = "a kexec image is loaded that khod did not load (kexec -l?); Abort unloads it";
        }
    } else if (finalized) {
        state_ = HandoverState::finalized;
    } else if (record) {
        state_ = HandoverState::prepared;
        if (recorded == "loaded" || recorded == "finalized")
            last_error_ = "the staged image was unloaded outside khod; Finalize loads it again";
    } else {
        state_ = HandoverState::idle;
    }
    notify(before);
}

Result<void, Failure> Handover::prepare(HandoverTarget target) {
    Snapshot before = snapshot();
    auto done = [&](Result<void, Failure> r) {
        notify(before);
        return r;
    };
    if (state_ != HandoverState::idle && state_ != HandoverState::prepared)
        return done(fail(Errc::wrong_state,
                         plain_error("", std::string("Prepare needs state idle or prepared, not ") +
                                             to_string(state_) + "; Abort first")));
    // A bit this khod does not know may mean something it cannot do: refused, never ignored.
    if (target.flags & ~prepare_known_flags)
        return done(
            fail(Errc::invalid_argument,
                 plain_error("", "Prepare: unknown flag bits " + hex(target.flags & ~prepare_known_flags))));
    if (target.kernel.empty())
        return done(fail(Errc::invalid_argument, plain_error("", "no target kernel given")));
    // khod's working directory is not the caller's, so a relative path would name another file.
    if (target.kernel.front() != '/')
        return done(fail(Errc::invalid_argument,
                         plain_error(target.kernel, "the target kernel must be given as an absolute path")));
    if (!target.initrd.empty() && target.initrd.front() != '/')
        return done(fail(Errc::invalid_argument,
                         plain_error(target.initrd, "the initrd must be given as an absolute path")));
    refresh_kernel_view();
    if (abi_ == KhoAbi::unknown || !kho_active_.value_or(false))
        return done(
            fail(Errc::not_supported,
                 plain_error(root_.debugfs("kho").kernel,
                             "KHO is not active in this kernel: boot it with kho=on (a KEXEC_HANDOVER "
                             "kernel; where KHO's debugfs is not visible, liveupdate=on says KHO is on)")));
    if (auto r = check_target(target); !r) return done(fail(r.error().kind, r.error().error));
    target_ = std::move(target);
    state_ = HandoverState::prepared;
    if (auto r = save_record(); !r) {
        state_ = HandoverState::idle;
        target_ = {};
        return done(fail(Errc::io_error, r.error()));
    }
    last_error_.clear();
    return done({});
}

Result<void, Failure> Handover::check_target(HandoverTarget& target) const {
    if (hooks_.preflight)
        if (auto r = hooks_.preflight(root_, target); !r) return r;
    if (hooks_.target_compat) {
        const CarriedState carried = hooks_.carried ? hooks_.carried() : CarriedState{};
        if (auto r = hooks_.target_compat(root_, target, carried); !r) return r;
    }
    // The checks read by path; Finalize loads the held files.
    for (const auto* held : {&target.kernel_file, &target.initrd_file})
        if (*held)
            if (auto r = (*held)->still_named_by_path(); !r)
                return Failure{Errc::preflight_failed, r.error()};
    return {};
}

Result<void> Handover::write_finalize(bool on) {
    KernelPath path = root_.debugfs("kho/out/finalize");
    auto r = write_file(path, on ? "1\n" : "0\n");
    if (!r) {
        Error e = r.error();
        e.message = explain_finalize_errno(e.code, on);
        return e;
    }
    return {};
}

Result<void, Failure> Handover::finalize() {
    Snapshot before = snapshot();
    auto done = [&](Result<void, Failure> r) {
        notify(before);
        return r;
    };
    if (state_ != HandoverState::prepared && state_ != HandoverState::finalized)
        return done(
            fail(Errc::wrong_state,
                 plain_error("", std::string("Finalize needs state prepared, not ") + to_string(state_) +
                                     (state_ == HandoverState::idle ? "; Prepare first" : ""))));
    if (target_.kernel.empty())
        return done(
            fail(Errc::wrong_state,
                 plain_error("", "no staged target is known (finalized outside khod); Abort, then Prepare")));
    refresh_kernel_view();
    // A target staged before a khod restart comes from the record, paths
    // only: checked again, its files held from here to the load.
    if (!target_.kernel_file && hooks_.preflight) {
        HandoverTarget again;
        again.kernel = target_.kernel;
        again.initrd = target_.initrd;
        again.cmdline = target_.cmdline;
        again.flags = prepare_keep_cmdline;  // the staged command line, as it is
        if (auto r = check_target(again); !r) return done(fail(r.error().kind, r.error().error));
        target_.kernel_file = std::move(again.kernel_file);
        target_.initrd_file = std::move(again.initrd_file);
    }

    const bool finalize_abi = abi_ == KhoAbi::finalize;
    if (finalize_abi && state_ == HandoverState::prepared) {
        if (auto r = write_finalize(true); !r) {
            // EEXIST: someone finalized already; the state is still usable.
            if (r.error().code != EEXIST) return done(fail(Errc::kernel_refused, r.error()));
        }
        state_ = HandoverState::finalized;
        (void)save_record();
        if (hooks_.validate_out) {
            if (auto v = hooks_.validate_out(root_); !v) {
                (void)write_finalize(false);
                state_ = HandoverState::prepared;
                (void)save_record();
                return done(fail(v.error().kind, v.error().error));
            }
        }
    }

    if (auto r = backend_.load(target_); !r) {
        // Leave nothing half-done: undo the finalize, stay prepared.
        if (finalize_abi) (void)write_finalize(false);
        state_ = HandoverState::prepared;
        (void)save_record();
        return done(fail(Errc::kernel_refused, r.error()));
    }
    state_ = HandoverState::loaded;
    if (!finalize_abi && hooks_.validate_out) {
        if (auto v = hooks_.validate_out(root_); !v) {
            (void)backend_.unload();
            state_ = HandoverState::prepared;
            (void)save_record();
            return done(fail(v.error().kind, v.error().error));
        }
    }
    if (auto r = save_record(); !r) return done(fail(Errc::io_error, r.error()));
    last_error_.clear();
    return done({});
}

Result<void, Failure> Handover::abort() {
    Snapshot before = snapshot();
    auto done = [&](Result<void, Failure> r) {
        notify(before);
        return r;
    };
    if (state_ == HandoverState::idle)
        return done(fail(Errc::wrong_state, plain_error("", "nothing to abort: state is idle")));
    if (state_ == HandoverState::executing)
        return done(fail(Errc::wrong_state, plain_error("", "too late to abort: the reboot has started")));
    if (state_ == HandoverState::loaded) {
        if (auto r = backend_.unload(); !r) return done(fail(Errc::kernel_refused, r.error()));
    }
    if (abi_ == KhoAbi::finalize && (state_ == HandoverState::loaded || state_ == HandoverState::finalized)) {
        // ENOENT: not finalized (any more); that is the state we want.
        if (auto r = write_finalize(false); !r && r.error().code != ENOENT) {
            state_ = HandoverState::finalized;
            (void)save_record();
            return done(fail(Errc::kernel_refused, r.error()));
        }
    }
    state_ = HandoverState::idle;
    target_ = {};
    remove_record();
    last_error_.clear();
    return done({});
}

Result<void, Failure> Handover::begin_exec(std::uint64_t flags) {
    Snapshot before = snapshot();
    if (state_ != HandoverState::loaded) {
        auto e = fail(Errc::wrong_state,
                      plain_error("", std::string("Exec needs state loaded, not ") + to_string(state_) +
                                          (state_ == HandoverState::prepared ? "; Finalize first" : "")));
        notify(before);
        return e;
    }
    if (flags & ~exec_known_flags) {
        auto e = fail(Errc::invalid_argument,
                      plain_error("", "Exec: unknown flag bits " + hex(flags & ~exec_known_flags)));
        notify(before);
        return e;
    }
    exec_flags_ = flags;
    state_ = HandoverState::executing;
    notify(before);
    return {};
}

void Handover::cancel_exec(const Failure& why) {
    if (state_ != HandoverState::executing) return;
    Snapshot before = snapshot();
    state_ = HandoverState::loaded;
    (void)fail(why.kind, why.error);
    notify(before);
}

Result<void, Failure> Handover::complete_exec() {
    Snapshot before = snapshot();
    if (state_ != HandoverState::executing)
        return fail(Errc::wrong_state, plain_error("", "complete_exec without begin_exec"));
    const bool via_systemd = !(exec_flags_ & exec_force) && backend_.systemd_is_pid1();
    auto r = backend_.reboot_into_loaded(via_systemd);
    if (r) return {};  // systemd is now taking the system down, or a fake backend returned
    state_ = HandoverState::loaded;
    auto e = fail(Errc::kernel_refused, r.error());
    notify(before);
    return e;
}

}  // namespace khod
