#include "backends/fake_kexec.hpp"

#include <unistd.h>

#include "backends/fake_knobs.hpp"

namespace khod {

Result<void> FakeKexecBackend::set_loaded(bool loaded) {
    if (root_.is_live()) return plain_error("/", "the fake kexec backend never writes to the live system");
    // The file the kernel has: /sys/kernel/kexec/loaded, or the older name.
    KernelPath path = root_.sys("kernel/kexec/loaded");
    if (!exists(path)) path = root_.sys("kernel/kexec_loaded");
    return write_file(path, loaded ? "1\n" : "0\n");
}

Result<void> FakeKexecBackend::load(const HandoverTarget& target) {
    loads.push_back(target);
    std::string head(16, '\0');
    const ssize_t n = target.kernel_file ? ::pread(target.kernel_file->fd(), head.data(), head.size(), 0) : 0;
    head.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    held_kernel_heads.push_back(head);
    sleep_as_knob_says(root_, "/fake-kexec/load-delay-ms");
    if (fail_load) return errno_error(*fail_load, target.kernel, "kexec_file_load (fake)");
    return set_loaded(true);
}

Result<void> FakeKexecBackend::unload() {
    ++unloads;
    if (fail_unload) return errno_error(*fail_unload, "", "kexec_file_load unload (fake)");
    return set_loaded(false);
}

Result<void> FakeKexecBackend::reboot_into_loaded(bool via_systemd) {
    reboots.push_back(via_systemd);
    if (fail_reboot) return errno_error(*fail_reboot, "", "reboot (fake)");
    if (before_reboot) return before_reboot();
    return {};
}

}  // namespace khod
