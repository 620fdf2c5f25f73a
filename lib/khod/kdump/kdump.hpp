// Keeping the loaded crash kernel current while CPUs and memory come and go.
//
// Where the kernel updates the image's elfcorehdr in place (crash_hotplug
// reads 1: images loaded with kexec_file_load, or kexec_load with the hotplug
// flag), khod reloads nothing: it counts the events and, once they settle,
// confirms the image is still loaded and still updated in place. Otherwise a
// storm of events becomes one reload, a settle interval after the last event
// (bounded by a maximum delay), with kexec_file_load(KEXEC_FILE_ON_CRASH), so
// the kernel updates the new image in place from then on.
//
// The kernel skips an in-place update when the kexec lock is busy (it logs
// "kdump image may be inaccurate"), for example during any load. So after
// every load khod checks whether memory events were sent while it ran (uevent
// sequence numbers against /sys/kernel/uevent_seqnum, or arrival times when
// those are missing) and if so reloads again once they settle, unless a later
// memory event, applied in place, already rebuilt the whole elfcorehdr. CPU
// events cannot be missed that way: a kexec_file image describes every
// possible CPU and the kernel ignores CPU events for it.
//
// A crash load frees the old image before reading the new one: each reload is
// a window without a crash kernel, measured and kept. A reload that fails
// puts the last good image back; if that fails too, khod retries.
//
// A pure state machine over an injected clock and kexec backend: it arms no
// timers; the daemon asks deadline() and calls on_timer() then.
#pragma once

#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "khod/base/errc.hpp"
#include "khod/base/result.hpp"
#include "khod/base/sysroot.hpp"
#include "khod/kdump/kdump_coalescer.hpp"
#include "khod/kdump/kdump_recipe.hpp"
#include "khod/kdump/kdump_record.hpp"
#include "khod/kdump/kdump_state.hpp"
#include "khod/kdump/uevent.hpp"

namespace khod {

// CLOCK_MONOTONIC in microseconds; tests move a fake one by hand.
class Clock {
public:
    virtual ~Clock() = default;
    virtual Usec now() const = 0;
    // CLOCK_REALTIME, read once when a window opens: converting later from
    // two clock reads drifts by a microsecond between two looks.
    virtual Usec wall() const = 0;
};

// What touches the kernel's crash image. khod uses the real syscalls; tests
// and `khod --fake-kexec` a simulation over a fixture tree.
class KdumpBackend {
public:
    virtual ~KdumpBackend() = default;
    // kexec_file_load(KEXEC_FILE_ON_CRASH). The kernel frees the loaded crash
    // image before it reads the new one, so a failure may leave none loaded.
    virtual Result<void> load_crash(const CrashRecipe& recipe) = 0;
    // kexec_file_load(KEXEC_FILE_UNLOAD | KEXEC_FILE_ON_CRASH); works for any crash image.
    virtual Result<void> unload_crash() = 0;
};

struct UnloadedWindow {
    Usec start = 0;  // clock time the crash kernel went away
    Usec end = 0;    // clock time one was loaded again; meaningless while open
    bool open = false;
    std::string cause;
    Usec wall_start = 0;  // CLOCK_REALTIME of start, fixed when the window is recorded
    Usec duration(Usec now) const { return (open ? now : end) - start; }
};

// One completed reload attempt (successful or not).
struct ReloadReport {
    std::string cause;
    std::uint64_t events = 0;  // hotplug events coalesced into it
    Usec duration = 0;         // the load (and a rollback), as measured around the syscalls
    Usec unloaded = 0;         // of which without any crash kernel
    bool ok = false;
    std::string error;
    std::string kernel;  // the image this attempt loaded
    // A failed load was undone by loading rollback_kernel, the last good image, again.
    bool rolled_back = false;
    std::string rollback_kernel;
    bool loaded_after = false;  // a crash kernel is loaded once the attempt is over
};

struct KdumpSettings {
    Usec settle = 1 * usec_per_sec;
    Usec max_delay = 10 * usec_per_sec;
    // After a load, events sent up to this long after it returned still count
    // as possibly missed (the kernel's update runs just before the uevent is sent).
    Usec load_grace = 200 * usec_per_msec;
    // When a reload failed and no crash kernel is loaded, try again this often.
    Usec retry = 5 * usec_per_sec;
    std::size_t keep_windows = 128;
};

class Kdump {
public:
    Kdump(const Sysroot& root, KdumpBackend& backend, const Clock& clock, KdumpSettings settings,
          std::filesystem::path state_dir);

    // Reads the kernel's state and this boot's record (a recipe set with Load
    // earlier in this boot wins over `configured`, the one from khod.conf or
    // an import). configured_error: why no recipe could be read, for LastError.
    void start(std::optional<CrashRecipe> configured, const std::string& configured_error = {});

    // Loads `recipe` (replacing any crash image) and makes it the recipe for reloads.
    Result<void, Failure> load(CrashRecipe recipe);
    // Unloads the crash kernel; khod stops keeping one loaded until the next Load or Reload.
    Result<void, Failure> unload();
    // Loads the current recipe again now; `cause` is what the report and the
    // journal give as the reason.
    Result<void, Failure> reload(const std::string& cause = "Reload");

    void on_event(const HotplugEvent& event);
    // The event source overflowed (netlink ENOBUFS): something happened, unknown what.
    void on_events_lost();

    // When on_timer() must run next; nullopt when nothing is scheduled.
    std::optional<Usec> deadline() const;
    void on_timer();

