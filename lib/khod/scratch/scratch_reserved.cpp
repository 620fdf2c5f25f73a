// R: the kernel's own memblock reservations, one estimator per part.
#include <algorithm>
#include <set>
#include <sstream>

#include "khod/base/hex.hpp"
#include "khod/base/units.hpp"
#include "khod/scratch/scratch_internal.hpp"

namespace khod {

using namespace scratch_detail;  // the planner's shared internals

const char* to_string(ReservedPartKind kind) {
    switch (kind) {
        case ReservedPartKind::kernel_image: return "kernel image";
        case ReservedPartKind::kernel_brk: return "kernel brk";
        case ReservedPartKind::initrd: return "initrd";
        case ReservedPartKind::setup_data: return "setup_data";
        case ReservedPartKind::real_mode_trampoline: return "real-mode trampoline";
        case ReservedPartKind::memmap: return "memmap";
        case ReservedPartKind::vmemmap_tables: return "vmemmap page tables, section roots, usemaps";
        case ReservedPartKind::mem_section_roots: return "mem_section root array";
        case ReservedPartKind::node_data: return "NODE_DATA";
        case ReservedPartKind::percpu_first_chunk: return "percpu first chunk";
        case ReservedPartKind::swiotlb_buffer: return "swiotlb bounce buffer";
        case ReservedPartKind::swiotlb_slots: return "swiotlb slot array";
        case ReservedPartKind::crash_kernel_below_4g: return "crash kernel (below 4 GiB)";
        case ReservedPartKind::crash_kernel_above_4g: return "crash kernel (above 4 GiB)";
        case ReservedPartKind::crash_kernel_requested: return "crash kernel";
        case ReservedPartKind::crash_kernel_high: return "crash kernel (,high)";
        case ReservedPartKind::crash_kernel_low_of_high: return "crash kernel (low part of ,high)";
        case ReservedPartKind::crash_kernel_cma: return "crash kernel CMA";
        case ReservedPartKind::cma_areas: return "CMA areas";
        case ReservedPartKind::hash_tables: return "dentry and inode hash tables";
        case ReservedPartKind::printk_buffer: return "printk log buffer";
        case ReservedPartKind::direct_map_tables: return "direct-map page tables";
        case ReservedPartKind::kfence: return "KFENCE pool and metadata";
        case ReservedPartKind::other_small: break;
    }
    return "other small boot allocations";
}

bool is_crash_kernel(ReservedPartKind kind) {
    switch (kind) {
        case ReservedPartKind::crash_kernel_below_4g:
        case ReservedPartKind::crash_kernel_above_4g:
        case ReservedPartKind::crash_kernel_requested:
        case ReservedPartKind::crash_kernel_high:
        case ReservedPartKind::crash_kernel_low_of_high:
        case ReservedPartKind::crash_kernel_cma: return true;
        default: return false;
    }
}

namespace {

// The sum of one field over the parts that `take` accepts.
template <class Take>
std::uint64_t sum_parts(const std::vector<ReservedPart>& parts, std::uint64_t ReservedPart::*field,
                        Take take) {
    std::uint64_t t = 0;
    for (const auto& p : parts)
        if (take(p)) t += p.*field;
    return t;
}

bool any_part(const ReservedPart& /*part*/) {
    return true;
}

}  // namespace

std::uint64_t ReservedEstimate::total() const {
    return sum_parts(parts, &ReservedPart::bytes, any_part);
}
std::uint64_t ReservedEstimate::low() const {
    return sum_parts(parts, &ReservedPart::below_4g, any_part);
}
std::uint64_t ReservedEstimate::uncertainty() const {
    return sum_parts(parts, &ReservedPart::uncertainty, any_part);
}
std::uint64_t ReservedEstimate::low_uncertainty() const {
    return sum_parts(parts, &ReservedPart::uncertainty,
                     [](const ReservedPart& p) { return p.below_4g != 0; });
}
std::uint64_t ReservedEstimate::node_total(unsigned node) const {
    return sum_parts(parts, &ReservedPart::bytes, [node](const ReservedPart& p) { return p.node == node; });
}
std::uint64_t ReservedEstimate::node_uncertainty(unsigned node) const {
    return sum_parts(parts, &ReservedPart::uncertainty,
                     [node](const ReservedPart& p) { return p.node == node; });
}

namespace {

std::uint64_t page_align(std::uint64_t x) {
    return (x + kPage - 1) & ~(kPage - 1);
}
std::uint64_t div_up(std::uint64_t x, std::uint64_t d) {
    return x / d + (x % d != 0);
}
std::uint64_t pow2_up(std::uint64_t x) {
    std::uint64_t p = 1;
    while (p < x && p < (1ull << 63)) p <<= 1;
    return p;
}
unsigned ilog2(std::uint64_t x) {
    unsigned l = 0;
    while (x >>= 1) ++l;
    return l;
}

// Node-bound allocations on a memoryless node fall back without a node
// (memblock_alloc_range_nid() reserves the fallback with NUMA_NO_NODE).
std::optional<unsigned> alloc_node(const Layout& l, unsigned node) {
    const NodeTopology* n = l.node(node);
    if (n && n->has_memory) return node;
    return std::nullopt;
}

// crashkernel= as parse_crashkernel() reads it on x86_64.
struct CrashRequest {
    std::uint64_t size = 0;
    std::uint64_t low = 0;  // the low part of ,high (or the fallback's default)
    std::uint64_t cma = 0;
    bool high = false;
    std::string note;
};

std::optional<std::uint64_t> crash_size_for_ram(const std::string& spec, std::uint64_t ram,
                                                std::string* error) {
    // "size[@offset]" or "start-[end]:size[,start-[end]:size...][@offset]"
    std::string s = spec.substr(0, spec.find('@'));
    if (s.find(':') == std::string::npos) {
        auto m = memparse(s);
        if (!m || m->consumed != s.size()) {
            *error = "cannot parse crashkernel=" + spec;
            return std::nullopt;
        }
        return m->value;
    }
    std::istringstream in(s);
    std::string item;
    while (std::getline(in, item, ',')) {
        auto colon = item.find(':');
        auto dash = item.find('-');
        if (colon == std::string::npos || dash == std::string::npos || dash > colon) {
            *error = "cannot parse the range \"" + item + "\" of crashkernel=" + spec;
            return std::nullopt;
        }
        auto start = memparse(item.substr(0, dash));
        std::string end_s = item.substr(dash + 1, colon - dash - 1);
        auto size = memparse(item.substr(colon + 1));
        if (!start || !size) {
            *error = "cannot parse the range \"" + item + "\" of crashkernel=" + spec;
            return std::nullopt;
        }
        std::uint64_t end = UINT64_MAX;
        if (!end_s.empty()) {
            auto e = memparse(end_s);
            if (!e) {
                *error = "cannot parse the range \"" + item + "\" of crashkernel=" + spec;
                return std::nullopt;
            }
            end = e->value;
        }
        if (ram >= start->value && ram < end) return size->value;
    }
    return 0;  // no range matches: no reservation
}

CrashRequest parse_crash_request(const Cmdline& cmdline, std::uint64_t ram, std::uint64_t swiotlb_bytes) {
    CrashRequest r;
    std::optional<std::string> plain, high, low, cma;
    for (const auto& p : cmdline.params()) {
        if (p.key != "crashkernel" || !p.value) continue;
        const std::string& v = *p.value;
        auto comma = v.rfind(',');
        std::string suffix = comma == std::string::npos ? "" : v.substr(comma + 1);
        if (suffix == "high")
            high = v.substr(0, comma);
        else if (suffix == "low")
            low = v.substr(0, comma);
        else if (suffix == "cma")
            cma = v.substr(0, comma);
        else
            plain = v;
    }
    std::string err;
    const std::uint64_t default_low = std::max(swiotlb_bytes + 8 * kMiB, 256 * kMiB);
    if (plain) {
        auto s = crash_size_for_ram(*plain, ram, &err);
        if (s) r.size = *s;
    } else if (high) {
        auto s = crash_size_for_ram(*high, 0, &err);
        if (s) r.size = *s;
        r.high = true;
        r.low = default_low;
        if (low) {
            auto l = crash_size_for_ram(*low, 0, &err);
            if (l) r.low = *l;
        }
    }
    if (cma) {
        auto c = crash_size_for_ram(*cma, 0, &err);
        if (c) r.cma = *c;
    }
    r.note = err;
    return r;
}

// alloc_large_system_hash() for the dentry and inode caches.
std::uint64_t hash_table_bytes(std::uint64_t nr_kernel_pages, std::uint64_t bucket, int scale,
                               std::uint64_t low_limit, std::uint64_t entries) {
    std::uint64_t numentries = entries;
    if (!numentries) {
        numentries = (nr_kernel_pages + 255) & ~255ull;  // round up to 1 MiB of pages
        for (std::uint64_t adapt = (64ull << 30) / kPage; adapt < numentries; adapt <<= 2) ++scale;
        if (scale > 12)
            numentries >>= (scale - 12);
        else
            numentries <<= (12 - scale);
        if (numentries * bucket < kPage) numentries = kPage / bucket;
    }
    numentries = pow2_up(numentries);
    std::uint64_t max = ((nr_kernel_pages * kPage) >> 4) / bucket;
    max = std::min<std::uint64_t>(max, 0x80000000ull);
    if (numentries < low_limit) numentries = low_limit;
    if (numentries > max) numentries = max;
    return bucket << ilog2(numentries);
}

std::optional<std::uint64_t> cmdline_number(const Cmdline& c, const std::string& key) {
    auto v = c.value(key);
    if (!v) return std::nullopt;
    auto m = memparse(*v);
    if (!m) return std::nullopt;
    return m->value;
}

// The sections present at boot, in address order, with their node: those
// with System RAM in them (a memory block may be partly populated), on the
// node whose block holds them.
std::vector<std::pair<std::uint64_t, unsigned>> sections(const ScratchInputs& in, const Layout& l) {
    std::vector<std::pair<std::uint64_t, unsigned>> out;
    for (const auto& r : in.system_ram)
        for (std::uint64_t a = r.start / kSectionSize * kSectionSize; a < r.end; a += kSectionSize) {
            auto node = l.node_of(std::max(a, r.start));
            if (node) out.emplace_back(a / kSectionSize, *node);
        }
    std::sort(out.begin(), out.end());
    out.erase(
        std::unique(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first == b.first; }),
        out.end());
    return out;
}

// One page per group of `per` sections, charged to the node of the group's first section.
std::map<unsigned, std::uint64_t> pages_per_group(const std::vector<std::pair<std::uint64_t, unsigned>>& secs,
                                                  std::uint64_t per) {
    std::map<unsigned, std::uint64_t> m;
    std::set<std::uint64_t> seen;
    for (const auto& [idx, node] : secs)
        if (seen.insert(idx / per).second) m[node] += kPage;
    return m;
}

// What every estimator reads: the machine, the command line it estimates
// for, and the running kernel's own line (for which measured values win).
struct EstimateContext {
    const ScratchInputs& in;
    const Layout& layout;
    const Cmdline& cmdline;
    const Cmdline running;
    const bool same_line;
    // Where the low reservations made before NUMA init land: the node of address 0.
    const std::optional<unsigned> first_node;

