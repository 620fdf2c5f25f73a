/* SHA-256 (FIPS 180-4) and the region check the purgatory makes at the crash.
 * Plain C with no library calls and no floating point: the same file is built
 * freestanding into the purgatory and, with the host's flags, into the tests
 * that compare it with OpenSSL (tests/unit/test_purgatory_sha256.cpp). */
#ifndef KHOD_PURGATORY_VERIFY_H
#define KHOD_PURGATORY_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KHOD_SHA256_DIGEST_SIZE 32
/* Entries in khod_regions; lib/khod/crash/purgatory.hpp has the same number. */
#define KHOD_PURGATORY_MAX_REGIONS 16

struct khod_sha256 {
    uint32_t state[8];
    uint64_t total;    /* bytes hashed so far */
    uint8_t block[64]; /* a partial block waiting for more bytes */
    uint32_t used;     /* bytes in block */
};

/* A physical range, identity-mapped when the purgatory runs. */
struct khod_region {
    uint64_t start;
    uint64_t size; /* 0 ends the list */
};

void khod_sha256_init(struct khod_sha256 *ctx);
void khod_sha256_update(struct khod_sha256 *ctx, const uint8_t *data, size_t len);
void khod_sha256_final(struct khod_sha256 *ctx, uint8_t out[KHOD_SHA256_DIGEST_SIZE]);

/* 1 when SHA-256 over regions[0..] (in order, up to the first of size 0 or
 * max entries) equals expected, else 0. */
int khod_regions_match(const struct khod_region *regions, size_t max,
                       const uint8_t expected[KHOD_SHA256_DIGEST_SIZE]);

#ifdef __cplusplus
}
#endif

#endif
