// The target-kernel check: payload decompression for each format the kernel's
// `make` produces (synthetic images compressed here with the same libraries),
// the string search across chunk boundaries, the refusal message, what the
// 7.2 fixture hands over, and the shared 7.2 and 7.3 kernels, which CI always
// has beside the clone (missing is a failure, not a skip).
#include <gtest/gtest.h>
#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>

#include "khod/kho/handover.hpp"
#include "khod/kho/handover_checks.hpp"
#include "khod/kho/target_compat.hpp"
#include "tree.hpp"

using namespace khod;
using khod::test::fixture;
using khod::test::TempTree;

namespace {

using Bytes = std::vector<unsigned char>;

std::filesystem::path shared_kernel(const char* env, const char* rel) {
    if (const char* e = std::getenv(env)) return e;
    return (std::filesystem::path(KHOD_FIXTURES) / "../../../shared/vm" / rel).lexically_normal();
}

void put16(Bytes& b, std::size_t off, std::uint16_t v) {
    b[off] = v & 0xff;
    b[off + 1] = v >> 8;
}
void put32(Bytes& b, std::size_t off, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) b[off + i] = (v >> (8 * i)) & 0xff;
}

// A setup header the kexec probe accepts (as in test_bzimage.cpp), 4 setup
// sectors, then the payload at payload_offset 0 of the protected-mode part.
Bytes wrap(const Bytes& payload) {
    Bytes b(5 * 512, 0);
    put16(b, 0x1fe, 0xAA55);
    b[0x200] = 0xeb;
    b[0x201] = 0x6a;
    std::memcpy(&b[0x202], "HdrS", 4);
    put16(b, 0x206, 0x020f);
    put16(b, 0x20e, 0x0400);
    b[0x211] = kLoadedHigh;
    put32(b, 0x230, 0x200000);
    b[0x234] = 1;
    put16(b, 0x236, kXlfKernel64 | kXlfCanBeLoadedAbove4G);
    put32(b, 0x238, 2047);
    put32(b, 0x248, 0);
    put32(b, 0x24c, static_cast<std::uint32_t>(payload.size()));
    put32(b, 0x260, 0x10000000);
    const char version[] = "9.9.9-test (me@here) #1";
    std::memcpy(&b[0x600], version, sizeof version);
    b.insert(b.end(), payload.begin(), payload.end());
    return b;
}

// 6 MiB of poorly compressible bytes with kernel-like strings in it, one at the
// very end so the whole stream must be read.
Bytes vmlinux() {
    Bytes v(6u << 20);
    std::uint64_t x = 0x9e3779b97f4a7c15ull;
    for (auto& c : v) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        c = static_cast<unsigned char>(x % 40);  // some redundancy, no accidental strings
    }
    auto put = [&](std::size_t at, const char* s) { std::memcpy(&v[at], s, std::strlen(s) + 1); };
    put(1000, "kho-v4");
    put(3u << 20, "luo-v5");
    put(v.size() - 12, "kho-test-v1");
    return v;
}

void append_size(Bytes& out, std::size_t n) {  // what the kernel's Makefile appends
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<unsigned char>(n >> (8 * i)));
}

