#include "system_kexec.hpp"

#include <linux/reboot.h>
#include <sys/reboot.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "khod/kexec/kexec_file.hpp"
#include "sd_ptr.hpp"

namespace khod {

Result<void> SystemKexecBackend::load(const HandoverTarget& target) {
    KexecFileLoad request;
    request.kernel = target.kernel;
    if (!target.initrd.empty()) request.initrd = target.initrd;
    request.cmdline = target.cmdline;
    if (target.kernel_file) request.kernel_fd = target.kernel_file->fd();
    if (target.initrd_file) request.initrd_fd = target.initrd_file->fd();
    // Only a non-crash kexec_file_load hands KHO over; the explanation of a
    // refusal (EADDRNOTAVAIL: segments outside scratch) assumes KHO is on.
    return kexec_file_load(root_, request, true);
}

Result<void> SystemKexecBackend::unload() {
    return kexec_file_unload(root_, false);
}

bool SystemKexecBackend::systemd_is_pid1() const {
    // sd_booted() looks at /run/systemd/system, which only systemd as PID 1 creates.
    return root_.is_live() && sd_booted() > 0;
}

Result<void> SystemKexecBackend::reboot_into_loaded(bool via_systemd) {
    if (!root_.is_live())
        return plain_error(root_.root().string(), "refusing to reboot: the sysroot is not /");
    if (via_systemd) {
        // Same as `systemctl kexec`: services stop in order, then systemd
        // itself calls reboot(LINUX_REBOOT_CMD_KEXEC).
        sd_bus* raw = nullptr;
        int r = sd_bus_open_system(&raw);
        if (r < 0) return errno_error(-r, "", "connecting to systemd for kexec.target");
        SdBusPtr bus(raw);
        SdBusError error;
        r = sd_bus_call_method(bus.get(), "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                               "org.freedesktop.systemd1.Manager", "StartUnit", error.get(), nullptr, "ss",
                               "kexec.target", "replace-irreversibly");
        if (r < 0)
            return errno_error(
                -r, "kexec.target",
                std::string("systemd refused to start it: ") + (error.message() ? error.message() : ""));
        return {};
    }
    ::sync();
    if (::reboot(LINUX_REBOOT_CMD_KEXEC) != 0)
        return errno_error(errno, "", "reboot(LINUX_REBOOT_CMD_KEXEC)");
    return {};  // not reached: the new kernel is running
}

}  // namespace khod
