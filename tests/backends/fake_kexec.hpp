// A KexecBackend for fixture sysroots (unit and bus integration tests, and
// `khod --fake-kexec`): it cannot run kernel code, so it does what the kernel
// would show in sysfs — kexec/loaded goes 1 on load and 0 on unload — and
// records the calls. Refuses to run against the live system.
#pragma once

#include <functional>
#include <optional>
#include <vector>

#include "khod/kho/handover.hpp"

namespace khod {

class FakeKexecBackend : public KexecBackend {
public:
    explicit FakeKexecBackend(const Sysroot& root) : root_(root) {}

    Result<void> load(const HandoverTarget& target) override;
    Result<void> unload() override;
    Result<void> reboot_into_loaded(bool via_systemd) override;
    bool systemd_is_pid1() const override { return systemd_pid1; }

    // Test knobs: fail the next calls with this errno.
    std::optional<int> fail_load;
    std::optional<int> fail_unload;
    std::optional<int> fail_reboot;
    bool systemd_pid1 = false;
    // What else the kernel's reboot(KEXEC) does first (FakeLuo::freeze, wired
    // in src/khod/backends.cpp); its failure fails the reboot, as a failed
    // LUO freeze does in the kernel.
    std::function<Result<void>()> before_reboot;

    // What was asked.
    std::vector<HandoverTarget> loads;
    // The first bytes of the held kernel each load was given ("" when it had none).
    std::vector<std::string> held_kernel_heads;
    int unloads = 0;
    std::vector<bool> reboots;  // via_systemd of each reboot

private:
    Result<void> set_loaded(bool loaded);
    const Sysroot& root_;
};

}  // namespace khod
