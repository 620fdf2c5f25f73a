// Everything `khoctl status` reports, gathered in one pass through the sysroot.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "khod/base/probe.hpp"
#include "khod/base/sysroot.hpp"
#include "khod/kexec/kexec_state.hpp"
#include "khod/kho/kho.hpp"
#include "khod/luo/liveupdate.hpp"

namespace khod {

// Bumped only when a field changes meaning or disappears; fields may be added.
inline constexpr int status_schema_version = 1;

struct StatusOptions {
    bool may_mount_debugfs = true;
};

struct Status {
    std::string sysroot;
    Probe<std::string> release;
    Probe<std::string> cmdline;
    KhoStatus kho;
    LiveupdateStatus liveupdate;
    KexecState kexec;
};

// May mount debugfs (live sysroot only) and then points root at it.
Status probe_status(Sysroot& root, const StatusOptions& options);

nlohmann::json to_json(const Status& status);
// A readable table for people.
std::string format_status(const Status& status);

template <class T>
nlohmann::json probe_json(const Probe<T>& probe) {
    nlohmann::json j;
    j["status"] = to_string(probe.state);
    j["path"] = probe.path;
    j["value"] = probe.value ? nlohmann::json(*probe.value) : nlohmann::json(nullptr);
    if (probe.state == ProbeState::error) {
        j["errno"] = probe.error.code;
        j["error"] = probe.error.describe();
    }
    return j;
}

}  // namespace khod
