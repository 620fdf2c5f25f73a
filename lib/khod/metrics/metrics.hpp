// khod's numbers as Prometheus reads them: the text exposition format 0.0.4
// (`khoctl metrics`, and the file khod keeps for node_exporter's textfile
// collector when khod.conf sets MetricsFile=), and the same numbers as JSON.
// Knows nothing of D-Bus: khoctl fills a snapshot from khod's properties,
// khod from its own state.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "khod/base/result.hpp"

namespace khod {

// One mark of the last live update, as LiveUpdate.LastUpdatePhases has it:
// CLOCK_REALTIME microseconds, 0 where not reached.
struct PhaseMark {
    std::string name;
    std::uint64_t usec = 0;
};

struct MetricsSnapshot {
    struct Kdump {
        bool loaded = false;
        bool managed = false;
        std::uint64_t reloads = 0;
        std::uint64_t unloaded_windows = 0;
        std::uint64_t unloaded_usec = 0;
        std::uint64_t hotplug_events = 0;
    } kdump;
    std::string previous_release;               // empty: no live update led to this boot
    std::vector<PhaseMark> last_update_phases;  // in the order of the update
    std::uint64_t luo_outgoing = 0;
    std::uint64_t luo_incoming = 0;
};

// How long the update took to reach each mark from the one before it, in
// microseconds. Marks not reached (0) give nothing. Signed: the two kernels'
// realtime clocks may disagree by a little across the kexec.
struct PhaseDuration {
    std::string phase;  // the mark it ends at
    std::int64_t usec = 0;
};
std::vector<PhaseDuration> phase_durations(const std::vector<PhaseMark>& marks);

std::string render_prometheus(const MetricsSnapshot& snapshot);
nlohmann::json metrics_json(const MetricsSnapshot& snapshot);

// Replaces path with text so a reader never sees half of it: a temporary file
// in the same directory (named with a leading dot and no .prom suffix, which
// node_exporter skips), mode 0644, then rename(2).
Result<void> write_file_atomically(const std::filesystem::path& path, std::string_view text);

}  // namespace khod
