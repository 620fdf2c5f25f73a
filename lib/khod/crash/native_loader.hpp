// khod's own crash kernel loader for x86_64: kexec_load(KEXEC_ON_CRASH |
// KEXEC_UPDATE_ELFCOREHDR) of a bzImage, with khod's elfcorehdr and
// purgatory, for where kexec_file_load is not the choice (a KEXEC_SIG kernel
// without a signed capture kernel, a layout the file loader refuses).
//
// Segments, all inside the crashkernel region, bottom up: the elfcorehdr at
// the region's start, sized so the kernel can rewrite it in place on CPU and
// memory hotplug; boot_params with the command line; the purgatory; the
// kernel's protected-mode part at its alignment with room for init_size; the
// initrd. The purgatory checks a SHA-256 over every segment but itself and
// the elfcorehdr, which the kernel finds again by its ELF magic (the only
// segment that starts with one) and rewrites.
//
// Everything is read, built and checked before the syscall: kexec_load frees
// the loaded crash image before it looks at the new one.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "khod/base/result.hpp"
#include "khod/base/sysroot.hpp"
#include "khod/crash/boot_params.hpp"
#include "khod/crash/core_layout.hpp"
#include "khod/crash/purgatory.hpp"
#include "khod/kexec/bzimage.hpp"

namespace khod {

// include/uapi/linux/kexec.h
inline constexpr unsigned long kKexecOnCrash = 0x1;
inline constexpr unsigned long kKexecUpdateElfcorehdr = 0x4;
inline constexpr unsigned long kKexecArchX86_64 = 62ul << 16;
inline constexpr std::size_t kKexecSegmentMax = 16;

struct NativeCrashRequest {
    std::filesystem::path kernel;
    std::filesystem::path initrd;  // empty: none
    std::string cmdline;           // without elfcorehdr=, which the loader prepends
    std::filesystem::path purgatory;
    // Room in the elfcorehdr where the kernel offers no crash_elfcorehdr_size.
    unsigned max_cpus = 8192;
    unsigned max_ranges = 8192;
    int kcore_fd = -1;                        // /proc/kcore opened for khod (read_core_layout)
    CoreLayoutCache* layout_cache = nullptr;  // kept by khod between loads of one boot
};

// Everything a plan is made from, read once.
struct NativeCrashInputs {
    BzImageInfo kernel;
    std::vector<std::uint8_t> kernel_file;  // the whole bzImage
    std::vector<std::uint8_t> initrd;
    bool has_initrd = false;
    std::string cmdline;
    std::vector<IomemEntry> iomem;
    std::vector<PhysRange> crash_cma;
    std::vector<std::uint8_t> firmware_boot_params;  // empty when unreadable
    std::vector<std::uint8_t> elfcorehdr;            // build_elfcorehdr()
    std::uint64_t elfcorehdr_capacity = 0;
    PurgatoryObject purgatory;
};

struct CrashSegment {
    std::string what;  // "elfcorehdr", "boot_params", "purgatory", "kernel", "initrd"
    std::vector<std::uint8_t> bytes;
    std::uint64_t mem = 0;    // page aligned
    std::uint64_t memsz = 0;  // page aligned, >= bytes.size(); the kernel zero-fills the rest
};

struct NativeCrashImage {
    std::vector<CrashSegment> segments;
    std::uint64_t entry = 0;         // the purgatory's entry, what kexec jumps to at a crash
    std::uint64_t kernel_entry = 0;  // the capture kernel's 64-bit entry
    PhysRange crash_region;
    std::string cmdline;  // as the capture kernel gets it
    std::vector<E820Entry> memmap;
    std::vector<DigestRegion> digest_regions;
    std::uint64_t free_bytes = 0;  // left in the region for the kernel's control pages
};

Result<NativeCrashInputs> read_native_crash_inputs(const Sysroot& root, const NativeCrashRequest& request);
// Lays out, builds and checks every segment; touches nothing.
Result<NativeCrashImage> plan_native_crash_image(const NativeCrashInputs& inputs);
// kexec_load(2) of the planned image. Refuses a sysroot that is not the live system.
Result<void> kexec_load_crash(const Sysroot& root, const NativeCrashImage& image);
// Why kexec_load failed with err, for a person.
std::string explain_kexec_load_errno(int err);

}  // namespace khod
