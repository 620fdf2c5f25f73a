/* SHA-256 as FIPS 180-4 defines it, and the purgatory's region check. No
 * library calls (no memcpy, memset or memcmp: the purgatory has none to call)
 * and no floating point. */
#include "verify.h"

/* The first 32 bits of the fractional parts of the cube roots of the first 64
 * primes (FIPS 180-4, 4.2.2). */
static const uint32_t round_constants[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static uint32_t rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }

static uint32_t load_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static void store_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* One 64-byte block into the state (FIPS 180-4, 6.2.2). */
static void compress(uint32_t state[8], const uint8_t *block) {
    uint32_t w[64];
    uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
    uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
    unsigned i;

    for (i = 0; i < 16; i++) w[i] = load_be32(block + 4 * i);
    for (i = 16; i < 64; i++) {
        uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    for (i = 0; i < 64; i++) {
        uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) +
                      round_constants[i] + w[i];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
}

void khod_sha256_init(struct khod_sha256 *ctx) {
    /* The first 32 bits of the fractional parts of the square roots of the
     * first 8 primes (FIPS 180-4, 5.3.3). */
    ctx->state[0] = 0x6a09e667;
    ctx->state[1] = 0xbb67ae85;
    ctx->state[2] = 0x3c6ef372;
    ctx->state[3] = 0xa54ff53a;
    ctx->state[4] = 0x510e527f;
    ctx->state[5] = 0x9b05688c;
    ctx->state[6] = 0x1f83d9ab;
    ctx->state[7] = 0x5be0cd19;
    ctx->total = 0;
    ctx->used = 0;
}

void khod_sha256_update(struct khod_sha256 *ctx, const uint8_t *data, size_t len) {
    ctx->total += len;
    if (ctx->used != 0) {
        while (len != 0 && ctx->used < 64) {
            ctx->block[ctx->used++] = *data++;
            len--;
        }
        if (ctx->used < 64) return;
        compress(ctx->state, ctx->block);
        ctx->used = 0;
    }
    /* Whole blocks straight from the input: the bulk of a crash kernel's bytes. */
    while (len >= 64) {
        compress(ctx->state, data);
        data += 64;
        len -= 64;
    }
    while (len != 0) {
        ctx->block[ctx->used++] = *data++;
        len--;
    }
}

void khod_sha256_final(struct khod_sha256 *ctx, uint8_t out[KHOD_SHA256_DIGEST_SIZE]) {
    uint64_t bits = ctx->total * 8;
    unsigned i;

    /* A 1 bit, zeros up to 56 bytes into a block, the length in bits (5.1.1). */
    ctx->block[ctx->used++] = 0x80;
    if (ctx->used > 56) {
        while (ctx->used < 64) ctx->block[ctx->used++] = 0;
        compress(ctx->state, ctx->block);
        ctx->used = 0;
    }
    while (ctx->used < 56) ctx->block[ctx->used++] = 0;
    store_be32(ctx->block + 56, (uint32_t)(bits >> 32));
    store_be32(ctx->block + 60, (uint32_t)bits);
    compress(ctx->state, ctx->block);
    ctx->used = 0;
    for (i = 0; i < 8; i++) store_be32(out + 4 * i, ctx->state[i]);
}

int khod_regions_match(const struct khod_region *regions, size_t max,
                       const uint8_t expected[KHOD_SHA256_DIGEST_SIZE]) {
    struct khod_sha256 ctx;
    uint8_t got[KHOD_SHA256_DIGEST_SIZE];
    uint8_t diff = 0;
    size_t i;

    khod_sha256_init(&ctx);
    for (i = 0; i < max && regions[i].size != 0; i++)
        khod_sha256_update(&ctx, (const uint8_t *)(uintptr_t)regions[i].start, (size_t)regions[i].size);
    khod_sha256_final(&ctx, got);
    for (i = 0; i < KHOD_SHA256_DIGEST_SIZE; i++) diff |= (uint8_t)(got[i] ^ expected[i]);
    return diff == 0;
}
