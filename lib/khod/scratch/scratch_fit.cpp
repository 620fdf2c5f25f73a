// Fitting the next kexec: its images and the next kernel's early allocations in the areas.
#include "khod/base/units.hpp"
#include "khod/scratch/scratch_internal.hpp"

namespace khod {

using namespace scratch_detail;  // the planner's shared internals

const char* to_string(ScratchFitAgainst against) {
    return against == ScratchFitAgainst::predicted ? "predicted" : "current";
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
        s.kind = a.kind;
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
        if (a.kind == ScratchAreaKind::node && a.node) room.node[*a.node] = f;
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

}  // namespace

// The next kexec, in the current areas (or the predicted ones when KHO is off).
std::uint64_t scratch_detail::fit_next_kexec(ScratchPlan& plan, const ScratchInputs& in,
                                             const ScratchPlanOptions& options) {
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
    return k.bytes;
}

}  // namespace khod
