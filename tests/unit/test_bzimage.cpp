// The bzImage setup header reader: the shared 7.2 kernel (../shared/vm/bzImage,
// which CI always has beside the clone: missing is a failure, not a skip) and
// crafted images that break one rule of the kernel's bzImage64 probe each.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "khod/kexec/bzimage.hpp"
#include "tree.hpp"

using namespace khod;
using khod::test::TempTree;

namespace {

// As tests/vm/vmtest.py finds it: $KHOD_VM_KERNEL, else <repo>/../shared/vm/bzImage.
std::filesystem::path shared_bzimage() {
    if (const char* env = std::getenv("KHOD_VM_KERNEL")) return env;
    return (std::filesystem::path(KHOD_FIXTURES) / "../../../shared/vm/bzImage").lexically_normal();
}

std::vector<unsigned char> slurp(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void put16(std::vector<unsigned char>& b, std::size_t off, std::uint16_t v) {
    b[off] = v & 0xff;
    b[off + 1] = v >> 8;
}
void put32(std::vector<unsigned char>& b, std::size_t off, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) b[off + i] = (v >> (8 * i)) & 0xff;
}
std::uint16_t get16(const std::vector<unsigned char>& b, std::size_t off) {
    return static_cast<std::uint16_t>(b[off] | (b[off + 1] << 8));
}
std::uint32_t get32(const std::vector<unsigned char>& b, std::size_t off) {
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | b[off + i];
    return v;
}

std::vector<unsigned char> good_image() {
    const std::string b = khod::test::minimal_bzimage();
    return {b.begin(), b.end()};
}

class Crafted : public ::testing::Test {
protected:
    std::filesystem::path write(const std::vector<unsigned char>& bytes,
                                const std::string& name = "bzImage") {
        tree.write(name, std::string(bytes.begin(), bytes.end()));
        return tree.root() / name;
    }
    std::string refusal(const std::vector<unsigned char>& bytes) {
        auto r = read_bzimage(write(bytes));
        EXPECT_FALSE(r) << "accepted an image the kernel refuses";
        return r ? std::string() : r.error().describe();
    }
    TempTree tree;
};

}  // namespace

TEST(BzImageShared, TheSharedKernelIsThere) {
    // CI always has shared/ beside the clone; a missing kernel is a broken setup.
    ASSERT_TRUE(std::filesystem::is_regular_file(shared_bzimage()))
        << shared_bzimage() << " is missing (set KHOD_VM_KERNEL or put shared/ beside the repository)";
}

TEST(BzImageShared, HeaderMatchesTheBytesAndTheBuild) {
    const auto path = shared_bzimage();
    ASSERT_TRUE(std::filesystem::is_regular_file(path)) << path;
    auto r = read_bzimage(path);
    ASSERT_TRUE(r) << r.error().describe();
    const BzImageInfo& k = *r;
    const auto raw = slurp(path);

    // The fields, checked against the raw bytes at boot.rst's offsets.
    EXPECT_EQ(k.file_size, raw.size());
    EXPECT_EQ(k.setup_sects, raw[0x1f1] ? raw[0x1f1] : 4u);
    EXPECT_EQ(k.protocol, get16(raw, 0x206));
    EXPECT_EQ(k.xloadflags, get16(raw, 0x236));
    EXPECT_EQ(k.kernel_alignment, get32(raw, 0x230));
    EXPECT_EQ(k.init_size, get32(raw, 0x260));
    EXPECT_EQ(k.cmdline_size, get32(raw, 0x238));
    EXPECT_EQ(k.payload_offset, get32(raw, 0x248));
    EXPECT_EQ(k.payload_length, get32(raw, 0x24c));
    EXPECT_EQ(k.kernel_offset, (k.setup_sects + 1) * 512u);
    EXPECT_EQ(k.kernel_bytes, raw.size() - k.kernel_offset);
    EXPECT_EQ(k.setup_header_end, 0x202u + raw[0x201]);

    // What shared/vm/README.md says about the build (7.2.13, x86_64 defconfig,
    // RELOCATABLE, PHYSICAL_START 0x1000000, PHYSICAL_ALIGN 0x200000, no EFI stub).
    ASSERT_TRUE(k.version) << k.version_note;
    EXPECT_EQ(k.version->rfind("7.2.13 ", 0), 0u) << *k.version;
    EXPECT_EQ(k.release, "7.2.13");
    EXPECT_GE(k.protocol, 0x020c);
    EXPECT_EQ(k.protocol_string(), std::to_string(k.protocol >> 8) + "." + std::to_string(k.protocol & 0xff));
    EXPECT_TRUE(k.has(kXlfKernel64));
    EXPECT_TRUE(k.has(kXlfCanBeLoadedAbove4G));
    EXPECT_TRUE(k.has(kXlfFiveLevel));
    EXPECT_TRUE(k.relocatable);
    EXPECT_EQ(k.kernel_alignment, 0x200000u);
    EXPECT_EQ(k.pref_address, 0x1000000u);
    EXPECT_GT(k.init_size, k.kernel_bytes) << "init_size covers the decompressor's working room";
    EXPECT_FALSE(k.pe_image);
    EXPECT_FALSE(k.pe_signed);

    // It passes the host-dependent part on the VM (5-level paging on).
    EXPECT_TRUE(check_bzimage_host(k, {true, false}));
}

