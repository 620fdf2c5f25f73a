// The purgatory's own SHA-256 and region check (purgatory/verify.c), the very
// file built into the purgatory, here built for the host: against OpenSSL on
// random bytes of every length around the block and padding edges, fed in
// random pieces, and the region walk as the purgatory runs it at a crash.
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <array>
#include <random>
#include <vector>

#include "verify.h"

namespace {

using Digest = std::array<std::uint8_t, KHOD_SHA256_DIGEST_SIZE>;

Digest openssl_sha256(const std::uint8_t* data, std::size_t len) {
    Digest d{};
    unsigned n = 0;
    EXPECT_EQ(EVP_Digest(data, len, d.data(), &n, EVP_sha256(), nullptr), 1);
    EXPECT_EQ(n, d.size());
    return d;
}

Digest purgatory_sha256(const std::uint8_t* data, std::size_t len, std::mt19937_64& rng, bool pieces) {
    khod_sha256 ctx;
    khod_sha256_init(&ctx);
    std::size_t done = 0;
    while (done < len) {
        std::size_t n = len - done;
        if (pieces) n = std::min<std::size_t>(n, rng() % 200);  // 0 too: an empty update changes nothing
        khod_sha256_update(&ctx, data + done, n);
        done += n;
    }
    Digest d{};
    khod_sha256_final(&ctx, d.data());
    return d;
}

std::vector<std::uint8_t> random_bytes(std::mt19937_64& rng, std::size_t len) {
    std::vector<std::uint8_t> b(len);
    for (auto& x : b) x = static_cast<std::uint8_t>(rng());
    return b;
}

TEST(PurgatorySha256, MatchesOpenSslAtEveryEdge) {
    std::mt19937_64 rng(0x6b686f64);
    // One block holds 55 bytes and the padding; 56..63 need a second block.
    std::vector<std::size_t> lengths = {
        0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 4096, (1u << 20) + 13, (16u << 20) + 1};
    for (std::size_t len = 0; len <= 300; ++len) lengths.push_back(len);
    for (int i = 0; i < 200; ++i) lengths.push_back(rng() % 100000);
    for (std::size_t len : lengths) {
        const auto data = random_bytes(rng, len);
        const Digest want = openssl_sha256(data.data(), len);
        EXPECT_EQ(purgatory_sha256(data.data(), len, rng, false), want) << len << " bytes at once";
        if (len < (1u << 20)) {
            EXPECT_EQ(purgatory_sha256(data.data(), len, rng, true), want) << len << " in pieces";
        }
    }
}

TEST(PurgatorySha256, KnownVector) {
    const std::string abc = "abc";
    khod_sha256 ctx;
    khod_sha256_init(&ctx);
    khod_sha256_update(&ctx, reinterpret_cast<const std::uint8_t*>(abc.data()), abc.size());
    Digest d{};
    khod_sha256_final(&ctx, d.data());
    const Digest want = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40,
                         0xde, 0x5d, 0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17,
                         0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};
    EXPECT_EQ(d, want);
}

// The regions as khod patches them: addresses (here the host's) and sizes.
khod_region region_of(const std::vector<std::uint8_t>& b, std::size_t from = 0, std::size_t len = SIZE_MAX) {
    return {reinterpret_cast<std::uintptr_t>(b.data()) + from, std::min(len, b.size() - from)};
}

TEST(PurgatoryRegions, HashesTheRegionsInOrderUpToTheFirstEmpty) {
    std::mt19937_64 rng(12);
    const auto a = random_bytes(rng, 5000), b = random_bytes(rng, 64), c = random_bytes(rng, 777);
    std::vector<std::uint8_t> all(a);
    all.insert(all.end(), b.begin(), b.end());
    all.insert(all.end(), c.begin(), c.end());
    const Digest want = openssl_sha256(all.data(), all.size());

    khod_region regions[KHOD_PURGATORY_MAX_REGIONS] = {region_of(a), region_of(b), region_of(c)};
    EXPECT_EQ(khod_regions_match(regions, KHOD_PURGATORY_MAX_REGIONS, want.data()), 1);
    // Order matters.
    khod_region swapped[KHOD_PURGATORY_MAX_REGIONS] = {region_of(b), region_of(a), region_of(c)};
    EXPECT_EQ(khod_regions_match(swapped, KHOD_PURGATORY_MAX_REGIONS, want.data()), 0);
    // A region of size 0 ends the list: what follows it is not hashed.
    khod_region ended[KHOD_PURGATORY_MAX_REGIONS] = {
        region_of(a), region_of(b), region_of(c), {0, 0}, region_of(a)};
    EXPECT_EQ(khod_regions_match(ended, KHOD_PURGATORY_MAX_REGIONS, want.data()), 1);
    // max bounds the walk even when every entry is in use.
    khod_region full[KHOD_PURGATORY_MAX_REGIONS];
    std::vector<std::uint8_t> full_bytes;
    for (std::size_t i = 0; i < KHOD_PURGATORY_MAX_REGIONS; ++i) {
        full[i] = region_of(all, i * 100, 100);
        full_bytes.insert(full_bytes.end(), all.begin() + static_cast<long>(i * 100),
                          all.begin() + static_cast<long>(i * 100 + 100));
    }
    const Digest full_want = openssl_sha256(full_bytes.data(), full_bytes.size());
    EXPECT_EQ(khod_regions_match(full, KHOD_PURGATORY_MAX_REGIONS, full_want.data()), 1);
    EXPECT_EQ(khod_regions_match(full, KHOD_PURGATORY_MAX_REGIONS - 1, full_want.data()), 0);
    // No regions: the digest of nothing.
    const Digest empty = openssl_sha256(nullptr, 0);
    khod_region none[1] = {{0, 0}};
    EXPECT_EQ(khod_regions_match(none, 1, empty.data()), 1);
}

TEST(PurgatoryRegions, AnyChangedByteOrDigestByteIsAMismatch) {
    std::mt19937_64 rng(99);
    auto kernel = random_bytes(rng, 3 * 4096 + 17), params = random_bytes(rng, 4096);
    std::vector<std::uint8_t> all(params);
    all.insert(all.end(), kernel.begin(), kernel.end());
    Digest want = openssl_sha256(all.data(), all.size());
    const khod_region regions[2] = {region_of(params), region_of(kernel)};
    ASSERT_EQ(khod_regions_match(regions, 2, want.data()), 1);
    for (int i = 0; i < 64; ++i) {
        auto& victim = i % 2 ? kernel : params;
        const std::size_t at = rng() % victim.size();
        const auto bit = static_cast<std::uint8_t>(1u << (rng() % 8));
        victim[at] ^= bit;
        EXPECT_EQ(khod_regions_match(regions, 2, want.data()), 0) << at;
        victim[at] ^= bit;
    }
    for (std::size_t i = 0; i < want.size(); ++i) {
        want[i] ^= 0x80;
        EXPECT_EQ(khod_regions_match(regions, 2, want.data()), 0) << i;
        want[i] ^= 0x80;
    }
    EXPECT_EQ(khod_regions_match(regions, 2, want.data()), 1);
}

}  // namespace
