#include "system_kdump.hpp"

#include <ctime>

#include "khod/kexec/kexec_file.hpp"

namespace khod {

namespace {

Usec clock_usec(clockid_t id) {
    timespec ts{};
    clock_gettime(id, &ts);
    return static_cast<Usec>(ts.tv_sec) * usec_per_sec + static_cast<Usec>(ts.tv_nsec) / 1000;
}

}  // namespace

Result<void> SystemKdumpBackend::load_crash(const CrashRecipe& recipe) {
    KexecFileLoad request;
    request.kernel = recipe.kernel;
    if (!recipe.initrd.empty()) request.initrd = recipe.initrd;
    request.cmdline = recipe.cmdline;
    request.crash = true;
    return kexec_file_load(root_, request);
}

Result<void> SystemKdumpBackend::unload_crash() {
    return kexec_file_unload(root_, true);
}

Usec MonotonicClock::now() const {
    return clock_usec(CLOCK_MONOTONIC);
}

Usec MonotonicClock::wall() const {
    return realtime_usec();
}

Usec realtime_usec() {
    return clock_usec(CLOCK_REALTIME);
}

}  // namespace khod
