"""`khoctl check` predicts that no scratch area can take the kernel; the real load agrees.

Booted with kho_scratch=16M,32M,32M: the bzImage's init_size (from its setup
header: 0x2305000, 35.02 MiB, for the shared 7.2 kernel, 0x2335000, 35.2 MiB,
for 7.3) is what the kernel segment needs of one (4 MiB-aligned) area, and the
largest has 32 MiB. The check must fail naming that area, the shortfall (3.0
or 3.2 MiB) and 36 MiB, init_size rounded up to 4 MiB, as the smallest
kho_scratch size that would do; kexec_file_load must fail with
EADDRNOTAVAIL after placing the purgatory and boot params where predicted.
The guest script is preflight.py's.
"""

from scenarios import preflight
from vmtest import CheckFailed, dig, expect, expect_eq, kernel_init_size

DESCRIPTION = "khoctl check predicts no room for the kernel (16M,32M,32M); the real load fails with EADDRNOTAVAIL"
APPEND = "kho=on kho_scratch=16M,32M,32M"
BINARIES = preflight.BINARIES
INCLUDE_BOOT = True
GUEST_SCRIPT = preflight.GUEST_SCRIPT

MiB = 1 << 20


def check_noroom(result):
    doc, truth = preflight.check_common(result)
    rc = int(result.marker("check-rc").payload)
    expect_eq(rc, 1, "khoctl check exit code (a check failed)")
    expect_eq(dig(doc, "ok"), False, "ok")
    fit = [c for c in doc["checks"] if c["name"] == "scratch-fit"][0]
    expect_eq(fit["status"], "failed", "scratch-fit status")

    expect_eq(dig(doc, "placement.fits"), False, "placement.fits")
    expect_eq(dig(doc, "placement.failed"), "kernel", "placement.failed")
    expect_eq(dig(doc, "placement.largest_area.size"), 32 * MiB, "placement.largest_area.size")
    expect_eq(dig(doc, "placement.largest_area.index"), 1, "placement.largest_area.index (first of the largest)")
    init_size = dig(doc, "kernel.init_size")
    expect_eq(init_size, kernel_init_size(result.kernel), "kernel.init_size vs the bzImage's setup header")
    expect_eq(dig(doc, "placement.needed"), init_size, "placement.needed (init_size, page-rounded)")
    shortfall = init_size - 32 * MiB
    expect_eq(dig(doc, "placement.shortfall"), shortfall, "placement.shortfall")
    suggested = -(-init_size // (4 * MiB)) * 4 * MiB     # kho_scratch sizes are rounded up to 4 MiB
    expect_eq(dig(doc, "placement.suggested_area_size"), suggested, "placement.suggested_area_size")
    for words in ("area 1 (global, 32 MiB", f"{shortfall / MiB:.1f} MiB short",
                  f"at least {suggested // MiB} MiB", "EADDRNOTAVAIL"):
        expect(words in fit["message"], f"scratch-fit message lacks {words!r}: {fit['message']}")

    # the kernel: the same refusal, nothing left loaded
    expect_eq(truth["load_rc"], "1", f"kexec-load-probe load exit code ({truth['load_out']})")
    expect("EADDRNOTAVAIL" in truth["load_out"], f"load error: {truth['load_out']}")
    expect_eq(truth["loaded_after_load"], "0", "/sys/kernel/kexec/loaded after the failed load")
    expect_eq(truth["unload_rc"], "0", f"unload with nothing loaded ({truth['unload_out']})")

    # the segments before the kernel went where the model put them; the kernel went nowhere
    dmesg = result.text("dmesg-load.txt")
    placed = preflight.kernel_placed(dmesg)
    segs = {s["name"]: s for s in dig(doc, "placement.segments")}
    for name in ("purgatory", "boot-params"):
        expect(name in placed, f"dmesg has no 'Loaded {name}' line")
        expect_eq(segs[name]["addr"], placed[name], f"{name} address: predicted vs kernel")
    expect("kernel" not in placed, "the kernel logged a kernel placement, but the model says no room")
    expect_eq(segs["kernel"]["addr"], None, "predicted kernel address")
    expect_eq(segs["initrd"]["attempted"], False, "initrd is not tried after the kernel fails")
    preflight.check_loader_sizes(doc, dmesg)


def check(result):
    try:
        check_noroom(result)
    except CheckFailed as e:
        raise CheckFailed(f"{e}\n--- khoctl check ---\n{result.text('check.txt')}") from None
