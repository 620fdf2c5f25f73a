// The human form of `khoctl status`: sections of "label  value" rows.
#include <cstdio>
#include <sstream>

#include "khod/base/hex.hpp"
#include "khod/base/text_table.hpp"
#include "khod/base/units.hpp"
#include "khod/status.hpp"

namespace khod {

namespace {

template <class T, class Fmt>
std::string probe_text(const Probe<T>& p, Fmt fmt) {
    switch (p.state) {
        case ProbeState::ok: return fmt(*p.value);
        case ProbeState::unsupported: return "not supported by this kernel (no " + p.path + ")";
        case ProbeState::error: break;
    }
    return "error: " + p.error.describe();
}

std::string yes_no(bool v) {
    return v ? "yes" : "no";
}

std::string bytes_text(std::uint64_t v) {
    return human_size(v) + " (" + std::to_string(v) + " bytes)";
}

}  // namespace

std::string format_status(const Status& s) {
    TextTable t(24);
    auto text = [](const std::string& v) { return v; };

    t.section("Kernel");
    if (s.sysroot != "/") t.row("sysroot", s.sysroot);
    t.row("release", probe_text(s.release, text));
    t.row("command line", probe_text(s.cmdline, text));

    t.section("Kexec HandOver (KHO)");
    t.row("active", s.kho.active ? yes_no(*s.kho.active) + " (" + s.kho.active_reason + ")"
                                 : "unknown (" + s.kho.active_reason + ")");
    t.row("kho= on command line", s.kho.cmdline_value ? *s.kho.cmdline_value : "(not given)");
    t.row(s.kho.scratch_param_name + "=",
          s.kho.scratch_param ? *s.kho.scratch_param : "(not given: default)");
    std::string debugfs;
    if (s.kho.debugfs.mounted)
        debugfs = s.kho.debugfs.mountpoint + (s.kho.debugfs.mounted_now ? " (mounted it now)" : "");
    else
        debugfs =
            "not reachable: " + (s.kho.debugfs.error ? s.kho.debugfs.error->describe() : std::string("?"));
    t.row("debugfs", debugfs);
    t.row("ABI", std::string(to_string(s.kho.abi)) + " (" + describe(s.kho.abi) + ")");
    if (s.kho.abi == KhoAbi::finalize) t.row("finalized", probe_text(s.kho.finalized, yes_no));
    t.row("incoming handover", s.kho.incoming ? "yes (kho/in present: booted through a KHO kexec)" : "no");

    const auto& scratch = s.kho.scratch;
    if (scratch.ok()) {
        t.row("scratch areas", std::to_string(scratch.value->size()));
        t.raw("    #  kind    node  address             size");
        for (const ScratchArea& a : *scratch.value) {
            char line[160];
            std::snprintf(line, sizeof line, "    %-2u %-7s %-5s %s  %s (0x%llx)", a.index, to_string(a.kind),
                          a.node ? std::to_string(*a.node).c_str() : "-", hex_padded(a.phys).c_str(),
                          human_size(a.size).c_str(), static_cast<unsigned long long>(a.size));
            t.raw(line);
        }
    } else if (s.kho.abi == KhoAbi::unknown) {
        t.row("scratch areas", "none (KHO not active)");
    } else {
        t.row("scratch areas", probe_text(scratch, [](const auto&) { return std::string(); }));
    }

    t.section("Live Update Orchestrator (LUO)");
    t.row(s.liveupdate.device, s.liveupdate.present ? "present" : "absent (needs liveupdate=on and KHO)");
    t.row("liveupdate= on cmdline", s.liveupdate.cmdline_value ? *s.liveupdate.cmdline_value : "(not given)");

    t.section("Kexec and crash kernel");
    t.row("kexec image loaded", probe_text(s.kexec.loaded, yes_no));
    t.row("crash kernel loaded", probe_text(s.kexec.crash_loaded, yes_no));
    t.row("crash kernel reserved", probe_text(s.kexec.crash_size, bytes_text));
    t.row("elfcorehdr room", probe_text(s.kexec.crash_elfcorehdr_size, bytes_text));
    auto hotplug = [](bool v) {
        return v ? std::string("1 (loaded crash image is updated in place)")
                 : std::string("0 (no loaded crash image is updated in place)");
    };
    t.row("crash_hotplug cpu", probe_text(s.kexec.crash_hotplug_cpu, hotplug));
    t.row("crash_hotplug memory", probe_text(s.kexec.crash_hotplug_memory, hotplug));
    return t.str();
}

}  // namespace khod
