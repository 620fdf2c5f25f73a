"""khod's native image takes over from kexec-tools' plain `kexec -p`.

The crash kernel is loaded the way Debian's kdump-config does it, with
`kexec -p` (kexec_load without the hotplug flag: crash_hotplug reads 0),
before khod starts with Loader=native and the recipe imported from
/etc/default/kdump-tools. khod replaces that image once, at start, with its
own kexec_load image (crash_hotplug 1); the storm of scenarios/_kdump.py
after that costs no reload, and the capture kernel's /proc/vmcore covers the
hot-added DIMM.
"""

from scenarios import _kdump
from scenarios._kdump import (APPEND, BOOTS, CRASH_APPEND, HOST_BINARIES, INCLUDE_BOOT, host)  # noqa: F401
from vmtest import REPO, dig, expect_eq

DESCRIPTION = "kdump loaded by kexec -p; khod (Loader=native) replaces it once at start; storm: 0 reloads"

BINARIES = _kdump.BINARIES + ["purgatory.o"]
FILES = dict(_kdump.FILES)
FILES[str(REPO / "tests/vm/files/kdump-tools.default")] = "/etc/default/kdump-tools"

GUEST_SCRIPT = _kdump.guest_script(r'''
    kexec -p /boot/bzImage --initrd=$CRASH_INITRD --append="$CRASH_APPEND" || exit 1
    vm-marker kexec-p "$(cat /sys/kernel/kexec_crash_loaded) $(cat $M/crash_hotplug)"
    mkdir -p /etc/khod
    printf '[Kdump]\nLoader=native\nPurgatory=/usr/lib/khod-vm/purgatory.o\n' > /etc/khod/khod.conf
    start_khod || exit 1
    wait_idle || exit 1
    khoctl --json kdump status > /tmp/takeover.json 2>&1
    vm-put /tmp/takeover.json takeover.json
    vm-marker after-takeover "$(cat /sys/kernel/kexec_crash_loaded) $(cat /sys/devices/system/cpu/crash_hotplug) $(cat $M/crash_hotplug)"
''')


def check(result):
    expect_eq(result.marker("kexec-p", boot=1).payload, "1 0", "kexec_crash_loaded and crash_hotplug after kexec -p")
    taken = dig(result.json("takeover.json"), "kdump")
    expect_eq(dig(taken, "Reloads"), 1, "khod's reloads at start (the takeover)")
    expect_eq(dig(taken, "Loader"), "native", "Loader of the imported recipe")
    expect_eq(dig(taken, "Recipe.source"), "/etc/default/kdump-tools", "where khod's recipe came from")
    expect_eq(result.marker("after-takeover", boot=1).payload, "1 1 1",
              "kexec_crash_loaded and crash_hotplug (cpu, memory) after the takeover")
    expect_eq(dig(taken, "UnloadedWindows")[0]["cause"][:8], "takeover", "the takeover's window")
    kd = _kdump.check_common(result)
    expect_eq(dig(kd, "Reloads"), 1, "khod's reloads after the storm (the takeover alone)")
    expect_eq(dig(kd, "LastError"), "", "LastError")
