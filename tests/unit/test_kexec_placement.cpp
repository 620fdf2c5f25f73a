// The KHO kexec_file_load placement model. The first tests replay boots of the
// shared 7.2 kernel in the VM tier (tests/vm/scenarios/preflight*.py): the
// scratch areas debugfs showed and the segment addresses the kernel logged
// with KEXEC_FILE_DEBUG. The rest pin single rules of kexec_file.c.
#include <gtest/gtest.h>

#include "khod/kho/kexec_placement.hpp"

using namespace khod;

namespace {

constexpr std::uint64_t MiB = 1ull << 20;

std::vector<ScratchArea> areas(std::initializer_list<std::pair<std::uint64_t, std::uint64_t>> list) {
    std::vector<ScratchArea> out;
    unsigned i = 0;
    for (auto [phys, size] : list) {
        ScratchArea a;
        a.index = i;
        a.kind = area_kind_at(static_cast<unsigned>(i));
        if (i >= 2) a.node = i - 2;
        a.phys = phys;
        a.size = size;
        out.push_back(a);
        ++i;
    }
    return out;
}

// The shared bzImage (init_size 0x2305000, 2 MiB aligned, pref 16 MiB), the
// VM's initrd and command line "console=ttyS0 panic=-1 kho=on kho_scratch=16M,64M,32M".
KexecImageSizes vm_image(std::uint64_t initrd = 16672250) {
    KexecImageSizes s;
    s.init_size = 0x2305000;
    s.kernel_alignment = 0x200000;
    s.pref_address = 0x1000000;
    s.initrd_size = initrd;
    s.cmdline_len = 54;
    s.scratch_areas = 3;
    return s;
}

const PlacedSegment& seg(const Placement& p, const std::string& name) {
    for (const auto& s : p.segments)
        if (s.request.name == name) return s;
    throw std::runtime_error("no segment " + name);
}

SegmentRequest req(std::string name, std::uint64_t size, std::uint64_t align = 4096, std::uint64_t min = 0,
                   bool required = true) {
    return {std::move(name), "test", size, align, min, required};
}

}  // namespace

TEST(KexecSegments, TheKernelsListInTheKernelsOrder) {
    auto list = kho_kexec_segments(vm_image(), KexecLoaderModel{});
    ASSERT_EQ(list.size(), 5u);
    EXPECT_EQ(list[0].name, "kho-scratch");
    EXPECT_EQ(list[0].size, 48u) << "3 areas x {u64 addr, u64 size}";
    EXPECT_EQ(list[0].align, 0x10000u);
    EXPECT_EQ(list[1].name, "purgatory");
    EXPECT_EQ(list[1].size, 0x5000u);
    EXPECT_EQ(list[1].min_addr, 0x3000u);
    EXPECT_EQ(list[2].name, "boot-params");
    EXPECT_EQ(list[2].size, 0x1130u) << "the bufsz the kernel logged for a 54-byte command line";
    EXPECT_EQ(list[2].min_addr, 0x3000u);
    EXPECT_EQ(list[3].name, "kernel");
    EXPECT_EQ(list[3].size, 0x2305000u);
    EXPECT_EQ(list[3].align, 0x200000u);
    EXPECT_EQ(list[3].min_addr, 0x1000000u);
    EXPECT_EQ(list[4].name, "initrd");
    EXPECT_EQ(list[4].min_addr, 0x1000000u) << "MIN_INITRD_LOAD_ADDR";

    auto none = vm_image();
    none.initrd_size.reset();
    EXPECT_EQ(kho_kexec_segments(none, KexecLoaderModel{}).size(), 4u) << "no initrd, no segment";

    KexecLoaderModel ima;
    ima.ima_kexec = true;
    ima.ima_buffer_size = 10000;
    auto with_ima = kho_kexec_segments(vm_image(), ima);
    ASSERT_EQ(with_ima.size(), 6u);
    EXPECT_EQ(with_ima[0].name, "ima-buffer") << "ima_add_kexec_buffer() runs before kho_fill_kimage()";
    EXPECT_FALSE(with_ima[0].required);
    EXPECT_EQ(with_ima[3].size, 0x1130u + 32) << "IMA_KEXEC adds a setup_data slot to boot params";
}

