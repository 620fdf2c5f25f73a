#include "khod/kdump/kdump.hpp"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <system_error>
#include <utility>

#include "khod/base/caller_file.hpp"
#include "khod/kdump/crash_preflight.hpp"

namespace khod {

namespace {

// Set while the kernel is in a load or an unload (Kdump::loading_).
class LoadingFlag {
public:
    explicit LoadingFlag(bool& flag) : flag_(flag) { flag_ = true; }
    ~LoadingFlag() { flag_ = false; }
    LoadingFlag(const LoadingFlag&) = delete;
    LoadingFlag& operator=(const LoadingFlag&) = delete;

private:
    bool& flag_;
};

}  // namespace

struct Kdump::Snapshot {
    std::optional<bool> loaded;
    InPlace cpu, memory;
    std::uint64_t reloads;
    std::optional<Usec> last_reload;
    Usec closed_total;
    std::size_t windows;
    bool open;
    std::string last_error;
    bool pending;
    std::optional<CrashRecipe> recipe;
    bool managed;
    std::uint64_t window_count;
};

namespace {

std::string boot_id(const Sysroot& root) {
    auto id = read_trimmed(root.proc("sys/kernel/random/boot_id"));
    return id ? *id : std::string();
}

std::string plural(std::uint64_t n, const char* what) {
    return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
}

}  // namespace

Kdump::Kdump(const Sysroot& root, KdumpBackend& backend, const Clock& clock, KdumpSettings settings,
             std::filesystem::path state_dir)
    : root_(root),
      backend_(backend),
      clock_(clock),
      settings_(settings),
      state_dir_(std::move(state_dir)),
      coalescer_(settings.settle, settings.max_delay) {}

Kdump::Snapshot Kdump::snapshot() const {
    Usec closed = dropped_windows_total_;
    bool open = false;
    for (const auto& w : windows_) {
        if (w.open)
            open = true;
        else
            closed += w.end - w.start;
    }
    return Snapshot{cap_.loaded(), cap_.cpu,        cap_.memory,   reloads_,    last_reload_,
                    closed,        windows_.size(), open,          last_error_, pending(),
                    recipe_,       managed_,        window_count()};
}

void Kdump::notify(const Snapshot& before) {
    if (!change_listener_) return;
    const Snapshot now = snapshot();
    std::vector<std::string> changed;
    if (before.loaded != now.loaded) changed.emplace_back("Loaded");
    if (before.cpu != now.cpu || before.memory != now.memory) changed.emplace_back("InPlaceUpdate");
    if (before.reloads != now.reloads) changed.emplace_back("Reloads");
    if (before.last_reload != now.last_reload) changed.emplace_back("LastReloadUsec");
    if (before.closed_total != now.closed_total || before.open != now.open)
        changed.emplace_back("UnloadedWindowUsecTotal");
    if (before.windows != now.windows || before.open != now.open || before.closed_total != now.closed_total)
        changed.emplace_back("UnloadedWindows");
    if (before.window_count != now.window_count) changed.emplace_back("UnloadedWindowCount");
    if (before.last_error != now.last_error) changed.emplace_back("LastError");
    if (before.pending != now.pending) changed.emplace_back("Pending");
    if (before.recipe != now.recipe ||
        (before.recipe && now.recipe && before.recipe->source != now.recipe->source))
        changed.emplace_back("Recipe");
    if ((before.recipe ? before.recipe->loader : CrashLoader::file) !=
            (now.recipe ? now.recipe->loader : CrashLoader::file) ||
        before.recipe.has_value() != now.recipe.has_value())
        changed.emplace_back("Loader");
    if (before.managed != now.managed) changed.emplace_back("Managed");
    if (!changed.empty()) change_listener_(changed);
}

Failure Kdump::fail(Errc kind, Error error) {
    Failure e{kind, std::move(error)};
    last_error_ = std::string(to_string(kind)) + ": " + e.describe();
    return e;
}

void Kdump::refresh() {
    cap_ = probe_kdump_capability(root_);
}

Usec Kdump::unloaded_total() const {
    Usec total = dropped_windows_total_;
    const Usec now = clock_.now();
    for (const auto& w : windows_) total += w.duration(now);
    return total;
}

void Kdump::add_window(UnloadedWindow w) {
    const Usec now = clock_.now(), wall = clock_.wall();
    const Usec ago = now > w.start ? now - w.start : 0;
    w.wall_start = wall > ago ? wall - ago : 0;
    windows_.push_back(std::move(w));
    while (windows_.size() > settings_.keep_windows && !windows_.front().open) {
        dropped_windows_total_ += windows_.front().end - windows_.front().start;
        ++dropped_windows_;
        windows_.pop_front();
    }
}

void Kdump::open_window(Usec start, std::string cause) {
    for (const auto& w : windows_)
        if (w.open) return;  // the first cause is the one that took kdump away
    add_window(UnloadedWindow{start, 0, true, std::move(cause)});
}

void Kdump::close_window(Usec end) {
    for (auto& w : windows_)
        if (w.open) {
            w.open = false;
            w.end = end;
        }
}

void Kdump::save_record(std::optional<KdumpIntent> intent) const {
    const KdumpRecord record{managed_, recipe_, last_good_, std::move(intent)};
    // Without the record a restarted khod knows less, but no kernel state is
    // lost by it: the step goes on, and the failure is in the journal.
    if (auto r = write_kdump_record(record_path(), record, boot_id(root_)); !r && record_listener_)
        record_listener_(r.error());
}

void Kdump::start(std::optional<CrashRecipe> configured, const std::string& configured_error) {
    const Snapshot before = snapshot();
    refresh();
    recipe_ = std::move(configured);
    const auto record = read_kdump_record(record_path(), boot_id(root_));
    if (record) {
        if (record->recipe) recipe_ = record->recipe;
        last_good_ = record->last_good ? record->last_good : record->recipe;
    }
    if (record && (record->managed || record->intent)) {
        recover(*record);
    } else if (!recipe_ && !configured_error.empty()) {
        last_error_ = "NoRecipe: " + configured_error;
    }
    take_over_if_stale();
    notify(before);
}

void Kdump::take_over_if_stale() {
    // Loader=native|auto asks for khod's own image, which the kernel keeps
    // current. One it cannot (kexec-tools' plain kexec -p) is replaced now,
    // once, rather than mid-way through the first storm.
    if (!loaded() || cap_.in_place() || !cap_.kernel_supports_in_place() || retry_at_) return;
    if (!recipe_ || recipe_->loader == CrashLoader::file) return;
    dirty_ = true;
    retry_at_ = clock_.now();
    retry_cause_ = "takeover: the loaded crash kernel is not updated in place (crash_hotplug 0)";
}

void Kdump::recover(const KdumpRecord& record) {
    const auto& intent = record.intent;
    const bool killed_in_load = intent && intent->step == KdumpIntent::Step::load;
    if (loaded()) {
        managed_ = true;
        // The load khod was killed in may have gone through; the image the
        // kernel holds is then the one asked for, so reloads use it (and
        // still roll back to the last good one).
        if (killed_in_load && intent->recipe) {
            recipe_ = intent->recipe;
            // Hotplug events that came while the load held the kexec lock
            // were not applied, and no khod saw them: reload once to be sure.
            dirty_ = true;
            retry_at_ = clock_.now() + settings_.settle;
            retry_cause_ = "reload after a load khod was killed in";
            recovery_ =
                "khod was stopped inside a load of " + intent->recipe->kernel +
                "; a crash kernel is loaded, reloads use that recipe, and it is reloaded once in case "
                "the load missed hotplug events";
            save_record();
        }
        return;
    }
    if (intent && intent->step == KdumpIntent::Step::unload) {
        managed_ = false;  // the Unload asked for went through
        add_window(UnloadedWindow{intent->since, 0, true, "Unload"});
        recovery_ = "khod was stopped inside an Unload; no crash kernel is loaded, as asked";
        save_record();
        return;
    }
    std::optional<CrashRecipe> good = last_good_;
    if (!good && killed_in_load) good = intent->recipe;  // nothing of khod's before it
    if (!good) good = recipe_;
    const std::string why = killed_in_load ? "khod was stopped inside a load (" +
                                                 intent->recipe.value_or(CrashRecipe{}).kernel + ")"
                                           : "it was unloaded while khod was not running";
    if (!good) {
        last_error_ =
            "the crash kernel khod managed is not loaded (" + why + ") and no recipe is known; Load one";
        recovery_ = last_error_;
        return;
    }
    const Usec since = killed_in_load ? intent->since : clock_.now();
    add_window(UnloadedWindow{since, 0, true, "khod restart: " + why});
    Outcome o = do_load(*good, "khod restart", 0, true, false);
    recovery_ = "the crash kernel khod manages was not loaded at start (" + why + "): " +
                (o.ok ? "loaded " + good->kernel + " again"
                      : "loading " + good->kernel + " again failed (" + o.error.describe() + "), retrying");
}

bool Kdump::missed_by_load(const HotplugEvent& event) const {
    // Until the check after the load has run, by number: an event may reach
    // khod past the grace period when a job held the hotplug events (khod
    // reads none while one runs). Erring late costs one reload more.
    if (verify_) {
        // Sent after the load began (its update could have hit the lock), or unknowable.
        if (!event.seqnum || !verify_->seq_start) return true;
        return *event.seqnum > *verify_->seq_start;
    }
    // Events that reach khod late (through udevd) are judged by their number.
    if (last_range_ && event.seqnum)
        return *event.seqnum > last_range_->after && *event.seqnum <= last_range_->upto;
    return false;
}

bool Kdump::applied_after_load(const HotplugEvent& event) const {
    if (verify_) return false;  // the grace period is not over: cannot tell yet
    if (last_range_ && event.seqnum) return *event.seqnum > last_range_->upto;
    return true;  // arrived after the grace period
}

void Kdump::on_event(const HotplugEvent& event) {
    const Snapshot before = snapshot();
    const Usec now = clock_.now();
    ++events_seen_;
    last_event_ = now;
    // Only memory events matter here (arch/x86/kernel/crash.c): khod's loads
    // are kexec_file images, whose elfcorehdr describes every possible CPU
    // and which the kernel leaves alone on CPU events; and each in-place
    // update rebuilds the whole elfcorehdr, so one memory event applied after
    // a load makes up for all the ones that load's kexec lock made it skip.
    if (loaded() && event.subsystem == HotplugSubsystem::memory) {
        if (missed_by_load(event))
            dirty_ = true;
        else if (dirty_ && applied_after_load(event) && cap_.memory == InPlace::yes)
            dirty_ = false;
    }
    (event.subsystem == HotplugSubsystem::cpu ? batch_cpu_ : batch_memory_) = true;
    coalescer_.add(now);
    notify(before);
}

void Kdump::on_events_lost() {
    const Snapshot before = snapshot();
    const Usec now = clock_.now();
    last_event_ = now;
    // Unknown events of unknown subsystems, maybe during a load.
    if (loaded() && verify_) dirty_ = true;
    batch_cpu_ = batch_memory_ = true;
    coalescer_.add(now);
    notify(before);
}

std::optional<Usec> Kdump::deadline() const {
    std::optional<Usec> d = coalescer_.deadline();
    // A batch waits for the verification of the load before it (see on_timer).
    if (d && verify_) d = std::max(*d, verify_->until);
    auto earliest = [&d](Usec t) { d = d ? std::min(*d, t) : t; };
    if (verify_) earliest(verify_->until);
    if (retry_at_) earliest(*retry_at_);
    return d;
}

void Kdump::on_timer() {
    const Snapshot before = snapshot();
    const Usec now = clock_.now();
    if (verify_ && now >= verify_->until) {
        // Events numbered up to here were sent during the load or its grace period.
        auto upto = read_uevent_seqnum(root_);
        if (verify_->seq_start && upto) last_range_ = SeqRange{*verify_->seq_start, *upto};
        verify_.reset();
    }
    if (retry_at_ && now >= *retry_at_) {
        retry_at_.reset();
        const std::string cause = std::exchange(retry_cause_, "retry after a failed reload");
        act(cause, 0, batch_cpu_, batch_memory_);
    }
    if (coalescer_.due(now)) {
        // The verification must finish before judging a batch that followed a load.
        if (!verify_) {
            const std::uint64_t n = coalescer_.take();
            const bool cpu = batch_cpu_, memory = batch_memory_;
            batch_cpu_ = batch_memory_ = false;
            act(plural(n, "hotplug event"), n, cpu, memory);
        }
    }
    notify(before);
}

void Kdump::act(const std::string& cause, std::uint64_t events, bool cpu, bool memory) {
    refresh();
    const bool is_loaded = loaded();
    bool window_open = false;
    for (const auto& w : windows_) window_open = window_open || w.open;
    if (!is_loaded) {
        if (managed_ && window_open && recipe_) {
            // khod's own failed reload left kdump unloaded: put one back.
            (void)do_load(*recipe_, "restore after " + cause, events, true, true);
        } else if (managed_ && window_open) {
            managed_ = false;
            last_error_ = "NoRecipe: NO crash kernel is loaded and khod knows no recipe to load one";
        } else if (managed_) {
            managed_ = false;
            dirty_ = false;
            last_error_ = "the crash kernel was unloaded outside khod; not loading one (Load or Reload does)";
        } else {
            dirty_ = false;  // the next load builds a fresh elfcorehdr anyway
        }
        return;
    }
    const bool in_place =
        !dirty_ && (!cpu || cap_.cpu == InPlace::yes) && (!memory || cap_.memory == InPlace::yes);
    if (in_place) {
        ++confirmations_;
        return;
    }
    if (!recipe_) {
        dirty_ = false;
        last_error_ =
            "NoRecipe: the loaded crash kernel is not updated in place (crash_hotplug 0) after " + cause +
            ", and khod knows no recipe to reload it with: set Kernel= in /etc/khod/khod.conf or run "
            "khoctl kdump load";
        return;
    }
    (void)do_load(*recipe_, cause, events, true, true);
}

Kdump::Outcome Kdump::do_load(const CrashRecipe& recipe, const std::string& cause, std::uint64_t events,
                              bool report, bool hotplug) {
    refresh();
    if (auto checked = check_crash_recipe(root_, recipe); !checked)
        return refuse_load(checked.error(), recipe, cause, events, report, hotplug);
    const LoadingFlag loading(loading_);
    const bool was_loaded = loaded();
    const auto seq_start = read_uevent_seqnum(root_);
    const Usec t0 = clock_.now();
    save_record(KdumpIntent{KdumpIntent::Step::load, recipe, t0});
    auto r = backend_.load_crash(recipe);
    Usec t1 = clock_.now();
    ReloadReport rep{cause, events, t1 - t0, 0, false, {}, recipe.kernel, false, {}, false};
    Outcome out;
    auto loaded_ok = [&](const CrashRecipe& good, Usec end) {
        if (was_loaded) {
            add_window(UnloadedWindow{t0, end, false, cause});
            ++reloads_;
            last_reload_ = end;
        }
        for (const auto& w : windows_)
            if (w.open) rep.unloaded += end - w.start;
        close_window(end);
        if (was_loaded) rep.unloaded += end - t0;
        recipe_ = good;
        last_good_ = good;
        managed_ = true;
        dirty_ = false;
        retry_at_.reset();
        verify_ = Verify{seq_start, end + settings_.load_grace};
        last_range_.reset();
    };
    if (r) {
        loaded_ok(recipe, t1);
        rep.ok = true;
        out.ok = true;
        last_error_.clear();
    } else {
        out.error = r.error();
        rep.error = r.error().describe();
        refresh();
        if (loaded()) {
            // Refused before the kernel touched the loaded image (files, EBUSY, EPERM).
            last_error_ =
                std::string("KernelRefused: ") + rep.error + " (the previous crash kernel is still loaded)";
            if (hotplug) {
                dirty_ = true;  // still stale: try again
                retry_at_ = t1 + settings_.retry;
            }
        } else {
            if (was_loaded) open_window(t0, cause + ": the load failed");
            std::string rollback_note;
            if (last_good_) {
                save_record(KdumpIntent{KdumpIntent::Step::load, *last_good_, t0});
                auto rb = backend_.load_crash(*last_good_);
                const Usec t2 = clock_.now();
                rep.duration = t2 - t0;
                if (rb) {
                    for (const auto& w : windows_)
                        if (w.open) rep.unloaded += t2 - w.start;
                    close_window(t2);
                    recipe_ = last_good_;
                    managed_ = true;
                    verify_ = Verify{seq_start, t2 + settings_.load_grace};
                    last_range_.reset();
                    rollback_note = "; rolled back to the last good image (" + last_good_->kernel + ")";
                    rep.rolled_back = true;
                    rep.rollback_kernel = last_good_->kernel;
                    refresh();
                } else {
                    rollback_note = "; the rollback to the last good image failed too (" +
                                    rb.error().describe() + "): NO crash kernel is loaded, retrying";
                }
            } else {
                rollback_note =
                    "; no earlier image of khod's to roll back to: NO crash kernel is loaded, retrying";
            }
            if (!loaded()) {
                managed_ = true;  // khod took it away: khod puts one back
                retry_at_ = clock_.now() + settings_.retry;
                for (const auto& w : windows_)
                    if (w.open) rep.unloaded = clock_.now() - w.start;
            }
            out.error.message += rollback_note;
            // The journal entry names the rollback's failure too, not only the first.
            rep.error = out.error.describe();
            last_error_ = std::string(to_string(Errc::kernel_refused)) + ": " + out.error.describe();
        }
    }
    refresh();
    save_record();
    rep.loaded_after = loaded();
    if (report && reload_listener_) reload_listener_(rep);
    return out;
}

Kdump::Outcome Kdump::refuse_load(const Failure& why, const CrashRecipe& recipe, const std::string& cause,
                                  std::uint64_t events, bool report, bool hotplug) {
    Outcome out{false, why.error, why.kind};
    last_error_ = std::string(to_string(why.kind)) + ": " + why.describe() +
                  (loaded() ? " (the previous crash kernel is still loaded)" : "");
    if (hotplug) {
        dirty_ = true;  // still stale: try again, the files may be mended
        retry_at_ = clock_.now() + settings_.retry;
    }
    if (report && reload_listener_) {
        const ReloadReport rep{cause,          events,        0,     0,  false,
                               why.describe(), recipe.kernel, false, {}, loaded()};
        reload_listener_(rep);
    }
    return out;
}

Result<void, Failure> Kdump::load(CrashRecipe recipe) {
    const Snapshot before = snapshot();
    auto done = [&](Result<void, Failure> r) {
        notify(before);
        return r;
    };
    if (recipe.kernel.empty() || recipe.kernel.front() != '/')
        return done(fail(Errc::invalid_argument,
                         plain_error(recipe.kernel, "the crash kernel must be given as an absolute path")));
    if (!recipe.initrd.empty() && recipe.initrd.front() != '/')
        return done(fail(Errc::invalid_argument,
                         plain_error(recipe.initrd, "the initrd must be given as an absolute path")));
    refresh();
    if (cap_.kexec.crash_loaded.state == ProbeState::unsupported)
        return done(fail(Errc::not_supported, plain_error(cap_.kexec.crash_loaded.path,
                                                          "this kernel has no kdump (built without "
                                                          "CRASH_DUMP)")));
    if (recipe.source.empty()) recipe.source = "khoctl kdump load";
    const bool was_loaded = loaded();
    // do_load checks the recipe first, so a typo, a FIFO or a kernel the
    // loader would refuse never costs the loaded crash kernel.
    Outcome o = do_load(recipe, "Load", 0, was_loaded, false);
    if (!o.ok) return done(Failure{o.kind, o.error});
    return done({});
}

Result<void, Failure> Kdump::unload() {
    const Snapshot before = snapshot();
    auto done = [&](Result<void, Failure> r) {
        notify(before);
        return r;
    };
    refresh();
    const bool was_loaded = loaded();
    const Usec t0 = clock_.now();
    save_record(KdumpIntent{KdumpIntent::Step::unload, std::nullopt, t0});
    const LoadingFlag unloading(loading_);
    if (auto r = backend_.unload_crash(); !r) {
        save_record();
        return done(fail(Errc::kernel_refused, r.error()));
    }
    if (was_loaded) open_window(t0, "Unload");
    managed_ = false;
    dirty_ = false;
    retry_at_.reset();
    coalescer_.take();
    last_error_.clear();
    refresh();
    save_record();
    return done({});
}

Result<void, Failure> Kdump::reload(const std::string& cause) {
    const Snapshot before = snapshot();
    auto done = [&](Result<void, Failure> r) {
        notify(before);
        return r;
    };
    if (!recipe_)
        return done(fail(Errc::no_recipe,
                         plain_error("",
                                     "no crash kernel recipe: set Kernel= in /etc/khod/khod.conf or run "
                                     "khoctl kdump load")));
    Outcome o = do_load(*recipe_, cause, 0, true, false);
    if (!o.ok) return done(Failure{o.kind, o.error});
    return done({});
}

}  // namespace khod
