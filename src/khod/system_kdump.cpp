#include "system_kdump.hpp"

#include <syslog.h>

#include <ctime>

#include "khod/crash/native_loader.hpp"
#include "khod/kexec/kexec_file.hpp"
#include "log.hpp"

namespace khod {

namespace {

Usec clock_usec(clockid_t id) {
    timespec ts{};
    clock_gettime(id, &ts);
    return static_cast<Usec>(ts.tv_sec) * usec_per_sec + static_cast<Usec>(ts.tv_nsec) / 1000;
}

}  // namespace

Result<void> SystemKdumpBackend::load_crash(const CrashRecipe& recipe) {
    switch (recipe.loader) {
        case CrashLoader::file: return load_file(recipe);
        case CrashLoader::native: return load_native(recipe);
        case CrashLoader::automatic: break;
    }
    auto file = load_file(recipe);
    if (file) return file;
    // The file loader is refused where kexec_load may not be: an unsigned
    // capture kernel on a KEXEC_SIG kernel, a layout the kernel will not take.
    log(LOG_NOTICE, "Loader=auto: %s; trying khod's kexec_load image", file.error().describe().c_str());
    auto native = load_native(recipe);
    if (native) return native;
    Error both = native.error();
    both.message = "kexec_file_load: " + file.error().describe() + "; then kexec_load: " + both.message;
    return both;
}

Result<void> SystemKdumpBackend::load_file(const CrashRecipe& recipe) {
    KexecFileLoad request;
    request.kernel = recipe.kernel;
    if (!recipe.initrd.empty()) request.initrd = recipe.initrd;
    request.cmdline = recipe.cmdline;
    request.crash = true;
    return kexec_file_load(root_, request);
}

Result<void> SystemKdumpBackend::load_native(const CrashRecipe& recipe) {
    NativeCrashRequest request;
    request.kernel = recipe.kernel;
    request.initrd = recipe.initrd;
    request.cmdline = recipe.cmdline;
    request.purgatory = native_.purgatory;
    request.max_cpus = native_.max_cpus;
    request.max_ranges = native_.max_ranges;
    request.kcore_fd = kcore_fd_;
    request.layout_cache = &layout_cache_;
    auto inputs = read_native_crash_inputs(root_, request);
    if (!inputs) return inputs.error();
    auto image = plan_native_crash_image(*inputs);
    if (!image) return image.error();
    return kexec_load_crash(root_, *image);
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
