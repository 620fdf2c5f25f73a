// The kernel's scratch_size_update() and scratch_size_node(), from R.
#include <cstdio>

#include "khod/base/units.hpp"
#include "khod/scratch/scratch_internal.hpp"

namespace khod {

using namespace scratch_detail;  // the planner's shared internals

const char* param_field(ScratchAreaKind kind) {
    return kind == ScratchAreaKind::node ? "pernode" : to_string(kind);
}

namespace {

std::string mib(std::uint64_t v) {
    char buf[48];
    std::snprintf(buf, sizeof buf, "%.3f MiB", static_cast<double>(v) / static_cast<double>(kMiB));
    return buf;
}

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

SizingR scratch_detail::sizing_r(const ReservedEstimate& e, const std::vector<unsigned>& nodes,
                                 int direction) {
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

}  // namespace khod
