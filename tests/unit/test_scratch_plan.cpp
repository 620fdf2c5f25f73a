// The KHO scratch planner: the kernel's kho_scratch= grammar and sizing
// arithmetic per version, the estimate of R (memblock_reserved_kern_size())
// from what userspace sees, on trees captured from the 7.2.13 kernel (whose
// debugfs holds the sizes the kernel really chose) and on two derived large
// hosts whose expected sizes are worked out by hand below.
#include <gtest/gtest.h>

#include <algorithm>

#include "khod/scratch/scratch_plan.hpp"
#include "tree.hpp"

using namespace khod;
using khod::test::fixture;
using khod::test::TempTree;

namespace {

constexpr std::uint64_t KiB = 1024;
constexpr std::uint64_t MiB = 1024 * KiB;
constexpr std::uint64_t GiB = 1024 * MiB;

// round_up(x, 4 MiB), written out as the kernel does it.
constexpr std::uint64_t up4m(std::uint64_t x) {
    return (x + 4 * MiB - 1) / (4 * MiB) * (4 * MiB);
}

ScratchRules rules(const std::string& release) {
    return scratch_rules_for(release, nullptr);
}

Result<ScratchInputs> inputs_of(const std::filesystem::path& root, ScratchInputOptions opts = {}) {
    Sysroot sysroot(root);
    // The fixtures' /proc/self/mounts shows debugfs where the capture mounted it.
    DebugfsState d = ensure_debugfs(sysroot, false);
    opts.debugfs_mounted = d.mounted;
    return read_scratch_inputs(sysroot, opts);
}

ScratchPlan plan_of(const std::filesystem::path& root, ScratchPlanOptions options = {}) {
    auto in = inputs_of(root);
    EXPECT_TRUE(in) << in.error().describe();
    if (!in) return {};
    auto p = plan_scratch(*in, options);
    EXPECT_TRUE(p) << p.error().describe();
    return p ? *p : ScratchPlan{};
}

std::uint64_t part_bytes(const ReservedEstimate& e, ReservedPartKind kind,
                         std::optional<unsigned> node = {}) {
    std::uint64_t total = 0;
    for (const auto& p : e.parts)
        if (p.kind == kind && (!node || p.node == node)) total += p.bytes;
    return total;
}

std::string apply(ScratchParam& p, const std::string& value, const std::string& release = "7.2.13") {
    auto r = apply_scratch_value(p, value, rules(release));
    return r ? "" : r.error().message;
}

}  // namespace

// ---------------------------------------------------------------------------
// Which rules for which kernel.

TEST(ScratchRules, VersionsNameTheirRules) {
    EXPECT_EQ(rules("7.2.13").id, "7.0-7.3");
    EXPECT_EQ(rules("7.2.13").align, 4 * MiB);
    EXPECT_EQ(rules("7.2.13").param, "kho_scratch");
    EXPECT_FALSE(rules("7.2.13").online_nodes);
    EXPECT_EQ(rules("7.4.0").id, "7.4+");
    EXPECT_EQ(rules("7.4.0").param, "kho_bootmem");
    EXPECT_EQ(rules("8.1.0").param, "kho_bootmem");
    EXPECT_EQ(rules("6.18.3").id, "6.18-6.19");
    EXPECT_EQ(rules("6.18.3").align, 2 * MiB);
    EXPECT_TRUE(rules("6.18.3").online_nodes);
    EXPECT_TRUE(rules("6.18.3").round_lowmem_before_subtract);
    EXPECT_EQ(rules("6.16.0").id, "6.16-6.17");
    EXPECT_FALSE(rules("6.17.1").zero_size_allowed);
    std::string why;
    EXPECT_EQ(scratch_rules_for(std::string("garbage"), &why).id, "7.0-7.3");
    EXPECT_NE(why.find("not understood"), std::string::npos) << why;
    EXPECT_EQ(scratch_rules_for(std::nullopt, &why).id, "7.0-7.3");
    EXPECT_NE(why.find("unknown"), std::string::npos) << why;
}

// ---------------------------------------------------------------------------
// kho_scratch= as kho_parse_scratch_size() reads it.

TEST(ScratchParam, PercentForm) {
    ScratchParam p;
    EXPECT_EQ(apply(p, "150%"), "");
    EXPECT_EQ(p.scale, 150u);
    EXPECT_EQ(apply(p, "+50%"), "");  // kstrtouint takes a '+'
    EXPECT_EQ(p.scale, 50u);
    EXPECT_EQ(apply(p, "4294967295%"), "");  // 11 characters, UINT_MAX
    EXPECT_EQ(p.scale, 4294967295u);
    // Refused, and the scale stays what it was.
    p.scale = 200;
    EXPECT_NE(apply(p, "%"), "");
    EXPECT_NE(apply(p, "-5%"), "");
    EXPECT_NE(apply(p, "4294967296%"), "");    // ERANGE
    EXPECT_NE(apply(p, "000000000150%"), "");  // 13 characters > 11
    EXPECT_NE(apply(p, "0x10%"), "");          // base 10 only
    EXPECT_NE(apply(p, "1.5%"), "");
    EXPECT_EQ(p.scale, 200u);
    EXPECT_EQ(apply(p, "0%"), "");  // accepted: scale 0 means "use the fixed sizes" (all 0 here)
    EXPECT_TRUE(p.fixed());
}

