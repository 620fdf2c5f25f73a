#include "khod/kdump/crash_preflight.hpp"

#include <algorithm>
#include <string>

#include "khod/base/caller_file.hpp"
#include "khod/base/units.hpp"
#include "khod/kexec/bzimage.hpp"
#include "khod/kexec/kexec_state.hpp"

namespace khod {

namespace {

constexpr std::uint64_t page_size = 4096;

std::uint64_t page_align(std::uint64_t n) {
    return (n + page_size - 1) / page_size * page_size;
}

Failure refused(Error e) {
    return Failure{Errc::preflight_failed, std::move(e)};
}

}  // namespace

std::uint64_t crash_image_bytes(std::uint64_t init_size, std::uint64_t kernel_bytes,
                                std::uint64_t initrd_bytes) {
    return page_align(std::max(init_size, kernel_bytes)) + page_align(initrd_bytes);
}

Result<void, Failure> check_crash_recipe(const Sysroot& root, const CrashRecipe& recipe) {
    auto kernel = open_regular_file(recipe.kernel, "the crash kernel");
    if (!kernel) return Failure{Errc::invalid_argument, kernel.error()};
    std::uint64_t initrd_bytes = 0;
    if (!recipe.initrd.empty()) {
        auto initrd = open_regular_file(recipe.initrd, "the initrd");
        if (!initrd) return Failure{Errc::invalid_argument, initrd.error()};
        initrd_bytes = initrd->size;
    }
    auto image = read_bzimage(kernel->fd.get(), recipe.kernel);
    if (!image) return refused(image.error());
    if (auto host = check_bzimage_host(*image, read_bzimage_host(root)); !host) return refused(host.error());
    if (auto len = check_cmdline_len(*image, recipe.cmdline.size() + 1); !len) return refused(len.error());

    const KexecState kexec = probe_kexec(root);
    if (!kexec.crash_size.value) return {};  // unknown here: the kernel will say
    const std::uint64_t region = *kexec.crash_size.value;
    if (region == 0)
        return refused(
            plain_error(kexec.crash_size.path,
                        "no crashkernel= region is reserved (crash_size is 0): boot with crashkernel=SIZE "
                        "to load a crash kernel"));
    const std::uint64_t need = crash_image_bytes(image->init_size, image->kernel_bytes, initrd_bytes);
    if (need > region)
        return refused(
            plain_error(recipe.kernel, "the crash kernel (init_size " + human_size(image->init_size) +
                                           ") and its initrd (" + human_size(initrd_bytes) + ") need " +
                                           human_size(need) + ", more than the crashkernel= region's " +
                                           human_size(region)));
    return {};
}

}  // namespace khod
