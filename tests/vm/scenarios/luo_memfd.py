"""Workload memory through khod across a kexec into the same kernel.

Boot 1: khod runs under the fd store stand-in; a client creates session vm1
with busctl and preserves 64 MiB of a seeded pattern in a memfd through
khod (khoctl luo preserve --fd); `khoctl prepare --reuse-cmdline`, finalize
and `exec` (no --force: khod's gate lets it pass since liveupdate=on is
kept). Boot 2: the kernel logs luo's "Retrieved live update data"; khod
takes its manifest back first and holds vm1 for uid 0; the client retrieves
token 7 through khod, every word matches and the SHA-256 is the one of boot
1; finishing the session leaves nothing held. (64 MiB keeps the tier's time
down; luo-upgrade carries 256 MiB across kernels.)
"""

from scenarios import _luo
from scenarios._luo import APPEND, BINARIES, FILES, HOST_BINARIES, INCLUDE_BOOT, MEMORY  # noqa: F401

DESCRIPTION = "64 MiB memfd preserved through khod, kexec into the same kernel, retrieved with its SHA-256"
BOOTS = 2
BOOT_TIMEOUT = 150

SIZE, SIZE_BYTES = "64M", 64 << 20
GUEST_SCRIPT = _luo.carry_script("/boot/bzImage", SIZE)


def check(result):
    _luo.check_carried(result, previous_release=result.kernel_release, size_bytes=SIZE_BYTES)