TEST(ScratchParam, FixedFormOn72) {
    ScratchParam p;
    EXPECT_EQ(apply(p, "16M,64M,32M"), "");
    EXPECT_EQ(p.lowmem, 16 * MiB);
    EXPECT_EQ(p.global, 64 * MiB);
    EXPECT_EQ(p.pernode, 32 * MiB);
    EXPECT_TRUE(p.fixed());
    EXPECT_EQ(apply(p, "0,1g,0x100000"), "");  // memparse: suffixes either case, 0x hex; zeros fine
    EXPECT_EQ(p.lowmem, 0u);
    EXPECT_EQ(p.global, 1 * GiB);
    EXPECT_EQ(p.pernode, 1 * MiB);
    ScratchParam q;
    EXPECT_NE(apply(q, "0,0,0"), "");           // the total must not be zero
    EXPECT_NE(apply(q, "16M,64M"), "");         // exactly three
    EXPECT_NE(apply(q, "16M,64M,32M,1M"), "");  // nothing after the third
    EXPECT_NE(apply(q, "16M,64M,32Mfoo"), "");
    EXPECT_NE(apply(q, "16M;64M;32M"), "");
    EXPECT_NE(apply(q, "M,64M,32M"), "");    // no digits
    EXPECT_NE(apply(q, "16E,64M,32M"), "");  // 2^64: absurd, refused with a reason
    EXPECT_NE(apply(q, ""), "");
    EXPECT_EQ(q.scale, 200u);  // every refusal left the defaults
}

TEST(ScratchParam, OlderKernelsParseDifferently) {
    ScratchParam p;
    EXPECT_NE(apply(p, "0,64M,32M", "6.17.0"), "");  // zero refused before 6.18
    EXPECT_EQ(apply(p, "0,64M,32M", "6.18.0"), "");
    ScratchParam q;
    EXPECT_EQ(apply(q, "16M,64M,32Mfoo", "6.16.0"), "");  // trailing text ignored before 6.18
    EXPECT_EQ(q.pernode, 32 * MiB);
    EXPECT_NE(apply(q, "16M,64M,32Mfoo", "6.18.0"), "");
}

TEST(ScratchParam, EveryOccurrenceRunsInOrder) {
    const ScratchRules r = rules("7.2.13");
    auto p = parse_scratch_param(Cmdline::parse("kho_scratch=16M,64M,32M kho_scratch=bogus"), r);
    EXPECT_TRUE(p.fixed());
    EXPECT_EQ(p.lowmem, 16 * MiB);
    ASSERT_EQ(p.rejected.size(), 1u);
    EXPECT_NE(p.rejected[0].find("bogus"), std::string::npos);
    // 0% after fixed sizes keeps them (scale 0 is the fixed form).
    p = parse_scratch_param(Cmdline::parse("kho_scratch=16M,64M,32M kho-scratch=0%"), r);
    EXPECT_TRUE(p.fixed());
    EXPECT_EQ(p.global, 64 * MiB);
    p = parse_scratch_param(Cmdline::parse("kho_scratch=16M,64M,32M kho_scratch=50%"), r);
    EXPECT_EQ(p.scale, 50u);
    p = parse_scratch_param(Cmdline::parse("kho_scratch kho_scratch="), r);
    EXPECT_EQ(p.scale, 200u);
    EXPECT_EQ(p.rejected.size(), 2u);
    // 7.4 reads kho_bootmem= only.
    p = parse_scratch_param(Cmdline::parse("kho_scratch=50% kho_bootmem=300%"), rules("7.4.1"));
    EXPECT_EQ(p.scale, 300u);
}

// ---------------------------------------------------------------------------
// The arithmetic of scratch_size_update() / scratch_size_node().

TEST(ScratchSizes, ScaleFormOn72SubtractsBeforeRounding) {
    SizingR r;
    r.low = 100 * MiB + 1;
    r.total = 300 * MiB;
    r.node[0] = 10 * MiB + 1;
    auto s = compute_area_sizes(rules("7.2.13"), ScratchParam{}, r, {0});
    ASSERT_EQ(s.size(), 3u);
    // lowmem = up4m(200 MiB + 2) = 204 MiB
    EXPECT_EQ(s[0].size, 204 * MiB);
    // global = up4m(600 MiB - (200 MiB + 2)) = up4m(400 MiB - 2) = 400 MiB
    EXPECT_EQ(s[1].size, 400 * MiB);
    // node 0 = up4m(20 MiB + 2) = 24 MiB
    EXPECT_EQ(s[2].size, 24 * MiB);
    EXPECT_EQ(s[2].node, 0u);
}

TEST(ScratchSizes, ScaleFormOn618RoundsLowmemFirst) {
    SizingR r;
    r.low = 100 * MiB + 1;
    r.total = 300 * MiB;
    r.node[0] = 10 * MiB + 1;
    auto s = compute_area_sizes(rules("6.18.0"), ScratchParam{}, r, {0});
    // lowmem = round_up(200 MiB + 2, 2 MiB) = 202 MiB
    EXPECT_EQ(s[0].size, 202 * MiB);
    // global = round_up(600 MiB - 202 MiB, 2 MiB) = 398 MiB
    EXPECT_EQ(s[1].size, 398 * MiB);
    // node = round_up(20 MiB + 2, 2 MiB) = 22 MiB
    EXPECT_EQ(s[2].size, 22 * MiB);
}

TEST(ScratchSizes, AllMemoryBelow4GiB) {
    // R_low == R: 7.2 gives an empty global area; 6.18's R*s/100 - round_up(R*s/100)
    // goes negative, wraps to 2^64 - 2, and round_up() wraps that back to 0.
    SizingR r;
    r.low = r.total = 117 * MiB + 12345;
    r.node[0] = 50 * MiB;
    EXPECT_EQ(compute_area_sizes(rules("7.2.13"), ScratchParam{}, r, {0})[1].size, 0u);
    EXPECT_EQ(compute_area_sizes(rules("6.18.0"), ScratchParam{}, r, {0})[1].size, 0u);
}

