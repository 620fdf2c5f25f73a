"""kdump under hotplug with khod in a network namespace of its own, as
khod.service runs it (PrivateNetwork=yes, khod --uevent-source=kernel).

udev's monitor is heard only in the host's network namespace; the kernel
sends its own uevents to every namespace the initial user namespace owns
(lib/kobject_uevent.c), so khod there must still see the whole storm. The
crash kernel is loaded with kexec-tools' plain `kexec -p` (crash_hotplug 0),
so the storm needs a reload: khod must make one or two, with the events it
read in its own namespace, and the capture kernel's /proc/vmcore must cover
the hot-added DIMM, as in kdump-reload.
"""

from scenarios import _kdump
from scenarios._kdump import APPEND, BINARIES, BOOTS, CRASH_APPEND, INCLUDE_BOOT, host  # noqa: F401
from vmtest import REPO, dig, expect, expect_eq

DESCRIPTION = "khod in its own network namespace (--uevent-source=kernel): storm heard, 1-2 reloads; vmcore ok"

HOST_BINARIES = _kdump.HOST_BINARIES + ["/usr/bin/unshare"]
FILES = dict(_kdump.FILES)
FILES[str(REPO / "tests/vm/files/kdump-tools.default")] = "/etc/default/kdump-tools"

GUEST_SCRIPT = _kdump.guest_script(r'''
    kexec -p /boot/bzImage --initrd=$CRASH_INITRD --append="$CRASH_APPEND" || exit 1
    KHOD_WRAPPER="unshare --net" start_khod --uevent-source=kernel || exit 1
    pid=$(pidof khod)
    vm-marker netns "$(readlink /proc/$pid/ns/net) $(readlink /proc/1/ns/net)"
''')


def check(result):
    khod_ns, init_ns = result.marker("netns", boot=1).payload.split()
    expect(khod_ns != init_ns, f"khod ran in {khod_ns}, the same network namespace as PID 1")
    kd = _kdump.check_common(result, event_source="kernel")
    reloads = dig(kd, "Reloads")
    expect(1 <= reloads <= 2, f"khod made {reloads} reloads for the storm, expected 1 or 2")
    expect_eq(dig(kd, "LastError"), "", "LastError")