TEST_F(Crafted, AcceptsTheMinimalImage) {
    auto r = read_bzimage(write(good_image()));
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(r->setup_sects_raw, 0);
    EXPECT_EQ(r->setup_sects, 4u) << "setup_sects 0 means 4";
    EXPECT_EQ(r->kernel_offset, 5u * 512);
    EXPECT_EQ(r->kernel_bytes, 8192u);
    EXPECT_EQ(r->protocol_string(), "2.15");
    EXPECT_EQ(r->version, "9.9.9-test (me@here) #1");
    EXPECT_EQ(r->release, "9.9.9-test");
    EXPECT_EQ(r->init_size, 0x100000u);
    EXPECT_EQ(r->pref_address, 0x1000000u);
    EXPECT_EQ(r->setup_header_end, 0x26cu);
}

TEST_F(Crafted, TooShort) {
    auto b = good_image();
    b.resize(1023);
    auto msg = refusal(b);
    EXPECT_NE(msg.find("too short"), std::string::npos) << msg;
    EXPECT_NE(msg.find("ENOEXEC"), std::string::npos) << msg;
}

TEST_F(Crafted, NoHdrS) {
    auto b = good_image();
    b[0x202] = 'X';
    auto msg = refusal(b);
    EXPECT_NE(msg.find("HdrS"), std::string::npos) << msg;
}

TEST_F(Crafted, NoBootFlag) {
    auto b = good_image();
    put16(b, 0x1fe, 0x1234);
    auto msg = refusal(b);
    EXPECT_NE(msg.find("0x1234"), std::string::npos) << msg;
    EXPECT_NE(msg.find("0xaa55"), std::string::npos) << msg;
}

TEST_F(Crafted, OldProtocol) {
    auto b = good_image();
    put16(b, 0x206, 0x020b);
    auto msg = refusal(b);
    EXPECT_NE(msg.find("2.11"), std::string::npos) << msg;
    EXPECT_NE(msg.find("2.12"), std::string::npos) << msg;
    put16(b, 0x206, 0x020c);
    EXPECT_TRUE(read_bzimage(write(b))) << "2.12 is the oldest accepted";
}

TEST_F(Crafted, ZImage) {
    auto b = good_image();
    b[0x211] = 0;
    auto msg = refusal(b);
    EXPECT_NE(msg.find("LOADED_HIGH"), std::string::npos) << msg;
}

TEST_F(Crafted, NotSixtyFourBit) {
    auto b = good_image();
    put16(b, 0x236, kXlfCanBeLoadedAbove4G);
    auto msg = refusal(b);
    EXPECT_NE(msg.find("XLF_KERNEL_64"), std::string::npos) << msg;
}

TEST_F(Crafted, NotAbove4G) {
    auto b = good_image();
    put16(b, 0x236, kXlfKernel64);
    auto msg = refusal(b);
    EXPECT_NE(msg.find("XLF_CAN_BE_LOADED_ABOVE_4G"), std::string::npos) << msg;
}

TEST_F(Crafted, TruncatedSetup) {
    auto b = good_image();
    b[0x1f1] = 60;  // 61 sectors = 31232 bytes of setup, the file has 10752
    auto msg = refusal(b);
    EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
    EXPECT_NE(msg.find("31232"), std::string::npos) << msg;
}

TEST_F(Crafted, InitSizeSmallerThanTheKernel) {
    auto b = good_image();
    put32(b, 0x260, 4096);  // the 8 KiB protected-mode part does not fit in one page
    auto msg = refusal(b);
    EXPECT_NE(msg.find("init_size"), std::string::npos) << msg;
    EXPECT_NE(msg.find("EINVAL"), std::string::npos) << msg;
}

