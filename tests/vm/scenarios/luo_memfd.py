"""Workload memory through khod across a kexec into the same kernel.

Boot 1: khod runs under the fd store stand-in; a client creates session vm1
with busctl and preserves 256 MiB of a seeded pattern in a memfd through
khod (khoctl luo preserve --fd); `khoctl prepare --reuse-cmdline`, finalize
and `exec` (no --force: khod's gate lets it pass since liveupdate=on is
kept). Boot 2: the kernel logs luo's "Retrieved live update data"; khod
takes its manifest back first and holds vm1 for uid 0; the client retrieves
token 7 through khod, every word matches and the SHA-256 is the one of boot
1; finishing the session leaves nothing held.
"""

from scenarios import _luo
from scenarios._luo import APPEND, BINARIES, FILES, HOST_BINARIES, INCLUDE_BOOT, MEMORY  # noqa: F401

DESCRIPTION = "256 MiB memfd preserved through khod, kexec into the same kernel, retrieved with its SHA-256"
BOOTS = 2
BOOT_TIMEOUT = 150

GUEST_SCRIPT = r'''
. /etc/khod-vm/guest-khod.sh
''' + _luo.GUEST_FUNCTIONS + r'''
if [ "$1" = 1 ]; then
    start_khod_stored || exit 1
    vm-self-initrd /tmp/self-initrd.gz
    preserve_pattern ''' + f"{_luo.SIZE} {_luo.SEED}" + r'''
    live_update_into /boot/bzImage
fi
start_khod_stored || exit 1
retrieve_pattern ''' + f"{_luo.SIZE} {_luo.SEED}" + r'''
'''


def check(result):
    _luo.check_carried(result, previous_release=result.kernel_release)
