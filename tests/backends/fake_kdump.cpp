#include "backends/fake_kdump.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>

#include "backends/fake_knobs.hpp"
#include "khod/base/caller_file.hpp"
#include "khod/base/fd.hpp"

namespace khod {

namespace {

// The bzImage boot protocol magic "HdrS" at 0x202: what the kernel's bzImage64 loader checks first.
bool looks_like_bzimage(int fd) {
    char magic[4] = {};
    return ::pread(fd, magic, sizeof magic, 0x202) == static_cast<ssize_t>(sizeof magic) && magic[0] == 'H' &&
           magic[1] == 'd' && magic[2] == 'r' && magic[3] == 'S';
}

}  // namespace

Result<void> FakeKdumpBackend::set_crash(bool loaded) {
    if (root_.is_live()) return plain_error("/", "the fake kdump backend never writes to the live system");
    KernelPath path = root_.sys("kernel/kexec/crash_loaded");
    if (!exists(path)) path = root_.sys("kernel/kexec_crash_loaded");
    if (auto r = write_file(path, loaded ? "1\n" : "0\n"); !r) return r;
    // crash_hotplug reads 1 only while a hotplug-capable image (any kexec_file one) is loaded.
    for (const char* sub : {"devices/system/cpu/crash_hotplug", "devices/system/memory/crash_hotplug"}) {
        KernelPath hp = root_.sys(sub);
        if (exists(hp))
            if (auto r = write_file(hp, loaded ? "1\n" : "0\n"); !r) return r;
    }
    return {};
}

void FakeKdumpBackend::maybe_killed_at(const char* point) const {
    const KernelPath knob = root_.resolve("/fake-kdump/kill-at");
    auto wanted = read_trimmed(knob);
    if (!wanted || *wanted != point) return;
    std::error_code ec;
    std::filesystem::remove(knob.host, ec);  // the restarted khod must live
    std::raise(SIGKILL);
}

Result<void> FakeKdumpBackend::load_crash(const CrashRecipe& recipe) {
    loads.push_back(recipe);
    sleep_as_knob_says(root_, "/fake-kdump/load-delay-ms");
    // Opened as kexec_file_load() opens them, so a FIFO cannot hang the fake either.
    auto kernel = open_regular_file(recipe.kernel, "the kernel (fake)");
    if (!kernel) return kernel.error();
    if (!recipe.initrd.empty())
        if (auto initrd = open_regular_file(recipe.initrd, "the initrd (fake)"); !initrd)
            return initrd.error();
    if (fail_before_free) return errno_error(*fail_before_free, recipe.kernel, "kexec_file_load (fake)");
    if (auto r = set_crash(false); !r) return r;
    maybe_killed_at("load-after-free");
    if (during_load) during_load();
    if (fail_after_free) return errno_error(*fail_after_free, recipe.kernel, "kexec_file_load (fake)");
    if (!looks_like_bzimage(kernel->fd.get()))
        return errno_error(ENOEXEC, recipe.kernel, "kexec_file_load (fake): not a bzImage");
    auto r = set_crash(true);
    if (r) maybe_killed_at("load-after-load");
    return r;
}

Result<void> FakeKdumpBackend::unload_crash() {
    ++unloads;
    auto r = set_crash(false);
    if (r) maybe_killed_at("unload-after-free");
    return r;
}

}  // namespace khod
