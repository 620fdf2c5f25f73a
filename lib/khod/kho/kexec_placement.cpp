#include "khod/kho/kexec_placement.hpp"

#include <algorithm>
#include <cstdio>
#include <limits>

#include "khod/base/hex.hpp"
#include "khod/base/units.hpp"

namespace khod {

namespace {

// arch/x86/kernel/kexec-bzimage64.c
constexpr std::uint64_t kMinPurgatoryAddr = 0x3000;
constexpr std::uint64_t kMinBootparamAddr = 0x3000;
constexpr std::uint64_t kMinKernelLoadAddr = 0x100000;
constexpr std::uint64_t kMinInitrdLoadAddr = 0x1000000;
constexpr std::uint64_t kBootParamsSize = 4096;      // sizeof(struct boot_params)
constexpr std::uint64_t kSetupDataHeader = 16;       // sizeof(struct setup_data)
constexpr std::uint64_t kEfiSetupDataSize = 96;      // sizeof(struct efi_setup_data)
constexpr std::uint64_t kRngSeedLength = 32;         // RNG_SEED_LENGTH
constexpr std::uint64_t kImaSetupDataSize = 16;      // sizeof(struct ima_setup_data)
constexpr std::uint64_t kKhoDataSize = 32;           // sizeof(struct kho_data)
constexpr std::uint64_t kKhoScratchEntry = 16;       // sizeof(struct kho_scratch): {addr, size}
constexpr std::uint64_t kKhoScratchAlign = 0x10000;  // SZ_64K in kho_fill_kimage()

// The kernel's ALIGN() and ALIGN_DOWN() are masks; keep them masks so an odd
// kernel_alignment from a bzImage header behaves as it does in the kernel.
std::uint64_t align_down(std::uint64_t x, std::uint64_t a) {
    return x & ~(a - 1);
}
std::uint64_t align_up(std::uint64_t x, std::uint64_t a) {
    return (x + a - 1) & ~(a - 1);
}
bool power_of_two(std::uint64_t a) {
    return a != 0 && (a & (a - 1)) == 0;
}

std::string area_name(const ScratchArea& a) {
    std::string s = "area " + std::to_string(a.index) + " (" + to_string(a.kind);
    if (a.node) s += " " + std::to_string(*a.node);
    return s + ", " + human_size(a.size) + " at " + hex(a.phys) + ")";
}

struct Range {
    std::uint64_t first;
    std::uint64_t last;  // inclusive, as the kernel's resource ends
};

// kimage_is_destination_range(): the segment placed so far that [first, last] overlaps.
const PlacedSegment* overlapping(const std::vector<PlacedSegment>& placed, std::uint64_t first,
                                 std::uint64_t last) {
    for (const auto& s : placed) {
        if (!s.addr) continue;
        const std::uint64_t sfirst = *s.addr;
        const std::uint64_t slast = *s.addr + s.memsz - 1;
        if (last >= sfirst && first <= slast) return &s;
    }
    return nullptr;
}

// locate_mem_hole_callback() + locate_mem_hole_top_down() for one area.
std::optional<std::uint64_t> place_top_down(Range area, const PlacedSegment& seg,
                                            const std::vector<PlacedSegment>& placed) {
    const std::uint64_t memsz = seg.memsz;
    const std::uint64_t min = seg.request.min_addr;
    if (area.last < area.first || area.last - area.first + 1 < memsz) return std::nullopt;
    if (area.last < min) return std::nullopt;
    std::uint64_t start = area.last - memsz + 1;
    for (;;) {
        start = align_down(start, seg.align);
        if (start < area.first || start < min) return std::nullopt;
        const std::uint64_t last = start + memsz - 1;
        const PlacedSegment* hit = overlapping(placed, start, last);
        if (!hit) return start;
        // The kernel steps down one page and re-aligns until nothing overlaps;
        // with a power-of-two alignment that lands on the first aligned start
        // whose end is below the segment it hit.
        if (power_of_two(seg.align)) {
            if (*hit->addr < memsz) return std::nullopt;
            start = *hit->addr - memsz;
        } else {
            if (start < kKexecPageSize) return std::nullopt;
            start -= kKexecPageSize;
        }
    }
}

// The longest run of free bytes the segment could use in an area.
std::uint64_t largest_free(Range area, std::uint64_t min, const std::vector<PlacedSegment>& placed) {
    if (area.last < area.first || area.last < min) return 0;
    const std::uint64_t first = std::max(area.first, min);
    std::vector<Range> used;
    for (const auto& s : placed) {
        if (!s.addr) continue;
        const std::uint64_t sfirst = *s.addr;
        const std::uint64_t slast = *s.addr + s.memsz - 1;
        if (slast < first || sfirst > area.last) continue;
        used.push_back({std::max(sfirst, first), std::min(slast, area.last)});
    }
    std::sort(used.begin(), used.end(), [](const Range& a, const Range& b) { return a.first < b.first; });
    std::uint64_t best = 0;
    std::uint64_t cursor = first;  // first byte not yet accounted for
    for (const auto& u : used) {
        if (u.first > cursor) best = std::max(best, u.first - cursor);
        cursor = std::max(cursor, u.last + 1);
    }
    if (cursor <= area.last) best = std::max(best, area.last - cursor + 1);
    return best;
}

std::string describe_segment(const PlacedSegment& s) {
    std::string out = s.request.name + " (" + human_size(s.memsz);
    if (s.align > kKexecPageSize) out += ", " + human_size(s.align) + " aligned";
    if (s.request.min_addr > 0) out += ", at or above " + hex(s.request.min_addr);
    return out + ")";
}

}  // namespace

Placement place_segments(const std::vector<ScratchArea>& areas, const std::vector<SegmentRequest>& segments) {
    Placement p;
    std::vector<PlacedSegment> placed;
    for (const auto& a : areas)
        if (!p.largest_area || a.size > p.largest_area->size) p.largest_area = a;

    for (const auto& req : segments) {
        PlacedSegment seg;
        seg.request = req;
        seg.memsz = align_up(req.size, kKexecPageSize);
        seg.align = std::max(req.align, kKexecPageSize);
        if (p.failed) {
            placed.push_back(std::move(seg));
            continue;
        }
        seg.attempted = true;
        for (const auto& a : areas) {
            if (a.size == 0) continue;
            Range r{a.phys, a.phys + a.size - 1};
            if (auto addr = place_top_down(r, seg, placed)) {
                seg.addr = addr;
                seg.area = a.index;
                break;
            }
        }
        if (!seg.addr && req.required) {
            p.failed = placed.size();
            p.needed = seg.memsz;
            p.suggested_area_size = align_up(std::max(seg.memsz, seg.align), kScratchGranularity);
            for (const auto& a : areas) {
                if (a.size == 0) continue;
                Range r{a.phys, a.phys + a.size - 1};
                p.best_free = std::max(p.best_free, largest_free(r, req.min_addr, placed));
            }
            p.shortfall = p.needed > p.best_free ? p.needed - p.best_free : 0;
        }
        placed.push_back(std::move(seg));
    }
    p.segments = std::move(placed);
    p.fits = !p.failed;

    if (areas.empty()) {
        p.fits = false;
        p.message =
            "there are no KHO scratch areas: with KHO on, kexec_file_load places segments only "
            "there and would fail with EADDRNOTAVAIL";
        if (!p.failed && !p.segments.empty()) p.failed = 0;
        return p;
    }
    if (p.fits) {
        std::string where;
        for (const auto& a : areas) {
            std::string names;
            for (const auto& s : p.segments)
                if (s.area == a.index) names += (names.empty() ? "" : ", ") + s.request.name;
            if (names.empty()) continue;
            if (!where.empty()) where += "; ";
            where += names + " in area " + std::to_string(a.index) + " (" + to_string(a.kind) + ")";
        }
        std::string dropped;
        for (const auto& s : p.segments)
            if (!s.addr) dropped += " " + s.request.name;
        p.message = "every segment fits in the KHO scratch areas: " + where;
        if (!dropped.empty()) p.message += "; not placed, the kernel goes on without it:" + dropped;
        return p;
    }
    const PlacedSegment& f = p.segments[*p.failed];
    p.message = "the " + describe_segment(f) + " needs " + human_size(p.needed) + " (" + hex(p.needed) +
                " bytes) in one KHO scratch area and no area has room: the largest is " +
                area_name(*p.largest_area);
    if (p.best_free != p.largest_area->size)
        p.message += ", the most room left in any area is " + human_size(p.best_free);
    if (p.shortfall > 0)
        p.message += "; " + human_size(p.shortfall) + " short";
    else
        p.message += "; there is room, but none starts at a suitably aligned address";
    p.message +=
        ". kexec_file_load would fail with EADDRNOTAVAIL. Scratch areas are sized at a cold boot "
        "and a KHO kexec keeps them: cold-boot with a kho_scratch= that makes one area at least " +
        human_size(p.suggested_area_size) +
        " (sizes are rounded up to 4 MiB; the other segments need room too, there or in another area)";
    return p;
}

std::uint64_t boot_params_size(std::uint64_t cmdline_len, const KexecLoaderModel& model) {
    // bzImage64_load(): one buffer for boot_params, the command line with room
    // for "elfcorehdr=0x... ", the EFI runtime map and every setup_data slot.
    std::uint64_t size = align_up(kBootParamsSize + cmdline_len + kElfcorehdrReserve, 16);
    size += align_up(model.efi_runtime_map_size, 16);
    size += kSetupDataHeader + kEfiSetupDataSize;  // SETUP_EFI, reserved even without EFI
    size += kSetupDataHeader + kRngSeedLength;     // SETUP_RNG_SEED
    if (model.ima_kexec) size += kSetupDataHeader + kImaSetupDataSize;
    size += kSetupDataHeader + kKhoDataSize;  // SETUP_KEXEC_KHO (CONFIG_KEXEC_HANDOVER)
    return size;
}

KexecImageSizes image_sizes(const BzImageInfo& image, std::optional<std::uint64_t> initrd_size,
                            std::uint64_t cmdline_len, std::size_t scratch_areas) {
    KexecImageSizes s;
    s.init_size = image.init_size;
    s.kernel_alignment = image.kernel_alignment;
    s.pref_address = image.pref_address;
    s.initrd_size = initrd_size;
    s.cmdline_len = cmdline_len;
    s.scratch_areas = scratch_areas;
    return s;
}

std::vector<SegmentRequest> kho_kexec_segments(const KexecImageSizes& image, const KexecLoaderModel& model) {
    std::vector<SegmentRequest> out;
    if (model.ima_buffer_size > 0)
        out.push_back(
            {"ima-buffer", "IMA measurement list", model.ima_buffer_size, kKexecPageSize, 0, false});
    out.push_back({"kho-scratch",
                   std::to_string(image.scratch_areas) + " scratch areas x 16 bytes, copied at load time",
                   kKhoScratchEntry * image.scratch_areas, kKhoScratchAlign, 0, true});
    out.push_back({"purgatory", "the running kernel's built-in purgatory", model.purgatory_size,
                   model.purgatory_align, kMinPurgatoryAddr, true});
    out.push_back({"boot-params",
                   "boot_params, " + std::to_string(image.cmdline_len) + "-byte command line and setup_data",
                   boot_params_size(image.cmdline_len, model), 16, kMinBootparamAddr, true});
    out.push_back({"kernel", "the bzImage's init_size", image.init_size, image.kernel_alignment,
                   std::max<std::uint64_t>(image.pref_address, kMinKernelLoadAddr), true});
    if (image.initrd_size)
        out.push_back(
            {"initrd", "the initrd file", *image.initrd_size, kKexecPageSize, kMinInitrdLoadAddr, true});
    return out;
}

}  // namespace khod
