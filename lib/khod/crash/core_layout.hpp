// The x86_64 elfcorehdr: the ELF core header a crash kernel gets (through
// elfcorehdr=) to find the crashed kernel's memory and CPU notes, built from
// the live system the way the kernel's own crash_prepare_elf64_headers()
// (kernel/crash_core.c) builds it for a kexec_file_load image, so that an
// image khod loads with kexec_load describes exactly what the kernel's would:
//
//   one PT_NOTE per possible CPU   cpuN/crash_notes (p_offset = p_paddr), crash_notes_size
//   one PT_NOTE for vmcoreinfo     /sys/kernel/vmcoreinfo "addr size"
//   one PT_LOAD for the kernel     _text .. _end at their kernel-map address (/proc/kcore's)
//   one PT_LOAD per RAM range      every System RAM resource of /proc/iomem, top-level or
//                                  nested (kmem, virtio-mem), minus the low 1 MiB, the
//                                  "Crash kernel" ranges and the crashkernel CMA ranges
//                                  (arch/x86/kernel/crash.c, elf_header_exclude_ranges)
//
// The addresses are physical and only root sees them: /proc/iomem reads as
// zeros, crash_notes and /proc/kcore are root's only, and the errors say so.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "khod/base/iomem.hpp"
#include "khod/base/result.hpp"
#include "khod/base/sysroot.hpp"
#include "khod/crash/core_header.hpp"

namespace khod {

struct CoreLayout {
    // One per possible CPU with a cpuN directory, in CPU order. The kernel
    // registers cpuN only for present CPUs, so a possible CPU that is not
    // present has no crash_notes to read: it is in cpus_without_notes, as
    // kexec-tools leaves it out too. (An image loaded with
    // KEXEC_UPDATE_ELFCOREHDR gets every possible CPU when the kernel first
    // rewrites the header.)
    std::vector<std::pair<unsigned, CoreNote>> cpu_notes;
    std::vector<unsigned> cpus_without_notes;
    CoreNote vmcoreinfo;
    std::optional<KernelText> kernel_text;
    std::uint64_t page_offset = 0;    // direct map base: p_vaddr = page_offset + p_paddr of RAM PT_LOADs
    std::vector<PhysRange> ram;       // what the RAM PT_LOADs cover, in address order
    std::vector<PhysRange> excluded;  // cut out of System RAM: low 1 MiB, crash kernel, crash CMA
};

// Reads everything through root: cpu/possible and cpuN/crash_notes{,_size},
// /sys/kernel/vmcoreinfo, /proc/iomem, /sys/kernel/kexec/crash_cma_ranges
// (optional), and the ELF and program headers of /proc/kcore (the kernel text
// PT_LOAD and the direct map's base; nothing past them is read). kcore_fd,
// when given, is /proc/kcore opened by someone allowed to (khod's unit has
// systemd open it: the sandbox hides the file and opening it takes
// CAP_SYS_RAWIO, reading an open one does not); it is read, not closed.
//
// cache, when given, keeps what cannot change within a boot between calls
// (khod's loads): each CPU's crash_notes buffer (allocated per possible CPU
// at boot), the vmcoreinfo note, and what /proc/kcore says. Memory, the
// possible and present CPUs and the crash regions are read every time.
struct CoreLayoutCache {
    std::map<unsigned, CoreNote> cpu_notes;
    std::optional<CoreNote> vmcoreinfo;
    bool kcore_read = false;
    std::optional<KernelText> kernel_text;
    std::uint64_t page_offset = 0;
};
Result<CoreLayout> read_core_layout(const Sysroot& root, int kcore_fd = -1, CoreLayoutCache* cache = nullptr);

// /sys/kernel/kexec/crash_cma_ranges: "%08llx-%08llx" per crashkernel=,cma
// range, inclusive ends (Linux 7.x); no ranges where the file does not exist.
Result<std::vector<PhysRange>> read_crash_cma(const Sysroot& root);

// The System RAM ranges the kernel puts in an elfcorehdr, from /proc/iomem
// entries and the ranges to cut (exposed for tests).
std::vector<PhysRange> core_ram_ranges(const std::vector<IomemEntry>& iomem);
std::vector<PhysRange> exclude_ranges(const std::vector<PhysRange>& ram, const std::vector<PhysRange>& cut);

// Bytes the elfcorehdr segment needs so the kernel can rewrite it in place on
// hotplug: where the kernel has /sys/kernel/crash_elfcorehdr_size (program
// headers for its NR_CPUS, CRASH_MAX_MEMORY_RANGES, vmcoreinfo and the
// kernel map), that plus the ELF header; elsewhere room for max_cpus + 2
// notes/text and max_ranges. Rounded up to a page (kexec_load segments are
// page multiples).
Result<std::uint64_t> elfcorehdr_capacity(const Sysroot& root, unsigned max_cpus, unsigned max_ranges);

// The header itself, written with libelf: ELF64 ET_CORE for EM_X86_64, the
// program headers in the kernel's order with the kernel's field values, zero
// padded to 4 KiB (ELF_CORE_HEADER_ALIGN) as the kernel's buffer is.
Result<std::vector<std::uint8_t>> build_elfcorehdr(const CoreLayout& layout);

// Header size before padding: sizeof(Elf64_Ehdr) + phnum * sizeof(Elf64_Phdr).
std::uint64_t elfcorehdr_bytes(std::uint64_t phnum);

// The JSON and the text `khoctl elfcorehdr build` prints (core_header_text.cpp).
nlohmann::json to_json(const CoreLayout& layout);
std::string format_core_layout(const CoreLayout& layout);

}  // namespace khod
