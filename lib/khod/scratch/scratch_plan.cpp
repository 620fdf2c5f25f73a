#include "khod/scratch/scratch_plan.hpp"

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdio>
#include <set>
#include <sstream>

#include "khod/base/debugfs.hpp"
#include "khod/base/hex.hpp"
#include "khod/base/units.hpp"

namespace khod {

namespace {

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kGiB = 1ull << 30;
constexpr std::uint64_t kSectionSize = 128 * kMiB;  // x86_64 SECTION_SIZE_BITS 27

// The kernel's round_up() for a power-of-two alignment, wrapping as it does
// (round_up(0) is 0, and a value within `a` of 2^64 wraps to 0).
std::uint64_t kround_up(std::uint64_t x, std::uint64_t a) {
    return ((x - 1) | (a - 1)) + 1;
}
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

std::string mib(std::uint64_t v) {
    char buf[48];
    std::snprintf(buf, sizeof buf, "%.3f MiB", static_cast<double>(v) / static_cast<double>(kMiB));
    return buf;
}

std::string pm(std::uint64_t bytes, std::uint64_t uncertainty) {
    if (!uncertainty) return human_size(bytes);
    return human_size(bytes) + " +- " + human_size(uncertainty);
}

std::string node_name(const std::optional<unsigned>& node) {
    return node ? "node " + std::to_string(*node) : "no node";
}

std::optional<std::pair<unsigned, unsigned>> major_minor(const std::string& release) {
    unsigned a = 0;
    unsigned b = 0;
    std::size_t i = 0;
    auto digits = [&](unsigned& out) {
        std::size_t start = i;
        while (i < release.size() && std::isdigit(static_cast<unsigned char>(release[i])) && i - start < 6)
            out = out * 10 + static_cast<unsigned>(release[i++] - '0');
        return i > start;
    };
    if (!digits(a) || i >= release.size() || release[i] != '.') return std::nullopt;
    ++i;
    if (!digits(b)) return std::nullopt;
    return std::make_pair(a, b);
}

// kstrtouint(s, 10): optional '+', decimal digits, one optional trailing newline.
Result<unsigned> kstrtouint(std::string_view s, const std::string& what) {
    if (!s.empty() && s[0] == '+') s.remove_prefix(1);
    if (!s.empty() && s.back() == '\n') s.remove_suffix(1);
    if (s.empty()) return plain_error(what, "no number before the %");
    std::uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9')
            return plain_error(what, "\"" + std::string(s) + "\" is not a decimal number");
        v = v * 10 + static_cast<unsigned>(c - '0');
        if (v > UINT_MAX) return plain_error(what, "scale larger than 4294967295 (ERANGE)");
    }
    return static_cast<unsigned>(v);
}

}  // namespace

std::string cmdline_size(std::uint64_t bytes) {
    if (bytes == 0) return "0";
    static constexpr std::pair<char, unsigned> units[] = {{'T', 40}, {'G', 30}, {'M', 20}, {'K', 10}};
    for (const auto& [c, shift] : units)
        if (bytes % (1ull << shift) == 0) return std::to_string(bytes >> shift) + c;
    return std::to_string(bytes);
}

// ---------------------------------------------------------------------------
// names

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

const char* to_string(ScratchAreaKind kind) {
    switch (kind) {
        case ScratchAreaKind::lowmem: return "lowmem";
        case ScratchAreaKind::global: return "global";
        case ScratchAreaKind::node: break;
    }
    return "node";
}

const char* param_field(ScratchAreaKind kind) {
    return kind == ScratchAreaKind::node ? "pernode" : to_string(kind);
}

ScratchAreaKind area_kind_at(unsigned index) {
    if (index == 0) return ScratchAreaKind::lowmem;
    if (index == 1) return ScratchAreaKind::global;
    return ScratchAreaKind::node;
}

const char* to_string(ScratchVerdict verdict) {
    switch (verdict) {
        case ScratchVerdict::exact: return "exact";
        case ScratchVerdict::within_alignment: return "within-alignment";
        case ScratchVerdict::incomplete: return "incomplete";
        case ScratchVerdict::missing: return "missing";
        case ScratchVerdict::unexpected: return "unexpected";
        case ScratchVerdict::mismatch: return "mismatch";
        case ScratchVerdict::not_applicable: return "not-applicable";
        case ScratchVerdict::unknown: return "unknown";
        case ScratchVerdict::no_kho: break;
    }
    return "no-kho";
}

const char* to_string(ScratchFitAgainst against) {
    return against == ScratchFitAgainst::predicted ? "predicted" : "current";
}

// ---------------------------------------------------------------------------
// rules

ScratchRules scratch_rules_for(const std::optional<std::string>& release, std::string* why) {
    ScratchRules r;
    r.id = "7.0-7.3";
    r.verified =
        "7.2.13 source (kernel/liveupdate/kexec_handover.c, mm/memblock.c); 7.0 and 7.1 assumed the same";
    r.param = "kho_scratch";
    r.align = 4 * kMiB;
    std::string reason;
    auto mm = release ? major_minor(*release) : std::nullopt;
    if (!mm) {
        reason = release ? "release \"" + *release + "\" not understood; using the 7.0-7.3 rules"
                         : "kernel release unknown; using the 7.0-7.3 rules";
    } else if (mm->first > 7 || (mm->first == 7 && mm->second >= 4)) {
        r.id = "7.4+";
        r.verified =
            "7.2.13 rules with the 7.4 renames (kho_bootmem=, bootmem_phys/bootmem_len), not checked "
            "against 7.4 source";
        r.param = "kho_bootmem";
        reason = "release " + *release + " is 7.4 or later";
    } else if (mm->first == 7) {
        reason = "release " + *release + " is 7.0-7.3";
    } else if (mm->first == 6 && mm->second >= 16) {
        r.align = 2 * kMiB;  // CMA_MIN_ALIGNMENT_BYTES: a 2 MiB pageblock on x86_64
        r.round_lowmem_before_subtract = true;
        r.round_fixed_lowmem_global = false;
        r.online_nodes = true;
        if (mm->second >= 18) {
            r.id = "6.18-6.19";
            r.verified = "v6.18 kernel/kexec_handover.c and a 6.19-era kernel/liveupdate/kexec_handover.c";
        } else {
            r.id = "6.16-6.17";
            r.verified = "6.16 and 6.17-era kernel/kexec_handover.c";
            r.zero_size_allowed = false;
            r.trailing_text_ignored = true;
        }
        reason = "release " + *release + " is " + r.id;
    } else {
        reason =
            "release " + *release + " predates KHO (6.16); using the 7.0-7.3 rules for the arithmetic only";
    }
    if (why) *why = reason;
    return r;
}

// ---------------------------------------------------------------------------
// kho_scratch=

std::string ScratchParam::describe() const {
    if (!fixed()) return (accepted.empty() ? "default scale " : "scale ") + std::to_string(scale) + "%";
    return "fixed " + human_size(lowmem) + ", " + human_size(global) + ", " + human_size(pernode) +
           " per node";
}