TEST_F(Crafted, EmptyFileAndDirectory) {
    tree.write("empty", "");
    auto r = read_bzimage(tree.root() / "empty");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().describe().find("empty"), std::string::npos);
    tree.mkdir("dir");
    r = read_bzimage(tree.root() / "dir");
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().describe().find("not a regular file"), std::string::npos);
}

TEST_F(Crafted, MissingFileNamesPathAndErrno) {
    auto r = read_bzimage(tree.root() / "nope");
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ENOENT);
    EXPECT_NE(r.error().describe().find("nope"), std::string::npos);
}

TEST_F(Crafted, VersionStringProblemsAreNotFatal) {
    auto b = good_image();
    put16(b, 0x20e, 0);
    auto r = read_bzimage(write(b));
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->version);
    EXPECT_NE(r->version_note.find("0"), std::string::npos);

    put16(b, 0x20e, 0x4000);  // past the 5 setup sectors
    r = read_bzimage(write(b));
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->version);
    EXPECT_NE(r->version_note.find("past the setup code"), std::string::npos) << r->version_note;

    put16(b, 0x20e, 0x0400);
    b[0x602] = 0x01;  // a control character inside the string
    r = read_bzimage(write(b));
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->version);
    EXPECT_NE(r->version_note.find("printable"), std::string::npos) << r->version_note;

    b = good_image();
    std::memset(&b[0x600], 'A', 5 * 512 - 0x600);  // never terminated inside the setup code
    r = read_bzimage(write(b));
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->version);
}

TEST_F(Crafted, PeSignatureIsSeen) {
    auto b = good_image();
    b[0] = 'M';
    b[1] = 'Z';
    put32(b, 0x3c, 0x40);
    std::memcpy(&b[0x40], "PE\0\0", 4);
    const std::size_t opt = 0x40 + 24;
    put16(b, opt, 0x20b);              // PE32+
    put32(b, opt + 108, 6);            // NumberOfRvaAndSizes
    put32(b, opt + 112 + 32, 0x2000);  // certificate table: file offset
    auto r = read_bzimage(write(b));
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_TRUE(r->pe_image);
    EXPECT_FALSE(r->pe_signed) << "certificate table size 0";
    put32(b, opt + 112 + 36, 0x800);  // certificate table: size
    r = read_bzimage(write(b));
    ASSERT_TRUE(r);
    EXPECT_TRUE(r->pe_signed);
}

TEST_F(Crafted, HostChecks) {
    auto r = read_bzimage(write(good_image()));
    ASSERT_TRUE(r);
    EXPECT_TRUE(check_bzimage_host(*r, {}));
    EXPECT_TRUE(check_bzimage_host(*r, {false, false}));
    auto five = check_bzimage_host(*r, {true, false});
    ASSERT_FALSE(five) << "5-level paging needs XLF_5LEVEL";
    EXPECT_NE(five.error().describe().find("XLF_5LEVEL"), std::string::npos);
    auto efi = check_bzimage_host(*r, {false, true});
    ASSERT_FALSE(efi);
    EXPECT_NE(efi.error().describe().find("32-bit"), std::string::npos);

    auto b = good_image();
    put16(b, 0x236, kXlfKernel64 | kXlfCanBeLoadedAbove4G | kXlfFiveLevel);
    r = read_bzimage(write(b));
    ASSERT_TRUE(r);
    EXPECT_TRUE(check_bzimage_host(*r, {true, false}));
}

TEST_F(Crafted, CommandLineLimitKeepsRoomForElfcorehdr) {
    auto r = read_bzimage(write(good_image()));
    ASSERT_TRUE(r);
    // cmdline_size 2047: the kernel wants len + 30 <= 2047, len counting the NUL.
    EXPECT_EQ(max_cmdline_len(*r), 2017u);
    EXPECT_TRUE(check_cmdline_len(*r, 2017));
    auto too_long = check_cmdline_len(*r, 2018);
    ASSERT_FALSE(too_long);
    EXPECT_NE(too_long.error().describe().find("2017 characters"), std::string::npos)
        << too_long.error().describe();
    EXPECT_NE(too_long.error().describe().find("at most 2016"), std::string::npos);

    auto b = good_image();
    put32(b, 0x238, 20);  // smaller than the elfcorehdr reserve: nothing fits
    r = read_bzimage(write(b));
    ASSERT_TRUE(r);
    EXPECT_EQ(max_cmdline_len(*r), 0u);
    EXPECT_FALSE(check_cmdline_len(*r, 1));
}
