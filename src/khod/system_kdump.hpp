// The KdumpBackend that makes the real syscalls (kexec_file_load with
// KEXEC_FILE_ON_CRASH, through lib/khod/kexec/kexec_file.hpp), and the clock khod
// measures with.
#pragma once

#include "khod/kdump/kdump.hpp"

namespace khod {

class SystemKdumpBackend : public KdumpBackend {
public:
    explicit SystemKdumpBackend(const Sysroot& root) : root_(root) {}

    Result<void> load_crash(const CrashRecipe& recipe) override;
    Result<void> unload_crash() override;

private:
    const Sysroot& root_;
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
