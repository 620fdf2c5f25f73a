/* The purgatory's data, patched by khod per load (lib/khod/crash/purgatory.cpp),
 * and the C half of what runs at the crash (entry.S is the other). */
#include "verify.h"

/* In .data, not .bss, though they start as zeros: the loader writes them into
 * the file image it loads, and .bss has no bytes there. Global, so that
 * `strip --strip-unneeded` (dh_strip, brp-strip) keeps their names. */
#define KHOD_PATCHED __attribute__((section(".data"), aligned(8)))

uint64_t khod_kernel_entry KHOD_PATCHED; /* the capture kernel's 64-bit entry */
uint64_t khod_boot_params KHOD_PATCHED;  /* its boot_params, handed over in %rsi */
uint8_t khod_digest[KHOD_SHA256_DIGEST_SIZE] KHOD_PATCHED;
struct khod_region khod_regions[KHOD_PURGATORY_MAX_REGIONS] KHOD_PATCHED;

int khod_purgatory_verify(void);

/* Called from entry.S on the purgatory's own stack: 1 when the loaded
 * segments still hash to the digest taken when khod loaded them. */
int khod_purgatory_verify(void) {
    return khod_regions_match(khod_regions, KHOD_PURGATORY_MAX_REGIONS, khod_digest);
}
