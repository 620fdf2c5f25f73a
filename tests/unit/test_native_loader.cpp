// khod's kexec_load crash image: the capture kernel's memory map and zero
// page against what the kernel's own kexec_file loader builds, on the
// /proc/iomem the 7.2 kernel printed (fixture kdump-7.2-file); and the
// segment plan with the real purgatory object: inside the crash region, page
// aligned, not overlapping, the elfcorehdr the only segment with the ELF
// magic, the digest over everything but the purgatory and the elfcorehdr.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "khod/crash/native_loader.hpp"
#include "tree.hpp"

using namespace khod;
using khod::test::fixture;

namespace {

constexpr std::uint64_t kPage = 4096;

std::vector<IomemEntry> fixture_iomem() {
    std::ifstream in(fixture("kdump-7.2-file") / "proc/iomem");
    std::stringstream text;
    text << in.rdbuf();
    auto entries = parse_iomem(text.str(), "iomem");
    EXPECT_TRUE(entries) << entries.error().describe();
    return entries ? *entries : std::vector<IomemEntry>{};
}

template <class T>
T get(const std::vector<std::uint8_t>& bytes, std::size_t off) {
    T v{};
    std::memcpy(&v, bytes.data() + off, sizeof v);
    return v;
}

std::vector<std::uint8_t> to_bytes(const std::string& s) {
    return {s.begin(), s.end()};
}

// The minimal bzImage's setup header bytes [0x1f1, 0x202 + byte 0x201).
std::vector<std::uint8_t> setup_header_of(const std::string& image) {
    const std::size_t end = 0x202 + static_cast<unsigned char>(image[0x201]);
    return {image.begin() + 0x1f1, image.begin() + static_cast<std::ptrdiff_t>(end)};
}

// A stand-in elfcorehdr: what matters to the plan is its size and its magic.
std::vector<std::uint8_t> elf_bytes(std::size_t size) {
    std::vector<std::uint8_t> v(size, 0);
    std::memcpy(v.data(),
                "\x7f"
                "ELF",
                4);
    return v;
}

NativeCrashInputs inputs(std::vector<IomemEntry> iomem, std::size_t initrd_bytes = 3 * kPage + 5) {
    auto purgatory = PurgatoryObject::load(KHOD_PURGATORY_OBJECT);
    EXPECT_TRUE(purgatory) << purgatory.error().describe();
    NativeCrashInputs in;
    if (purgatory) in.purgatory = std::move(*purgatory);
    const std::string image = khod::test::minimal_bzimage();
    in.kernel_file = to_bytes(image);
    const auto dir = std::filesystem::temp_directory_path() / "khod-native-loader-test";
    std::filesystem::create_directories(dir);
    std::ofstream(dir / "bzImage", std::ios::binary) << image;
    auto info = read_bzimage(dir / "bzImage");
    EXPECT_TRUE(info) << info.error().describe();
    in.kernel = *info;
    std::filesystem::remove_all(dir);
    in.initrd.assign(initrd_bytes, 0x5a);
    in.has_initrd = true;
    in.cmdline = "console=ttyS0 nr_cpus=1 irqpoll reset_devices";
    in.iomem = std::move(iomem);
    in.elfcorehdr = elf_bytes(1234);
    in.elfcorehdr_capacity = 3 * kPage + 100;
    return in;
}

TEST(CaptureMemmap, MatchesTheKernelsCrashMemmapOnTheFixture) {
    const auto iomem = fixture_iomem();
    auto regions = crash_regions(iomem, "iomem");
    ASSERT_TRUE(regions) << regions.error().describe();
    EXPECT_EQ(regions->main, (PhysRange{0x2f000000, 0x3f000000}));
    EXPECT_TRUE(regions->low.empty());

    const PhysRange elf{0x2f000000, 0x2f004000};
    const auto map = capture_memmap({iomem, regions->main, {}, {}, elf});
    const std::vector<E820Entry> want{
        {0x1000, 0x9f000 - 0x1000 + 0xc00, E820Type::ram},  // 00001000-0009fbff, below 1 MiB
        {0x0, 0x1000, E820Type::reserved},
        {0x9fc00, 0x400, E820Type::reserved},
        {0xf0000, 0x10000, E820Type::reserved},
        {0x3ffe0000, 0x20000, E820Type::reserved},
        {0xb0000000, 0x10000000, E820Type::reserved},  // nested under "PCI ECAM"
        {0xfed1c000, 0x4000, E820Type::reserved},
        {0xfffc0000, 0x40000, E820Type::reserved},
        {0xfd00000000, 0x300000000, E820Type::reserved},
        {0x2f004000, 0x3f000000 - 0x2f004000, E820Type::ram},  // the crash region minus the elfcorehdr
    };
    EXPECT_EQ(map, want);
}

TEST(CaptureMemmap, NoCrashKernelRangeIsAnErrorThatSaysSo) {
    auto iomem = fixture_iomem();
    std::erase_if(iomem, [](const IomemEntry& e) { return e.name == "Crash kernel"; });
    auto regions = crash_regions(iomem, "/proc/iomem");
    ASSERT_FALSE(regions);
    EXPECT_NE(regions.error().describe().find("crashkernel="), std::string::npos);
}

TEST(CaptureMemmap, TheLowRegionIsRamAndTheHighOneHoldsTheImage) {
    std::vector<IomemEntry> iomem{{0, {0x100000, 0x80000000}, "System RAM"},
                                  {1, {0x70000000, 0x78000000}, "Crash kernel"},
                                  {0, {0x100000000, 0x200000000}, "System RAM"},
                                  {1, {0x1f0000000, 0x200000000}, "Crash kernel"}};
    auto regions = crash_regions(iomem, "iomem");
    ASSERT_TRUE(regions);
    EXPECT_EQ(regions->main, (PhysRange{0x1f0000000, 0x200000000}));
    ASSERT_EQ(regions->low.size(), 1u);
    const auto map = capture_memmap({iomem, regions->main, regions->low, {}, {0x1f0000000, 0x1f0001000}});
    EXPECT_EQ(map, (std::vector<E820Entry>{{0x70000000, 0x8000000, E820Type::ram},
                                           {0x1f0001000, 0xffff000, E820Type::ram}}));
}

TEST(BootParams, CarriesTheSetupHeaderCommandLineInitrdAndMemmap) {
    const std::string image = khod::test::minimal_bzimage();
    const auto header = setup_header_of(image);
    std::vector<std::uint8_t> firmware(kBootParamsSize, 0);
    const std::uint64_t rsdp = 0xf5a40;
    std::memcpy(firmware.data() + 0x070, &rsdp, 8);
    firmware[0x1ef] = 0xff;  // a sentinel must not come along
    BootParamsRequest req;
    req.setup_header = header;
    req.firmware = firmware;
    req.cmdline_addr = 0x1'2345'6000;
    req.initrd_addr = 0x1'3000'0000;
    req.initrd_size = 0x1'0000'0010;
    req.memmap = {{0x1000, 0x9e000, E820Type::ram},
                  {0x100000, 0x3ff00000, E820Type::ram},
                  {0xf0000, 0x10000, E820Type::reserved}};
    auto page = build_boot_params(req);
    ASSERT_TRUE(page) << page.error().describe();
    const std::vector<std::uint8_t> p(page->begin(), page->end());

    EXPECT_EQ(0, std::memcmp(p.data() + 0x202, "HdrS", 4));
    EXPECT_EQ(get<std::uint16_t>(p, 0x206), get<std::uint16_t>(to_bytes(image), 0x206));
    EXPECT_EQ(p[0x210], 0xd0);  // type_of_loader: kexec
    EXPECT_EQ(p[0x211], 0);
    EXPECT_EQ(p[0x1ef], 0);
    EXPECT_EQ(get<std::uint64_t>(p, 0x070), rsdp);
    EXPECT_EQ(get<std::uint32_t>(p, 0x228), 0x2345'6000u);
    EXPECT_EQ(get<std::uint32_t>(p, 0x0c8), 0x1u);
    EXPECT_EQ(get<std::uint32_t>(p, 0x218), 0x3000'0000u);
    EXPECT_EQ(get<std::uint32_t>(p, 0x0c0), 0x1u);
    EXPECT_EQ(get<std::uint32_t>(p, 0x21c), 0x10u);
    EXPECT_EQ(get<std::uint32_t>(p, 0x0c4), 0x1u);
    ASSERT_EQ(p[0x1e8], 3);
    EXPECT_EQ(get<std::uint64_t>(p, 0x2d0 + 20), 0x100000u);
    EXPECT_EQ(get<std::uint64_t>(p, 0x2d0 + 28), 0x3ff00000u);
    EXPECT_EQ(get<std::uint32_t>(p, 0x2d0 + 56), 2u);
    // The RAM run that crosses 1 MiB sets the legacy sizes (64 MiB cap in ext_mem_k).
    EXPECT_EQ(get<std::uint16_t>(p, 0x002), 0xfc00);
    EXPECT_EQ(get<std::uint32_t>(p, 0x1e0), (0x3fffffffu >> 10) - (0x100000u >> 10));
}

TEST(BootParams, RefusesMoreEntriesThanTheZeroPageHolds) {
    const std::string image = khod::test::minimal_bzimage();
    const auto header = setup_header_of(image);
    BootParamsRequest req;
    req.setup_header = header;
    req.memmap.assign(kZeroPageE820Max + 1, {0, kPage, E820Type::reserved});
    auto page = build_boot_params(req);
    ASSERT_FALSE(page);
    EXPECT_NE(page.error().message.find("129 entries"), std::string::npos);
}

TEST(NativePlan, SegmentsFitTheCrashRegionAndOnlyTheElfcorehdrHasTheMagic) {
    const auto in = inputs(fixture_iomem());
    auto image = plan_native_crash_image(in);
    ASSERT_TRUE(image) << image.error().describe();
    const PhysRange region{0x2f000000, 0x3f000000};
    EXPECT_EQ(image->crash_region, region);

    std::vector<std::string> order;
    for (const auto& s : image->segments) {
        order.push_back(s.what);
        EXPECT_EQ(s.mem % kPage, 0u) << s.what;
        EXPECT_EQ(s.memsz % kPage, 0u) << s.what;
        EXPECT_LE(s.bytes.size(), s.memsz) << s.what;
        EXPECT_GE(s.mem, region.start) << s.what;
        EXPECT_LE(s.mem + s.memsz, region.end) << s.what;
        const bool magic = s.bytes.size() >= 4 && std::memcmp(s.bytes.data(),
                                                              "\x7f"
                                                              "ELF",
                                                              4) == 0;
        EXPECT_EQ(magic, s.what == "elfcorehdr") << s.what;
    }
    EXPECT_EQ(order,
              (std::vector<std::string>{"elfcorehdr", "boot_params", "purgatory", "kernel", "initrd"}));
    for (std::size_t i = 1; i < image->segments.size(); ++i)
        EXPECT_LE(image->segments[i - 1].mem + image->segments[i - 1].memsz, image->segments[i].mem);

    const auto& elf = image->segments[0];
    EXPECT_EQ(elf.mem, region.start);  // where the kernel's own loader puts it
    EXPECT_EQ(elf.memsz, 4 * kPage);   // the capacity, page-rounded
    const auto& params = image->segments[1];
    const auto& purgatory = image->segments[2];
    const auto& kernel = image->segments[3];
    const auto& initrd = image->segments[4];
    EXPECT_EQ(kernel.mem % in.kernel.kernel_alignment, 0u);
    EXPECT_GE(kernel.memsz, in.kernel.init_size);
    EXPECT_EQ(image->kernel_entry, kernel.mem + 0x200);
    EXPECT_GE(image->entry, purgatory.mem);
    EXPECT_LT(image->entry, purgatory.mem + purgatory.memsz);

    // The capture kernel's command line and memory map, as the zero page has them.
    EXPECT_EQ(image->cmdline, "elfcorehdr=0x2f000000 " + in.cmdline);
    EXPECT_EQ(get<std::uint32_t>(params.bytes, 0x228), params.mem + kBootParamsSize);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(params.bytes.data()) + kBootParamsSize),
              image->cmdline);
    EXPECT_EQ(get<std::uint32_t>(params.bytes, 0x218), initrd.mem);
    EXPECT_EQ(get<std::uint32_t>(params.bytes, 0x21c), in.initrd.size());
    EXPECT_EQ(params.bytes[0x1e8], image->memmap.size());
    const auto crash_ram = std::find_if(image->memmap.begin(), image->memmap.end(), [&](const E820Entry& e) {
        return e.type == E820Type::ram && e.addr >= region.start;
    });
    ASSERT_NE(crash_ram, image->memmap.end());
    EXPECT_EQ(crash_ram->addr, elf.mem + elf.memsz);  // the elfcorehdr is not the capture kernel's RAM

    // The digest covers boot_params, the kernel and the initrd, never the
    // purgatory (patched after) or the elfcorehdr (the kernel rewrites it).
    ASSERT_EQ(image->digest_regions.size(), 3u);
    EXPECT_EQ(image->digest_regions[0].start, params.mem);
    EXPECT_EQ(image->digest_regions[0].size, params.bytes.size());
    EXPECT_EQ(image->digest_regions[1].start, kernel.mem);
    EXPECT_EQ(image->digest_regions[2].start, initrd.mem);
    EXPECT_EQ(image->digest_regions[2].size, in.initrd.size());
    EXPECT_GE(image->free_bytes, 1u << 20);
}

TEST(NativePlan, ARegionTooSmallIsRefusedBeforeAnySyscall) {
    auto iomem = fixture_iomem();
    for (auto& e : iomem)
        if (e.name == "Crash kernel") e.range.end = e.range.start + (2 << 20);
    auto image = plan_native_crash_image(inputs(iomem, 4 << 20));
    ASSERT_FALSE(image);
    EXPECT_NE(image.error().message.find("reserve more with crashkernel="), std::string::npos)
        << image.error().describe();
}

TEST(NativePlan, ACommandLineOverCmdlineSizeIsRefused) {
    auto in = inputs(fixture_iomem());
    in.cmdline = std::string(in.kernel.cmdline_size, 'x');
    auto image = plan_native_crash_image(in);
    ASSERT_FALSE(image);
    EXPECT_NE(image.error().message.find("cmdline_size"), std::string::npos) << image.error().describe();
}

TEST(NativePlan, NoInitrdMeansNoInitrdSegmentAndZeroRamdiskFields) {
    auto in = inputs(fixture_iomem());
    in.initrd.clear();
    in.has_initrd = false;
    auto image = plan_native_crash_image(in);
    ASSERT_TRUE(image) << image.error().describe();
    ASSERT_EQ(image->segments.size(), 4u);
    EXPECT_EQ(get<std::uint32_t>(image->segments[1].bytes, 0x218), 0u);
    EXPECT_EQ(get<std::uint32_t>(image->segments[1].bytes, 0x21c), 0u);
    EXPECT_EQ(image->digest_regions.size(), 2u);
}

TEST(NativeLoad, RefusesAFixtureSysroot) {
    Sysroot root(fixture("kdump-7.2-file"));
    auto r = kexec_load_crash(root, NativeCrashImage{});
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("live system"), std::string::npos);
}

}  // namespace
