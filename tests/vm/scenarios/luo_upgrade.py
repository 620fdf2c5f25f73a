"""Workload memory through khod across a live update into the other kernel.

In the 7.2 run this is the upgrade the issue asks for, 7.2.13 into 7.3.4;
in the 7.3 run the same path backwards, 7.3.4 into 7.2.13 (the rollback a
fleet needs when the new kernel misbehaves; the two use the same kho-v4,
luo-v5 and memfd-v2 formats). Boot 1 is as in luo-memfd, but `khoctl
prepare` stages /boot/next/bzImage (NEXT_KERNEL). Boot 2 runs the other
release (`uname -r`, checked by the harness), `KHO: exec from:` and khod's
PreviousRelease name the first, and the 256 MiB comes back through khod with
the SHA-256 of boot 1.
"""

from pathlib import Path

from scenarios import _luo
from scenarios._luo import APPEND, BINARIES, FILES, HOST_BINARIES, INCLUDE_BOOT, MEMORY  # noqa: F401
from vmtest import REPO, expect_eq, kernel_release

DESCRIPTION = "256 MiB memfd through khod from this kernel into the other (7.2.13 <-> 7.3.4)"
BOOTS = 2
BOOT_TIMEOUT = 150
SHARED_VM = REPO.parent / "shared" / "vm"


def NEXT_KERNEL(kernel: Path) -> Path:  # noqa: N802 - a harness attribute
    """7.3 after 7.2, 7.2 after 7.3."""
    return SHARED_VM / ("bzImage" if kernel_release(kernel).startswith("7.3") else "7.3/bzImage")


GUEST_SCRIPT = _luo.carry_script("/boot/next/bzImage")


def check(result):
    expect_eq(result.text("uname-2.txt").strip(), result.next_release, "uname -r in boot 2")
    expect_eq(result.next_release != result.kernel_release, True, "boot 2 runs another release")
    _luo.check_carried(result, previous_release=result.kernel_release)