    EstimateContext(const ScratchInputs& inputs, const Layout& l, const Cmdline& line)
        : in(inputs),
          layout(l),
          cmdline(line),
          running(Cmdline::parse(inputs.cmdline)),
          same_line(line.str() == running.str()),
          first_node(inputs.nodes.empty()
                         ? std::nullopt
                         : std::optional<unsigned>(l.node_of(0).value_or(inputs.nodes.front().id))) {}

    std::uint64_t top_down_low(std::uint64_t bytes, std::optional<unsigned> node) const {
        return layout.top_down_low(bytes, node);
    }
};

using Estimator = void (*)(const EstimateContext&, ReservedEstimate&);

// Loaded by the boot loader (or by kexec): reserved before NUMA init.
void estimate_kernel_image(const EstimateContext& c, ReservedEstimate& e) {
    if (!c.in.kernel_image) {
        e.unknown.push_back("kernel image (/proc/iomem)");
        return;
    }
    const PhysRange img = *c.in.kernel_image;
    const std::optional<unsigned> node = c.layout.node_of(img.start);
    e.parts.push_back({.kind = ReservedPartKind::kernel_image,
                       .source = "/proc/iomem: Kernel code .. Kernel bss",
                       .bytes = img.size(),
                       .node = node,
                       .below_4g = Layout::below_4g(img),
                       .loaded = true});
    // reserve_brk(): the used part of .brk, not visible from userspace.
    e.parts.push_back({.kind = ReservedPartKind::kernel_brk,
                       .source = "not visible; 64 KiB assumed (68 KiB on the 7.2.13 test kernel)",
                       .bytes = 64 * kKiB,
                       .uncertainty = 64 * kKiB,
                       .node = node,
                       .below_4g = img.end <= k4GiB ? 64 * kKiB : 0,
                       .loaded = true});
}

// The initrd and setup_data, loaded next to the kernel.
void estimate_boot_params(const EstimateContext& c, ReservedEstimate& e) {
    if (!c.in.boot_params) {
        e.unknown.push_back("initrd and setup_data (/sys/kernel/boot_params)");
        return;
    }
    if (const auto& initrd = c.in.initrd)
        e.parts.push_back({.kind = ReservedPartKind::initrd,
                           .source = "/sys/kernel/boot_params/data (ramdisk_image, ramdisk_size)",
                           .bytes = initrd->size(),
                           .node = c.layout.node_of(initrd->start),
                           .below_4g = Layout::below_4g(*initrd),
                           .loaded = true});
    std::uint64_t setup_data = 0;
    for (auto bytes : c.in.setup_data) setup_data += bytes;
    if (setup_data)
        // sysfs does not show where setup_data lives; loaders put it low.
        e.parts.push_back(
            {.kind = ReservedPartKind::setup_data,
             .source = "/sys/kernel/boot_params/setup_data/*/size, placed below 4 GiB (assumed)",
             .bytes = setup_data,
             .node = c.first_node,
             .below_4g = setup_data,
             .loaded = true});
}

// reserve_real_mode(): below 1 MiB, before NUMA init.
void estimate_real_mode(const EstimateContext& c, ReservedEstimate& e) {
    e.parts.push_back({.kind = ReservedPartKind::real_mode_trampoline,
                       .source = "24 KiB below 1 MiB (7.2.13 x86_64)",
                       .bytes = 24 * kKiB,
                       .uncertainty = 4 * kKiB,
                       .node = c.first_node,
                       .below_4g = 24 * kKiB,
                       .low_only = true});
}

// The memory sections present at boot and how many each node has.
struct BootSections {
    std::vector<std::pair<std::uint64_t, unsigned>> list;  // (section number, node), by number
    std::map<unsigned, std::uint64_t> per_node;
};

BootSections boot_sections(const EstimateContext& c) {
    BootSections s;
    s.list = sections(c.in, c.layout);
    for (const auto& [idx, node] : s.list) ++s.per_node[node];
    return s;
}

// struct pages: /proc/vmstat says how many the boot made, the sections say on which node.
void estimate_memmap(const EstimateContext& c, const BootSections& secs, ReservedEstimate& e) {
    const std::uint64_t total_secs = secs.list.size();
    std::uint64_t per_section = 2 * kMiB;  // 32768 struct pages of 64 bytes
    std::uint64_t spread_uncertainty = 0;
    std::string source = "/proc/vmstat nr_memmap_boot_pages, split by the node's memory sections";
    if (c.in.memmap_boot_pages) {
        const std::uint64_t total = *c.in.memmap_boot_pages * kPage;
        per_section = total / total_secs;
        if (total % total_secs != 0 || (c.in.memmap_pages && *c.in.memmap_pages != 0)) {
            // Hot-added memory blocks: which sections were there at boot is unknown.
            spread_uncertainty = c.in.memmap_pages ? *c.in.memmap_pages * kPage : per_section;
            source += " (memory was hot-added: the split between nodes is approximate)";
        }
    } else {
        source = "2 MiB per 128 MiB section (no nr_memmap_boot_pages in /proc/vmstat)";
        spread_uncertainty = total_secs * per_section / 8;
        e.unknown.push_back("nr_memmap_boot_pages (/proc/vmstat)");
    }
    for (const auto& [node, count] : secs.per_node) {
        const auto n = alloc_node(c.layout, node);
        const std::uint64_t bytes = count * per_section;
        e.parts.push_back({.kind = ReservedPartKind::memmap,
                           .source = source,
                           .bytes = bytes,
                           .uncertainty = spread_uncertainty,
                           .node = n,
                           .below_4g = c.top_down_low(bytes, n)});
    }
}

// vmemmap page tables: a PMD page per 512 sections (1 GiB of struct pages),
// a PUD page per 512 GiB of them, and with 5-level paging a P4D page.
// sparse_index_alloc(): 4 KiB per 256 sections; usemap: 88 bytes per section.
void estimate_vmemmap_tables(const EstimateContext& c, const BootSections& secs, ReservedEstimate& e) {
    auto pmd = pages_per_group(secs.list, 512);
    auto pud = pages_per_group(secs.list, 512ull * 512);
    auto p4d = pages_per_group(secs.list, 512ull * 512 * 512);
    auto roots = pages_per_group(secs.list, 256);
    const bool five = c.in.five_level.value_or(true);
    for (const auto& [node, count] : secs.per_node) {
        const auto n = alloc_node(c.layout, node);
        const std::uint64_t tables = pmd[node] + pud[node] + (five ? p4d[node] : 0);
        const std::uint64_t bytes = tables + roots[node] + count * 88;
        e.parts.push_back({.kind = ReservedPartKind::vmemmap_tables,
                           .source = "computed from the sections present (7.2.13 sizes)",
                           .bytes = bytes,
                           .uncertainty = kPage,
                           .node = n,
                           .below_4g = c.top_down_low(bytes, n)});
    }
}

// mem_section[]: NR_SECTION_ROOTS pointers, 2^(MAX_PHYSMEM_BITS-27)/256.
void estimate_mem_section_roots(const EstimateContext& c, ReservedEstimate& e) {
    const bool five = c.in.five_level.value_or(true);
    const std::uint64_t bytes = five ? 1 * kMiB : 16 * kKiB;
    e.parts.push_back({.kind = ReservedPartKind::mem_section_roots,
                       .source = c.in.five_level ? std::string("/proc/cpuinfo ") + (five ? "la57" : "no la57")
                                                 : "5-level paging assumed",
                       .bytes = bytes,
                       .uncertainty = c.in.five_level ? 0 : 1 * kMiB - 16 * kKiB,
                       .node = std::nullopt,
                       .below_4g = c.top_down_low(bytes, std::nullopt)});
}

// The sparse memory model: memmap, vmemmap page tables, section roots, usemaps.
void estimate_sparse_model(const EstimateContext& c, ReservedEstimate& e) {
    const BootSections secs = boot_sections(c);
    if (secs.list.empty()) return;
    estimate_memmap(c, secs, e);
    estimate_vmemmap_tables(c, secs, e);
    estimate_mem_section_roots(c, e);
}

// NODE_DATA: one pg_data_t per online node, on the node when it has memory.
void estimate_node_data(const EstimateContext& c, ReservedEstimate& e) {
    for (const auto& n : c.in.nodes) {
        if (!n.online) continue;
        const auto node = alloc_node(c.layout, n.id);
        e.parts.push_back({.kind = ReservedPartKind::node_data,
                           .source = "sizeof(pg_data_t) of the 7.2.13 test kernel (16512 bytes)",
                           .bytes = 16512,
                           .uncertainty = 4 * kKiB,
                           .node = node,
                           .below_4g = c.top_down_low(16512, node)});
    }
}

// The percpu first chunk from the static size in kallsyms: one unit per
// possible CPU, on the CPU's node.
void percpu_from_kallsyms(const EstimateContext& c, ReservedEstimate& e) {
    const std::uint64_t reserved = c.in.modules.value_or(true) ? 8 * kKiB : 0;
    const std::uint64_t unit = page_align(*c.in.percpu_static + reserved + 28 * kKiB);
    std::map<std::optional<unsigned>, std::uint64_t> by_node;
    const auto cpu_nodes = c.layout.cpu_nodes();
    for (unsigned cpu : c.in.possible_cpus) {
        auto it = cpu_nodes.find(cpu);
        by_node[it == cpu_nodes.end() ? std::nullopt : alloc_node(c.layout, it->second)] += unit;
    }
    for (const auto& [node, bytes] : by_node)
        e.parts.push_back({.kind = ReservedPartKind::percpu_first_chunk,
                           .source = "/proc/kallsyms __per_cpu_end - __per_cpu_start (" +
                                     std::to_string(*c.in.percpu_static) + ") + " + std::to_string(reserved) +
                                     " reserved + 28672 dynamic, page-aligned, x " +
                                     std::to_string(bytes / unit) + " possible CPU(s)",
                           .bytes = bytes,
                           .node = node,
                           .below_4g = c.top_down_low(bytes, node)});
}

// Percpu in /proc/meminfo also counts chunks added since boot: an upper bound.
void percpu_from_meminfo(const EstimateContext& c, ReservedEstimate& e) {
    const std::uint64_t bytes = *c.in.percpu_meminfo;
    e.parts.push_back({.kind = ReservedPartKind::percpu_first_chunk,
                       .source = "/proc/meminfo Percpu (an upper bound: it grows after boot)",
                       .bytes = bytes,
                       .uncertainty = bytes / 2,
                       .node = c.first_node,
                       .below_4g = c.top_down_low(bytes, c.first_node)});
}

void estimate_percpu(const EstimateContext& c, ReservedEstimate& e) {
    if (c.in.percpu_static && !c.in.possible_cpus.empty())
        percpu_from_kallsyms(c, e);
    else if (c.in.percpu_meminfo)
        percpu_from_meminfo(c, e);
    else
        e.unknown.push_back("percpu size (/proc/kallsyms or /proc/meminfo)");
}

// swiotlb's 2 KiB slabs: measured for the running kernel's swiotlb=, from
// the command line otherwise.
struct SwiotlbSize {
    bool known = false;  // plain values, not an optional: g++ 12 misreads optionals here
    std::uint64_t nslabs = 0;
    std::string source;
};

SwiotlbSize swiotlb_size(const EstimateContext& c) {
    SwiotlbSize s{.known = c.in.swiotlb_nslabs.has_value(),
                  .nslabs = c.in.swiotlb_nslabs.value_or(0),
                  .source = "debugfs swiotlb/io_tlb_nslabs"};
    const auto want = c.cmdline.value("swiotlb");
    if (c.same_line || want == c.running.value("swiotlb")) return s;
    s.known = true;
    s.nslabs = 32768;  // IO_TLB_DEFAULT_SIZE 64 MiB
    s.source = "default 64 MiB";
    if (!want) return s;
    s.source = "swiotlb=" + *want;
    if (want->find("noforce") != std::string::npos)
        s.nslabs = 0;
    else if (auto m = memparse(*want); m && m->value)
        s.nslabs = (m->value + 127) & ~127ull;  // ALIGN(IO_TLB_SEGSIZE)
    return s;
}

// swiotlb: the bounce buffer below 4 GiB, its slot array and areas anywhere.
void estimate_swiotlb(const EstimateContext& c, ReservedEstimate& e) {
    const SwiotlbSize s = swiotlb_size(c);
    if (!s.known) {
        e.unknown.push_back("swiotlb size (debugfs swiotlb/io_tlb_nslabs)");
        return;
    }
    if (!s.nslabs) return;
    const std::uint64_t buffer = page_align(s.nslabs << 11);
    e.parts.push_back({.kind = ReservedPartKind::swiotlb_buffer,
                       .source = s.source,
                       .bytes = buffer,
                       .node = std::nullopt,
                       .below_4g = buffer,
                       .low_only = true,
                       .contiguous = true});
    std::uint64_t nareas = pow2_up(std::max<std::uint64_t>(c.in.possible_cpus.size(), 1));
    while (nareas > 1 && s.nslabs < nareas * 128) nareas >>= 1;
    const std::uint64_t slots = page_align(s.nslabs * 24) + nareas * 16;
    e.parts.push_back({.kind = ReservedPartKind::swiotlb_slots,
                       .source = s.source + " x 24 bytes",
                       .bytes = slots,
                       .node = std::nullopt,
                       .below_4g = c.top_down_low(slots, std::nullopt)});
}

// The running kernel's crash kernel, as /proc/iomem and sysfs show it.
void crash_kernel_measured(const EstimateContext& c, ReservedEstimate& e) {
    for (const auto& r : c.in.crash_kernel) {
        const bool low = r.end <= k4GiB;
        e.parts.push_back(
            {.kind = low ? ReservedPartKind::crash_kernel_below_4g : ReservedPartKind::crash_kernel_above_4g,
             .source = "/proc/iomem Crash kernel " + hex(r.start) + "-" + hex(r.end - 1),
             .bytes = r.size(),
             .node = std::nullopt,
             .below_4g = Layout::below_4g(r),
             .low_only = low,
             .contiguous = true});
    }
    for (const auto& r : c.in.crash_cma)
        e.parts.push_back({.kind = ReservedPartKind::crash_kernel_cma,
                           .source = "/sys/kernel/kexec/crash_cma_ranges",
                           .bytes = r.size(),
                           .node = std::nullopt,
                           .below_4g = Layout::below_4g(r),
                           .contiguous = true});
}

std::uint64_t bytes_of(const ReservedEstimate& e, ReservedPartKind kind) {
    std::uint64_t bytes = 0;
    for (const auto& p : e.parts)
        if (p.kind == kind) bytes = p.bytes;
    return bytes;
}

// Another command line's crashkernel=; its default low part depends on swiotlb.
void crash_kernel_requested(const EstimateContext& c, ReservedEstimate& e) {
    const CrashRequest r =
        parse_crash_request(c.cmdline, c.layout.ram_total, bytes_of(e, ReservedPartKind::swiotlb_buffer));
    if (!r.note.empty()) e.unknown.push_back(r.note);
    if (r.size)
        e.parts.push_back(
            {.kind = r.high ? ReservedPartKind::crash_kernel_high : ReservedPartKind::crash_kernel_requested,
             .source = "crashkernel= on the command line (the kernel tries below 4 GiB first)",
             .bytes = r.size,
             .node = std::nullopt,
             .below_4g = r.high ? 0 : r.size,
             .low_only = !r.high,
             .contiguous = true});
    if (r.high && r.low)
        e.parts.push_back({.kind = ReservedPartKind::crash_kernel_low_of_high,
                           .source = "crashkernel=,low or its default",
                           .bytes = r.low,
                           .node = std::nullopt,
                           .below_4g = r.low,
                           .low_only = true,
                           .contiguous = true});
    if (r.cma)
        e.parts.push_back({.kind = ReservedPartKind::crash_kernel_cma,
                           .source = "crashkernel=,cma on the command line",
                           .bytes = r.cma,
                           .node = std::nullopt,
                           .below_4g = c.top_down_low(r.cma, std::nullopt),
                           .contiguous = true});
}

// crashkernel=: the running kernel's reservation is in /proc/iomem.
void estimate_crash_kernel(const EstimateContext& c, ReservedEstimate& e) {
    if (c.same_line || c.cmdline.value("crashkernel") == c.running.value("crashkernel"))
        crash_kernel_measured(c, e);
    else
        crash_kernel_requested(c, e);
}

// Other CMA areas (cma=, hugetlb_cma=): CmaTotal minus the crash kernel's.
void estimate_other_cma(const EstimateContext& c, ReservedEstimate& e) {
    if (!c.in.cma_total) return;
    std::uint64_t crash_cma = 0;
    for (const auto& r : c.in.crash_cma) crash_cma += r.size();
    if (*c.in.cma_total <= crash_cma) return;
    const std::uint64_t bytes = *c.in.cma_total - crash_cma;
    e.parts.push_back({.kind = ReservedPartKind::cma_areas,
                       .source = "/proc/meminfo CmaTotal",
                       .bytes = bytes,
                       .node = std::nullopt,
                       .below_4g = c.top_down_low(bytes, std::nullopt)});
}

// fixup_hashdist() turns hashdist off with a single memory node.
bool hashdist(const EstimateContext& c) {
    const bool numa = c.layout.memory_nodes.size() > 1;
    if (auto h = c.cmdline.value("hashdist"); h && numa) return kstrtobool(*h).value_or(true);
    return numa;
}

// dentry and inode hash tables: memblock only while hashdist is off.
void estimate_hash_tables(const EstimateContext& c, ReservedEstimate& e) {
    if (hashdist(c)) return;
    std::uint64_t before = 0;  // reserved when free_area_init() counts nr_kernel_pages
    for (const auto& p : e.parts)
        if (p.loaded || p.kind == ReservedPartKind::memmap || is_crash_kernel(p.kind)) before += p.bytes;
    const std::uint64_t ram = c.layout.ram_total;
    const std::uint64_t pages = (ram > before ? ram - before : 0) / kPage;
    const auto dentries = cmdline_number(c.cmdline, "dhash_entries").value_or(0);
    const auto ientries = cmdline_number(c.cmdline, "ihash_entries").value_or(0);
    auto both = [&](std::uint64_t n) {
        return hash_table_bytes(n, 8, 13, 2, dentries) + hash_table_bytes(n, 8, 14, 0, ientries);
    };
    const std::uint64_t mid = both(pages);
    const std::uint64_t lo = both(pages - pages / 50);
    const std::uint64_t hi = both(pages + pages / 50);
    e.parts.push_back({.kind = ReservedPartKind::hash_tables,
                       .source = "alloc_large_system_hash() from " + std::to_string(pages) +
                                 " free pages (one memory node: hashdist off)",
                       .bytes = mid,
                       .uncertainty = std::max(mid - std::min(lo, mid), std::max(hi, mid) - mid),
                       .node = std::nullopt,
                       .below_4g = c.top_down_low(mid, std::nullopt)});
}

// The printk buffer: allocated when log_buf_len= or the CPU count asks for
// more than the static one (LOG_BUF_SHIFT 18, LOG_CPU_MAX_BUF_SHIFT 12 assumed).
void estimate_printk_buffer(const EstimateContext& c, ReservedEstimate& e) {
    constexpr std::uint64_t static_len = 256 * kKiB;
    const std::uint64_t cpus = c.in.possible_cpus.size();
    std::uint64_t len = 0;
    std::string source;
    if (auto v = cmdline_number(c.cmdline, "log_buf_len"); v && *v > static_len) {
        len = pow2_up(*v);
        source = "log_buf_len= on the command line";
    } else if (cpus > 1 && (cpus - 1) * 4 * kKiB > static_len / 2) {
        len = pow2_up(static_len + (cpus - 1) * 4 * kKiB);
        source = std::to_string(cpus) + " possible CPUs x 4 KiB";
    }
    if (!len) return;
    // text + descriptors (24 bytes) + infos (88 bytes) per 32 bytes of text
    const std::uint64_t bytes = len + len / 32 * 24 + len / 32 * 88;
    e.parts.push_back({.kind = ReservedPartKind::printk_buffer,
                       .source = source + " (static buffer of 256 KiB assumed)",
                       .bytes = bytes,
                       .uncertainty = bytes / 2,
                       .node = std::nullopt,
                       .below_4g = c.top_down_low(bytes, std::nullopt)});
}

// Direct-map page tables beyond the early brk buffer.
void estimate_direct_map_tables(const EstimateContext& c, ReservedEstimate& e) {
    std::uint64_t pages = div_up(c.layout.ram_top, 512 * kGiB);
    if (!c.in.gbpages.value_or(true)) pages += div_up(c.layout.ram_top, kGiB);
    pages = pages > 6 ? pages - 6 : 0;
    if (!pages) return;
    const std::uint64_t bytes = pages * kPage;
    e.parts.push_back({.kind = ReservedPartKind::direct_map_tables,
                       .source = "estimated from the top of memory",
                       .bytes = bytes,
                       .uncertainty = bytes,
                       .node = std::nullopt,
                       .below_4g = c.top_down_low(bytes, std::nullopt)});
}

void estimate_kfence(const EstimateContext& c, ReservedEstimate& e) {
    if (!c.in.kfence) return;
    const std::uint64_t bytes = 2 * kMiB + 320 * kKiB;
    e.parts.push_back({.kind = ReservedPartKind::kfence,
                       .source = "/sys/module/kfence (255 objects assumed)",
                       .bytes = bytes,
                       .uncertainty = 128 * kKiB,
                       .node = std::nullopt,
                       .below_4g = c.top_down_low(bytes, std::nullopt)});
}

void estimate_other_small(const EstimateContext& c, ReservedEstimate& e) {
    const std::uint64_t bytes = 32 * kKiB;
    e.parts.push_back({.kind = ReservedPartKind::other_small,
                       .source =
                           "estimated (about 30 KiB on the 7.2.13 test kernel: fixmap page tables, e820 "
                           "firmware map, percpu metadata)",
                       .bytes = bytes,
                       .uncertainty = 32 * kKiB,
                       .node = std::nullopt,
                       .below_4g = c.top_down_low(bytes, std::nullopt)});
}

// Without "Kernel bss" in /proc/iomem the image is short by the bss.
void note_missing_bss(const EstimateContext& c, ReservedEstimate& e) {
    if (auto it = c.in.missing.find("kernel bss"); it != c.in.missing.end()) e.unknown.push_back(it->second);
}

// In this order: the crash kernel's default low part reads swiotlb's size,
// and the hash tables read what was reserved before them.
constexpr Estimator kEstimators[] = {
    estimate_kernel_image, estimate_boot_params, estimate_real_mode,     estimate_sparse_model,
    estimate_node_data,    estimate_percpu,      estimate_swiotlb,       estimate_crash_kernel,
    estimate_other_cma,    estimate_hash_tables, estimate_printk_buffer, estimate_direct_map_tables,
    estimate_kfence,       estimate_other_small, note_missing_bss,
};

}  // namespace

ReservedEstimate estimate_reserved(const ScratchInputs& in, const Cmdline& cmdline) {
    const Layout layout(in);
    const EstimateContext context(in, layout, cmdline);
    ReservedEstimate e;
    for (Estimator estimate : kEstimators) estimate(context, e);
    return e;
}

}  // namespace khod
