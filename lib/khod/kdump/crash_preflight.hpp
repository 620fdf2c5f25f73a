// What a crash kernel recipe must pass before khod asks the kernel to load
// it. kexec_file_load(KEXEC_FILE_ON_CRASH) frees the loaded crash image
// before it even reads the new one, so anything the kernel would refuse
// must be refused here, or a typo costs the working crash kernel.
#pragma once

#include <cstdint>

#include "khod/base/errc.hpp"
#include "khod/base/result.hpp"
#include "khod/base/sysroot.hpp"
#include "khod/kdump/kdump_recipe.hpp"

namespace khod {

// The bytes a crash load takes from the crashkernel= region at least: the
// kernel's init_size (its bzImage64 loader reserves that much, page aligned)
// and the initrd. Purgatory, boot parameters and the elfcorehdr come on top.
std::uint64_t crash_image_bytes(std::uint64_t init_size, std::uint64_t kernel_bytes,
                                std::uint64_t initrd_bytes);

// Refuses, as PreflightFailed naming the file and the reason, what the
// kernel's bzImage64 loader would refuse after freeing the loaded image: an
// image that is not a loadable bzImage on this host, a command line longer
// than the image's cmdline_size (with room for "elfcorehdr=0x... "), and
// kernel plus initrd larger than the crashkernel= region (crash_size; when
// that is 0 nothing is reserved). Unreadable or non-regular files are
// InvalidArgument, as in Kdump::load.
Result<void, Failure> check_crash_recipe(const Sysroot& root, const CrashRecipe& recipe);

}  // namespace khod