Result<void> apply_scratch_value(ScratchParam& param, const std::optional<std::string>& value,
                                 const ScratchRules& rules) {
    const std::string what = rules.param + "=" + value.value_or("");
    if (!value) return plain_error(rules.param, "given without a value");
    const std::string& p = *value;
    if (p.empty()) return plain_error(what, "empty value");
    if (p.back() == '%') {
        // s_scale[11]: the whole value, '%' included, may be at most 11 characters.
        if (p.size() > 11) return plain_error(what, "longer than 11 characters");
        auto scale = kstrtouint(std::string_view(p).substr(0, p.size() - 1), what);
        if (!scale) return scale.error();
        param.scale = *scale;
        return {};
    }
    std::uint64_t sizes[3] = {0, 0, 0};
    std::uint64_t total = 0;
    std::size_t pos = 0;
    for (int i = 0; i < 3; ++i) {
        if (i > 0) {
            if (pos >= p.size() || p[pos] != ',')
                return plain_error(what, "expected three sizes separated by commas (lowmem,global,per-node)");
            ++pos;
        }
        auto m = memparse(std::string_view(p).substr(pos));
        if (!m) return plain_error(what, "size " + std::to_string(i + 1) + ": " + m.error().message);
        if (!rules.zero_size_allowed && m->value == 0)
            return plain_error(what, "size " + std::to_string(i + 1) + " is zero (refused before 6.18)");
        sizes[i] = m->value;
        pos += m->consumed;
        if (total > UINT64_MAX - m->value) return plain_error(what, "sizes add up to more than 2^64");
        total += m->value;
    }
    if (!rules.zero_size_allowed && total == 0) return plain_error(what, "all sizes are zero");
    if (rules.zero_size_allowed && total == 0) return plain_error(what, "all three sizes are zero");
    if (pos != p.size() && !rules.trailing_text_ignored)
        return plain_error(what, "text after the third size: \"" + p.substr(pos) + "\"");
    param.lowmem = sizes[0];
    param.global = sizes[1];
    param.pernode = sizes[2];
    param.scale = 0;
    return {};
}

ScratchParam parse_scratch_param(const Cmdline& cmdline, const ScratchRules& rules) {
    ScratchParam param;
    // early_param handlers run for every occurrence, in order.
    for (const auto& p : cmdline.params()) {
        std::string key = p.key;
        std::replace(key.begin(), key.end(), '-', '_');
        if (key != rules.param) continue;
        auto r = apply_scratch_value(param, p.value, rules);
        const std::string shown = p.value.value_or("(no value)");
        if (r)
            param.accepted.push_back(shown);
        else
            param.rejected.push_back(shown + ": " + r.error().message + "; the kernel keeps what it had");
    }
    return param;
}

// ---------------------------------------------------------------------------
// R

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

// One "does it fit" line: `need` bytes against `have`.
FitCheck capacity_check(std::string what, std::uint64_t need, std::uint64_t have, std::string detail) {
    FitCheck f;
    f.what = std::move(what);
    f.need = need;
    f.have = have;
    f.ok = need <= have;
    f.detail = std::move(detail);
    return f;
}

struct Layout {
    const ScratchInputs& in;
    std::uint64_t ram_top = 0;    // end of the highest System RAM range
    std::uint64_t ram_total = 0;  // sum of System RAM
    std::vector<unsigned> memory_nodes;
    struct Span {
        std::uint64_t start, end;
        unsigned node;
    };
    std::vector<Span> spans;  // every node's blocks, by address

    explicit Layout(const ScratchInputs& inputs) : in(inputs) {
        for (const auto& r : in.system_ram) {
            ram_top = std::max(ram_top, r.end);
            ram_total += r.size();
        }
        for (const auto& n : in.nodes) {
            if (n.has_memory) memory_nodes.push_back(n.id);
            for (const auto& b : n.blocks) spans.push_back({b.start, b.end, n.id});
        }
        std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.start < b.start; });
    }

    // Reservations made before NUMA init get the node of their address
    // (numa_clear_kernel_node_hotplug() sets it on memblock.reserved).
    std::optional<unsigned> node_of(std::uint64_t addr) const {
        auto it = std::upper_bound(spans.begin(), spans.end(), addr,
                                   [](std::uint64_t a, const Span& s) { return a < s.start; });
        if (it == spans.begin()) return std::nullopt;
        --it;
        if (addr < it->end) return it->node;
        return std::nullopt;
    }
    const NodeTopology* node(unsigned id) const {
        for (const auto& n : in.nodes)
            if (n.id == id) return &n;
        return nullptr;
    }
    std::uint64_t node_top(unsigned id) const {
        const NodeTopology* n = node(id);
        return n && !n->blocks.empty() ? n->blocks.back().end : 0;
    }
    static std::uint64_t below_4g(PhysRange r) {
        if (r.start >= k4GiB) return 0;
        return std::min(r.end, k4GiB) - r.start;
    }
    // memblock allocates top-down: an allocation without a limit lands at the
    // top of memory (of its node), below 4 GiB only when that top is.
    std::uint64_t top_down_low(std::uint64_t bytes, std::optional<unsigned> node) const {
        std::uint64_t top = node ? node_top(*node) : ram_top;
        return top <= k4GiB ? bytes : 0;
    }
    // numa_init_array(): possible CPUs without a node go round-robin over online nodes.
    std::map<unsigned, unsigned> cpu_nodes() const {
        std::map<unsigned, unsigned> m;
        std::vector<unsigned> online;
        for (const auto& n : in.nodes) {
            if (n.online) online.push_back(n.id);
            for (unsigned c : n.cpus) m[c] = n.id;
        }
        std::size_t rr = 0;
        for (unsigned c : in.possible_cpus) {
            if (m.count(c) || online.empty()) continue;
            m[c] = online[rr++ % online.size()];
        }
        return m;
    }
};

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

// ---------------------------------------------------------------------------
// sizes