TEST(ScratchSizes, FixedForm) {
    ScratchParam p;
    p.scale = 0;
    p.lowmem = 10 * MiB;
    p.global = 1 * MiB;
    p.pernode = 5 * MiB;
    SizingR r;  // unused by the fixed form
    auto s72 = compute_area_sizes(rules("7.2.13"), p, r, {0, 1});
    ASSERT_EQ(s72.size(), 4u);
    EXPECT_EQ(s72[0].size, 12 * MiB);  // each rounded up to 4 MiB
    EXPECT_EQ(s72[1].size, 4 * MiB);
    EXPECT_EQ(s72[2].size, 8 * MiB);
    EXPECT_EQ(s72[3].size, 8 * MiB);
    EXPECT_EQ(s72[3].node, 1u);
    auto s618 = compute_area_sizes(rules("6.18.0"), p, r, {0});
    EXPECT_EQ(s618[0].size, 10 * MiB);  // 6.x leaves the fixed lowmem and global sizes alone
    EXPECT_EQ(s618[1].size, 1 * MiB);
    EXPECT_EQ(s618[2].size, 6 * MiB);  // and rounds the per-node one to 2 MiB
}

TEST(ScratchSizes, HugeScaleWrapsLikeTheKernel) {
    ScratchParam p;
    p.scale = 4294967295u;
    SizingR r;
    r.low = r.total = 16 * GiB;
    r.node[0] = 16 * GiB;
    auto s = compute_area_sizes(rules("7.2.13"), p, r, {0});
    // 2^34 * (2^32 - 1) overflows u64: the kernel's u64 product wraps, and so does the model's.
    const std::uint64_t wrapped = (16 * GiB) * 4294967295ull / 100;
    EXPECT_EQ(s[0].size, up4m(wrapped));
}

// ---------------------------------------------------------------------------
// Captured from the 7.2.13 kernel: the model against what debugfs reports.

TEST(ScratchCaptured, DefaultScaleIsExact) {
    ScratchPlan p = plan_of(fixture("scratch-7.2-default"));
    EXPECT_EQ(p.rules.id, "7.0-7.3");
    EXPECT_EQ(p.param.scale, 200u);
    EXPECT_EQ(p.verdict, ScratchVerdict::exact);
    ASSERT_EQ(p.areas.size(), 3u);
    EXPECT_EQ(p.areas[0].actual, 236 * MiB);
    EXPECT_EQ(p.areas[0].predicted, 236 * MiB);
    EXPECT_EQ(p.areas[1].predicted, 0u);  // every byte of a 1 GiB guest is below 4 GiB
    EXPECT_EQ(p.areas[2].predicted, 100 * MiB);
    // The pieces, checked against a memblock=debug replay of the same kernel.
    const auto& r = p.reserved;
    EXPECT_EQ(part_bytes(r, ReservedPartKind::kernel_image), 0x2049000u);  // 0xc600000 .. 0xe648fff
    EXPECT_EQ(part_bytes(r, ReservedPartKind::initrd), 0xfd000u);          // 0xfcbd2 bytes, page-rounded
    EXPECT_EQ(part_bytes(r, ReservedPartKind::memmap), 16 * MiB);          // 4096 boot pages
    EXPECT_EQ(part_bytes(r, ReservedPartKind::percpu_first_chunk), 2 * 212992u);
    EXPECT_EQ(part_bytes(r, ReservedPartKind::swiotlb_buffer), 64 * MiB);
    EXPECT_EQ(part_bytes(r, ReservedPartKind::swiotlb_slots), 786432u + 2 * 16);
    EXPECT_EQ(part_bytes(r, ReservedPartKind::hash_tables), 1 * MiB + 512 * KiB);
    EXPECT_EQ(part_bytes(r, ReservedPartKind::mem_section_roots), 1 * MiB);  // la57: 5-level paging
    EXPECT_TRUE(r.unknown.empty());
    EXPECT_TRUE(p.fits_ok);
    // What debugfs reports, 236 MiB, is up4m(2 * R_low): R_low is in (114, 118] MiB.
    EXPECT_GT(r.low(), 114 * MiB);
    EXPECT_LE(r.low(), 118 * MiB);
}

TEST(ScratchCaptured, PercentFixedNumaAndCrashAreExact) {
    struct Case {
        const char* tree;
        std::vector<std::uint64_t> sizes;
    } cases[] = {
        {"scratch-7.2-percent150", {176 * MiB, 0, 76 * MiB}},
        {"scratch-7.2-fixed", {12 * MiB, 4 * MiB, 8 * MiB}},  // kho_scratch=10M,1M,5M rounded up
        {"scratch-7.2-numa2", {232 * MiB, 0, 20 * MiB, 84 * MiB}},
        {"scratch-7.2-crash64m", {364 * MiB, 0, 100 * MiB}},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.tree);
        ScratchPlan p = plan_of(fixture(c.tree));
        EXPECT_EQ(p.verdict, ScratchVerdict::exact);
        ASSERT_EQ(p.areas.size(), c.sizes.size());
        for (std::size_t i = 0; i < c.sizes.size(); ++i) {
            EXPECT_EQ(p.areas[i].actual, c.sizes[i]) << "debugfs, area " << i;
            EXPECT_EQ(p.areas[i].predicted, c.sizes[i]) << "model, area " << i;
            EXPECT_EQ(p.areas[i].verdict, ScratchVerdict::exact);
        }
    }
}