Bytes gzip(const Bytes& in) {
    z_stream z{};
    EXPECT_EQ(deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    Bytes out(deflateBound(&z, in.size()));
    z.next_in = const_cast<unsigned char*>(in.data());
    z.avail_in = static_cast<uInt>(in.size());
    z.next_out = out.data();
    z.avail_out = static_cast<uInt>(out.size());
    EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
    out.resize(z.total_out);
    deflateEnd(&z);
    append_size(out, in.size());
    return out;
}

Bytes xz(const Bytes& in) {
    Bytes out(lzma_stream_buffer_bound(in.size()));
    std::size_t pos = 0;
    EXPECT_EQ(lzma_easy_buffer_encode(1, LZMA_CHECK_CRC32, nullptr, in.data(), in.size(), out.data(), &pos,
                                      out.size()),
              LZMA_OK);
    out.resize(pos);
    append_size(out, in.size());
    return out;
}

Bytes zstd(const Bytes& in) {
    Bytes out(ZSTD_compressBound(in.size()));
    // With a checksum, as the zstd command (which the kernel's make runs) writes by default.
    ZSTD_CCtx* cctx = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    std::size_t n = ZSTD_compress2(cctx, out.data(), out.size(), in.data(), in.size());
    ZSTD_freeCCtx(cctx);
    EXPECT_FALSE(ZSTD_isError(n));
    out.resize(n);
    append_size(out, in.size());
    return out;
}

// lz4 -l: the legacy frame, 8 MiB blocks each behind its compressed size.
Bytes lz4(const Bytes& in, std::size_t block = 8u << 20) {
    Bytes out{0x02, 0x21, 0x4c, 0x18};
    for (std::size_t off = 0; off < in.size(); off += block) {
        const int len = static_cast<int>(std::min(block, in.size() - off));
        Bytes c(static_cast<std::size_t>(LZ4_compressBound(len)));
        const int n =
            LZ4_compress_default(reinterpret_cast<const char*>(in.data() + off),
                                 reinterpret_cast<char*>(c.data()), len, static_cast<int>(c.size()));
        EXPECT_GT(n, 0);
        append_size(out, static_cast<std::size_t>(n));
        out.insert(out.end(), c.begin(), c.begin() + n);
    }
    append_size(out, in.size());
    return out;
}

std::vector<CompatNeed> needs_72() {
    return {{CompatRole::kho_root, "kho-v4", ""},
            {CompatRole::luo, "luo-v5", "LUO"},
            {CompatRole::producer, "kho-test-v1", "kho_test"}};
}

class Target : public ::testing::Test {
protected:
    std::filesystem::path write(const Bytes& bytes, const std::string& name = "bzImage") {
        tree.write(name, std::string(bytes.begin(), bytes.end()));
        return tree.root() / name;
    }
    TempTree tree;
};

}  // namespace

TEST(PayloadFormat, ByMagic) {
    auto fmt = [](std::initializer_list<unsigned char> b) { return detect_payload_format(Bytes(b)); };
    EXPECT_EQ(fmt({0x1f, 0x8b, 8}), PayloadFormat::gzip);
    EXPECT_EQ(fmt({0xfd, '7', 'z', 'X', 'Z', 0}), PayloadFormat::xz);
    EXPECT_EQ(fmt({0x28, 0xb5, 0x2f, 0xfd}), PayloadFormat::zstd);
    EXPECT_EQ(fmt({0x02, 0x21, 0x4c, 0x18}), PayloadFormat::lz4);
    EXPECT_EQ(fmt({'B', 'Z', 'h', '9'}), PayloadFormat::bzip2);
    EXPECT_EQ(fmt({0x5d, 0, 0, 0x80}), PayloadFormat::lzma);
    EXPECT_EQ(fmt({0x89, 'L', 'Z', 'O'}), PayloadFormat::lzo);
    EXPECT_EQ(fmt({0x7f, 'E', 'L', 'F'}), PayloadFormat::unknown);
}

TEST(StringScanner, FindsAStringSplitAcrossChunks) {
    StringScanner s({"kho-v4", "memfd-v2"});
    const std::string a = "....kh", b = "o-v4", c = std::string("\0memf", 5), d = std::string("d-v2\0", 5);
    for (const std::string* part : {&a, &b, &c, &d})
        s.feed(std::span(reinterpret_cast<const unsigned char*>(part->data()), part->size()));
    EXPECT_TRUE(s.found(0));
    EXPECT_TRUE(s.found(1));
    EXPECT_TRUE(s.all_found());
}

TEST(StringScanner, NeedsTheTerminatingNul) {
    StringScanner s({"kho-v4"});
    const std::string text = "kho-v45 kho-v4x";
    s.feed(std::span(reinterpret_cast<const unsigned char*>(text.data()), text.size() + 1));
    EXPECT_FALSE(s.found(0));
}

TEST_F(Target, EachFormatDecompressesAndEveryStringIsFound) {
    const Bytes v = vmlinux();
    const std::pair<PayloadFormat, Bytes> cases[] = {{PayloadFormat::gzip, gzip(v)},
                                                     {PayloadFormat::xz, xz(v)},
                                                     {PayloadFormat::zstd, zstd(v)},
                                                     {PayloadFormat::lz4, lz4(v, 1u << 20)}};
    for (const auto& [format, payload] : cases) {
        SCOPED_TRACE(to_string(format));
        PayloadLimits small;
        small.chunk = 64 * 1024;  // many chunk boundaries
        auto r = check_target_compat(write(wrap(payload)), needs_72(), {}, small);
        EXPECT_TRUE(r.ok()) << (r.failure ? r.failure->describe() : "");
        EXPECT_EQ(r.payload.format, format);
        EXPECT_EQ(r.payload.decompressed, v.size());
        EXPECT_EQ(r.release, "9.9.9-test");
        for (const auto& f : r.findings) EXPECT_TRUE(f.found) << f.need.compatible;
    }
}

