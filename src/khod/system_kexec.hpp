// The KexecBackend that makes the real syscalls, and the hooks khod runs
// around them (preflight before Prepare, kho/out validation after loading).
#pragma once

#include "khod/handover.hpp"

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

HandoverHooks default_handover_hooks();

}  // namespace khod
