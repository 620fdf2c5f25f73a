// The KexecBackend that makes the real syscalls: kexec_file_load(2), and the
// reboot through systemd or reboot(2).
#pragma once

#include "khod/kho/handover.hpp"

namespace khod {

class SystemKexecBackend : public KexecBackend {
public:
    explicit SystemKexecBackend(const Sysroot& root) : root_(root) {}

    Result<void> load(const HandoverTarget& target) override;
    Result<void> unload() override;
    Result<void> reboot_into_loaded(bool via_systemd) override;
    bool systemd_is_pid1() const override;

private:
    const Sysroot& root_;
};

}  // namespace khod