namespace {

// scratch_size_update() with kho_scratch=N%: both from R, in u64 arithmetic.
std::pair<AreaSize, AreaSize> scaled_low_global(const ScratchRules& rules, const ScratchParam& param,
                                                const SizingR& r) {
    const std::uint64_t a = rules.align;
    const std::uint64_t s = param.scale;
    const std::string al = human_size(a);
    const std::uint64_t l = r.low * s / 100;
    const std::uint64_t g = r.total * s / 100;
    const std::uint64_t low = kround_up(l, a);
    AreaSize lowmem{.index = 0,
                    .kind = ScratchAreaKind::lowmem,
                    .node = std::nullopt,
                    .size = low,
                    .formula = "round_up(R_low " + mib(r.low) + " x " + std::to_string(s) + "%, " + al + ")"};
    // 6.x rounds lowmem before subtracting it; a negative result wraps.
    if (rules.round_lowmem_before_subtract)
        return {lowmem,
                {.index = 1,
                 .kind = ScratchAreaKind::global,
                 .node = std::nullopt,
                 .size = kround_up(g - low, a),
                 .formula =
                     "round_up(R " + mib(r.total) + " x " + std::to_string(s) + "% - lowmem, " + al + ")"}};
    return {
        lowmem,
        {.index = 1,
         .kind = ScratchAreaKind::global,
         .node = std::nullopt,
         .size = kround_up(g - l, a),
         .formula = "round_up((R " + mib(r.total) + " - R_low) x " + std::to_string(s) + "%, " + al + ")"}};
}

// A fixed lowmem or global size: 7.x rounds it, 6.x takes it as given.
AreaSize fixed_area(const ScratchRules& rules, unsigned index, std::uint64_t size) {
    const bool round = rules.round_fixed_lowmem_global;
    return {.index = index,
            .kind = area_kind_at(index),
            .node = std::nullopt,
            .size = round ? kround_up(size, rules.align) : size,
            .formula = round ? "round_up(" + human_size(size) + ", " + human_size(rules.align) + ")"
                             : human_size(size) + " (not rounded)"};
}

// scratch_size_node(): every form rounds the per-node size.
AreaSize node_area(const ScratchRules& rules, const ScratchParam& param, const SizingR& r, unsigned index,
                   unsigned node) {
    const std::uint64_t a = rules.align;
    const std::string al = human_size(a);
    AreaSize area{.index = index, .kind = ScratchAreaKind::node, .node = node, .size = 0, .formula = ""};
    if (param.scale) {
        auto it = r.node.find(node);
        const std::uint64_t rn = it == r.node.end() ? 0 : it->second;
        area.size = kround_up(rn * param.scale / 100, a);
        area.formula = "round_up(R_node" + std::to_string(node) + " " + mib(rn) + " x " +
                       std::to_string(param.scale) + "%, " + al + ")";
    } else {
        area.size = kround_up(param.pernode, a);
        area.formula = "round_up(" + human_size(param.pernode) + ", " + al + ")";
    }
    return area;
}

}  // namespace

std::vector<AreaSize> compute_area_sizes(const ScratchRules& rules, const ScratchParam& param,
                                         const SizingR& r, const std::vector<unsigned>& nodes) {
    std::vector<AreaSize> out;
    if (param.scale) {
        auto [lowmem, global] = scaled_low_global(rules, param, r);
        out.push_back(std::move(lowmem));
        out.push_back(std::move(global));
    } else {
        out.push_back(fixed_area(rules, 0, param.lowmem));
        out.push_back(fixed_area(rules, 1, param.global));
    }
    unsigned index = 2;
    for (unsigned n : nodes) out.push_back(node_area(rules, param, r, index++, n));
    return out;
}