TEST(ScratchCaptured, NumaSplitsRByNode) {
    ScratchPlan p = plan_of(fixture("scratch-7.2-numa2"));
    ASSERT_EQ(p.area_nodes, (std::vector<unsigned>{0, 1}));
    const auto& r = p.reserved;
    // 512 MiB per node: 4 sections of 2 MiB of struct pages each.
    EXPECT_EQ(part_bytes(r, ReservedPartKind::memmap, 0u), 8 * MiB);
    EXPECT_EQ(part_bytes(r, ReservedPartKind::memmap, 1u), 8 * MiB);
    // One CPU per node.
    EXPECT_EQ(part_bytes(r, ReservedPartKind::percpu_first_chunk, 0u), 212992u);
    EXPECT_EQ(part_bytes(r, ReservedPartKind::percpu_first_chunk, 1u), 212992u);
    // KASLR put the image at 0x39c00000 and QEMU the initrd at 0x3fee3000: node 1
    // (512 MiB .. 1 GiB); that is why node 1's area is the big one.
    bool image_on_1 = false;
    for (const auto& part : r.parts)
        if (part.kind == ReservedPartKind::kernel_image) image_on_1 = part.node == 1u;
    EXPECT_TRUE(image_on_1);
    // swiotlb and the hash tables carry no node (NUMA_NO_NODE); with two memory
    // nodes the hash tables are not memblock allocations at all (hashdist).
    EXPECT_EQ(part_bytes(r, ReservedPartKind::hash_tables), 0u);
    for (const auto& part : r.parts) {
        if (part.kind == ReservedPartKind::swiotlb_buffer) {
            EXPECT_FALSE(part.node.has_value());
        }
    }
}

TEST(ScratchCaptured, CrashKernelCountsForLowmemOnly) {
    ScratchPlan plain = plan_of(fixture("scratch-7.2-default"));
    ScratchPlan crash = plan_of(fixture("scratch-7.2-crash64m"));
    EXPECT_EQ(part_bytes(crash.reserved, ReservedPartKind::crash_kernel_below_4g), 64 * MiB);
    // crashkernel=64M adds 2 x 64 MiB to lowmem and nothing to the node area.
    EXPECT_EQ(*crash.areas[0].predicted - *plain.areas[0].predicted, 128 * MiB);
    EXPECT_EQ(crash.areas[2].predicted, plain.areas[2].predicted);
}

TEST(ScratchCaptured, KhoBootReusesIncomingAreas) {
    ScratchPlan p = plan_of(fixture("vm-7.2-kho-in"));
    EXPECT_TRUE(p.incoming);
    EXPECT_FALSE(p.prediction_applies);
    EXPECT_EQ(p.verdict, ScratchVerdict::not_applicable);
    EXPECT_NE(p.prediction_note.find("ignored kho_scratch="), std::string::npos) << p.prediction_note;
    EXPECT_NE(p.prediction_note.find("cold boot"), std::string::npos);
}

TEST(ScratchCaptured, NoKhoMeansNoAreasButAPrediction) {
    ScratchPlan p = plan_of(fixture("vm-7.2-nokho"));
    EXPECT_EQ(p.verdict, ScratchVerdict::no_kho);
    EXPECT_EQ(p.fit_against, ScratchFitAgainst::predicted);
    for (const auto& a : p.areas) {
        EXPECT_FALSE(a.actual.has_value());
        EXPECT_TRUE(a.predicted.has_value());
    }
    // That tree was captured without boot_params, kallsyms or swiotlb: R is a
    // lower bound and says so, rather than counting them as zero.
    EXPECT_FALSE(p.reserved.unknown.empty());
    bool warned = false;
    for (const auto& w : p.warnings) warned |= w.find("lower bound") != std::string::npos;
    EXPECT_TRUE(warned);
}

TEST(ScratchCaptured, RecommendationCoversTheNeeds) {
    ScratchPlan p = plan_of(fixture("scratch-7.2-default"));
    const Recommendation& r = p.recommendation;
    EXPECT_EQ(r.param, "kho_scratch");
    EXPECT_EQ(r.word, "kho_scratch=" + r.value);
    EXPECT_EQ(r.headroom_percent, 25u);
    // lowmem holds the kexec images (stand-ins: image + brk + initrd + 1 MiB)
    // plus swiotlb (64 MiB) and the real-mode trampoline, plus swiotlb's 64 MiB
    // again: the next kernel's image (KASLR) may split the free room in two.
    const std::uint64_t images = 0x2049000 + 64 * KiB + 0xfd000 + 1 * MiB;
    EXPECT_EQ(r.lowmem.need, images + 64 * MiB + 24 * KiB + 4 * KiB + 64 * MiB);
    for (const RecommendedArea* a : {&r.lowmem, &r.global, &r.pernode}) {
        EXPECT_GE(a->size, a->need + a->need / 4);  // 25% headroom
        EXPECT_EQ(a->size % (4 * MiB), 0u);
        EXPECT_LT(a->size, a->need + a->need / 4 + 4 * MiB + 1);
    }
    EXPECT_LT(r.total, r.default_total);
    EXPECT_EQ(r.default_total, 336 * MiB);  // 236 + 0 + 100: what the kernel made
    ScratchPlanOptions none;
    none.headroom_percent = 0;
    ScratchPlan bare = plan_of(fixture("scratch-7.2-default"), none);
    EXPECT_EQ(bare.recommendation.lowmem.size, up4m(bare.recommendation.lowmem.need));
}

