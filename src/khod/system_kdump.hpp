// The KdumpBackend that makes the real syscalls: kexec_file_load with
// KEXEC_FILE_ON_CRASH (lib/khod/kexec/kexec_file.hpp), or khod's own
// kexec_load image (lib/khod/crash/native_loader.hpp), as the recipe's
// loader says; and the clock khod measures with.
#pragma once

#include "khod/crash/core_layout.hpp"
#include "khod/kdump/kdump.hpp"
#include "khod/khod_config.hpp"

namespace khod {

class SystemKdumpBackend : public KdumpBackend {
public:
    // kcore_fd: /proc/kcore opened for khod, or -1 to open it at each native load.
    SystemKdumpBackend(const Sysroot& root, NativeLoaderConfig native, int kcore_fd)
        : root_(root), native_(std::move(native)), kcore_fd_(kcore_fd) {}

    Result<void> load_crash(const CrashRecipe& recipe) override;
    Result<void> unload_crash() override;

private:
    Result<void> load_file(const CrashRecipe& recipe);
    Result<void> load_native(const CrashRecipe& recipe);

    const Sysroot& root_;
    NativeLoaderConfig native_;
    int kcore_fd_;
    CoreLayoutCache layout_cache_;  // this boot's per-CPU notes, vmcoreinfo, kcore headers
};

// CLOCK_MONOTONIC, the clock sd-event's timers use.
class MonotonicClock : public Clock {
public:
    Usec now() const override;
    Usec wall() const override;
};

// CLOCK_REALTIME in microseconds, for timestamps people read.
Usec realtime_usec();

}  // namespace khod
