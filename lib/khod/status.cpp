#include "khod/status.hpp"

#include <cstdio>

#include "khod/base/hex.hpp"
#include "khod/base/units.hpp"
#include "khod/kho/scratch_area_json.hpp"

namespace khod {

const char* to_string(ProbeState state) {
    switch (state) {
        case ProbeState::ok: return "ok";
        case ProbeState::error: return "error";
        case ProbeState::unsupported: break;
    }
    return "unsupported";
}

Status probe_status(Sysroot& root, const StatusOptions& options) {
    Status s;
    s.sysroot = root.root().string();
    KernelPath release = root.proc("sys/kernel/osrelease");
    s.release = make_probe<std::string>(release, read_trimmed(release));
    KernelPath cmdline_path = root.proc("cmdline");
    s.cmdline = make_probe<std::string>(cmdline_path, read_trimmed(cmdline_path));
    Cmdline cmdline = Cmdline::parse(s.cmdline.value.value_or(""));

    DebugfsState debugfs = ensure_debugfs(root, options.may_mount_debugfs);
    s.kho = probe_kho(root, cmdline, debugfs);
    s.liveupdate = probe_liveupdate(root, cmdline);
    s.kexec = probe_kexec(root);
    return s;
}

namespace {

nlohmann::json optional_json(const std::optional<std::string>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

}  // namespace

nlohmann::json to_json(const Status& s) {
    using nlohmann::json;
    json kho;
    kho["active"] = s.kho.active ? json(*s.kho.active) : json(nullptr);
    kho["active_reason"] = s.kho.active_reason;
    kho["abi"] = to_string(s.kho.abi);
    kho["abi_description"] = describe(s.kho.abi);
    kho["incoming"] = s.kho.incoming;
    kho["cmdline"] = {
        {"kho", optional_json(s.kho.cmdline_value)},
        {"enabled", s.kho.cmdline_enabled ? json(*s.kho.cmdline_enabled) : json(nullptr)},
        {"scratch_param", s.kho.scratch_param_name},
        {"scratch", optional_json(s.kho.scratch_param)},
    };
    kho["debugfs"] = {
        {"mounted", s.kho.debugfs.mounted},
        {"mounted_now", s.kho.debugfs.mounted_now},
        {"mountpoint", s.kho.debugfs.mountpoint},
        {"error", s.kho.debugfs.error ? json(s.kho.debugfs.error->describe()) : json(nullptr)},
    };
    kho["finalized"] = probe_json(s.kho.finalized);

    json scratch;
    scratch["status"] = to_string(s.kho.scratch.state);
    scratch["path"] = s.kho.scratch.path;
    if (s.kho.scratch.state == ProbeState::error) {
        scratch["errno"] = s.kho.scratch.error.code;
        scratch["error"] = s.kho.scratch.error.describe();
    }
    if (s.kho.scratch.value) {
        json areas = json::array();
        for (const ScratchArea& a : *s.kho.scratch.value) areas.push_back(to_json(a));
        scratch["value"] = areas;
    } else {
        scratch["value"] = nullptr;
    }
    kho["scratch"] = scratch;

    json out;
    out["schema"] = status_schema_version;
    out["sysroot"] = s.sysroot;
    out["kernel"] = {{"release", probe_json(s.release)}, {"cmdline", probe_json(s.cmdline)}};
    out["kho"] = kho;
    out["liveupdate"] = {
        {"device", s.liveupdate.device},
        {"present", s.liveupdate.present},
        {"cmdline", optional_json(s.liveupdate.cmdline_value)},
    };
    out["kexec"] = {
        {"loaded", probe_json(s.kexec.loaded)},
        {"crash_loaded", probe_json(s.kexec.crash_loaded)},
        {"crash_size", probe_json(s.kexec.crash_size)},
        {"crash_elfcorehdr_size", probe_json(s.kexec.crash_elfcorehdr_size)},
    };
    out["crash_hotplug"] = {
        {"cpu", probe_json(s.kexec.crash_hotplug_cpu)},
        {"memory", probe_json(s.kexec.crash_hotplug_memory)},
    };
    return out;
}

}  // namespace khod
