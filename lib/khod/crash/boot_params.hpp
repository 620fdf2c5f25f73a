// The zero page (struct boot_params) and memory map a capture kernel loaded
// with kexec_load gets, built the way the kernel's own kexec_file_load
// bzImage64 loader builds them for a crash image
// (arch/x86/kernel/kexec-bzimage64.c: setup_boot_parameters;
// arch/x86/kernel/crash.c: crash_setup_memmap_entries), so both loaders
// hand the capture kernel the same view of memory.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "khod/base/iomem.hpp"
#include "khod/base/result.hpp"

namespace khod {

inline constexpr std::size_t kBootParamsSize = 4096;
// E820_MAX_ENTRIES_ZEROPAGE: what fits in boot_params.e820_table.
inline constexpr std::size_t kZeroPageE820Max = 128;

// arch/x86/include/uapi/asm/e820.h types the capture kernel is given.
enum class E820Type : std::uint32_t { ram = 1, reserved = 2, acpi = 3, nvs = 4 };
const char* to_string(E820Type type);

struct E820Entry {
    std::uint64_t addr = 0;
    std::uint64_t size = 0;
    E820Type type = E820Type::ram;
    bool operator==(const E820Entry&) const = default;
};

// The capture kernel's memory: the first kernel's RAM below 1 MiB (reserved
// by the first kernel when crashkernel= is set, so the capture kernel may
// use it), ACPI tables and NVS, e820 "Reserved" ranges, the low crash
// region, and the crash region minus the elfcorehdr (pieces under a page
// dropped), and the crash CMA ranges. crash_region is where the image is
// loaded (crashk_res); low_crash_region the ",low" one when there is one.
struct CaptureMemory {
    std::vector<IomemEntry> iomem;
    PhysRange crash_region;
    std::vector<PhysRange> low_crash_regions;
    std::vector<PhysRange> crash_cma;
    PhysRange elfcorehdr;  // [start, end) of the elfcorehdr segment, inside crash_region
};
std::vector<E820Entry> capture_memmap(const CaptureMemory& memory);

// The "Crash kernel" ranges of /proc/iomem: the image goes into crashk_res,
// the higher one when crashkernel=X,high also reserved a low one.
struct CrashRegions {
    PhysRange main;
    std::vector<PhysRange> low;
};
Result<CrashRegions> crash_regions(const std::vector<IomemEntry>& iomem, const std::string& path);

struct BootParamsRequest {
    // The bzImage's setup header, [0x1f1, 0x202 + byte 0x201) of the file.
    std::span<const std::uint8_t> setup_header;
    // The running kernel's boot_params (/sys/kernel/boot_params/data), for
    // what firmware told it: screen_info, the ACPI RSDP, EDD, hardware_subarch.
    // Empty when unreadable; the capture kernel then scans for the RSDP itself.
    std::span<const std::uint8_t> firmware;
    std::uint64_t cmdline_addr = 0;
    std::uint64_t initrd_addr = 0;
    std::uint64_t initrd_size = 0;  // 0: no initrd
    std::vector<E820Entry> memmap;
};
Result<std::array<std::uint8_t, kBootParamsSize>> build_boot_params(const BootParamsRequest& request);

}  // namespace khod
