// Internals shared by the files of the KHO scratch planner; not an API.
//
// scratch_reserved.cpp estimates R, scratch_sizes.cpp turns it into area
// sizes, and plan_scratch (scratch_plan.cpp) runs the three roles in order:
// check this boot (scratch_check.cpp), fit the next kexec (scratch_fit.cpp),
// recommend kho_scratch= (scratch_recommend.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "khod/scratch/scratch_plan.hpp"

namespace khod::scratch_detail {

inline constexpr std::uint64_t kPage = 4096;
inline constexpr std::uint64_t kKiB = 1024;
inline constexpr std::uint64_t kGiB = 1ull << 30;
inline constexpr std::uint64_t kSectionSize = 128 * kMiB;  // x86_64 SECTION_SIZE_BITS 27

// The kernel's round_up() for a power-of-two alignment, wrapping as it does
// (round_up(0) is 0, and a value within `a` of 2^64 wraps to 0).
inline std::uint64_t kround_up(std::uint64_t x, std::uint64_t a) {
    return ((x - 1) | (a - 1)) + 1;
}

// "12 MiB", or "12 MiB +- 4 KiB" when the number is uncertain.
std::string pm(std::uint64_t bytes, std::uint64_t uncertainty);

// Where memory is, for the estimators and the allocation checks.
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

inline std::uint64_t ram_below_4g(const ScratchInputs& in) {
    std::uint64_t bytes = 0;
    for (const auto& r : in.system_ram) bytes += Layout::below_4g(r);
    return bytes;
}

// R for the sizing formulas: at its estimate (direction 0), or at the low
// (-1) or high (+1) end of its uncertainty.
SizingR sizing_r(const ReservedEstimate& e, const std::vector<unsigned>& nodes, int direction);

// The roles, in the order plan_scratch runs them.

// This boot: the areas the model predicts next to debugfs', their verdicts,
// and the allocation risks.
void check_this_boot(ScratchPlan& plan, const ScratchInputs& in, const Layout& layout);
// The next kexec: its images and the next kernel's early allocations in the
// areas. Returns the bytes of the images.
std::uint64_t fit_next_kexec(ScratchPlan& plan, const ScratchInputs& in, const ScratchPlanOptions& options);
// kho_scratch= for the next cold boot.
void recommend(ScratchPlan& plan, const ScratchInputs& in, unsigned headroom_percent,
               std::uint64_t images_bytes);

}  // namespace khod::scratch_detail
