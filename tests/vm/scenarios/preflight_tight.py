"""`khoctl check` at the edge: the 35.02 MiB, 2 MiB-aligned kernel lands at the very start of a 36 MiB area.

Booted with kho_scratch=16M,36M,32M (36 MiB is the smallest 4 MiB step that
holds init_size 0x2305000): top-down placement aligns the kernel down to the
first byte of area 1, which only comes out right if the model rounds and
aligns as the kernel does. Prediction and the real load (KEXEC_FILE_DEBUG) must agree on
every segment. The guest script is preflight.py's.
"""

from scenarios import preflight
from vmtest import CheckFailed, dig, expect_eq

DESCRIPTION = "khoctl check with a scratch area exactly big enough for the kernel (16M,36M,32M); the load agrees"
APPEND = "kho=on kho_scratch=16M,36M,32M"
BINARIES = preflight.BINARIES
INCLUDE_BOOT = True
GUEST_SCRIPT = preflight.GUEST_SCRIPT


def check(result):
    try:
        doc, _ = preflight.check_fits(result)
    except CheckFailed as e:
        raise CheckFailed(f"{e}\n--- khoctl check ---\n{result.text('check.txt')}") from None
    segs = {s["name"]: s for s in dig(doc, "placement.segments")}
    global_area = dig(doc, "kho.scratch.1")
    expect_eq(segs["kernel"]["area"], 1, "kernel segment's area")
    expect_eq(segs["kernel"]["addr"], global_area["phys"], "kernel at the start of the 36 MiB global area")
