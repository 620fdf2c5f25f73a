// MetricsFile= (khod.conf): khod's numbers in Prometheus's text format, kept
// in a file for node_exporter's textfile collector. Written at start and
// again whenever a number changed (khod calls update() from its change
// listeners: no timer), and only when the text differs from the last written.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "bus_liveupdate.hpp"
#include "khod/kdump/kdump.hpp"
#include "khod/metrics/metrics.hpp"

namespace khod {

// The numbers `khoctl metrics` reads over the bus, taken from khod's own state.
// kdump may be null (kdump not started).
MetricsSnapshot gather_metrics(const Kdump* kdump, const LiveUpdateObject& liveupdate);

class MetricsFile {
public:
    MetricsFile(std::filesystem::path path, std::function<MetricsSnapshot()> gather)
        : path_(std::move(path)), gather_(std::move(gather)) {}

    void update();

private:
    std::filesystem::path path_;
    std::function<MetricsSnapshot()> gather_;
    std::optional<std::string> written_;
    std::string logged_error_;  // each failure once, not at every change
};

}  // namespace khod