namespace {

SizingR sizing_r(const ReservedEstimate& e, const std::vector<unsigned>& nodes, int direction) {
    SizingR r;
    auto adj = [&](std::uint64_t v, std::uint64_t u) {
        if (direction < 0) return v > u ? v - u : 0;
        if (direction > 0) return v + u;
        return v;
    };
    r.low = adj(e.low(), e.low_uncertainty());
    r.total = adj(e.total(), e.uncertainty());
    if (r.low > r.total) r.low = r.total;
    for (unsigned n : nodes) r.node[n] = adj(e.node_total(n), e.node_uncertainty(n));
    return r;
}

// ScratchVerdict lists the area verdicts best first.
ScratchVerdict worse_verdict(ScratchVerdict a, ScratchVerdict b) {
    return std::max(a, b);
}

// The areas a kexec would see, with addresses: the real ones, or the predicted
// sizes at made-up addresses (lowmem at 256 MiB, the rest above 4 GiB).
std::vector<ScratchArea> areas_for_fit(const ScratchPlan& plan, const ScratchInputs& in, bool* predicted) {
    if (in.current_areas && !in.current_areas->empty()) {
        *predicted = false;
        return *in.current_areas;
    }
    *predicted = true;
    std::vector<ScratchArea> out;
    std::uint64_t high = k4GiB;
    for (const auto& a : plan.areas) {
        ScratchArea s;
        s.index = a.index;
        s.kind = to_string(a.kind);
        s.node = a.node;
        s.size = a.predicted.value_or(0);
        if (a.kind == ScratchAreaKind::lowmem) {
            s.phys = 256 * kMiB;
        } else {
            s.phys = high;
            high += kround_up(s.size, 4 * kMiB) + 4 * kMiB;
        }
        out.push_back(s);
    }
    return out;
}

std::uint64_t area_end(const ScratchArea& a) {
    return a.phys + a.size;
}

std::uint64_t ram_below_4g(const ScratchInputs& in) {
    std::uint64_t bytes = 0;
    for (const auto& r : in.system_ram) bytes += Layout::below_4g(r);
    return bytes;
}

// The memory the kernel could carve an area from, before its own reservations.
struct AreaRoom {
    std::uint64_t bytes = 0;
    std::string where;
};

AreaRoom area_room(const ScratchPlan& plan, const ScratchInputs& in, const Layout& l, const AreaCheck& a) {
    auto less = [](std::uint64_t have, std::uint64_t taken) { return have > taken ? have - taken : 0; };
    switch (a.kind) {
        case ScratchAreaKind::lowmem:
            return {less(ram_below_4g(in), plan.reserved.low()), "memory below 4 GiB less R_low"};
        case ScratchAreaKind::global: {
            const std::uint64_t lowmem = plan.areas.empty() ? 0 : plan.areas[0].predicted.value_or(0);
            return {less(l.ram_total, plan.reserved.total() + lowmem),
                    "all memory less R and the lowmem area"};
        }
        case ScratchAreaKind::node: break;
    }
    if (!a.node) return {};
    const NodeTopology* n = l.node(*a.node);
    return {less(n ? n->present() : 0, plan.reserved.node_total(*a.node)),
            "node " + std::to_string(*a.node) + " memory less its R"};
}

// Areas larger than the memory that could hold them: the kernel disables KHO.
void check_allocation(ScratchPlan& plan, const ScratchInputs& in, const Layout& l) {
    std::uint64_t all = 0;
    for (const auto& a : plan.areas) {
        if (a.kind != ScratchAreaKind::node) all += a.predicted.value_or(0);
        if (!a.predicted) continue;
        const std::uint64_t size = *a.predicted;
        const AreaRoom room = area_room(plan, in, l, a);
        if (a.kind == ScratchAreaKind::node && a.node) all += size;
        const std::string area = "area " + std::to_string(a.index) + " (" + to_string(a.kind) +
                                 (a.node ? " " + std::to_string(*a.node) : "") + ", " + human_size(size) +
                                 ")";
        if (size > room.bytes)
            plan.allocation_risks.push_back(area + " is larger than the " + human_size(room.bytes) + " of " +
                                            room.where +
                                            ": the allocation fails and the kernel disables KHO");
        else if (size > room.bytes / 4 * 3)
            plan.allocation_risks.push_back(area + " needs " + human_size(size) + " contiguous out of " +
                                            human_size(room.bytes) + " of " + room.where +
                                            ": fragmentation may make the allocation fail (KHO disabled)");
    }
    const std::uint64_t r_all = plan.reserved.total();
    if (all + r_all > l.ram_total)
        plan.allocation_risks.push_back("the areas (" + human_size(all) + ") and R (" + human_size(r_all) +
                                        ") add up to more than the " + human_size(l.ram_total) +
                                        " of memory");
}

// ---------------------------------------------------------------------------
// this boot

// The model's sizes with R at its estimate and at both ends of its uncertainty.
struct PredictedSizes {
    std::vector<AreaSize> point, low, high;
};

PredictedSizes predict_sizes(const ScratchPlan& plan) {
    auto sizes = [&plan](int direction) {
        return compute_area_sizes(plan.rules, plan.param, sizing_r(plan.reserved, plan.area_nodes, direction),
                                  plan.area_nodes);
    };
    return {.point = sizes(0), .low = sizes(-1), .high = sizes(+1)};
}

// Whether debugfs can confirm the prediction, and why not.
void note_prediction(ScratchPlan& plan, const ScratchInputs& in) {
    if (in.incoming) {
        plan.prediction_applies = false;
        plan.prediction_note =
            "this boot came through a KHO kexec: the kernel reused the incoming scratch areas and ignored " +
            plan.rules.param + "=; a change only takes effect after a cold boot";
    } else if (!in.kho_active) {
        plan.prediction_note = in.debugfs_mounted
                                   ? "KHO is not active on this boot (no kho/ in debugfs): the sizes "
                                     "are what kho=on would give"
                                   : "debugfs is not mounted: the current areas cannot be read";
    }
}

std::string debugfs_vs_model(const AreaCheck& c) {
    return "debugfs " + human_size(*c.actual) + ", model " + human_size(*c.predicted);
}

// The area's share of R's uncertainty, and the parts it comes from.
std::string within_alignment_reason(const ScratchPlan& plan, const AreaCheck& c) {
    const ReservedEstimate& r = plan.reserved;
    std::uint64_t unc = 0;
    if (c.kind == ScratchAreaKind::lowmem)
        unc = r.low_uncertainty();
    else if (c.kind == ScratchAreaKind::global)
        unc = r.uncertainty();
    else if (c.node)
        unc = r.node_uncertainty(*c.node);
    std::string parts;
    for (const auto& p : r.parts)
        if (p.uncertainty && (c.kind != ScratchAreaKind::node || p.node == c.node))
            parts += (parts.empty() ? "" : ", ") + std::string(to_string(p.kind)) + " +- " +
                     human_size(p.uncertainty);
    return debugfs_vs_model(c) + ": R is known to " + "+- " + human_size(unc) + " (" + parts +
           ") and that straddles a " + human_size(plan.rules.align) + " rounding step";
}

std::string incomplete_reason(const ScratchPlan& plan, const AreaCheck& c) {
    std::string list;
    for (const auto& u : plan.reserved.unknown) list += (list.empty() ? "" : "; ") + u;
    return debugfs_vs_model(c) + ": R is a lower bound, these inputs could not be read: " + list;
}

// Sizes that differ: by less than a rounding step inside R's range, larger
// with inputs missing, or a plain mismatch.
void judge_difference(const ScratchPlan& plan, AreaCheck& c) {
    const std::uint64_t diff = *c.actual > *c.predicted ? *c.actual - *c.predicted : *c.predicted - *c.actual;
    const bool in_range = *c.actual >= c.predicted_min && *c.actual <= c.predicted_max;
    if (diff <= plan.rules.align && in_range) {
        c.verdict = ScratchVerdict::within_alignment;
        c.reason = within_alignment_reason(plan, c);
    } else if (!plan.reserved.unknown.empty() && *c.actual > *c.predicted) {
        c.verdict = ScratchVerdict::incomplete;
        c.reason = incomplete_reason(plan, c);
    } else {
        c.verdict = ScratchVerdict::mismatch;
        c.reason = debugfs_vs_model(c) + " (range " + human_size(c.predicted_min) + " .. " +
                   human_size(c.predicted_max) + ")";
    }
}

void judge_area(const ScratchPlan& plan, std::size_t current_count, AreaCheck& c) {
    if (!c.actual) {
        c.verdict = ScratchVerdict::missing;
        c.reason =
            "the model expects this area but debugfs lists only " + std::to_string(current_count) + " areas";
    } else if (!c.predicted) {
        c.verdict = ScratchVerdict::unexpected;
        c.reason = "debugfs lists an area the model does not expect (node count differs)";
    } else if (*c.actual == *c.predicted) {
        c.verdict = ScratchVerdict::exact;
    } else {
        judge_difference(plan, c);
    }
}

// Area i as the model predicts it, next to the one debugfs lists.
AreaCheck check_area(const ScratchPlan& plan, const ScratchInputs& in, const PredictedSizes& sizes,
                     std::size_t i) {
    AreaCheck c;
    c.index = static_cast<unsigned>(i);
    if (i < sizes.point.size()) {
        c.kind = sizes.point[i].kind;
        c.node = sizes.point[i].node;
        c.predicted = sizes.point[i].size;
        c.predicted_min = std::min(sizes.low[i].size, sizes.high[i].size);
        c.predicted_max = std::max(sizes.low[i].size, sizes.high[i].size);
        c.formula = sizes.point[i].formula;
    }
    if (!in.current_areas) return c;
    if (i < in.current_areas->size()) {
        const ScratchArea& a = (*in.current_areas)[i];
        c.actual = a.size;
        if (i >= sizes.point.size()) {
            c.kind = area_kind_at(a.index);
            c.node = a.node;
        }
    }
    if (plan.prediction_applies) judge_area(plan, in.current_areas->size(), c);
    return c;
}

ScratchVerdict plan_verdict(const ScratchPlan& plan, const ScratchInputs& in) {
    if (!plan.prediction_applies) return ScratchVerdict::not_applicable;
    if (!in.current_areas)
        return (in.kho_active || !in.debugfs_mounted) ? ScratchVerdict::unknown : ScratchVerdict::no_kho;
    ScratchVerdict verdict = ScratchVerdict::exact;
    for (const auto& a : plan.areas)
        if (a.verdict) verdict = worse_verdict(verdict, *a.verdict);
    return verdict;
}

// This boot: what the kernel should have made, next to what it made.
void check_this_boot(ScratchPlan& plan, const ScratchInputs& in, const Layout& l) {
    const PredictedSizes sizes = predict_sizes(plan);
    if (plan.param.scale && plan.reserved.total() > UINT64_MAX / plan.param.scale)
        plan.warnings.push_back("R x " + std::to_string(plan.param.scale) +
                                "% overflows 64 bits: the kernel's arithmetic wraps (modelled as it does)");
    note_prediction(plan, in);
    std::size_t count = sizes.point.size();
    if (in.current_areas && plan.prediction_applies) count = std::max(count, in.current_areas->size());
    for (std::size_t i = 0; i < count; ++i) plan.areas.push_back(check_area(plan, in, sizes, i));
    plan.verdict = plan_verdict(plan, in);
    if (!plan.reserved.unknown.empty() && plan.prediction_applies)
        plan.warnings.push_back("R is a lower bound: " + std::to_string(plan.reserved.unknown.size()) +
                                " input(s) could not be read (see reserved.unknown)");
    if (!in.incoming) check_allocation(plan, in, l);
}

// ---------------------------------------------------------------------------
// the next kexec

// Where the next kexec's images go.
struct KexecImages {
    std::vector<ScratchArea> areas;   // the areas they are placed in
    std::vector<std::uint64_t> used;  // bytes the images take of each area
    std::uint64_t bytes = 0;          // all of the images
};

void place_next_kernel(ScratchPlan& plan, const ScratchInputs& in, KexecImages& k) {
    auto sizes =
        image_sizes(*in.next_kernel, in.next_initrd_size, plan.next_cmdline.size() + 1, k.areas.size());
    auto segs = kho_kexec_segments(sizes, KexecLoaderModel{});
    plan.images = place_segments(k.areas, segs);
    for (const auto& s : plan.images->segments) {
        k.bytes += s.memsz;
        if (s.area && s.memsz)
            for (std::size_t i = 0; i < k.areas.size(); ++i)
                if (k.areas[i].index == *s.area) k.used[i] += s.memsz;
    }
    plan.images_note = plan.images->message;
    if (!plan.images->fits) plan.fits_ok = false;
}

// Without --kernel, the running kernel's image and initrd stand in.
void place_stand_ins(ScratchPlan& plan, KexecImages& k) {
    for (const auto& p : plan.reserved.parts)
        if (p.loaded) k.bytes += p.bytes;
    k.bytes += 1 * kMiB;  // boot params, purgatory, the scratch array copy
    plan.images_note = "no --kernel given: the running kernel's image and initrd (" + human_size(k.bytes) +
                       " with boot params and purgatory) stand in for the next kernel's";
    // Place them like kexec would: the first area with room, lowmem first.
    for (std::size_t i = 0; i < k.areas.size(); ++i)
        if (k.areas[i].size >= k.bytes) {
            k.used[i] += k.bytes;
            break;
        }
}

// The images themselves: each segment inside one area.
FitCheck images_fit(const ScratchPlan& plan, const ScratchInputs& in, const KexecImages& k) {
    FitCheck f;
    f.what = in.next_kernel ? "kexec segments of " + in.next_kernel->path
                            : "kexec segments (the running kernel's image and initrd as stand-ins)";
    f.ok = plan.images ? plan.images->fits : false;
    if (plan.images && !plan.images->fits) {
        f.need = plan.images->needed;
        f.have = plan.images->best_free;
    } else {
        for (std::size_t i = 0; i < k.areas.size(); ++i)
            if (k.used[i] && k.used[i] >= f.need) {
                f.need = k.used[i];
                f.have = k.areas[i].size;
                f.ok = true;
            }
        if (!f.ok) {
            f.need = k.bytes;
            for (const auto& ar : k.areas) f.have = std::max(f.have, ar.size);
        }
    }
    f.detail = plan.images ? plan.images->message : "no area holds " + human_size(k.bytes) + " in one piece";
    if (f.ok && !plan.images) f.detail = "kexec would put them in the first area with room";
    return f;
}

// What the areas have left after the images.
struct FreeRoom {
    std::uint64_t total = 0;
    std::uint64_t low = 0;  // in areas below 4 GiB
    std::uint64_t largest_low = 0;
    std::uint64_t largest_any = 0;
    std::map<unsigned, std::uint64_t> node;
};

FreeRoom free_room(const KexecImages& k) {
    FreeRoom room;
    for (std::size_t i = 0; i < k.areas.size(); ++i) {
        const ScratchArea& a = k.areas[i];
        const std::uint64_t f = a.size > k.used[i] ? a.size - k.used[i] : 0;
        room.total += f;
        room.largest_any = std::max(room.largest_any, f);
        if (area_end(a) <= k4GiB) {
            room.low += f;
            room.largest_low = std::max(room.largest_low, f);
        }
        if (area_kind_at(a.index) == ScratchAreaKind::node && a.node) room.node[*a.node] = f;
    }
    return room;
}

// A contiguous early allocation must fit in one area's free room.
FitCheck contiguous_fit(const ReservedPart& p, const FreeRoom& room, const std::string& against) {
    const std::uint64_t have = p.low_only ? room.largest_low : room.largest_any;
    const char* below = p.low_only ? " below 4 GiB" : "";
    FitCheck f = capacity_check(
        to_string(p.kind) + (" (" + human_size(p.bytes) + ") in one area") + below, p.bytes, have,
        "memblock allocates it in one piece, and on a KHO boot only from scratch; the largest free room in " +
            against + below + " is " + human_size(have));
    if (is_crash_kernel(p.kind))
        f.detail += "; without it the next kernel boots with no crash kernel (crash_size 0)";
    else if (p.kind == ReservedPartKind::swiotlb_buffer || p.kind == ReservedPartKind::swiotlb_slots)
        f.detail += "; without it swiotlb halves its size until it fits, or runs without bounce buffers";
    return f;
}

// The next kernel's early allocations against the room the images leave.
void early_fits(ScratchPlan& plan, const KexecImages& k) {
    const FreeRoom room = free_room(k);
    const std::string against =
        plan.fit_against == ScratchFitAgainst::predicted ? "the predicted areas" : "the current areas";
    std::uint64_t need_low = 0;
    std::uint64_t need_all = 0;
    std::map<unsigned, std::uint64_t> need_node;
    for (const auto& p : plan.next_early.parts) {
        need_all += p.bytes;
        if (p.low_only) need_low += p.bytes;
        if (p.node) need_node[*p.node] += p.bytes;
        if (p.contiguous) plan.fits.push_back(contiguous_fit(p, room, against));
    }
    plan.fits.push_back(
        capacity_check("early allocations below 4 GiB", need_low, room.low,
                       "swiotlb, the real-mode trampoline and a low crash kernel need scratch below 4 GiB"));
    for (const auto& [node, need] : need_node) {
        auto it = room.node.find(node);
        FitCheck f = capacity_check(
            "node " + std::to_string(node) + " early allocations", need,
            it == room.node.end() ? 0 : it->second,
            "memmap and percpu ask for their node; what does not fit there falls back to the other areas");
        f.fatal = false;
        plan.fits.push_back(f);
    }
    plan.fits.push_back(capacity_check(
        "all early allocations", need_all, room.total,
        "until the buddy allocator runs, a KHO boot allocates only from scratch (after the images)"));
}

// The next kexec, in the current areas (or the predicted ones when KHO is off).
KexecImages fit_next_kexec(ScratchPlan& plan, const ScratchInputs& in, const ScratchPlanOptions& options) {
    plan.next_cmdline = options.next_cmdline.value_or(in.cmdline);
    plan.next_early = estimate_reserved(in, Cmdline::parse(plan.next_cmdline));
    std::erase_if(plan.next_early.parts, [](const ReservedPart& p) { return p.loaded; });
    bool predicted = false;
    KexecImages k{.areas = areas_for_fit(plan, in, &predicted), .used = {}, .bytes = 0};
    k.used.assign(k.areas.size(), 0);
    plan.fit_against = predicted ? ScratchFitAgainst::predicted : ScratchFitAgainst::current;
    if (in.next_kernel)
        place_next_kernel(plan, in, k);
    else
        place_stand_ins(plan, k);
    plan.fits.push_back(images_fit(plan, in, k));
    early_fits(plan, k);
    for (const auto& f : plan.fits)
        if (!f.ok && f.fatal) plan.fits_ok = false;
    return k;
}

// ---------------------------------------------------------------------------
// the recommendation

// The next kernel's early needs, by the area the kernel would take them from.
struct EarlyNeeds {
    std::uint64_t low = 0;
    std::uint64_t global = 0;
    std::map<unsigned, std::uint64_t> node;
    std::uint64_t largest_low = 0;  // the largest contiguous low allocation
};

std::string need_line(const ReservedPart& p) {
    return to_string(p.kind) + (" " + pm(p.bytes, p.uncertainty));
}

EarlyNeeds early_needs(const ScratchPlan& plan, Recommendation& rec) {
    EarlyNeeds needs;
    for (const auto& p : plan.next_early.parts) {
        const std::uint64_t bytes = p.bytes + p.uncertainty;
        if (p.low_only) {
            needs.low += bytes;
            needs.largest_low = std::max(needs.largest_low, bytes);
            rec.lowmem.why.push_back(need_line(p));
        } else if (p.node && std::find(plan.area_nodes.begin(), plan.area_nodes.end(), *p.node) !=
                                 plan.area_nodes.end()) {
            needs.node[*p.node] += bytes;
        } else {
            needs.global += bytes;
            rec.global.why.push_back(need_line(p));
        }
    }
    return needs;
}

void recommend_lowmem(RecommendedArea& lowmem, const EarlyNeeds& needs, std::uint64_t images_bytes) {
    lowmem.why.insert(lowmem.why.begin(),
                      "kexec segments " + human_size(images_bytes) +
                          " (kexec tries the lowmem area first; swiotlb must still fit next to them)");
    // KASLR puts the next kernel's image anywhere in scratch, so the free
    // room can be split in two: count the largest contiguous low allocation
    // (swiotlb) twice, or the kernel halves swiotlb (seen in the VM: 64 -> 32 MiB).
    if (needs.largest_low)
        lowmem.why.push_back("room for the largest contiguous allocation again, " +
                             human_size(needs.largest_low) +
                             ": the next kernel's image may split the free room");
    lowmem.need = images_bytes + needs.low + needs.largest_low;
}

// Every node gets the same size: the largest node's need.
void recommend_pernode(const ScratchPlan& plan, RecommendedArea& pernode, const EarlyNeeds& needs) {
    unsigned worst = plan.area_nodes.empty() ? 0 : plan.area_nodes.front();
    for (const auto& [n, v] : needs.node)
        if (v > pernode.need) {
            pernode.need = v;
            worst = n;
        }
    for (const auto& p : plan.next_early.parts)
        if (p.node == worst && !p.low_only) pernode.why.push_back(need_line(p));
    if (!pernode.why.empty())
        pernode.why.insert(pernode.why.begin(),
                           "the largest node, " + std::to_string(worst) + ": every node gets this size");
}

std::uint64_t with_headroom(const ScratchRules& rules, unsigned percent, std::uint64_t need) {
    std::uint64_t v = need + need / 100 * percent + need % 100 * percent / 100;
    v = kround_up(v, rules.align);
    if (v == 0 && !rules.zero_size_allowed) v = rules.align;
    return v;
}

void recommendation_notes(const ScratchPlan& plan, const ScratchInputs& in, Recommendation& rec) {
    rec.notes.push_back(
        "takes effect on the next cold boot only: a KHO boot reuses the incoming areas and ignores " +
        rec.param + "=");
    rec.notes.push_back("headroom " + std::to_string(rec.headroom_percent) +
                        "% on each need, rounded up to " + human_size(plan.rules.align));
    if (!plan.next_early.unknown.empty())
        rec.notes.push_back("some inputs were missing: the needs are lower bounds");
    const std::uint64_t ram_low = ram_below_4g(in);
    if (rec.lowmem.size + plan.reserved.low() > ram_low)
        rec.notes.push_back("the lowmem area (" + human_size(rec.lowmem.size) + ") does not fit in the " +
                            human_size(ram_low) +
                            " below 4 GiB next to R_low: lower the low needs (swiotlb=, "
                            "crashkernel=,high) or the kernel will disable KHO");
}

// What to boot cold with.
void recommend(ScratchPlan& plan, const ScratchInputs& in, unsigned headroom_percent,
               std::uint64_t images_bytes) {
    Recommendation& rec = plan.recommendation;
    rec.param = plan.rules.param;
    rec.headroom_percent = headroom_percent;
    rec.lowmem.kind = ScratchAreaKind::lowmem;
    rec.global.kind = ScratchAreaKind::global;
    rec.pernode.kind = ScratchAreaKind::node;
    const EarlyNeeds needs = early_needs(plan, rec);
    recommend_lowmem(rec.lowmem, needs, images_bytes);
    rec.global.need = needs.global;
    recommend_pernode(plan, rec.pernode, needs);
    for (RecommendedArea* a : {&rec.lowmem, &rec.global, &rec.pernode})
        a->size = with_headroom(plan.rules, headroom_percent, a->need);
    rec.value = cmdline_size(rec.lowmem.size) + "," + cmdline_size(rec.global.size) + "," +
                cmdline_size(rec.pernode.size);
    rec.word = rec.param + "=" + rec.value;
    rec.total = rec.lowmem.size + rec.global.size + rec.pernode.size * plan.area_nodes.size();
    for (const auto& s : compute_area_sizes(plan.rules, ScratchParam{},
                                            sizing_r(plan.reserved, plan.area_nodes, 0), plan.area_nodes))
        rec.default_total += s.size;
    recommendation_notes(plan, in, rec);
}

// ---------------------------------------------------------------------------
// the plan

// The running kernel: its rules, kho_scratch=, R and the nodes that get an area.
ScratchPlan describe_boot(const ScratchInputs& in) {
    ScratchPlan plan;
    plan.sysroot = in.sysroot;
    plan.release = in.release;
    plan.rules = scratch_rules_for(in.release, &plan.rules_reason);
    plan.abi = in.abi;
    plan.kho_active = in.kho_active;
    plan.incoming = in.incoming;
    plan.cmdline = in.cmdline;
    const Cmdline cmdline = Cmdline::parse(in.cmdline);
    plan.param = parse_scratch_param(cmdline, plan.rules);
    plan.reserved = estimate_reserved(in, cmdline);
    for (const auto& n : in.nodes)
        if (plan.rules.online_nodes ? n.online : n.has_memory) plan.area_nodes.push_back(n.id);
    if (plan.rules.online_nodes)
        for (const auto& n : in.nodes)
            if (n.online && !n.has_memory)
                plan.warnings.push_back(
                    "node " + std::to_string(n.id) + " is online without memory: " + plan.rules.id +
                    " kernels try to allocate a scratch area on it, fail and disable KHO");
    return plan;
}

void warn_about_param(ScratchPlan& plan) {
    for (const auto& r : plan.param.rejected)
        plan.warnings.push_back("the kernel refuses " + plan.rules.param + "=" + r);
    if (plan.param.fixed() && plan.param.lowmem == 0 && plan.param.global == 0 && plan.param.pernode == 0)
        plan.warnings.push_back(plan.rules.param +
                                "=0% leaves every area empty: no kexec image can be loaded");
}

}  // namespace

