// What the kernel says about loaded kexec images and the crash kernel.
#pragma once

#include <cstdint>

#include "khod/base/probe.hpp"
#include "khod/base/sysroot.hpp"

namespace khod {

struct KexecState {
    Probe<bool> loaded;                          // a kexec image is staged for reboot
    Probe<bool> crash_loaded;                    // a crash kernel is loaded
    Probe<std::uint64_t> crash_size;             // bytes reserved by crashkernel=
    Probe<std::uint64_t> crash_elfcorehdr_size;  // program-header room the kernel reserves for updates
    Probe<bool> crash_hotplug_cpu;               // 1 while the loaded crash image is updated in place
    Probe<bool> crash_hotplug_memory;
};

// Reads /sys/kernel/kexec/* (6.x+), falling back to the older
// /sys/kernel/kexec_* names, and /sys/devices/system/{cpu,memory}/crash_hotplug.
KexecState probe_kexec(const Sysroot& root);

}  // namespace khod
