"""kdump with khod's own kexec_load crash image (Loader=native, reached by Loader=auto).

khod runs where kexec_file_load fails with EPERM (tests/vm/no-kexec-file.cpp,
a seccomp filter, as a unit's SystemCallFilter= or a kernel that refuses the
file loader would make it), and `khoctl kdump load --loader auto` must fall
back to khod's own image: its
elfcorehdr (libelf, from the running system), boot_params and memory map as
the kernel's file loader would build them, and its purgatory relocated and
patched for this load, with kexec_load(KEXEC_ON_CRASH |
KEXEC_UPDATE_ELFCOREHDR). crash_hotplug must read 1 for cpu and memory: the
kernel rewrites khod's elfcorehdr in place. Then the storm of
scenarios/_kdump.py (cpu1 offline/online, a 1 GiB DIMM hot-added through QMP,
its blocks offlined and onlined): khod must make no reload. Then a panic: the
purgatory checks its digest and starts the capture kernel, whose /proc/vmcore
(read by `khoctl elfcorehdr show`) lists the hot-added range and the CPUs that
were online, and Debian's makedumpfile writes a dump from it.
"""

from scenarios import _kdump
from scenarios._kdump import (APPEND, BOOTS, CRASH_APPEND, FILES, HOST_BINARIES, INCLUDE_BOOT,  # noqa: F401
                              host)
from vmtest import dig, expect, expect_eq

DESCRIPTION = "khod's kexec_load image (purgatory, elfcorehdr): storm 0 reloads; capture boots; makedumpfile ok"

BINARIES = _kdump.BINARIES + ["purgatory.o", "no-kexec-file"]
HOST_BINARIES = HOST_BINARIES + ["/usr/bin/makedumpfile"]

GUEST_SCRIPT = _kdump.guest_script(r'''
    mkdir -p /etc/khod
    printf '[Kdump]\nPurgatory=/usr/lib/khod-vm/purgatory.o\n' > /etc/khod/khod.conf
    KHOD_WRAPPER=no-kexec-file start_khod || exit 1
    khoctl --json kdump load --loader auto --kernel /boot/bzImage --initrd $CRASH_INITRD \
        --append "$CRASH_APPEND" > /tmp/load.json 2>&1
    vm-marker rc-load $?
    vm-put /tmp/load.json load.json
    vm-marker hotplug-after-load "$(cat /sys/devices/system/cpu/crash_hotplug) $(cat $M/crash_hotplug)"
''', elfcorehdr=True, makedumpfile=True)


def check(result):
    expect_eq(result.marker("rc-load", boot=1).payload, "0", "khoctl kdump load --loader auto")
    load = result.json("load.json")
    expect_eq(dig(load, "kdump.Loaded"), True, "Loaded after the load")
    expect_eq(dig(load, "kdump.Loader"), "auto", "Loader after the load")
    log = result.console
    expect("Loader=auto: " in log and "EPERM" in log and "trying khod's kexec_load image" in log,
           "khod's log does not show the file loader refused and the native one tried")
    expect_eq(result.marker("hotplug-after-load", boot=1).payload, "1 1",
              "crash_hotplug for cpu and memory after kexec_load with KEXEC_UPDATE_ELFCOREHDR")
    expect_eq(dig(load, "kdump.InPlaceUpdate"), {"cpu": "yes", "memory": "yes"}, "InPlaceUpdate after the load")
    kd = _kdump.check_common(result)
    expect_eq(dig(kd, "Reloads"), 0, "khod's reloads during the storm")
    expect_eq(dig(kd, "UnloadedWindows"), [], "windows without a crash kernel")
    expect_eq(dig(kd, "Loader"), "auto", "Loader after the storm")
    _kdump.check_elfcorehdr(result)
    _kdump.check_makedumpfile(result)