TEST(ScratchCaptured, NextCmdlineCrashkernelMustFit) {
    ScratchPlanOptions o;
    o.next_cmdline = "console=ttyS0 kho=on crashkernel=512M";
    ScratchPlan p = plan_of(fixture("scratch-7.2-default"), o);
    // 512 MiB of crash kernel cannot come out of a 236 MiB lowmem area on the KHO boot.
    EXPECT_FALSE(p.fits_ok);
    bool found = false;
    for (const auto& f : p.fits)
        if (f.what.find("crash kernel") != std::string::npos) {
            found = true;
            EXPECT_FALSE(f.ok);
            EXPECT_EQ(f.need, 512 * MiB);
            EXPECT_LT(f.margin(), 0);
        }
    EXPECT_TRUE(found);
    EXPECT_GE(p.recommendation.lowmem.need, 512 * MiB + 64 * MiB);
}

// ---------------------------------------------------------------------------
// Derived 1 TiB hosts (tests/fixtures/derive-scratch-hosts.py): 3 GiB below
// 4 GiB, 1021 GiB above, 8192 sections of 128 MiB (0..23 and 32..8199),
// 64 CPUs, 4-level paging, crashkernel=512M at 0xa0000000, the captured
// kernel image (0x2049000 bytes) and initrd (0xfd000 bytes).

namespace {

// Pieces both hosts share, all below 4 GiB.
constexpr std::uint64_t kImage = 0x2049000;  // 33,853,440
constexpr std::uint64_t kBrk = 64 * KiB;
constexpr std::uint64_t kInitrd = 0xfd000;  // 1,036,288
constexpr std::uint64_t kRealMode = 24 * KiB;
constexpr std::uint64_t kSwiotlb = 64 * MiB;
constexpr std::uint64_t kCrash = 512 * MiB;
// R_low = 33,853,440 + 65,536 + 1,036,288 + 24,576 + 67,108,864 + 536,870,912 = 638,959,616
constexpr std::uint64_t kRLow = kImage + kBrk + kInitrd + kRealMode + kSwiotlb + kCrash;
static_assert(kRLow == 638959616);
// Node-less pieces above 4 GiB: mem_section[] 16 KiB (4-level), swiotlb slots
// 32768 x 24 + 64 areas x 16 = 787,456, printk buffer for 64 CPUs
// (pow2(256 KiB + 63 x 4 KiB) = 512 KiB, + 16384 x (24 + 88)) = 2,359,296, other 32 KiB.
constexpr std::uint64_t kNoNodeHigh =
    16 * KiB + (786432 + 64 * 16) + (512 * KiB + 16384 * 24 + 16384 * 88) + 32 * KiB;
static_assert(kNoNodeHigh == 3195904);
constexpr std::uint64_t kPercpuUnit = 212992;  // PFN_ALIGN(174424 + 8192 + 28672)
constexpr std::uint64_t kNodeData = 16512;
constexpr std::uint64_t kLoadedOnNode0 = kImage + kBrk + kInitrd + kRealMode;  // 34,979,840

}  // namespace

TEST(ScratchLargeHost, OneTerabyteOneNode) {
    ScratchPlan p = plan_of(fixture("scratch-host-1t-1n"));
    EXPECT_EQ(p.verdict, ScratchVerdict::no_kho);  // derived: no debugfs kho/
    const auto& r = p.reserved;
    EXPECT_EQ(r.low(), kRLow);
    // memmap: 8192 sections x 2 MiB = 16 GiB
    EXPECT_EQ(part_bytes(r, ReservedPartKind::memmap), 8192 * 2 * MiB);
    // vmemmap tables: PMD pages for section groups 0..16 (17), one PUD page;
    // section roots for groups 0..32 (33); usemaps 8192 x 88 = 720,896.
    EXPECT_EQ(part_bytes(r, ReservedPartKind::vmemmap_tables), (17 + 1 + 33) * 4096 + 8192 * 88);
    EXPECT_EQ(part_bytes(r, ReservedPartKind::percpu_first_chunk), 64 * kPercpuUnit);  // 13,631,488
    // One memory node: the dentry hash (2^25 x 8) and inode hash (2^24 x 8) are
    // memblock allocations. nr_kernel_pages is about 264.1 M: dentry scale
    // 13 + 2 (adapt: 2^24 and 2^26 pages < n < 2^28) -> n >> 3 -> 2^25;
    // inode scale 14 + 2 -> n >> 4 -> 2^24.
    EXPECT_EQ(part_bytes(r, ReservedPartKind::hash_tables), 256 * MiB + 128 * MiB);
    const std::uint64_t node0 =
        kLoadedOnNode0 + 8192 * 2 * MiB + ((17 + 1 + 33) * 4096 + 8192 * 88) + kNodeData + 64 * kPercpuUnit;
    static_assert(kLoadedOnNode0 + 8192 * 2 * MiB + 929792 + 16512 + 13631488 == 17229426816);
    EXPECT_EQ(r.node_total(0), node0);
    const std::uint64_t high = (node0 - kLoadedOnNode0) + kNoNodeHigh + 384 * MiB;
    EXPECT_EQ(r.total(), kRLow + high);  // 18,239,255,680

    ASSERT_EQ(p.areas.size(), 3u);
    // lowmem = up4m(2 x 638,959,616 = 1,277,919,232) = 305 x 4 MiB = 1220 MiB
    EXPECT_EQ(p.areas[0].predicted, 1220 * MiB);
    // global = up4m(2 x (R - R_low) = 35,200,592,128) = 8393 x 4 MiB = 33,572 MiB
    EXPECT_EQ(p.areas[1].predicted, up4m(2 * high));
    EXPECT_EQ(p.areas[1].predicted, 8393 * 4 * MiB);
    // node 0 = up4m(2 x 17,229,426,816 = 34,458,853,632) = 8216 x 4 MiB = 32,864 MiB
    EXPECT_EQ(p.areas[2].predicted, 8216 * 4 * MiB);
    // The default reserves about 66 GiB of the 1 TiB; the global area double-counts
    // the node's memmap. The recommendation needs about a third of that.
    EXPECT_EQ(p.recommendation.default_total, (305 + 8393 + 8216) * 4 * MiB);
    EXPECT_LT(p.recommendation.total, p.recommendation.default_total / 3);
    EXPECT_GE(p.recommendation.pernode.need, 16 * GiB);
    EXPECT_TRUE(p.fits_ok);
}

