"""kdump under hotplug where the kernel cannot update the crash image.

The crash kernel is loaded the way Debian's kdump-config does it, with
kexec-tools' plain `kexec -p` (kexec_load without the hotplug flag, so
crash_hotplug reads 0), before khod starts. khod takes the recipe from
/etc/default/kdump-tools (the importer: KDUMP_KERNEL, KDUMP_INITRD,
KDUMP_CMDLINE, KDUMP_CMDLINE_APPEND). The same storm as kdump-inplace
(scenarios/_kdump.py): khod must make at most 2 reloads (each with
kexec_file_load ON_CRASH, after which the kernel updates in place), report
each window without a crash kernel, and after the panic the capture kernel's
/proc/vmcore must cover the hot-added DIMM.
"""

from scenarios import _kdump
from scenarios._kdump import (APPEND, BINARIES, BOOTS, CRASH_APPEND, HOST_BINARIES,  # noqa: F401
                              INCLUDE_BOOT, host)
from vmtest import REPO, dig, expect, expect_eq

DESCRIPTION = "kdump loaded by kexec -p; khod imports kdump-tools' recipe; storm: <=2 reloads; vmcore ok"

FILES = dict(_kdump.FILES)
FILES[str(REPO / "tests/vm/files/kdump-tools.default")] = "/etc/default/kdump-tools"

GUEST_SCRIPT = _kdump.guest_script(r'''
    kexec -p /boot/bzImage --initrd=$CRASH_INITRD --append="$CRASH_APPEND" || exit 1
    vm-marker kexec-p "$(cat /sys/kernel/kexec_crash_loaded) $(cat $M/crash_hotplug)"
    start_khod || exit 1
''')


def check(result):
    expect_eq(result.marker("kexec-p", boot=1).payload, "1 0",
              "kexec_crash_loaded and crash_hotplug after kexec -p")
    before = result.json("status-before.json")
    expect_eq(dig(before, "kdump.InPlaceUpdate"), {"cpu": "no", "memory": "no"}, "InPlaceUpdate before the storm")
    expect_eq(dig(before, "kdump.Recipe.source"), "/etc/default/kdump-tools", "where khod's recipe came from")
    expect_eq(dig(before, "kdump.Recipe.cmdline"), _kdump.CRASH_APPEND, "the imported crash command line")
    kd = _kdump.check_common(result)
    reloads = dig(kd, "Reloads")
    expect(1 <= reloads <= 2, f"khod made {reloads} reloads for the storm, expected 1 or 2")
    windows = dig(kd, "UnloadedWindows")
    expect_eq(len(windows), reloads, "one window without a crash kernel per reload")
    for w in windows:
        expect(not w["open"] and 0 < w["duration_usec"] < 30_000_000, f"window {w}")
    expect_eq(dig(kd, "UnloadedWindowUsecTotal"), sum(w["duration_usec"] for w in windows),
              "UnloadedWindowUsecTotal")
    expect_eq(dig(kd, "LastError"), "", "LastError")
