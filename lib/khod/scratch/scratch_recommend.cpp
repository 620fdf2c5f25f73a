// Recommending kho_scratch= for the next cold boot, from the next kernel's needs.
#include "khod/base/units.hpp"
#include "khod/scratch/scratch_internal.hpp"

namespace khod {

using namespace scratch_detail;  // the planner's shared internals

std::string cmdline_size(std::uint64_t bytes) {
    if (bytes == 0) return "0";
    static constexpr std::pair<char, unsigned> units[] = {{'T', 40}, {'G', 30}, {'M', 20}, {'K', 10}};
    for (const auto& [c, shift] : units)
        if (bytes % (1ull << shift) == 0) return std::to_string(bytes >> shift) + c;
    return std::to_string(bytes);
}

namespace {

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

}  // namespace

// What to boot cold with.
void scratch_detail::recommend(ScratchPlan& plan, const ScratchInputs& in, unsigned headroom_percent,
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

}  // namespace khod
