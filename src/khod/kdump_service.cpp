#include "kdump_service.hpp"

#include <cstring>
#include <fstream>

#include "guard.hpp"
#include "journal_events.hpp"
#include "khod/khod_config.hpp"
#include "log.hpp"

namespace khod {

KdumpService::KdumpService(const Sysroot& root, std::unique_ptr<KdumpBackend> backend,
                           std::filesystem::path runtime_dir, std::string test_socket,
                           UeventSource::Pick pick)
    : root_(root),
      runtime_dir_(std::move(runtime_dir)),
      test_socket_(std::move(test_socket)),
      pick_(pick),
      backend_(std::move(backend)) {}

KdumpService::~KdumpService() {
    if (marker_) {
        std::error_code ec;
        std::filesystem::remove(marker_path(), ec);
    }
}

int KdumpService::start(sd_bus* bus, sd_event* event, PolkitAuthorizer* authorizer, JobQueue* jobs,
                        bool after_live_update) {
    jobs_ = jobs;
    KdumpSettings settings;
    std::optional<CrashRecipe> recipe;
    std::string recipe_error;
    bool watch = true;
    CrashLoader loader = CrashLoader::file;
    auto config = load_khod_config(root_);
    if (!config) {
        // A broken config must not take the Handover side down with it.
        log(LOG_ERR, "kdump: %s; using the defaults", config.error().describe().c_str());
        recipe_error = config.error().describe();
    } else {
        for (const auto& w : config->warnings) log(LOG_WARNING, "%s", w.c_str());
        settings.settle = config->kdump.settle;
        settings.max_delay = config->kdump.max_delay;
        settings.load_grace = config->kdump.load_grace;
        watch = config->kdump.watch_hotplug;
        loader = config->kdump.loader;
        auto r = resolve_recipe(root_, config->kdump);
        if (!r) {
            log(LOG_WARNING, "kdump: no crash kernel recipe: %s", r.error().describe().c_str());
            recipe_error = r.error().describe();
        } else {
            recipe = *r;
        }
    }
    kdump_ = std::make_unique<Kdump>(root_, *backend_, clock_, settings, runtime_dir_);

    if (watch) {
        auto s = UeventSource::open(
            root_, event, test_socket_, pick_, [this](const HotplugEvent& e) { kdump_->on_event(e); },
            [this] { kdump_->on_events_lost(); }, [this] { after_timer_or_event(); });
        if (!s) {
            log(LOG_ERR, "kdump: cannot watch hotplug events: %s", s.error().describe().c_str());
        } else {
            source_ = std::move(*s);
        }
    }
    const std::string source_name = source_ ? source_->name() : "none";

    object_ = std::make_unique<KdumpObject>(
        bus, kdump_.get(), source_name, loader, [this] { rearm(); }, authorizer, jobs_);
    kdump_->on_change([this](const std::vector<std::string>& changed) {
        jobs_->on_loop([this, changed] {
            object_->emit_changed(changed);
            if (changed_) changed_();
        });
    });
    kdump_->on_reloaded([this](const ReloadReport& rep) { jobs_->on_loop([this, rep] { announce(rep); }); });
    kdump_->on_record_error([](const Error& e) { log(LOG_WARNING, "kdump: %s", e.describe().c_str()); });
    // On the bus before start(): start() announces what it found.
    if (int r = object_->attach(); r < 0) return r;
    kdump_->start(recipe, recipe_error);
    if (!kdump_->recovery().empty()) log(LOG_NOTICE, "kdump: %s", kdump_->recovery().c_str());
    if (after_live_update) load_after_live_update();

    sd_event_source* timer = nullptr;
    // 1 ms accuracy: the default (250 ms) would blur the settle interval.
    int r =
        sd_event_add_time(event, &timer, CLOCK_MONOTONIC, UINT64_MAX, 1000, &KdumpService::on_timer, this);
    if (r < 0) return r;
    timer_.reset(timer);
    sd_event_source_set_enabled(timer, SD_EVENT_OFF);
    jobs_->on_busy_changed([this](bool busy) { hold_hotplug(busy); });

    if (source_ && source_->kind() != UeventSource::Kind::none) {
        std::error_code ec;
        std::filesystem::create_directories(runtime_dir_, ec);
        std::ofstream(marker_path()) << "khod handles CPU and memory hotplug for kdump (" << source_name
                                     << " events)\n";
        marker_ = std::filesystem::exists(marker_path());
    }
    const auto& rc = kdump_->recipe();
    log(LOG_INFO, "kdump: %s; hotplug events from %s; recipe %s", kdump_->capability().summary().c_str(),
        source_name.c_str(), rc ? (rc->kernel + " (" + rc->source + ")").c_str() : "none");
    if (!kdump_->last_error().empty()) log(LOG_WARNING, "kdump: %s", kdump_->last_error().c_str());
    logged_error_ = kdump_->last_error();
    rearm();
    return 0;
}

// A kexec leaves no crash kernel behind, and in the new boot nothing else may
// load one (the distribution's kdump service may be off, or may have run
// with nothing to do). Loaded here, before khod reports ready.
void KdumpService::load_after_live_update() {
    if (kdump_->loaded()) return;
    const auto& recipe = kdump_->recipe();
    if (!recipe) {
        log(LOG_WARNING, "kdump: no crash kernel after the live update, and no recipe to load one with");
        return;
    }
    if (auto r = kdump_->reload("live update"); !r) {
        log(LOG_ERR, "kdump: cannot load the crash kernel %s after the live update: %s",
            recipe->kernel.c_str(), r.error().error.describe().c_str());
        return;
    }
    log(LOG_NOTICE, "kdump: crash kernel %s loaded after the live update (recipe from %s)",
        recipe->kernel.c_str(), recipe->source.c_str());
}

void KdumpService::announce(const ReloadReport& rep) {
    if (auto event = crash_kernel_event(rep))
        log_event(*event);
    else
        log(LOG_ERR, "kdump: reload (%s) failed: %s", rep.cause.c_str(), rep.error.c_str());
    object_->emit_reloaded(rep);
}

void KdumpService::hold_hotplug(bool hold) {
    if (source_) source_->set_enabled(!hold);
    if (hold && timer_)
        sd_event_source_set_enabled(timer_.get(), SD_EVENT_OFF);
    else
        rearm();
}

void KdumpService::rearm() {
    if (jobs_ && jobs_->busy()) return;  // hold_hotplug(false) re-arms
    if (!timer_) return;
    auto d = kdump_->deadline();
    if (!d) {
        sd_event_source_set_enabled(timer_.get(), SD_EVENT_OFF);
        return;
    }
    sd_event_source_set_time(timer_.get(), *d);
    sd_event_source_set_enabled(timer_.get(), SD_EVENT_ONESHOT);
}

void KdumpService::after_timer_or_event() {
    if (kdump_->confirmations() != logged_confirmations_) {
        logged_confirmations_ = kdump_->confirmations();
        log(LOG_INFO,
            "kdump: hotplug events settled; the kernel keeps the crash kernel current in place "
            "(%llu events so far, no reload)",
            static_cast<unsigned long long>(kdump_->events_seen()));
    }
    if (kdump_->last_error() != logged_error_) {
        logged_error_ = kdump_->last_error();
        if (!logged_error_.empty()) log(LOG_WARNING, "kdump: %s", logged_error_.c_str());
    }
    rearm();
    // EventsSeen changes without a PropertiesChanged: say so here, once per batch.
    if (changed_) changed_();
}

int KdumpService::on_timer(sd_event_source* /*source*/, uint64_t /*usec*/, void* userdata) {
    auto* self = static_cast<KdumpService*>(userdata);
    return guarded_event("kdump timer", [self] {
        // A reload is a load like any other: off the loop, in turn. The queue
        // is idle here (hold_hotplug keeps the timer off while it is not).
        const bool queued = self->jobs_->submit({"kdump hotplug", [self] { self->kdump_->on_timer(); },
                                                 [self] { self->after_timer_or_event(); }});
        if (!queued) log(LOG_WARNING, "kdump: the job queue is full; the hotplug step waits for it");
        return 0;
    });
}

}  // namespace khod
