// What the kernel can do for a loaded crash kernel when CPUs or memory come
// and go: whether it rewrites the image's elfcorehdr in place (crash_hotplug,
// kernels since 6.6 with CRASH_HOTPLUG) or userspace must reload it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "khod/base/probe.hpp"
#include "khod/base/sysroot.hpp"
#include "khod/kexec/kexec_state.hpp"

namespace khod {

// For one subsystem (cpu or memory), who keeps the loaded crash image current.
enum class InPlace {
    yes,          // crash_hotplug reads 1: the kernel updates the elfcorehdr itself
    no,           // crash_hotplug reads 0: no crash image, or one loaded without hotplug support
                  // (kexec_load without KEXEC_UPDATE_ELFCOREHDR), or the kexec lock was busy
    unsupported,  // no crash_hotplug file: kernel older than 6.6 or built without CRASH_HOTPLUG
    unknown,      // the file could not be read; the probe's error says why
};
const char* to_string(InPlace v);

struct KdumpCapability {
    KexecState kexec;  // crash_loaded, crash_size, crash_elfcorehdr_size, crash_hotplug_{cpu,memory}
    InPlace cpu = InPlace::unknown;
    InPlace memory = InPlace::unknown;

    // crash_loaded read 1. nullopt when it could not be read or the kernel has no such file.
    std::optional<bool> loaded() const;
    // The kernel keeps the loaded image current for both subsystems.
    bool in_place() const { return cpu == InPlace::yes && memory == InPlace::yes; }
    // The kernel has the crash hotplug machinery at all (an image loaded with
    // kexec_file_load would be updated in place).
    bool kernel_supports_in_place() const {
        return cpu != InPlace::unsupported && memory != InPlace::unsupported;
    }
    // One line for logs: "crash kernel loaded, in-place update cpu yes memory yes, elfcorehdr 462448 bytes".
    std::string summary() const;
};

// crash_hotplug's reading as an InPlace value.
InPlace in_place_from(const Probe<bool>& crash_hotplug);

// Reads /sys/kernel/kexec/crash_* (or the older /sys/kernel/kexec_crash_* names)
// and /sys/devices/system/{cpu,memory}/crash_hotplug. Note: reading crash_hotplug
// takes the kexec lock with a trylock; while another load holds it the kernel
// answers 0 (and logs "kdump image may be inaccurate"), so `no` can be transient.
KdumpCapability probe_kdump_capability(const Sysroot& root);

// /sys/kernel/uevent_seqnum: the number of the last uevent the kernel sent.
// nullopt when it cannot be read (the error is not interesting to callers: they
// fall back to arrival times).
std::optional<std::uint64_t> read_uevent_seqnum(const Sysroot& root);

}  // namespace khod
