// libFuzzer target for the bzImage setup-header reader (the kernel and initrd
// khod is asked to load come from callers) and the checks on it: the host
// checks and the command line limits. A crash, a sanitizer report, an
// exception or a broken invariant below is a finding.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "khod/base/fd.hpp"
#include "khod/kexec/bzimage.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    khod::UniqueFd fd(memfd_create("fuzz-bzimage", MFD_CLOEXEC));
    if (fd.get() < 0 || ::write(fd.get(), data, size) != static_cast<ssize_t>(size)) std::abort();
    auto image = khod::read_bzimage(fd.get(), "/fuzz/bzImage");
    if (!image) return 0;
    if (image->file_size != size || image->kernel_offset > size || image->kernel_bytes > size) std::abort();
    for (bool la57 : {false, true})
        for (bool efi32 : {false, true}) (void)khod::check_bzimage_host(*image, {la57, efi32});
    (void)khod::check_bzimage_host(*image, {});
    const std::uint64_t max = khod::max_cmdline_len(*image);
    if (max > 0 && !khod::check_cmdline_len(*image, max)) std::abort();
    if (khod::check_cmdline_len(*image, max + 1)) std::abort();
    return 0;
}
