#include "khod/metrics/metrics.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>

#include "khod/base/fd.hpp"

namespace khod {

namespace {

// Microseconds as decimal seconds, exactly (no binary floating point in between).
std::string seconds_text(std::int64_t usec) {
    const bool negative = usec < 0;
    const std::uint64_t magnitude =
        negative ? static_cast<std::uint64_t>(-(usec + 1)) + 1 : static_cast<std::uint64_t>(usec);
    char buf[48];
    std::snprintf(buf, sizeof buf, "%s%" PRIu64 ".%06" PRIu64, negative ? "-" : "", magnitude / 1000000,
                  magnitude % 1000000);
    return buf;
}

// A label value as the text format quotes it.
std::string escape_label(std::string_view value) {
    std::string out;
    for (char c : value) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
    return out;
}

class Exposition {
public:
    // One family: its HELP and TYPE lines, then each sample.
    void family(const char* name, const char* type, const char* help,
                const std::vector<std::pair<std::string, std::string>>& samples) {
        if (samples.empty()) return;  // nothing to say: no family at all
        text_ += std::string("# HELP ") + name + ' ' + help + '\n';
        text_ += std::string("# TYPE ") + name + ' ' + type + '\n';
        for (const auto& [labels, value] : samples)
            text_ += name + (labels.empty() ? "" : "{" + labels + "}") + ' ' + value + '\n';
    }
    void single(const char* name, const char* type, const char* help, const std::string& value) {
        family(name, type, help, {{"", value}});
    }
    std::string take() { return std::move(text_); }

private:
    std::string text_;
};

std::string number(std::uint64_t v) {
    return std::to_string(v);
}

}  // namespace

std::vector<PhaseDuration> phase_durations(const std::vector<PhaseMark>& marks) {
    std::vector<PhaseDuration> out;
    for (std::size_t i = 1; i < marks.size(); ++i) {
        const std::uint64_t from = marks[i - 1].usec, to = marks[i].usec;
        if (from == 0 || to == 0) continue;
        const std::int64_t d =
            to >= from ? static_cast<std::int64_t>(to - from) : -static_cast<std::int64_t>(from - to);
        out.push_back(PhaseDuration{marks[i].name, d});
    }
    return out;
}

std::string render_prometheus(const MetricsSnapshot& s) {
    Exposition e;
    const auto& k = s.kdump;
    e.single("khod_kdump_loaded", "gauge", "Whether a crash kernel is loaded (1) or not (0).",
             k.loaded ? "1" : "0");
    e.single(
        "khod_kdump_managed", "gauge",
        "Whether khod keeps a crash kernel loaded (it loaded one in this boot and no Unload came since).",
        k.managed ? "1" : "0");
    e.single("khod_kdump_reloads_total", "counter",
             "Crash kernel loads khod made while one was loaded, since khod started.", number(k.reloads));
    e.single("khod_kdump_unloaded_windows_total", "counter",
             "Windows without a crash kernel that khod caused (reloads, failed loads, Unload), since khod "
             "started.",
             number(k.unloaded_windows));
    e.single("khod_kdump_unloaded_seconds_total", "counter",
             "Time spent without a crash kernel in those windows, an open one counted up to when the numbers "
             "were taken.",
             seconds_text(static_cast<std::int64_t>(k.unloaded_usec)));
    e.single("khod_kdump_hotplug_events_total", "counter",
             "CPU and memory hotplug events khod received, since khod started.", number(k.hotplug_events));
    e.family("khod_luo_sessions", "gauge",
             "Live Update Orchestrator sessions khod holds: outgoing (preserved for the next kernel) and "
             "incoming (from the previous kernel, held for their owners).",
             {{"direction=\"outgoing\"", number(s.luo_outgoing)},
              {"direction=\"incoming\"", number(s.luo_incoming)}});
    if (!s.previous_release.empty())
        e.family("khod_live_update_info", "gauge",
                 "The live update that led to this boot: the release it came from.",
                 {{"previous_release=\"" + escape_label(s.previous_release) + "\"", "1"}});
    std::vector<std::pair<std::string, std::string>> phases;
    for (const PhaseDuration& p : phase_durations(s.last_update_phases))
        phases.emplace_back("phase=\"" + escape_label(p.phase) + "\"", seconds_text(p.usec));
    e.family("khod_live_update_phase_seconds", "gauge",
             "The last live update: time from the phase before to the end of this one (exec-requested, "
             "inhibitors-released, reboot-syscall, kernel-start, khod-ready, first-retrieve).",
             phases);
    return e.take();
}

nlohmann::json metrics_json(const MetricsSnapshot& s) {
    const auto& k = s.kdump;
    nlohmann::json phases = nlohmann::json::array();
    for (const PhaseDuration& p : phase_durations(s.last_update_phases))
        phases.push_back({{"phase", p.phase},
                          {"usec", p.usec},
                          {"seconds", std::strtod(seconds_text(p.usec).c_str(), nullptr)}});
    return {
        {"kdump",
         {{"loaded", k.loaded},
          {"managed", k.managed},
          {"reloads", k.reloads},
          {"unloaded_windows", k.unloaded_windows},
          {"unloaded_usec", k.unloaded_usec},
          {"unloaded_seconds",
           std::strtod(seconds_text(static_cast<std::int64_t>(k.unloaded_usec)).c_str(), nullptr)},
          {"hotplug_events", k.hotplug_events}}},
        {"luo", {{"outgoing_sessions", s.luo_outgoing}, {"incoming_sessions", s.luo_incoming}}},
        {"live_update",
         {{"previous_release",
           s.previous_release.empty() ? nlohmann::json(nullptr) : nlohmann::json(s.previous_release)},
          {"phases", phases}}},
    };
}

Result<void> write_file_atomically(const std::filesystem::path& path, std::string_view text) {
    if (!path.is_absolute() || !path.has_filename())
        return plain_error(path.string(), "needs an absolute path to a file");
    std::string temp = (path.parent_path() / ("." + path.filename().string() + ".XXXXXX")).string();
    UniqueFd fd(::mkostemp(temp.data(), O_CLOEXEC));
    // Errors name the file, not the temporary's random name: the same failure reads the same.
    if (!fd.valid()) return errno_error(errno, path.string(), "cannot create a temporary file beside it");
    auto give_up = [&temp, &path](int code, const char* what) -> Result<void> {
        ::unlink(temp.c_str());
        return errno_error(code, path.string(), what);
    };
    for (std::size_t done = 0; done < text.size();) {
        const ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return give_up(errno, "cannot write its temporary file");
        done += static_cast<std::size_t>(n);
    }
    // mkostemp makes 0600; readers such as node_exporter run as another user.
    if (::fchmod(fd.get(), 0644) < 0) return give_up(errno, "cannot chmod its temporary file");
    if (::close(fd.release()) < 0) return give_up(errno, "cannot write its temporary file");
    if (::rename(temp.c_str(), path.c_str()) < 0) {
        const int code = errno;
        ::unlink(temp.c_str());
        return errno_error(code, path.string(), "cannot rename its temporary file over it");
    }
    return {};
}

}  // namespace khod