TEST(ScratchLargeHost, OneTerabyteEightNodes) {
    ScratchPlan p = plan_of(fixture("scratch-host-1t-8n"));
    ASSERT_EQ(p.area_nodes, (std::vector<unsigned>{0, 1, 2, 3, 4, 5, 6, 7}));
    const auto& r = p.reserved;
    EXPECT_EQ(r.low(), kRLow);
    // Sections per node: node 0 has blocks 0..63 = 16 + 8 + 62 x 16 = 1016,
    // nodes 1-6 have 64 x 16 = 1024, node 7 has 64 x 16 + 8 = 1032.
    // Table pages per node: PMD pages per 512 sections first touched (node 0: 2,
    // 1-6: 2, 7: 3), the PUD page on node 0, section roots per 256 sections
    // (node 0: 4, 1-6: 4, 7: 5), usemaps 88 bytes per section.
    const std::uint64_t tables0 = (2 + 1 + 4) * 4096 + 1016 * 88;  // 118,080
    const std::uint64_t tables_mid = (2 + 4) * 4096 + 1024 * 88;   // 114,688
    const std::uint64_t tables7 = (3 + 5) * 4096 + 1032 * 88;      // 123,584
    const std::uint64_t per_node_cpu = 8 * kPercpuUnit;            // 1,703,936
    const std::uint64_t r0 = kLoadedOnNode0 + 1016 * 2 * MiB + tables0 + kNodeData + per_node_cpu;
    const std::uint64_t rmid = 1024 * 2 * MiB + tables_mid + kNodeData + per_node_cpu;
    const std::uint64_t r7 = 1032 * 2 * MiB + tables7 + kNodeData + per_node_cpu;
    static_assert(34979840 + 2130706432ull + 118080 + 16512 + 1703936 == 2167524800ull);
    EXPECT_EQ(r.node_total(0), r0);
    for (unsigned n = 1; n <= 6; ++n) EXPECT_EQ(r.node_total(n), rmid) << "node " << n;
    EXPECT_EQ(r.node_total(7), r7);
    // Eight memory nodes: hashdist is on, the hash tables are vmalloc'd later.
    EXPECT_EQ(part_bytes(r, ReservedPartKind::hash_tables), 0u);
    const std::uint64_t high = (r0 - kLoadedOnNode0) + 6 * rmid + r7 + kNoNodeHigh;
    EXPECT_EQ(r.total(), kRLow + high);

    ASSERT_EQ(p.areas.size(), 10u);
    EXPECT_EQ(p.areas[0].predicted, 1220 * MiB);
    // global = up4m(2 x 17,197,758,464) = 8201 x 4 MiB: every node's memmap once more
    EXPECT_EQ(p.areas[1].predicted, up4m(2 * high));
    EXPECT_EQ(p.areas[1].predicted, 8201 * 4 * MiB);
    // node 0 = up4m(2 x 2,167,524,800) = 1034 x 4 MiB
    EXPECT_EQ(p.areas[2].predicted, 1034 * 4 * MiB);
    // nodes 1-6 = up4m(2 x 2,149,318,784) = 1025 x 4 MiB
    for (unsigned i = 3; i <= 8; ++i) EXPECT_EQ(p.areas[i].predicted, 1025 * 4 * MiB);
    // node 7 = up4m(2 x 2,166,104,896) = 1033 x 4 MiB
    EXPECT_EQ(p.areas[9].predicted, 1033 * 4 * MiB);
    // The fixed form gives every node the same size: the largest node's need.
    EXPECT_GE(p.recommendation.pernode.need, r0 - kLoadedOnNode0);
    EXPECT_EQ(p.recommendation.pernode.why.front().find("the largest node, 7"), 0u);
}

// ---------------------------------------------------------------------------
// Malformed inputs: clear errors, never a crash or a silent zero.

namespace {

struct Broken : ::testing::Test {
    TempTree tree;
    void SetUp() override { tree.copy_from(fixture("scratch-7.2-numa2")); }
    std::string error() {
        auto in = inputs_of(tree.root());
        return in ? std::string() : in.error().describe();
    }
};

}  // namespace

TEST_F(Broken, OddNodeLists) {
    tree.write("sys/devices/system/node/has_memory", "0-\n");
    EXPECT_NE(error(), "");
    tree.write("sys/devices/system/node/has_memory", "0-1,3\n");
    EXPECT_NE(error().find("node 3"), std::string::npos) << error();
    tree.write("sys/devices/system/node/has_memory", "\n");
    EXPECT_NE(error().find("no node with memory"), std::string::npos) << error();
    tree.write("sys/devices/system/node/has_memory", "0-1\n");
    tree.remove("sys/devices/system/node/node1");
    EXPECT_NE(error().find("node 1"), std::string::npos) << error();
}

