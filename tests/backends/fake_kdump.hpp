// A KdumpBackend for fixture sysroots (unit and bus integration tests, and
// `khod --fake-kexec`). It cannot run kernel code, so it does to the tree what
// the kernel does to sysfs, in the kernel's order: the kernel and initrd are
// opened first (a missing file leaves the loaded image alone), then the old
// crash image is freed (crash_loaded 0), then the new one is read, and an
// image that is not a bzImage fails with ENOEXEC, leaving none loaded; a
// loaded kexec_file image reads crash_hotplug 1. Refuses the live system.
//
// For tests that kill khod inside a step (the bus tier, through
// `khod --fake-kexec`): when <sysroot>/fake-kdump/kill-at names a point the
// backend reaches (load-after-free, load-after-load, unload-after-free), the
// file is removed and the process gets SIGKILL there, as if killed by an
// operator or the OOM killer at that moment.
#pragma once

#include <functional>
#include <optional>
#include <vector>

#include "khod/kdump/kdump.hpp"

namespace khod {

class FakeKdumpBackend : public KdumpBackend {
public:
    explicit FakeKdumpBackend(const Sysroot& root) : root_(root) {}

    Result<void> load_crash(const CrashRecipe& recipe) override;
    Result<void> unload_crash() override;

    // Test knobs: fail every load with this errno after freeing the old image
    // (as a kernel-side failure would), or before touching it (as EBUSY would).
    std::optional<int> fail_after_free;
    std::optional<int> fail_before_free;
    // Runs while the "kernel" holds the kexec lock: tests use it to send
    // hotplug events (bump uevent_seqnum) during a load.
    std::function<void()> during_load;

    std::vector<CrashRecipe> loads;  // what was asked
    int unloads = 0;

private:
    Result<void> set_crash(bool loaded);
    void maybe_killed_at(const char* point) const;
    const Sysroot& root_;
};

}  // namespace khod