TEST(KexecSegments, BootParamsSize) {
    KexecLoaderModel m;
    // ALIGN(4096 + len + 30, 16) + EFI setup_data (16 + 96) + RNG (16 + 32) + KHO (16 + 32)
    EXPECT_EQ(boot_params_size(54, m), 4192u + 208);
    EXPECT_EQ(boot_params_size(1, m), 4128u + 208);
    m.efi_runtime_map_size = 10 * 48;
    EXPECT_EQ(boot_params_size(54, m), 4192u + 480 + 208);
}

TEST(KexecPlacement, DefaultScratchAsTheKernelPlacedIt) {
    // preflight.py: kho_scratch=16M,64M,32M; debugfs and dmesg of that boot.
    auto a = areas({{0x37000000, 16 * MiB}, {0x33000000, 64 * MiB}, {0x31000000, 32 * MiB}});
    Placement p = place_segments(a, kho_kexec_segments(vm_image(), KexecLoaderModel{}));
    ASSERT_TRUE(p.fits) << p.message;
    EXPECT_FALSE(p.failed);
    const std::pair<const char*, std::pair<std::uint64_t, std::uint64_t>> kernel_log[] = {
        {"kho-scratch", {0x37ff0000, 0x1000}}, {"purgatory", {0x37ffb000, 0x5000}},
        {"boot-params", {0x37ff9000, 0x2000}}, {"kernel", {0x34c00000, 0x2305000}},
        {"initrd", {0x37009000, 0xfe7000}},
    };
    for (const auto& [name, where] : kernel_log) {
        const auto& s = seg(p, name);
        ASSERT_TRUE(s.addr) << name;
        EXPECT_EQ(*s.addr, where.first) << name;
        EXPECT_EQ(s.memsz, where.second) << name;
    }
    // Different segments, different areas: the kernel does not fit lowmem and
    // goes to the next area in array order; everything else stays in lowmem.
    EXPECT_EQ(seg(p, "kernel").area, 1u);
    EXPECT_EQ(seg(p, "initrd").area, 0u);
    EXPECT_NE(p.message.find("kernel in area 1 (global)"), std::string::npos) << p.message;
}

TEST(KexecPlacement, InitrdSpillsBelowTheKernelAsTheKernelPlacedIt) {
    // preflight.py on a later build: an 18.7 MiB initrd no longer fits the
    // lowmem area and lands in the global area, right below the kernel.
    auto a = areas({{0x36c00000, 16 * MiB}, {0x2ec00000, 64 * MiB}, {0x2cc00000, 32 * MiB}});
    Placement p = place_segments(a, kho_kexec_segments(vm_image(19644593), KexecLoaderModel{}));
    ASSERT_TRUE(p.fits) << p.message;
    EXPECT_EQ(*seg(p, "kho-scratch").addr, 0x37bf0000u);
    EXPECT_EQ(*seg(p, "purgatory").addr, 0x37bfb000u);
    EXPECT_EQ(*seg(p, "boot-params").addr, 0x37bf9000u);
    EXPECT_EQ(*seg(p, "kernel").addr, 0x30800000u);
    EXPECT_EQ(*seg(p, "initrd").addr, 0x2f543000u);
    EXPECT_EQ(seg(p, "initrd").memsz, 0x12bd000u);
    EXPECT_EQ(seg(p, "initrd").area, 1u);
}