TEST_F(Target, AMissingStringIsANamedRefusal) {
    auto needs = needs_72();
    needs.push_back({CompatRole::file_handler, "memfd-v2", ""});
    const CarriedState carried{2, 256ull << 20, true};
    auto r = check_target_compat(write(wrap(zstd(vmlinux()))), needs, carried);
    ASSERT_TRUE(r.failure);
    EXPECT_EQ(r.failure->kind, Errc::target_incompatible);
    EXPECT_EQ(r.failure->describe(),
              "target 9.9.9-test cannot restore memfds: \"memfd-v2\" not found; booting it would drop 2 "
              "sessions, 256 MiB");
    EXPECT_TRUE(r.payload.complete);  // it had to read to the end to know

    auto kho = check_target_compat(write(wrap(gzip(Bytes(1u << 20, 'x')))), needs_72(), {1, 4096, false});
    ASSERT_TRUE(kho.failure);
    EXPECT_EQ(kho.failure->describe(),
              "target 9.9.9-test has no KHO: \"kho-v4\" not found, has no LUO: \"luo-v5\" not found, has no "
              "kho_test: \"kho-test-v1\" not found; booting it would drop 1 session, 4 KiB");
}

TEST_F(Target, TruncatedAndCorruptStreamsNameThePath) {
    const Bytes v = vmlinux();
    const std::pair<const char*, Bytes> cases[] = {
        {"gzip", gzip(v)}, {"xz", xz(v)}, {"zstd", zstd(v)}, {"lz4", lz4(v)}};
    for (const auto& [name, full] : cases) {
        SCOPED_TRACE(name);
        Bytes cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(full.size() / 2));
        auto r = check_target_compat(write(wrap(cut)), {{CompatRole::producer, "not-there-v1", "x"}}, {});
        ASSERT_TRUE(r.failure);
        EXPECT_EQ(r.failure->kind, Errc::preflight_failed);
        EXPECT_NE(r.failure->describe().find((tree.root() / "bzImage").string()), std::string::npos);
        EXPECT_TRUE(r.failure->describe().find("truncated") != std::string::npos ||
                    r.failure->describe().find("corrupt") != std::string::npos)
            << r.failure->describe();

        Bytes bad = full;
        for (std::size_t i = 64; i < 4096 && i < bad.size(); ++i) bad[i] ^= 0x5a;
        auto c = check_target_compat(write(wrap(bad)), {{CompatRole::producer, "not-there-v1", "x"}}, {});
        ASSERT_TRUE(c.failure);
        EXPECT_EQ(c.failure->kind, Errc::preflight_failed) << c.failure->describe();
    }
}

TEST_F(Target, OtherFormatsAndOversizedOutputAreRefused) {
    Bytes bz{'B', 'Z', 'h', '9', 0x31, 0x41, 0x59, 0x26};
    auto r = check_target_compat(write(wrap(bz)), needs_72(), {});
    ASSERT_TRUE(r.failure);
    EXPECT_NE(r.failure->describe().find("bzip2 payload: not supported"), std::string::npos);

    PayloadLimits tiny;
    tiny.max_output = 1u << 20;
    auto big = check_target_compat(write(wrap(zstd(vmlinux()))), needs_72(), {}, tiny);
    ASSERT_TRUE(big.failure);
    EXPECT_NE(big.failure->describe().find("more than 1 MiB"), std::string::npos) << big.failure->describe();
}

TEST_F(Target, APayloadOutsideTheFileIsRefused) {
    Bytes img = wrap(gzip(Bytes(100, 'a')));
    put32(img, 0x24c, 1u << 30);
    auto r = check_target_compat(write(img), needs_72(), {});
    ASSERT_TRUE(r.failure);
    EXPECT_NE(r.failure->describe().find("outside the file"), std::string::npos) << r.failure->describe();
}

TEST(HandoverNeeds, WhatThe72FixtureHandsOver) {
    Sysroot root(fixture("vm-7.2-kho"));
    auto n = read_handover_needs(root, {1, 1 << 20, true});
    ASSERT_TRUE(n) << n.error().describe();
    std::vector<std::string> got;
    for (const CompatNeed& c : n->needs) got.push_back(std::string(to_string(c.role)) + ":" + c.compatible);
    EXPECT_EQ(got, (std::vector<std::string>{"kho-root:kho-v4", "luo:luo-v5", "producer:kho-test-v1",
                                             "file-handler:memfd-v2"}));
}

