// metrics: khod's numbers in Prometheus's text exposition format (or, with
// --json, the same numbers as JSON), read from khod's Kdump and LiveUpdate
// properties and rendered by lib/khod/metrics, as khod's MetricsFile= is.
#include <iostream>

#include "bus_client.hpp"
#include "commands.hpp"
#include "khod/metrics/metrics.hpp"

namespace khoctl {

namespace {

std::uint64_t number(const nlohmann::json& props, const char* name) {
    const auto it = props.find(name);
    return it != props.end() && it->is_number_unsigned() ? it->get<std::uint64_t>() : 0;
}

bool flag(const nlohmann::json& props, const char* name) {
    const auto it = props.find(name);
    return it != props.end() && it->is_boolean() && it->get<bool>();
}

std::uint64_t count(const nlohmann::json& props, const char* name) {
    const auto it = props.find(name);
    return it != props.end() && it->is_array() ? it->size() : 0;
}

// The properties as lib/khod/metrics wants them (names in khod(8)).
khod::MetricsSnapshot snapshot(const nlohmann::json& kdump, const nlohmann::json& liveupdate) {
    khod::MetricsSnapshot s;
    s.kdump.loaded = flag(kdump, "Loaded");
    s.kdump.managed = flag(kdump, "Managed");
    s.kdump.reloads = number(kdump, "Reloads");
    s.kdump.unloaded_windows = number(kdump, "UnloadedWindowCount");
    s.kdump.unloaded_usec = number(kdump, "UnloadedWindowUsecTotal");
    s.kdump.hotplug_events = number(kdump, "EventsSeen");
    s.luo_outgoing = count(liveupdate, "Outgoing");
    s.luo_incoming = count(liveupdate, "Incoming");
    if (auto it = liveupdate.find("PreviousRelease"); it != liveupdate.end() && it->is_string())
        s.previous_release = it->get<std::string>();
    if (auto it = liveupdate.find("LastUpdatePhases"); it != liveupdate.end() && it->is_array())
        for (const auto& p : *it)
            if (p.is_array() && p.size() == 2 && p[0].is_string() && p[1].is_number_unsigned())
                s.last_update_phases.push_back({p[0].get<std::string>(), p[1].get<std::uint64_t>()});
    return s;
}

int metrics(const GlobalOptions& global) {
    BusFailure failure;
    auto client = KhodClient::connect(failure);
    if (!client) return report_failure(failure, global.json);
    nlohmann::json kdump, liveupdate;
    if (!client->properties(khod1::kdump_interface, kdump, failure) ||
        !client->properties(khod1::liveupdate_interface, liveupdate, failure))
        return report_failure(failure, global.json);
    const khod::MetricsSnapshot s = snapshot(kdump, liveupdate);
    if (global.json)
        std::cout << nlohmann::json{{"ok", true}, {"metrics", khod::metrics_json(s)}}.dump(
                         2, ' ', false, nlohmann::json::error_handler_t::replace)
                  << '\n';
    else
        std::cout << khod::render_prometheus(s);
    return 0;
}

}  // namespace

void add_metrics_commands(CLI::App& app, const GlobalOptions& global, Runner& selected) {
    app.add_subcommand("metrics", "Print khod's numbers in Prometheus's text format (--json: as JSON)")
        ->callback([&global, &selected] { selected = [&global] { return metrics(global); }; });
}

}  // namespace khoctl