TEST(KexecPlacement, NoRoomForTheKernelAsTheKernelRefusedIt) {
    // preflight_noroom.py: kho_scratch=16M,32M,32M; EADDRNOTAVAIL after
    // "Loaded purgatory at 0x37ffb000" and "Loaded boot_param ... at 0x37ff9000".
    auto a = areas({{0x37000000, 16 * MiB}, {0x35000000, 32 * MiB}, {0x33000000, 32 * MiB}});
    Placement p = place_segments(a, kho_kexec_segments(vm_image(16672212), KexecLoaderModel{}));
    EXPECT_FALSE(p.fits);
    ASSERT_TRUE(p.failed);
    EXPECT_EQ(p.segments[*p.failed].request.name, "kernel");
    EXPECT_EQ(*seg(p, "purgatory").addr, 0x37ffb000u);
    EXPECT_EQ(*seg(p, "boot-params").addr, 0x37ff9000u);
    EXPECT_TRUE(seg(p, "kernel").attempted);
    EXPECT_FALSE(seg(p, "kernel").addr);
    EXPECT_FALSE(seg(p, "initrd").attempted) << "the kernel stops at the first failure";
    ASSERT_TRUE(p.largest_area);
    EXPECT_EQ(p.largest_area->index, 1u) << "the first of the two 32 MiB areas";
    EXPECT_EQ(p.needed, 0x2305000u) << "memsz: the areas start 4 MiB aligned";
    EXPECT_EQ(p.best_free, 32 * MiB);
    EXPECT_EQ(p.shortfall, 0x305000u);
    EXPECT_EQ(p.suggested_area_size, 36 * MiB) << "kho_scratch sizes are rounded up to 4 MiB";
    EXPECT_NE(p.message.find("area 1 (global, 32 MiB at 0x35000000)"), std::string::npos) << p.message;
    EXPECT_NE(p.message.find("3.0 MiB short"), std::string::npos) << p.message;
    EXPECT_NE(p.message.find("at least 36 MiB"), std::string::npos) << p.message;
    EXPECT_NE(p.message.find("EADDRNOTAVAIL"), std::string::npos) << p.message;
}

TEST(KexecPlacement, ExactFitAtTheStartOfTheArea) {
    // preflight_tight.py: kho_scratch=16M,36M,32M; the kernel logged 0x34c00000.
    auto a = areas({{0x37000000, 16 * MiB}, {0x34c00000, 36 * MiB}, {0x2f000000, 32 * MiB}});
    Placement p = place_segments(a, kho_kexec_segments(vm_image(16672240), KexecLoaderModel{}));
    ASSERT_TRUE(p.fits) << p.message;
    EXPECT_EQ(*seg(p, "kernel").addr, 0x34c00000u);
    EXPECT_EQ(seg(p, "kernel").area, 1u);
    // An aligned area of exactly memsz bytes still takes it; a page less does not.
    a[1].size = 0x2305000;
    p = place_segments(a, kho_kexec_segments(vm_image(16672240), KexecLoaderModel{}));
    ASSERT_TRUE(p.fits) << p.message;
    EXPECT_EQ(*seg(p, "kernel").addr, 0x34c00000u);
    a[1].size = 0x2305000 - 4096;
    p = place_segments(a, kho_kexec_segments(vm_image(16672240), KexecLoaderModel{}));
    EXPECT_FALSE(p.fits);
    EXPECT_EQ(p.segments[*p.failed].request.name, "kernel");
    EXPECT_EQ(p.shortfall, 4096u);
    // The same size starting 1 MiB off the alignment does not either: the
    // kernel aligns down, below the area's start.
    a[1].phys = 0x34d00000;
    a[1].size = 0x2400000;
    p = place_segments(a, kho_kexec_segments(vm_image(16672240), KexecLoaderModel{}));
    EXPECT_FALSE(p.fits);
    EXPECT_EQ(p.shortfall, 0u);
    EXPECT_NE(p.message.find("aligned"), std::string::npos) << p.message;
}

TEST(KexecPlacement, FirstAreaInArrayOrderWinsNotTheBiggest) {
    auto a = areas({{0x10000000, 8 * MiB}, {0x20000000, 256 * MiB}});
    Placement p = place_segments(a, {req("small", 4096)});
    ASSERT_TRUE(p.fits);
    EXPECT_EQ(seg(p, "small").area, 0u);
    EXPECT_EQ(*seg(p, "small").addr, 0x10000000u + 8 * MiB - 4096) << "top-down: the highest page";
}

TEST(KexecPlacement, SegmentsStackDownAndSpillToTheNextArea) {
    auto a = areas({{0x10000000, 4 * MiB}, {0x20000000, 4 * MiB}});
    Placement p = place_segments(a, {req("a", 3 * MiB), req("b", 1 * MiB), req("c", 1 * MiB)});
    ASSERT_TRUE(p.fits) << p.message;
    EXPECT_EQ(*seg(p, "a").addr, 0x10100000u);
    EXPECT_EQ(*seg(p, "b").addr, 0x10000000u) << "below a, in what is left of area 0";
    EXPECT_EQ(*seg(p, "c").addr, 0x20300000u) << "area 0 is full";
    EXPECT_EQ(seg(p, "c").area, 1u);
}