    const KdumpCapability& capability() const { return cap_; }
    bool loaded() const { return cap_.loaded().value_or(false); }
    // khod keeps a crash kernel loaded (it loaded or reloaded one in this boot).
    bool managed() const { return managed_; }
    // A reload, a confirmation, a retry or the check after a load is scheduled.
    bool pending() const {
        return loading_ || coalescer_.pending() || retry_at_.has_value() || dirty_ || verify_.has_value();
    }
    std::uint64_t events_seen() const { return events_seen_; }
    std::uint64_t reloads() const { return reloads_; }
    std::uint64_t confirmations() const { return confirmations_; }
    std::optional<Usec> last_reload() const { return last_reload_; }
    std::optional<Usec> last_event() const { return last_event_; }
    Usec unloaded_total() const;
    const std::deque<UnloadedWindow>& windows() const { return windows_; }
    // Every window since start, those forgotten beyond keep_windows included.
    std::uint64_t window_count() const { return dropped_windows_ + windows_.size(); }
    const std::string& last_error() const { return last_error_; }
    const std::optional<CrashRecipe>& recipe() const { return recipe_; }
    Usec now() const { return clock_.now(); }

    // Called with the names of the D-Bus properties that changed.
    void on_change(std::function<void(const std::vector<std::string>&)> listener) {
        change_listener_ = std::move(listener);
    }
    void on_reloaded(std::function<void(const ReloadReport&)> listener) {
        reload_listener_ = std::move(listener);
    }

    std::filesystem::path record_path() const { return state_dir_ / "kdump.json"; }
    // What start() did about a crash kernel a stopped khod left behind; empty when nothing was needed.
    const std::string& recovery() const { return recovery_; }
    // Called when the record cannot be written (the step goes on regardless).
    void on_record_error(std::function<void(const Error&)> listener) {
        record_listener_ = std::move(listener);
    }

private:
    struct Snapshot;
    struct Verify {
        std::optional<std::uint64_t> seq_start;  // uevent_seqnum when the load began
        Usec until = 0;                          // end of the grace period
    };
    struct SeqRange {
        std::uint64_t after = 0;  // events numbered (after, upto] were sent during a load
        std::uint64_t upto = 0;
    };
    struct Outcome {
        bool ok = false;
        Error error;
        Errc kind = Errc::kernel_refused;
    };

    Snapshot snapshot() const;
    void notify(const Snapshot& before);
    void refresh();
    // The hotplug handling due now: confirm in place, reload, or nothing.
    void act(const std::string& cause, std::uint64_t events, bool cpu, bool memory);
    // One load with window accounting, verification and rollback.
    // hotplug: the load keeps the image current (a refusal is retried); report: emit a ReloadReport.
    Outcome do_load(const CrashRecipe& recipe, const std::string& cause, std::uint64_t events, bool report,
                    bool hotplug);
    void open_window(Usec start, std::string cause);
    void close_window(Usec end);
    void add_window(UnloadedWindow w);
    bool missed_by_load(const HotplugEvent& event) const;
    // At start: schedules replacing a loaded image the kernel cannot update
    // in place when the recipe's loader is khod's own (native, auto).
    void take_over_if_stale();
    // The kernel sent (and applied) this event after the last load's grace period.
    bool applied_after_load(const HotplugEvent& event) const;
    // The record, with the step about to begin when intent is given.
    void save_record(std::optional<KdumpIntent> intent = std::nullopt) const;
    // At start, after a record that says khod manages the crash kernel (or
    // was inside a step): put back what a kill took away.
    void recover(const KdumpRecord& record);
    // A recipe refused before the kernel was asked: nothing was unloaded.
    Outcome refuse_load(const Failure& why, const CrashRecipe& recipe, const std::string& cause,
                        std::uint64_t events, bool report, bool hotplug);
    Failure fail(Errc kind, Error error);

    const Sysroot& root_;
    KdumpBackend& backend_;
    const Clock& clock_;
    KdumpSettings settings_;
    std::filesystem::path state_dir_;
    std::function<void(const std::vector<std::string>&)> change_listener_;
    std::function<void(const ReloadReport&)> reload_listener_;
    std::function<void(const Error&)> record_listener_;
    std::string recovery_;

    KdumpCapability cap_;
    Coalescer coalescer_;
    bool batch_cpu_ = false, batch_memory_ = false;
    bool managed_ = false;
    // A load (or unload) is in the kernel: khod runs it off its loop, and a status call
    // meanwhile must not see a settled state (the kernel has freed the old
    // image already).
    bool loading_ = false;
    bool dirty_ = false;  // events may have been missed by the kernel: the next action reloads
    std::optional<CrashRecipe> recipe_;
    std::optional<CrashRecipe> last_good_;
    std::optional<Verify> verify_;
    std::optional<SeqRange> last_range_;
    std::optional<Usec> retry_at_;
    std::string retry_cause_ =
        "retry after a failed reload";  // the Reloaded signal's cause when retry_at_ comes
    std::deque<UnloadedWindow> windows_;
    Usec dropped_windows_total_ = 0;  // windows forgotten beyond keep_windows
    std::uint64_t dropped_windows_ = 0;
    std::uint64_t events_seen_ = 0, reloads_ = 0, confirmations_ = 0;
    std::optional<Usec> last_reload_, last_event_;
    std::string last_error_;
};

}  // namespace khod