Result<ScratchPlan> plan_scratch(const ScratchInputs& in, const ScratchPlanOptions& options) {
    if (options.headroom_percent > 1000)
        return plain_error("--headroom",
                           std::to_string(options.headroom_percent) + "% is absurd (at most 1000%)");
    if (in.nodes.empty()) return plain_error(in.sysroot, "no NUMA node was found");
    const Layout layout(in);
    ScratchPlan plan = describe_boot(in);
    check_this_boot(plan, in, layout);
    const KexecImages images = fit_next_kexec(plan, in, options);
    recommend(plan, in, options.headroom_percent, images.bytes);
    warn_about_param(plan);
    return plan;
}

// ---------------------------------------------------------------------------
// output

namespace {

nlohmann::json opt_u64(const std::optional<std::uint64_t>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}
nlohmann::json opt_node(const std::optional<unsigned>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

nlohmann::json reserved_json(const ReservedEstimate& e, const std::vector<unsigned>& nodes) {
    using nlohmann::json;
    json parts = json::array();
    for (const auto& p : e.parts)
        parts.push_back({{"name", to_string(p.kind)},
                         {"source", p.source},
                         {"bytes", p.bytes},
                         {"uncertainty", p.uncertainty},
                         {"node", opt_node(p.node)},
                         {"below_4g", p.below_4g},
                         {"loaded", p.loaded},
                         {"low_only", p.low_only},
                         {"contiguous", p.contiguous}});
    json per_node = json::object();
    for (unsigned n : nodes)
        per_node[std::to_string(n)] = {{"bytes", e.node_total(n)}, {"uncertainty", e.node_uncertainty(n)}};
    return {{"total", e.total()},  {"uncertainty", e.uncertainty()},
            {"low", e.low()},      {"low_uncertainty", e.low_uncertainty()},
            {"node", per_node},    {"parts", parts},
            {"unknown", e.unknown}};
}

}  // namespace

nlohmann::json to_json(const ScratchPlan& plan) {
    using nlohmann::json;
    json out;
    out["schema"] = scratch_plan_schema_version;
    out["sysroot"] = plan.sysroot;
    out["release"] = plan.release ? json(*plan.release) : json(nullptr);
    out["rules"] = {{"id", plan.rules.id},       {"verified", plan.rules.verified},
                    {"why", plan.rules_reason},  {"param", plan.rules.param},
                    {"align", plan.rules.align}, {"nodes", plan.rules.online_nodes ? "online" : "N_MEMORY"}};
    out["kho"] = {{"abi", to_string(plan.abi)}, {"active", plan.kho_active}, {"incoming", plan.incoming}};
    out["cmdline"] = plan.cmdline;
    out["param"] = {{"form", plan.param.fixed() ? "fixed" : "scale"},
                    {"scale", plan.param.scale},
                    {"lowmem", plan.param.lowmem},
                    {"global", plan.param.global},
                    {"pernode", plan.param.pernode},
                    {"describe", plan.param.describe()},
                    {"accepted", plan.param.accepted},
                    {"rejected", plan.param.rejected}};
    out["reserved"] = reserved_json(plan.reserved, plan.area_nodes);
    out["area_nodes"] = plan.area_nodes;

    json areas = json::array();
    for (const auto& a : plan.areas)
        areas.push_back({{"index", a.index},
                         {"kind", to_string(a.kind)},
                         {"node", opt_node(a.node)},
                         {"predicted", opt_u64(a.predicted)},
                         {"predicted_min", a.predicted_min},
                         {"predicted_max", a.predicted_max},
                         {"actual", opt_u64(a.actual)},
                         {"verdict", a.verdict ? json(to_string(*a.verdict)) : json(nullptr)},
                         {"reason", a.reason},
                         {"formula", a.formula}});
    out["prediction"] = {{"applies", plan.prediction_applies},
                         {"note", plan.prediction_note},
                         {"verdict", to_string(plan.verdict)},
                         {"areas", areas},
                         {"allocation_risks", plan.allocation_risks}};

    json fits = json::array();
    for (const auto& f : plan.fits)
        fits.push_back({{"what", f.what},
                        {"need", f.need},
                        {"have", f.have},
                        {"margin", f.margin()},
                        {"ok", f.ok},
                        {"fatal", f.fatal},
                        {"detail", f.detail}});
    json images = nullptr;
    if (plan.images) {
        json segs = json::array();
        for (const auto& s : plan.images->segments)
            segs.push_back({{"name", s.request.name},
                            {"memsz", s.memsz},
                            {"addr", opt_u64(s.addr)},
                            {"area", s.area ? json(*s.area) : json(nullptr)}});
        images = {{"fits", plan.images->fits},
                  {"message", plan.images->message},
                  {"shortfall", plan.images->shortfall},
                  {"segments", segs}};
    }
    out["next"] = {{"against", to_string(plan.fit_against)},
                   {"cmdline", plan.next_cmdline},
                   {"images", images},
                   {"images_note", plan.images_note},
                   {"early", reserved_json(plan.next_early, plan.area_nodes)},
                   {"fits", fits},
                   {"ok", plan.fits_ok}};

    const Recommendation& r = plan.recommendation;
    auto area_json = [](const RecommendedArea& a) {
        return json{{"need", a.need}, {"size", a.size}, {"why", a.why}};
    };
    out["recommendation"] = {{"param", r.param},
                             {"value", r.value},
                             {"word", r.word},
                             {"headroom_percent", r.headroom_percent},
                             {"lowmem", area_json(r.lowmem)},
                             {"global", area_json(r.global)},
                             {"pernode", area_json(r.pernode)},
                             {"total", r.total},
                             {"default_total", r.default_total},
                             {"notes", r.notes}};
    out["warnings"] = plan.warnings;
    return out;
}

std::string format_scratch_plan(const ScratchPlan& plan) {
    std::ostringstream o;
    o << "Kernel " << plan.release.value_or("(unknown release)") << ": KHO scratch rules " << plan.rules.id
      << " (" << plan.rules_reason << "; " << plan.rules.verified << ")\n";
    o << plan.rules.param << ": " << plan.param.describe();
    for (const auto& r : plan.param.rejected) o << "\n  refused: " << r;
    o << "\n\n";

    o << "R, the kernel's own memblock reservations ("
      << pm(plan.reserved.total(), plan.reserved.uncertainty()) << "; below 4 GiB "
      << pm(plan.reserved.low(), plan.reserved.low_uncertainty()) << "):\n";
    for (const auto& p : plan.reserved.parts) {
        char line[160];
        std::snprintf(line, sizeof line, "  %-44s %14s  %-8s ", to_string(p.kind),
                      pm(p.bytes, p.uncertainty).c_str(), node_name(p.node).c_str());
        o << line << p.source << "\n";
    }
    for (const auto& u : plan.reserved.unknown) o << "  unknown: " << u << "\n";
    for (unsigned n : plan.area_nodes)
        o << "  R(node " << n << ") = " << pm(plan.reserved.node_total(n), plan.reserved.node_uncertainty(n))
          << "\n";

    o << "\nThis boot's areas";
    if (!plan.prediction_note.empty()) o << " (" << plan.prediction_note << ")";
    o << ":\n";
    for (const auto& a : plan.areas) {
        char line[200];
        std::string name = to_string(a.kind) + (a.node ? " " + std::to_string(*a.node) : "");
        std::snprintf(line, sizeof line, "  [%u] %-8s predicted %-10s debugfs %-10s %s", a.index,
                      name.c_str(), a.predicted ? human_size(*a.predicted).c_str() : "-",
                      a.actual ? human_size(*a.actual).c_str() : "-", a.verdict ? to_string(*a.verdict) : "");
        o << line << "\n      " << a.formula << "\n";
        if (!a.reason.empty()) o << "      " << a.reason << "\n";
    }
    o << "  verdict: " << to_string(plan.verdict) << "\n";
    for (const auto& r : plan.allocation_risks) o << "  risk: " << r << "\n";

    o << "\nNext kexec, against the " << to_string(plan.fit_against) << " areas:\n";
    o << "  images: " << plan.images_note << "\n";
    for (const auto& f : plan.fits) {
        o << "  " << (f.ok ? "ok  " : (f.fatal ? "FAIL" : "warn")) << " " << f.what << ": need "
          << human_size(f.need) << ", have " << human_size(f.have) << ", margin "
          << (f.margin() < 0 ? "-" : "")
          << human_size(static_cast<std::uint64_t>(f.margin() < 0 ? -f.margin() : f.margin())) << "\n";
    }

    const Recommendation& r = plan.recommendation;
    o << "\nRecommended for the next cold boot: " << r.word << "\n";
    for (const RecommendedArea* a : {&r.lowmem, &r.global, &r.pernode}) {
        o << "  " << param_field(a->kind) << ": " << human_size(a->size) << " (need " << human_size(a->need)
          << ")\n";
        for (const auto& w : a->why) o << "      " << w << "\n";
    }
    o << "  total " << human_size(r.total) << " (the default 200% would reserve "
      << human_size(r.default_total) << ")\n";
    for (const auto& n : r.notes) o << "  note: " << n << "\n";
    for (const auto& w : plan.warnings) o << "warning: " << w << "\n";
    return o.str();
}

nlohmann::json scratch_show_json(const KhoStatus& kho) {
    using nlohmann::json;
    json out;
    out["schema"] = scratch_plan_schema_version;
    out["active"] = kho.active ? json(*kho.active) : json(nullptr);
    out["abi"] = to_string(kho.abi);
    out["incoming"] = kho.incoming;
    out["param"] = kho.scratch_param_name;
    out["value"] = kho.scratch_param ? json(*kho.scratch_param) : json(nullptr);
    out["debugfs"] = {{"mounted", kho.debugfs.mounted},
                      {"mounted_now", kho.debugfs.mounted_now},
                      {"mountpoint", kho.debugfs.mountpoint},
                      {"error", kho.debugfs.error ? json(kho.debugfs.error->describe()) : json(nullptr)}};
    out["status"] = to_string(kho.scratch.state);
    out["path"] = kho.scratch.path;
    if (kho.scratch.state == ProbeState::error) out["error"] = kho.scratch.error.describe();
    json areas = json::array();
    std::uint64_t total = 0;
    if (kho.scratch.value)
        for (const auto& a : *kho.scratch.value) {
            total += a.size;
            areas.push_back({{"index", a.index},
                             {"kind", a.kind},
                             {"node", opt_node(a.node)},
                             {"phys", a.phys},
                             {"phys_hex", hex(a.phys)},
                             {"size", a.size},
                             {"size_human", human_size(a.size)}});
        }
    out["areas"] = kho.scratch.value ? areas : json(nullptr);
    out["total"] = kho.scratch.value ? json(total) : json(nullptr);
    return out;
}

std::string format_scratch_show(const KhoStatus& kho) {
    std::ostringstream o;
    if (!kho.scratch.ok()) {
        o << "No KHO scratch areas: ";
        if (kho.scratch.state == ProbeState::error)
            o << kho.scratch.error.describe();
        else if (kho.debugfs.error)
            o << kho.debugfs.error->describe();
        else
            o << kho.active_reason;
        o << "\n";
        return o.str();
    }
    o << "KHO scratch areas (" << kho.scratch.path << (kho.incoming ? ", inherited through a KHO kexec" : "")
      << "; " << kho.scratch_param_name << "=" << kho.scratch_param.value_or("(not given)") << "):\n";
    std::uint64_t total = 0;
    for (const auto& a : *kho.scratch.value) {
        char line[160];
        std::string name = a.kind + (a.node ? " " + std::to_string(*a.node) : "");
        std::snprintf(line, sizeof line, "  [%u] %-8s %18s - %-18s %s\n", a.index, name.c_str(),
                      hex(a.phys).c_str(), hex(a.phys + a.size).c_str(), human_size(a.size).c_str());
        o << line;
        total += a.size;
    }
    o << "  total " << human_size(total) << "\n";
    return o.str();
}

Result<ScratchPlan> plan_scratch_for(Sysroot& root, const ScratchPlanRequest& request) {
    DebugfsState debugfs = ensure_debugfs(root, request.may_mount_debugfs);
    ScratchInputOptions in_opts;
    in_opts.debugfs_mounted = debugfs.mounted;
    if (debugfs.error) in_opts.debugfs_error = debugfs.error->describe();
    in_opts.kernel = request.kernel;
    in_opts.initrd = request.initrd;
    auto inputs = read_scratch_inputs(root, in_opts);
    if (!inputs) return inputs.error();
    ScratchPlanOptions options;
    options.headroom_percent = request.headroom_percent;
    options.next_cmdline = request.next_cmdline;
    return plan_scratch(*inputs, options);
}

}  // namespace khod