TEST_F(Broken, BlocksLinkedTwiceOrToNothing) {
    tree.symlink("../../memory/memory0", "sys/devices/system/node/node1/memory0");
    EXPECT_NE(error().find("two nodes"), std::string::npos) << error();
    tree.remove("sys/devices/system/node/node1/memory0");
    tree.symlink("../../memory/memory99", "sys/devices/system/node/node1/memory99");
    EXPECT_NE(error().find("memory block 99"), std::string::npos) << error();
}

TEST_F(Broken, MissingOrAbsurdMemoryFiles) {
    tree.write("sys/devices/system/memory/block_size_bytes", "1000\n");  // 4 KiB
    EXPECT_NE(error().find("power of two"), std::string::npos) << error();
    tree.write("sys/devices/system/memory/block_size_bytes", "zz\n");
    EXPECT_NE(error().find("block_size_bytes"), std::string::npos) << error();
    tree.write("sys/devices/system/memory/block_size_bytes", "8000000\n");
    tree.write("sys/devices/system/memory/memory3/phys_index", "ffffffffffff\n");
    EXPECT_NE(error().find("2^52"), std::string::npos) << error();
    tree.write("sys/devices/system/memory/memory3/phys_index", "00000003\n");
    tree.remove("proc/iomem");
    EXPECT_NE(error().find("iomem"), std::string::npos) << error();
    EXPECT_NE(error().find("ENOENT"), std::string::npos) << error();
}

TEST_F(Broken, IomemHiddenFromUnprivilegedReaders) {
    tree.write("proc/iomem",
               "00000000-00000000 : System RAM\n  00000000-00000000 : Kernel code\n"
               "  00000000-00000000 : Kernel bss\n");
    EXPECT_NE(error().find("root"), std::string::npos) << error();
    tree.write("proc/iomem", "this is not iomem\n");
    EXPECT_NE(error().find("start-end"), std::string::npos) << error();
}

TEST_F(Broken, OptionalInputsMissingAreNamedNotZeroed) {
    tree.remove("sys/kernel/boot_params");
    tree.remove("proc/kallsyms");
    tree.write("proc/vmstat", "nr_free_pages 1\n");
    auto in = inputs_of(tree.root());
    ASSERT_TRUE(in) << in.error().describe();
    EXPECT_TRUE(in->missing.count("boot_params"));
    EXPECT_TRUE(in->missing.count("kallsyms"));
    EXPECT_TRUE(in->missing.count("nr_memmap_boot_pages"));
    auto p = plan_scratch(*in, {});
    ASSERT_TRUE(p) << p.error().describe();
    // No initrd part rather than a zero-byte one; the percpu falls back to meminfo.
    EXPECT_EQ(part_bytes(p->reserved, ReservedPartKind::initrd), 0u);
    bool listed = false;
    for (const auto& u : p->reserved.unknown) listed |= u.find("boot_params") != std::string::npos;
    EXPECT_TRUE(listed);
    bool percpu_fallback = false;
    for (const auto& part : p->reserved.parts)
        if (part.kind == ReservedPartKind::percpu_first_chunk)
            percpu_fallback = part.source.find("meminfo") != std::string::npos;
    EXPECT_TRUE(percpu_fallback);
}

TEST_F(Broken, UnreadableInputsTurnAShortfallIntoIncomplete) {
    // Without swiotlb's size R is 65 MiB short: lowmem comes out 130 MiB small.
    tree.remove("sys/kernel/debug/swiotlb/io_tlb_nslabs");
    auto in = inputs_of(tree.root());
    ASSERT_TRUE(in) << in.error().describe();
    auto p = plan_scratch(*in, {});
    ASSERT_TRUE(p);
    EXPECT_EQ(p->verdict, ScratchVerdict::incomplete);
    EXPECT_EQ(p->areas[0].verdict, ScratchVerdict::incomplete);
    EXPECT_NE(p->areas[0].reason.find("swiotlb"), std::string::npos) << p->areas[0].reason;
    EXPECT_EQ(p->areas[2].verdict,
              ScratchVerdict::exact);  // swiotlb has no node: the node areas are unaffected
}

TEST(ScratchPlanErrors, AbsurdHeadroomAndMissingImages) {
    auto in = inputs_of(fixture("scratch-7.2-default"));
    ASSERT_TRUE(in);
    ScratchPlanOptions o;
    o.headroom_percent = 5000;
    auto p = plan_scratch(*in, o);
    ASSERT_FALSE(p);
    EXPECT_NE(p.error().describe().find("headroom"), std::string::npos);

    ScratchInputOptions bad;
    bad.kernel = "/nonexistent/bzImage";
    auto r = inputs_of(fixture("scratch-7.2-default"), bad);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().describe().find("/nonexistent/bzImage"), std::string::npos) << r.error().describe();
    TempTree t;
    t.write("notakernel", std::string(8192, 'x'));
    bad.kernel = (t.root() / "notakernel").string();
    r = inputs_of(fixture("scratch-7.2-default"), bad);
    ASSERT_FALSE(r);
}

TEST(ScratchPlanErrors, ZeroPercentEmptiesEveryArea) {
    TempTree t;
    t.copy_from(fixture("scratch-7.2-default"));
    t.write("proc/cmdline", "console=ttyS0 kho=on kho_scratch=0%\n");
    auto in = inputs_of(t.root());
    ASSERT_TRUE(in);
    auto p = plan_scratch(*in, {});
    ASSERT_TRUE(p);
    for (const auto& a : p->areas) EXPECT_EQ(a.predicted, 0u);
    bool warned = false;
    for (const auto& w : p->warnings) warned |= w.find("0%") != std::string::npos;
    EXPECT_TRUE(warned);
}

// ---------------------------------------------------------------------------
// JSON and text.