TEST(KexecPlacement, AlignmentAndPageRounding) {
    auto a = areas({{0x10000000, 16 * MiB}});
    Placement p = place_segments(a, {req("odd", 5000, 16), req("big-align", 4096, 0x400000)});
    ASSERT_TRUE(p.fits);
    EXPECT_EQ(seg(p, "odd").memsz, 8192u) << "memsz rounded up to a page";
    EXPECT_EQ(seg(p, "odd").align, 4096u) << "alignment at least a page";
    EXPECT_EQ(*seg(p, "odd").addr, 0x10ffe000u);
    // 4 MiB aligned, below "odd": the highest 4 MiB boundary whose page is free.
    EXPECT_EQ(*seg(p, "big-align").addr, 0x10c00000u);
}

TEST(KexecPlacement, MinimumAddressSendsASegmentElsewhere) {
    // An area wholly below 16 MiB cannot take an initrd (MIN_INITRD_LOAD_ADDR).
    auto a = areas({{0x800000, 8 * MiB}, {0x20000000, 8 * MiB}});
    Placement p = place_segments(a, {req("initrd", MiB, 4096, 0x1000000)});
    ASSERT_TRUE(p.fits);
    EXPECT_EQ(seg(p, "initrd").area, 1u);
    // An area straddling the minimum is used only above it.
    a = areas({{0xc00000, 8 * MiB}});
    p = place_segments(a, {req("x", 4 * MiB, 4096, 0x1000000), req("y", 4 * MiB, 4096, 0x1000000)});
    EXPECT_EQ(*seg(p, "x").addr, 0x1000000u);
    EXPECT_FALSE(p.fits) << "only 4 MiB of the area lies above 16 MiB";
    EXPECT_EQ(p.best_free, 0u);
    EXPECT_EQ(p.shortfall, 4 * MiB);
    EXPECT_EQ(p.needed, 4 * MiB);
}

TEST(KexecPlacement, OptionalSegmentDoesNotFailTheLoad) {
    auto a = areas({{0x10000000, 4 * MiB}});
    Placement p = place_segments(a, {req("ima-buffer", 8 * MiB, 4096, 0, false), req("kernel", 2 * MiB)});
    EXPECT_TRUE(p.fits);
    EXPECT_FALSE(seg(p, "ima-buffer").addr);
    EXPECT_TRUE(seg(p, "kernel").addr);
    EXPECT_NE(p.message.find("not placed"), std::string::npos) << p.message;
}

TEST(KexecPlacement, NoAreasOrEmptyAreas) {
    Placement p = place_segments({}, {req("kernel", MiB)});
    EXPECT_FALSE(p.fits);
    EXPECT_NE(p.message.find("no KHO scratch areas"), std::string::npos);
    p = place_segments(areas({{0x10000000, 0}, {0x20000000, 2 * MiB}}), {req("kernel", MiB)});
    ASSERT_TRUE(p.fits);
    EXPECT_EQ(seg(p, "kernel").area, 1u);
}

TEST(KexecPlacement, FreeRoomCountsWhatEarlierSegmentsTook) {
    auto a = areas({{0x10000000, 8 * MiB}});
    Placement p = place_segments(a, {req("a", 3 * MiB), req("b", 6 * MiB)});
    EXPECT_FALSE(p.fits);
    EXPECT_EQ(p.largest_area->size, 8 * MiB);
    EXPECT_EQ(p.best_free, 5 * MiB);
    EXPECT_EQ(p.shortfall, MiB);
    EXPECT_NE(p.message.find("the most room left in any area is 5 MiB"), std::string::npos) << p.message;
}

TEST(KexecPlacement, OddAlignmentStillTerminates) {
    // A header may carry a kernel_alignment that is not a power of two; the
    // kernel's mask arithmetic then steps a page at a time. It must end.
    auto a = areas({{0x10000000, 8 * MiB}});
    Placement p = place_segments(a, {req("a", 2 * MiB), req("b", MiB, 0x300000)});
    EXPECT_TRUE(p.segments[1].attempted);
    if (p.segments[1].addr) {
        EXPECT_LE(*p.segments[1].addr + p.segments[1].memsz, *p.segments[0].addr);
    }
}
