"""kdump under hotplug where the kernel updates the crash image in place.

khod loads the crash kernel itself (`khoctl kdump load`: kexec_file_load
with KEXEC_FILE_ON_CRASH, so crash_hotplug reads 1). Then the storm of
scenarios/_kdump.py: cpu1 offline/online cycles (CPU events come from
offline/online, not QEMU CPU hot-add, which this kernel cannot use), a 1 GiB
DIMM hot-added through QMP, its blocks offlined and onlined. khod must make
no reload and the image must stay loaded. Then a panic: the capture kernel
boots and its /proc/vmcore program headers cover the hot-added DIMM.
Just before the panic khod builds its own elfcorehdr (`khoctl elfcorehdr
build`), and the capture kernel reads /proc/vmcore with `khoctl elfcorehdr
show`: the kernel's header (kexec_file_load's, updated in place through the
storm) and khod's must have the same RAM ranges, the DIMM's among them, and
the same kernel text; khod's a note per possible CPU, /proc/vmcore an
NT_PRSTATUS per CPU online at the crash and the kernel's OSRELEASE.
"""

from scenarios import _kdump
from scenarios._kdump import (APPEND, BINARIES, BOOTS, CRASH_APPEND, FILES, HOST_BINARIES,  # noqa: F401
                              INCLUDE_BOOT, host)
from vmtest import dig, expect_eq

DESCRIPTION = "khod loads kdump with kexec_file; CPU/memory storm: 0 reloads; vmcore covers the new DIMM"

GUEST_SCRIPT = _kdump.guest_script(r'''
    start_khod || exit 1
    khoctl --json kdump load --kernel /boot/bzImage --initrd $CRASH_INITRD --append "$CRASH_APPEND" \
        > /tmp/load.json 2>&1
    vm-marker rc-load $?
    vm-put /tmp/load.json load.json
''', elfcorehdr=True)


def check(result):
    expect_eq(result.marker("rc-load", boot=1).payload, "0", "khoctl kdump load")
    load = result.json("load.json")
    expect_eq(dig(load, "kdump.Loaded"), True, "Loaded after khoctl kdump load")
    expect_eq(dig(load, "kdump.Reloads"), 0, "Reloads after the first load (nothing was loaded)")
    expect_eq(dig(load, "kdump.InPlaceUpdate"), {"cpu": "yes", "memory": "yes"}, "InPlaceUpdate after the load")
    kd = _kdump.check_common(result)
    expect_eq(dig(kd, "Reloads"), 0, "khod's reloads during the storm")
    expect_eq(dig(kd, "UnloadedWindows"), [], "windows without a crash kernel")
    expect_eq(dig(kd, "UnloadedWindowUsecTotal"), 0, "time without a crash kernel")
    _kdump.check_elfcorehdr(result)