TEST(ScratchJson, PlanCarriesEveryNumber) {
    ScratchPlan p = plan_of(fixture("scratch-7.2-numa2"));
    nlohmann::json j = to_json(p);
    EXPECT_EQ(j["schema"], 1);
    EXPECT_EQ(j["rules"]["id"], "7.0-7.3");
    EXPECT_EQ(j["prediction"]["verdict"], "exact");
    EXPECT_EQ(j["prediction"]["areas"].size(), 4u);
    EXPECT_EQ(j["prediction"]["areas"][3]["node"], 1);
    EXPECT_EQ(j["prediction"]["areas"][3]["actual"], 84 * MiB);
    EXPECT_EQ(j["reserved"]["node"]["1"]["bytes"], p.reserved.node_total(1));
    EXPECT_TRUE(j["recommendation"]["word"].get<std::string>().rfind("kho_scratch=", 0) == 0);
    EXPECT_TRUE(j["next"]["fits"].is_array());
    for (const auto& f : j["next"]["fits"]) EXPECT_TRUE(f.contains("margin"));
    std::string text = format_scratch_plan(p);
    EXPECT_NE(text.find("Recommended for the next cold boot: kho_scratch="), std::string::npos);
    EXPECT_NE(text.find("verdict: exact"), std::string::npos);
}

TEST(ScratchJson, ShowListsTheAreas) {
    Sysroot root(fixture("vm-7.2-kho"));
    DebugfsState d = ensure_debugfs(root, false);
    KhoStatus k = probe_kho(root, Cmdline::parse("kho=on kho_scratch=16M,64M,32M"), d);
    nlohmann::json j = scratch_show_json(k);
    EXPECT_EQ(j["status"], "ok");
    ASSERT_EQ(j["areas"].size(), 3u);
    EXPECT_EQ(j["areas"][0]["size"], 16 * MiB);
    EXPECT_EQ(j["areas"][2]["kind"], "node");
    EXPECT_EQ(j["total"], 112 * MiB);
    EXPECT_NE(format_scratch_show(k).find("total 112 MiB"), std::string::npos);

    Sysroot none(fixture("vm-7.2-nokho"));
    DebugfsState d2 = ensure_debugfs(none, false);
    KhoStatus k2 = probe_kho(none, Cmdline::parse(""), d2);
    EXPECT_TRUE(scratch_show_json(k2)["areas"].is_null());
    EXPECT_NE(format_scratch_show(k2).find("No KHO scratch areas"), std::string::npos);
}

TEST_F(Broken, DebugfsNotMountedIsUnknownNotNoKho) {
    tree.write("proc/self/mounts", "proc /proc proc rw 0 0\nsysfs /sys sysfs rw 0 0\n");
    auto in = inputs_of(tree.root());
    ASSERT_TRUE(in) << in.error().describe();
    EXPECT_FALSE(in->debugfs_mounted);
    EXPECT_FALSE(in->current_areas.has_value());
    EXPECT_TRUE(in->missing.count("debugfs"));
    EXPECT_TRUE(in->missing.count("swiotlb"));
    auto p = plan_scratch(*in, {});
    ASSERT_TRUE(p);
    EXPECT_EQ(p->verdict, ScratchVerdict::unknown);
    EXPECT_NE(p->prediction_note.find("debugfs"), std::string::npos) << p->prediction_note;
}

TEST_F(Broken, AbsurdAreasAreAllocationRisks) {
    tree.write("proc/cmdline", "console=ttyS0 kho=on kho_scratch=1T,1T,1T\n");
    auto in = inputs_of(tree.root());
    ASSERT_TRUE(in);
    auto p = plan_scratch(*in, {});
    ASSERT_TRUE(p);
    ASSERT_FALSE(p->allocation_risks.empty());
    EXPECT_NE(p->allocation_risks[0].find("disables KHO"), std::string::npos) << p->allocation_risks[0];
}

TEST_F(Broken, MemorylessOnlineNodeOn616) {
    // 6.16-6.19 give every online node an area; a node without memory cannot have one.
    tree.write("proc/sys/kernel/osrelease", "6.16.3\n");
    tree.write("sys/devices/system/node/has_memory", "0\n");
    for (const auto& e : std::filesystem::directory_iterator(tree.root() / "sys/devices/system/node/node1"))
        if (e.path().filename().string().rfind("memory", 0) == 0 && e.path().filename() != "meminfo")
            std::filesystem::remove(e.path());
    auto in = inputs_of(tree.root());
    ASSERT_TRUE(in) << in.error().describe();
    auto p = plan_scratch(*in, {});
    ASSERT_TRUE(p);
    EXPECT_EQ(p->rules.id, "6.16-6.17");
    EXPECT_EQ(p->area_nodes, (std::vector<unsigned>{0, 1}));
    bool warned = false;
    for (const auto& w : p->warnings)
        warned |= w.find("node 1 is online without memory") != std::string::npos;
    EXPECT_TRUE(warned);
}

// Found by tools/fuzz (fuzz-iomem): an inclusive end at the top of the address
// space once wrapped the exclusive end to 0, giving a range of 2^64 - start bytes.
TEST(Iomem, ARangeEndingAtTheTopOfTheAddressSpaceDoesNotWrap) {
    auto entries = parse_iomem("fffc0000-ffffffffffffffff : Reserved\n", "/proc/iomem");
    ASSERT_TRUE(entries);
    ASSERT_EQ(entries->size(), 1u);
    EXPECT_EQ((*entries)[0].range.start, 0xfffc0000u);
    EXPECT_EQ((*entries)[0].range.end, UINT64_MAX);
    EXPECT_GE((*entries)[0].range.end, (*entries)[0].range.start);
}
