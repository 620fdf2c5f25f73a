#include "metrics_file.hpp"

#include "log.hpp"

namespace khod {

MetricsSnapshot gather_metrics(const Kdump* kdump, const LiveUpdateObject& liveupdate) {
    MetricsSnapshot s;
    if (kdump) {
        s.kdump.loaded = kdump->loaded();
        s.kdump.managed = kdump->managed();
        s.kdump.reloads = kdump->reloads();
        s.kdump.unloaded_windows = kdump->window_count();
        s.kdump.unloaded_usec = kdump->unloaded_total();
        s.kdump.hotplug_events = kdump->events_seen();
    }
    if (const LuoSessions* sessions = liveupdate.sessions()) {
        s.luo_outgoing = sessions->outgoing().size();
        s.luo_incoming = sessions->incoming().size();
        s.previous_release = sessions->previous_release();
        s.last_update_phases = liveupdate.last_update_phases();
    }
    return s;
}

void MetricsFile::update() {
    std::string text = render_prometheus(gather_());
    if (written_ && *written_ == text) return;
    if (auto r = write_file_atomically(path_, text); !r) {
        const std::string why = r.error().describe();
        if (why != logged_error_) log(LOG_WARNING, "MetricsFile=: %s", why.c_str());
        logged_error_ = why;
        return;  // tried again at the next change
    }
    if (!logged_error_.empty()) log(LOG_NOTICE, "MetricsFile=: %s written again", path_.c_str());
    logged_error_.clear();
    written_ = std::move(text);
}

}  // namespace khod
