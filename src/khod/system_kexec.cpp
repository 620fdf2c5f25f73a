#include "system_kexec.hpp"

#include <fcntl.h>
#include <linux/kexec.h>
#include <linux/reboot.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "khod/fd.hpp"
#include "sd_ptr.hpp"

namespace khod {

Result<void> SystemKexecBackend::load(const HandoverTarget& target) {
    UniqueFd kernel(::open(target.kernel.c_str(), O_RDONLY | O_CLOEXEC));
    if (!kernel.valid()) return errno_error(errno, target.kernel, "cannot open the target kernel");
    UniqueFd initrd;
    unsigned long flags = 0;
    if (target.initrd.empty()) {
        flags |= KEXEC_FILE_NO_INITRAMFS;
    } else {
        initrd.reset(::open(target.initrd.c_str(), O_RDONLY | O_CLOEXEC));
        if (!initrd.valid()) return errno_error(errno, target.initrd, "cannot open the target initrd");
    }
    // cmdline_len counts the terminating NUL.
    if (::syscall(SYS_kexec_file_load, kernel.get(), initrd.get(), target.cmdline.size() + 1,
                  target.cmdline.c_str(), flags) != 0)
        return errno_error(errno, target.kernel, "kexec_file_load refused the target");
    return {};
}

Result<void> SystemKexecBackend::unload() {
    if (::syscall(SYS_kexec_file_load, -1, -1, 0, nullptr, KEXEC_FILE_UNLOAD) != 0)
        return errno_error(errno, "", "kexec_file_load(KEXEC_FILE_UNLOAD)");
    return {};
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

HandoverHooks default_handover_hooks() {
    HandoverHooks hooks;
    hooks.preflight = [](const Sysroot&, HandoverTarget& target) -> HandoverResult<void> {
        if (::access(target.kernel.c_str(), R_OK) != 0)
            return HandoverError{HandoverErrc::preflight_failed,
                                 errno_error(errno, target.kernel, "the target kernel is not readable")};
        if (!target.initrd.empty() && ::access(target.initrd.c_str(), R_OK) != 0)
            return HandoverError{HandoverErrc::preflight_failed,
                                 errno_error(errno, target.initrd, "the target initrd is not readable")};
        return {};
    };
    return hooks;
}

}  // namespace khod
