// Checking this boot: the areas the model predicts against the ones debugfs lists.
#include "khod/base/units.hpp"
#include "khod/scratch/scratch_internal.hpp"

namespace khod {

using namespace scratch_detail;  // the planner's shared internals

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

namespace {

// ScratchVerdict lists the area verdicts best first.
ScratchVerdict worse_verdict(ScratchVerdict a, ScratchVerdict b) {
    return std::max(a, b);
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
            c.kind = a.kind;
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

}  // namespace

// This boot: what the kernel should have made, next to what it made.
void scratch_detail::check_this_boot(ScratchPlan& plan, const ScratchInputs& in, const Layout& l) {
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

}  // namespace khod