TEST(HandoverNeeds, AKhoBootedKernelTakesTheRootVersionFromKhoIn) {
    Sysroot root(fixture("vm-7.2-kho-in"));
    auto n = read_handover_needs(root, {});
    ASSERT_TRUE(n) << n.error().describe();
    ASSERT_FALSE(n->needs.empty());
    EXPECT_EQ(n->needs.front().compatible, "kho-v4");
    EXPECT_EQ(n->needs.front().role, CompatRole::kho_root);
}

TEST(HandoverNeeds, NoKhoIsAnError) {
    Sysroot root(fixture("vm-7.2-nokho"));
    EXPECT_FALSE(read_handover_needs(root, {}));
}

TEST(SharedKernels, TheyCanTakeWhat72HandsOver) {
    for (const auto& path :
         {shared_kernel("KHOD_VM_KERNEL", "bzImage"), shared_kernel("KHOD_VM_KERNEL_73", "7.3/bzImage")}) {
        ASSERT_TRUE(std::filesystem::is_regular_file(path))
            << path
            << " is missing (set KHOD_VM_KERNEL / KHOD_VM_KERNEL_73 or put shared/ beside the repository)";
        Sysroot root(fixture("vm-7.2-kho"));
        auto r = check_target_for_handover(root, path, {2, 256ull << 20, true});
        EXPECT_TRUE(r.ok()) << r.failure->describe();
        EXPECT_EQ(r.findings.size(), 4u);
        std::cout << "[ timing   ] " << path.string() << ": " << r.release.value_or("?") << ", "
                  << to_string(r.payload.format) << ", " << r.payload.decompressed << " bytes decompressed ("
                  << (r.payload.complete ? "whole" : "stopped early") << ") in " << r.seconds << " s\n";
        // Everything else, to time the worst case: a string no kernel has.
        auto all = check_target_compat(path, {{CompatRole::producer, "no-such-thing-v9", "none"}}, {});
        ASSERT_TRUE(all.failure);
        EXPECT_EQ(all.failure->kind, Errc::target_incompatible);
        EXPECT_TRUE(all.payload.complete);
        std::cout << "[ timing   ] whole payload: " << all.payload.decompressed << " bytes in " << all.seconds
                  << " s\n";
    }
}

// tools/fetch-distro-kernel's Debian cloud kernel, when the caller points at
// it: built without KEXEC_HANDOVER, so it must be refused.
TEST(DistroKernel, WithoutKhoIsRefused) {
    const char* env = std::getenv("KHOD_DISTRO_KERNEL");
    if (!env) GTEST_SKIP() << "KHOD_DISTRO_KERNEL not set (tools/fetch-distro-kernel prints one)";
    Sysroot root(fixture("vm-7.2-kho"));
    auto r = check_target_for_handover(root, env, {2, 256ull << 20, true});
    ASSERT_TRUE(r.failure);
    EXPECT_EQ(r.failure->kind, Errc::target_incompatible) << r.failure->describe();
    std::cout << "[ distro   ] " << to_string(r.payload.format) << ": " << r.failure->describe() << '\n';
}

TEST(HandoverPrepare, AnIncompatibleTargetLeavesNothingPrepared) {
    TempTree tree;
    tree.copy_from(fixture("vm-7.2-kho"));
    const Bytes img = wrap(gzip(Bytes(1u << 20, 'x')));
    tree.write("next/bzImage", std::string(img.begin(), img.end()));
    Sysroot root{tree.root()};
    struct NoKexec : KexecBackend {
        Result<void> load(const HandoverTarget&) override { return {}; }
        Result<void> unload() override { return {}; }
        Result<void> reboot_into_loaded(bool) override { return {}; }
        bool systemd_is_pid1() const override { return false; }
    } backend;
    HandoverHooks hooks;  // no preflight: only the target check
    hooks.target_compat = check_target_handover;
    hooks.carried = [] { return CarriedState{2, 256ull << 20, true}; };
    Handover h(root, backend, tree.root() / "run", hooks);
    h.recover();
    HandoverTarget target;
    target.kernel = (tree.root() / "next/bzImage").string();
    auto r = h.prepare(target);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, Errc::target_incompatible);
    EXPECT_NE(r.error().describe().find("has no KHO: \"kho-v4\" not found"), std::string::npos);
    EXPECT_NE(r.error().describe().find("drop 2 sessions, 256 MiB"), std::string::npos);
    EXPECT_EQ(h.state(), HandoverState::idle);
    EXPECT_FALSE(std::filesystem::exists(h.record_path()));
}
