// What the KHO scratch planner needs to know about the machine and about the
// running kernel's own early reservations, read once through the Sysroot.
//
// The kernel sizes its scratch areas from memblock_reserved_kern_size(): the
// bytes of memblock.reserved flagged RSRV_KERN at the time mm_core_init() runs
// kho_memory_init(). Userspace never sees that number. What it can see, and
// what this module reads, are the pieces it is made of: the kernel image
// (/proc/iomem), the initrd and setup_data (/sys/kernel/boot_params), the boot
// memmap (/proc/vmstat), the percpu first chunk (/proc/kallsyms), swiotlb
// (debugfs), the crash kernel (/proc/iomem), and the NUMA layout that decides
// which node each piece is counted for. scratch_plan.hpp turns them into sizes.
//
// Nothing here is a guess: a value that could not be read stays empty and the
// reason (path and errno) is kept in `missing`.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "khod/base/iomem.hpp"
#include "khod/base/result.hpp"
#include "khod/base/sysroot.hpp"
#include "khod/kexec/bzimage.hpp"
#include "khod/kho/kho.hpp"

namespace khod {

struct NodeTopology {
    unsigned id = 0;
    bool online = false;
    bool has_memory = false;                // in node/has_memory (N_MEMORY)
    std::vector<unsigned> cpus;             // nodeN/cpulist
    std::vector<PhysRange> blocks;          // the node's memory blocks, sorted, adjacent ones merged
    std::uint64_t block_count = 0;          // memory blocks linked to the node
    std::optional<std::uint64_t> memtotal;  // nodeN/meminfo MemTotal, bytes

    std::uint64_t present() const;  // sum of blocks
};

struct ScratchInputs {
    std::string sysroot;

    // The running kernel.
    std::optional<std::string> release;  // /proc/sys/kernel/osrelease
    std::string cmdline;                 // /proc/cmdline (required)

    // KHO state, as `khoctl status` reads it.
    KhoAbi abi = KhoAbi::unknown;
    bool debugfs_mounted = false;
    bool kho_active = false;  // <debugfs>/kho exists
    bool incoming = false;    // <debugfs>/kho/in exists: this boot came through a KHO kexec
    std::optional<std::vector<ScratchArea>> current_areas;

    // Topology.
    std::uint64_t block_size = 0;  // /sys/devices/system/memory/block_size_bytes
    std::vector<NodeTopology> nodes;
    bool numa_sysfs = true;  // false: no /sys/devices/system/node (CONFIG_NUMA=n), one node 0 assumed
    std::vector<unsigned> possible_cpus;
    std::vector<PhysRange> system_ram;  // top-level "System RAM" in /proc/iomem
    std::optional<bool> five_level;     // "la57" in /proc/cpuinfo: the kernel uses 5-level paging
    std::optional<bool> gbpages;        // "pdpe1gb": the direct map uses 1 GiB pages

    // The kernel's own reservations, as far as userspace sees them.
    std::optional<PhysRange> kernel_image;  // iomem "Kernel code" start .. "Kernel bss" end
    std::vector<PhysRange> crash_kernel;    // iomem "Crash kernel" (high and low)
    std::vector<PhysRange> crash_cma;       // /sys/kernel/kexec/crash_cma_ranges
    bool boot_params = false;               // /sys/kernel/boot_params/data was read
    std::optional<PhysRange> initrd;        // from boot_params (page-rounded as the kernel reserves it)
    std::vector<std::uint64_t> setup_data;  // bytes reserved for each entry (header + payload)
    std::optional<std::uint64_t> memmap_boot_pages;  // vmstat nr_memmap_boot_pages
    std::optional<std::uint64_t> memmap_pages;       // vmstat nr_memmap_pages (hot-added memory)
    std::optional<std::uint64_t> percpu_static;      // __per_cpu_end - __per_cpu_start (kallsyms)
    std::optional<std::uint64_t> percpu_meminfo;     // meminfo Percpu, bytes
    std::optional<bool> modules;                     // /proc/modules exists (CONFIG_MODULES)
    std::optional<std::uint64_t> swiotlb_nslabs;     // debugfs swiotlb/io_tlb_nslabs; 0: none
    std::optional<std::uint64_t> cma_total;          // meminfo CmaTotal, bytes
    std::optional<std::uint64_t> mem_total;          // meminfo MemTotal, bytes
    bool kfence = false;                             // /sys/module/kfence exists

    // The images the next kexec will load (khoctl scratch plan --kernel/--initrd).
    std::optional<BzImageInfo> next_kernel;
    std::optional<std::string> next_initrd_path;
    std::optional<std::uint64_t> next_initrd_size;

    // Inputs that could not be read, by name, with the path and errno.
    std::map<std::string, std::string> missing;
};

struct ScratchInputOptions {
    bool debugfs_mounted = false;              // from ensure_debugfs()
    std::optional<std::string> debugfs_error;  // why it is not, for `missing`
    std::optional<std::string> kernel;         // host path of the next kernel's bzImage
    std::optional<std::string> initrd;         // host path of the next initrd
};

// Reads everything through root. root's debugfs mountpoint must already be
// set (ensure_debugfs()). Fails only when a required input is unreadable or
// malformed (command line, memory blocks, node lists, /proc/iomem, the given
// images); optional ones go to `missing`.
Result<ScratchInputs> read_scratch_inputs(const Sysroot& root, const ScratchInputOptions& options);

// Parsers, exposed for tests.
// "Name:   123 kB" lines of /proc/meminfo or nodeN/meminfo ("Node 0 Name: ..."), in bytes.
std::optional<std::uint64_t> meminfo_bytes(const std::string& text, const std::string& key);
// "name value" lines of /proc/vmstat.
std::optional<std::uint64_t> vmstat_value(const std::string& text, const std::string& key);

}  // namespace khod
