#include "khod/scratch/memory_topology.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <system_error>

#include "khod/base/hex.hpp"

namespace khod {

namespace {

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kMaxPhys = 1ull << 52;  // x86_64 MAX_PHYSMEM_BITS with 5-level paging

std::string trim(std::string_view s) {
    std::size_t b = 0;
    std::size_t e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
    return std::string(s.substr(b, e - b));
}

bool starts_with_digits_after(const std::string& name, std::string_view prefix) {
    if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return false;
    return std::all_of(name.begin() + static_cast<std::ptrdiff_t>(prefix.size()), name.end(),
                       [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; });
}

unsigned suffix_number(const std::string& name, std::size_t prefix_len) {
    return static_cast<unsigned>(std::stoul(name.substr(prefix_len)));
}

void note_missing(ScratchInputs& in, const std::string& what, const Error& e) {
    in.missing[what] = e.describe();
}

// Sorted, adjacent ranges merged.
std::vector<PhysRange> merge_ranges(std::vector<PhysRange> v) {
    std::sort(v.begin(), v.end(), [](const PhysRange& a, const PhysRange& b) { return a.start < b.start; });
    std::vector<PhysRange> out;
    for (const auto& r : v) {
        if (!out.empty() && r.start <= out.back().end)
            out.back().end = std::max(out.back().end, r.end);
        else
            out.push_back(r);
    }
    return out;
}

struct Block {
    unsigned id = 0;
    PhysRange range;
};

Result<std::vector<Block>> read_blocks(const Sysroot& root, std::uint64_t block_size) {
    KernelPath dir = root.sys("devices/system/memory");
    auto names = list_dir(dir);
    if (!names) return names.error();
    std::vector<Block> blocks;
    for (const auto& name : *names) {
        if (!starts_with_digits_after(name, "memory")) continue;
        KernelPath idx_path = root.sys("devices/system/memory/" + name + "/phys_index");
        auto idx = read_hex_u64(idx_path);
        if (!idx) return idx.error();
        if (*idx >= kMaxPhys / block_size)
            return plain_error(idx_path.host.string(),
                               "phys_index " + std::to_string(*idx) + " puts the block beyond 2^52 bytes");
        Block b;
        b.id = suffix_number(name, 6);
        b.range = {*idx * block_size, (*idx + 1) * block_size};
        blocks.push_back(b);
    }
    if (blocks.empty())
        return plain_error(dir.host.string(), "no memoryN blocks: cannot tell how much memory there is");
    return blocks;
}

Result<std::vector<unsigned>> read_list_file(const KernelPath& path) {
    auto text = read_file(path);
    if (!text) return text.error();
    return parse_list(*text, path.host.string());
}

// CONFIG_NUMA=n: the kernel has one node 0 holding everything.
NodeTopology only_node(const Sysroot& root, const std::vector<Block>& blocks) {
    NodeTopology n;
    n.online = true;
    n.has_memory = true;
    std::vector<PhysRange> ranges;
    for (const auto& b : blocks) ranges.push_back(b.range);
    n.blocks = merge_ranges(ranges);
    n.block_count = blocks.size();
    if (auto cpus = read_list_file(root.sys("devices/system/cpu/online"))) n.cpus = *cpus;
    return n;
}

// node/online and node/has_memory; a memory node must be online.
struct NodeSets {
    std::set<unsigned> online;
    std::set<unsigned> memory;
};

Result<NodeSets> read_node_sets(const Sysroot& root) {
    auto online = read_list_file(root.sys("devices/system/node/online"));
    if (!online) return online.error();
    KernelPath has_memory_path = root.sys("devices/system/node/has_memory");
    auto has_memory = read_list_file(has_memory_path);
    if (!has_memory) return has_memory.error();
    NodeSets sets{.online = {online->begin(), online->end()},
                  .memory = {has_memory->begin(), has_memory->end()}};
    if (sets.memory.empty()) return plain_error(has_memory_path.host.string(), "lists no node with memory");
    for (unsigned n : sets.memory)
        if (!sets.online.count(n))
            return plain_error(has_memory_path.host.string(),
                               "lists node " + std::to_string(n) + " that node/online does not");
    return sets;
}

// nodeN/memoryM links: each must name a block that exists, and no block two nodes.
Result<void> link_node_blocks(const KernelPath& dir_path, const std::vector<std::string>& names,
                              const std::map<unsigned, PhysRange>& by_id, std::set<unsigned>& claimed,
                              NodeTopology& n) {
    std::vector<PhysRange> ranges;
    for (const auto& name : names) {
        if (!starts_with_digits_after(name, "memory")) continue;
        unsigned bid = suffix_number(name, 6);
        auto it = by_id.find(bid);
        if (it == by_id.end())
            return plain_error(dir_path.host.string() + "/" + name,
                               "links memory block " + std::to_string(bid) +
                                   " that /sys/devices/system/memory does not have");
        if (!claimed.insert(bid).second)
            return plain_error(dir_path.host.string() + "/" + name,
                               "memory block " + std::to_string(bid) + " is linked from two nodes");
        ranges.push_back(it->second);
        ++n.block_count;
    }
    n.blocks = merge_ranges(ranges);
    return {};
}

Result<NodeTopology> read_node(const Sysroot& root, unsigned id, const NodeSets& sets,
                               const std::map<unsigned, PhysRange>& by_id, std::set<unsigned>& claimed) {
    std::string dir = "devices/system/node/node" + std::to_string(id);
    KernelPath dir_path = root.sys(dir);
    auto names = list_dir(dir_path);
    if (!names)
        return Error{names.error().code, names.error().path,
                     "node " + std::to_string(id) + " is listed online but its directory cannot be read"};
    NodeTopology n;
    n.id = id;
    n.online = sets.online.count(id) != 0;
    n.has_memory = sets.memory.count(id) != 0;
    if (auto cpus = read_list_file(root.sys(dir + "/cpulist")))
        n.cpus = *cpus;
    else if (!is_missing(cpus.error()))
        return cpus.error();
    if (auto linked = link_node_blocks(dir_path, *names, by_id, claimed, n); !linked) return linked.error();
    if (auto text = read_file(root.sys(dir + "/meminfo"))) n.memtotal = meminfo_bytes(*text, "MemTotal");
    return n;
}

// A tree without the nodeN/memoryM links (older captures): with one
// memory node every block can only be its.
void assign_unlinked_blocks(const Sysroot& root, ScratchInputs& in, const std::vector<Block>& blocks) {
    auto& n =
        *std::find_if(in.nodes.begin(), in.nodes.end(), [](const NodeTopology& x) { return x.has_memory; });
    std::vector<PhysRange> ranges;
    for (const auto& b : blocks) ranges.push_back(b.range);
    n.blocks = merge_ranges(ranges);
    n.block_count = blocks.size();
    in.missing["node memory links"] =
        root.sys("devices/system/node/node" + std::to_string(n.id)).host.string() +
        ": no memoryN links; every block assigned to the only memory node";
}

// The node part: which blocks and CPUs each node has.
Result<void> read_nodes(const Sysroot& root, ScratchInputs& in, const std::vector<Block>& blocks) {
    if (!exists(root.sys("devices/system/node"))) {
        in.numa_sysfs = false;
        in.nodes.push_back(only_node(root, blocks));
        return {};
    }
    auto sets = read_node_sets(root);
    if (!sets) return sets.error();
    std::map<unsigned, PhysRange> by_id;
    for (const auto& b : blocks) by_id[b.id] = b.range;
    std::set<unsigned> all = sets->online;
    all.insert(sets->memory.begin(), sets->memory.end());
    std::set<unsigned> claimed;
    for (unsigned id : all) {
        auto node = read_node(root, id, *sets, by_id, claimed);
        if (!node) return node.error();
        in.nodes.push_back(std::move(*node));
    }
    if (claimed.empty() && sets->memory.size() == 1) assign_unlinked_blocks(root, in, blocks);
    for (const auto& n : in.nodes)
        if (n.has_memory && n.blocks.empty())
            return plain_error(
                root.sys("devices/system/node/node" + std::to_string(n.id)).host.string(),
                "node " + std::to_string(n.id) + " is in has_memory but links no memory block");
    return {};
}

Result<void> read_iomem(const Sysroot& root, ScratchInputs& in) {
    KernelPath path = root.proc("iomem");
    auto text = read_file(path);
    if (!text) return text.error();
    auto entries = parse_iomem(*text, path.host.string());
    if (!entries) return entries.error();
    bool any_nonzero = false;
    std::optional<PhysRange> code, bss, data;
    for (const auto& e : *entries) {
        if (e.range.end > 1) any_nonzero = true;
        if (e.depth == 0 && e.name == "System RAM") in.system_ram.push_back(e.range);
        if (e.name == "Kernel code" && !code) code = e.range;
        if (e.name == "Kernel data" && !data) data = e.range;
        if (e.name == "Kernel bss" && !bss) bss = e.range;
        if (e.name == "Crash kernel") in.crash_kernel.push_back(e.range);
    }
    if (!any_nonzero)
        return plain_error(path.host.string(),
                           "every range reads as zero: the kernel hides addresses from unprivileged "
                           "readers (run as root)");
    if (in.system_ram.empty())
        return plain_error(path.host.string(), "has no top-level \"System RAM\" range");
    if (!code) return plain_error(path.host.string(), "has no \"Kernel code\" range");
    // setup_arch() reserves _text .. __end_of_kernel_reserve, which ends with the bss.
    PhysRange image{code->start, (bss ? bss->end : data ? data->end : code->end)};
    if (!bss)
        in.missing["kernel bss"] =
            path.host.string() + ": no \"Kernel bss\" range; the image ends at its data";
    in.kernel_image = image;
    return {};
}

void read_boot_params(const Sysroot& root, ScratchInputs& in) {
    KernelPath path = root.sys("kernel/boot_params/data");
    auto data = read_file(path);
    if (!data) {
        note_missing(in, "boot_params", data.error());
        return;
    }
    if (data->size() < 0x260) {
        in.missing["boot_params"] = path.host.string() + ": " + std::to_string(data->size()) +
                                    " bytes, too short for struct boot_params";
        return;
    }
    auto u32 = [&](std::size_t off) {
        std::uint32_t v;
        std::memcpy(&v, data->data() + off, sizeof v);
        return static_cast<std::uint64_t>(v);
    };
    in.boot_params = true;
    // arch/x86/kernel/setup.c: get_ramdisk_image()/get_ramdisk_size() combine the
    // header fields with ext_ramdisk_*; early_reserve_initrd() reserves up to the
    // next page, and nothing when no loader set type_of_loader.
    const std::uint64_t image = u32(0x218) | (u32(0x0c0) << 32);
    const std::uint64_t size = u32(0x21c) | (u32(0x0c4) << 32);
    const auto loader = static_cast<unsigned char>((*data)[0x210]);
    if (loader != 0 && image != 0 && size != 0) {
        in.initrd = PhysRange{image, (image + size + kPage - 1) & ~(kPage - 1)};
    }
    KernelPath dir = root.sys("kernel/boot_params/setup_data");
    auto names = list_dir(dir);
    if (!names) {
        if (!is_missing(names.error())) note_missing(in, "setup_data", names.error());
        return;
    }
    for (const auto& name : *names) {
        KernelPath size_path = root.sys("kernel/boot_params/setup_data/" + name + "/size");
        auto len = read_u64(size_path);
        if (!len) {
            note_missing(in, "setup_data " + name, len.error());
            continue;
        }
        in.setup_data.push_back(16 + *len);  // sizeof(struct setup_data) + len
    }
}

void read_cpuinfo(const Sysroot& root, ScratchInputs& in) {
    auto text = read_file(root.proc("cpuinfo"));
    if (!text) {
        note_missing(in, "cpuinfo", text.error());
        return;
    }
    std::istringstream s(*text);
    std::string line;
    while (std::getline(s, line)) {
        if (line.rfind("flags", 0) != 0) continue;
        std::istringstream words(line.substr(line.find(':') == std::string::npos ? 0 : line.find(':') + 1));
        std::set<std::string> flags;
        std::string w;
        while (words >> w) flags.insert(w);
        in.five_level = flags.count("la57") != 0;
        in.gbpages = flags.count("pdpe1gb") != 0;
        return;
    }
    in.missing["cpuinfo"] = root.proc("cpuinfo").host.string() + ": no flags line";
}

// The two percpu symbols only; kallsyms is megabytes and slow to generate.
void read_percpu_static(const Sysroot& root, ScratchInputs& in) {
    KernelPath path = root.proc("kallsyms");
    std::ifstream f(path.host);
    if (!f) {
        in.missing["kallsyms"] = errno_error(errno, path.host.string(), "cannot open").describe();
        return;
    }
    std::optional<std::uint64_t> start, end;
    std::string line;
    while ((!start || !end) && std::getline(f, line)) {
        auto sp = line.rfind(' ');
        if (sp == std::string::npos) continue;
        std::string_view sym(line.c_str() + sp + 1);
        if (sym != "__per_cpu_start" && sym != "__per_cpu_end") continue;
        auto addr = parse_hex_digits(std::string_view(line).substr(0, line.find(' ')));
        if (!addr) continue;
        (sym == "__per_cpu_start" ? start : end) = *addr;
    }
    if (!start || !end) {
        in.missing["kallsyms"] = path.host.string() + ": no __per_cpu_start/__per_cpu_end symbols";
        return;
    }
    if (*start == 0 && *end == 0) {
        in.missing["kallsyms"] = path.host.string() + ": addresses hidden (kptr_restrict; run as root)";
        return;
    }
    if (*end < *start || *end - *start > (64ull << 20)) {
        in.missing["kallsyms"] =
            path.host.string() + ": __per_cpu_end - __per_cpu_start is not a plausible size";
        return;
    }
    in.percpu_static = *end - *start;
}

void read_crash_cma(const Sysroot& root, ScratchInputs& in) {
    KernelPath path = root.sys("kernel/kexec/crash_cma_ranges");
    auto text = read_file(path);
    if (!text) {
        if (!is_missing(text.error())) note_missing(in, "crash_cma_ranges", text.error());
        return;
    }
    std::istringstream s(*text);
    std::string line;
    while (std::getline(s, line)) {
        line = trim(line);
        if (line.empty()) continue;
        auto dash = line.find('-');
        auto a = dash == std::string::npos ? std::nullopt : parse_hex_digits(line.substr(0, dash));
        auto b = dash == std::string::npos ? std::nullopt : parse_hex_digits(line.substr(dash + 1));
        if (!a || !b || *b < *a) {
            in.missing["crash_cma_ranges"] = path.host.string() + ": cannot parse \"" + line + "\"";
            in.crash_cma.clear();
            return;
        }
        in.crash_cma.push_back({*a, *b + 1});
    }
}

Result<void> read_next_images(const ScratchInputOptions& options, ScratchInputs& in) {
    if (options.kernel) {
        auto image = read_bzimage(std::filesystem::path(*options.kernel));
        if (!image) return image.error();
        in.next_kernel = *image;
    }
    if (options.initrd) {
        std::error_code ec;
        auto size = std::filesystem::file_size(*options.initrd, ec);
        if (ec) return errno_error(ec.value(), *options.initrd, "cannot read the initrd's size");
        in.next_initrd_path = *options.initrd;
        in.next_initrd_size = size;
    }
    return {};
}

}  // namespace

std::uint64_t NodeTopology::present() const {
    std::uint64_t total = 0;
    for (const auto& b : blocks) total += b.size();
    return total;
}

std::optional<std::uint64_t> meminfo_bytes(const std::string& text, const std::string& key) {
    std::istringstream s(text);
    std::string line;
    while (std::getline(s, line)) {
        auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string name = line.substr(0, colon);
        // nodeN/meminfo prefixes "Node N ".
        if (name.rfind("Node ", 0) == 0) {
            auto sp = name.find(' ', 5);
            if (sp == std::string::npos) continue;
            name = name.substr(sp + 1);
        }
        if (name != key) continue;
        std::istringstream v(line.substr(colon + 1));
        std::uint64_t n = 0;
        std::string unit;
        if (!(v >> n)) return std::nullopt;
        v >> unit;
        if (unit == "kB") {
            if (n > (UINT64_MAX >> 10)) return std::nullopt;
            return n << 10;
        }
        return unit.empty() ? std::optional<std::uint64_t>(n) : std::nullopt;
    }
    return std::nullopt;
}

std::optional<std::uint64_t> vmstat_value(const std::string& text, const std::string& key) {
    std::istringstream s(text);
    std::string name;
    std::string value;
    while (s >> name >> value) {
        if (name != key) continue;
        auto v = parse_u64(value, key);
        if (!v) return std::nullopt;
        return *v;
    }
    return std::nullopt;
}

namespace {

// KHO. The caller has pointed root at debugfs (ensure_debugfs()).
void read_kho_state(const Sysroot& root, const ScratchInputOptions& options, ScratchInputs& in) {
    in.debugfs_mounted = options.debugfs_mounted;
    if (!in.debugfs_mounted) {
        in.missing["debugfs"] = options.debugfs_error.value_or("debugfs is not mounted");
        return;
    }
    in.abi = detect_kho_abi(root);
    in.kho_active = exists(root.debugfs("kho"));
    in.incoming = exists(root.debugfs("kho/in"));
    if (in.abi == KhoAbi::unknown) return;
    auto areas = read_scratch_areas(root, in.abi);
    if (areas)
        in.current_areas = *areas;
    else
        note_missing(in, "scratch areas", areas.error());
}

// Memory blocks, nodes and CPUs.
Result<void> read_topology(const Sysroot& root, ScratchInputs& in) {
    KernelPath bs_path = root.sys("devices/system/memory/block_size_bytes");
    auto bs = read_hex_u64(bs_path);
    if (!bs) return bs.error();
    if (*bs < (1ull << 20) || (*bs & (*bs - 1)) != 0 || *bs > (1ull << 40))
        return plain_error(bs_path.host.string(), "block size " + std::to_string(*bs) +
                                                      " is not a power of two between 1 MiB and 1 TiB");
    in.block_size = *bs;
    auto blocks = read_blocks(root, in.block_size);
    if (!blocks) return blocks.error();
    if (auto r = read_nodes(root, in, *blocks); !r) return r.error();
    if (auto cpus = read_list_file(root.sys("devices/system/cpu/possible")))
        in.possible_cpus = *cpus;
    else
        note_missing(in, "possible cpus", cpus.error());
    return {};
}

void read_vmstat_and_meminfo(const Sysroot& root, ScratchInputs& in) {
    if (auto text = read_file(root.proc("vmstat"))) {
        in.memmap_boot_pages = vmstat_value(*text, "nr_memmap_boot_pages");
        in.memmap_pages = vmstat_value(*text, "nr_memmap_pages");
        if (!in.memmap_boot_pages)
            in.missing["nr_memmap_boot_pages"] =
                root.proc("vmstat").host.string() + ": no nr_memmap_boot_pages line";
    } else {
        note_missing(in, "vmstat", text.error());
    }
    if (auto text = read_file(root.proc("meminfo"))) {
        in.percpu_meminfo = meminfo_bytes(*text, "Percpu");
        in.cma_total = meminfo_bytes(*text, "CmaTotal");
        in.mem_total = meminfo_bytes(*text, "MemTotal");
    } else {
        note_missing(in, "meminfo", text.error());
    }
}

void read_swiotlb(const Sysroot& root, ScratchInputs& in) {
    if (!in.debugfs_mounted) {
        in.missing["swiotlb"] = "debugfs is not mounted: swiotlb/io_tlb_nslabs unreadable";
        return;
    }
    // x86_64 always builds swiotlb; without the file its size is unknown, not 0.
    if (auto n = read_u64(root.debugfs("swiotlb/io_tlb_nslabs")))
        in.swiotlb_nslabs = *n;
    else
        note_missing(in, "swiotlb", n.error());
}

}  // namespace

Result<ScratchInputs> read_scratch_inputs(const Sysroot& root, const ScratchInputOptions& options) {
    ScratchInputs in;
    in.sysroot = root.root().string();
    if (auto r = read_trimmed(root.proc("sys/kernel/osrelease")))
        in.release = *r;
    else
        note_missing(in, "release", r.error());
    auto cmdline = read_trimmed(root.proc("cmdline"));
    if (!cmdline) return cmdline.error();
    in.cmdline = *cmdline;

    read_kho_state(root, options, in);
    if (auto r = read_topology(root, in); !r) return r.error();
    // The kernel's own reservations.
    if (auto r = read_iomem(root, in); !r) return r.error();
    read_cpuinfo(root, in);
    read_boot_params(root, in);
    read_vmstat_and_meminfo(root, in);
    read_percpu_static(root, in);
    in.modules = exists(root.proc("modules"));
    read_crash_cma(root, in);
    in.kfence = exists(root.sys("module/kfence"));
    read_swiotlb(root, in);

    if (auto r = read_next_images(options, in); !r) return r.error();
    return in;
}

}  // namespace khod
