#include "khod/kdump/kdump_state.hpp"

namespace khod {

const char* to_string(InPlace v) {
    switch (v) {
        case InPlace::yes: return "yes";
        case InPlace::no: return "no";
        case InPlace::unsupported: return "unsupported";
        case InPlace::unknown: break;
    }
    return "unknown";
}

InPlace in_place_from(const Probe<bool>& crash_hotplug) {
    switch (crash_hotplug.state) {
        case ProbeState::ok: return *crash_hotplug.value ? InPlace::yes : InPlace::no;
        case ProbeState::unsupported: return InPlace::unsupported;
        case ProbeState::error: break;
    }
    return InPlace::unknown;
}

std::optional<bool> KdumpCapability::loaded() const {
    if (!kexec.crash_loaded.ok()) return std::nullopt;
    return kexec.crash_loaded.value;
}

std::string KdumpCapability::summary() const {
    std::string s;
    auto l = loaded();
    if (!l)
        s = kexec.crash_loaded.state == ProbeState::unsupported ? "no kdump support (no crash_loaded file)"
                                                                : "crash kernel state unreadable";
    else
        s = *l ? "crash kernel loaded" : "no crash kernel loaded";
    s += std::string(", in-place update cpu ") + to_string(cpu) + " memory " + to_string(memory);
    if (kexec.crash_elfcorehdr_size.ok())
        s += ", elfcorehdr " + std::to_string(*kexec.crash_elfcorehdr_size.value) + " bytes";
    return s;
}

KdumpCapability probe_kdump_capability(const Sysroot& root) {
    KdumpCapability c;
    c.kexec = probe_kexec(root);
    c.cpu = in_place_from(c.kexec.crash_hotplug_cpu);
    c.memory = in_place_from(c.kexec.crash_hotplug_memory);
    return c;
}

std::optional<std::uint64_t> read_uevent_seqnum(const Sysroot& root) {
    auto v = read_u64(root.sys("kernel/uevent_seqnum"));
    if (!v) return std::nullopt;
    return *v;
}

}  // namespace khod
