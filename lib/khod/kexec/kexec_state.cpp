#include "khod/kexec/kexec_state.hpp"

namespace khod {

KexecState probe_kexec(const Sysroot& root) {
    auto flag = [](const KernelPath& p) { return read_flag(p); };
    auto number = [](const KernelPath& p) { return read_u64(p); };
    KexecState s;
    s.loaded = probe_first<bool>({root.sys("kernel/kexec/loaded"), root.sys("kernel/kexec_loaded")}, flag);
    s.crash_loaded = probe_first<bool>(
        {root.sys("kernel/kexec/crash_loaded"), root.sys("kernel/kexec_crash_loaded")}, flag);
    s.crash_size = probe_first<std::uint64_t>(
        {root.sys("kernel/kexec/crash_size"), root.sys("kernel/kexec_crash_size")}, number);
    s.crash_elfcorehdr_size = probe_first<std::uint64_t>(
        {root.sys("kernel/kexec/crash_elfcorehdr_size"), root.sys("kernel/crash_elfcorehdr_size")}, number);
    KernelPath cpu = root.sys("devices/system/cpu/crash_hotplug");
    s.crash_hotplug_cpu = make_probe<bool>(cpu, read_flag(cpu));
    KernelPath memory = root.sys("devices/system/memory/crash_hotplug");
    s.crash_hotplug_memory = make_probe<bool>(memory, read_flag(memory));
    return s;
}

}  // namespace khod
