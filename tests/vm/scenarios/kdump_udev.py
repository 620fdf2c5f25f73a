"""kdump under hotplug with udevd running: khod's libudev source, and the
udev drop-ins standing down while khod runs.

The guest starts systemd-udevd (the host's, Debian 12's udev 252) with two
rule files: khod's own 70-khod-hotplug.rules and the kdump-tools drop-in
(udev/50-kdump-tools.rules, as an admin would copy it to /etc/udev/rules.d).
/usr/sbin/kdump-config is a stub that only logs each call, so every per-event
reload the distribution's rule would have made is counted.

Before khod runs, a cpu1 offline/online must call `kdump-config try-reload`
once (the rule's cpu "online" match): the drop-in keeps the distribution's
behaviour when khod is absent. Then the crash kernel is loaded with plain
`kexec -p` (crash_hotplug reads 0), khod starts, finds /run/udev/control and
listens on udev's monitor, and the storm of scenarios/_kdump.py runs. khod
must report EventSource "udev", see the storm's events, make 1 or 2 reloads,
and the stub must not have been called again (the drop-in stood down because
khod keeps /run/khod/kdump-hotplug). The panic's vmcore must cover the
hot-added DIMM.
"""

from scenarios import _kdump
from scenarios._kdump import (APPEND, BOOTS, CRASH_APPEND, INCLUDE_BOOT, host)  # noqa: F401
from vmtest import REPO, dig, expect, expect_eq

DESCRIPTION = "udevd in the guest: khod on libudev's monitor, kdump-tools drop-in stands down; vmcore ok"

BINARIES = _kdump.BINARIES
HOST_BINARIES = _kdump.HOST_BINARIES + ["/bin/udevadm"]
FILES = dict(_kdump.FILES)
FILES[str(REPO / "tests/vm/files/kdump-tools.default")] = "/etc/default/kdump-tools"
FILES[str(REPO / "udev/70-khod-hotplug.rules")] = "/usr/lib/udev/rules.d/70-khod-hotplug.rules"
FILES[str(REPO / "udev/50-kdump-tools.rules")] = "/etc/udev/rules.d/50-kdump-tools.rules"
FILES[str(REPO / "tests/vm/files/kdump-config-stub")] = "/usr/sbin/kdump-config"

GUEST_SCRIPT = _kdump.guest_script(r'''
    # udevd is udevadm called by this name (systemd's multi-call binary)
    mkdir -p /lib/systemd && ln -sf /bin/udevadm /lib/systemd/systemd-udevd
    /lib/systemd/systemd-udevd --daemon || { echo "systemd-udevd failed"; exit 1; }
    n=0
    until [ -S /run/udev/control ]; do
        n=$((n + 1)); [ $n -gt 100 ] && { echo "udevd made no /run/udev/control"; exit 1; }
        sleep 0.1
    done
    calls() { [ -f /tmp/kdump-config.log ] && wc -l < /tmp/kdump-config.log || echo 0; }
    # khod not running yet: the distribution's per-event rule must still run
    echo 0 > /sys/devices/system/cpu/cpu1/online && echo 1 > /sys/devices/system/cpu/cpu1/online || exit 1
    udevadm settle --timeout=30
    vm-marker calls-without-khod "$(calls)"
    [ -f /tmp/kdump-config.log ] && vm-put /tmp/kdump-config.log kdump-config-before.log

    kexec -p /boot/bzImage --initrd=$CRASH_INITRD --append="$CRASH_APPEND" || exit 1
    vm-marker kexec-p "$(cat /sys/kernel/kexec_crash_loaded) $(cat $M/crash_hotplug)"
    start_khod || exit 1
    vm-marker khod-marker "$([ -f /run/khod/kdump-hotplug ] && echo present || echo absent)"
''', after_storm=r'''
    udevadm settle --timeout=60
    vm-marker calls-with-khod "$(calls)"
    [ -f /tmp/kdump-config.log ] && vm-put /tmp/kdump-config.log kdump-config.log
''')


def check(result):
    expect_eq(result.marker("calls-without-khod", boot=1).payload, "1",
              "kdump-config calls for a cpu1 offline/online before khod runs (the rule's cpu online match)")
    expect_eq(result.text("kdump-config-before.log").split(),
              ["try-reload", "cpu", "online", "/devices/system/cpu/cpu1"],
              "the call udevd made before khod ran")
    expect_eq(result.marker("kexec-p", boot=1).payload, "1 0",
              "kexec_crash_loaded and crash_hotplug after kexec -p")
    expect_eq(result.marker("khod-marker", boot=1).payload, "present", "/run/khod/kdump-hotplug while khod runs")
    expect_eq(result.marker("calls-with-khod", boot=1).payload, "1",
              "kdump-config calls after the storm (the drop-in must stand down while khod runs)")
    kd = _kdump.check_common(result, event_source="udev")
    reloads = dig(kd, "Reloads")
    expect(1 <= reloads <= 2, f"khod made {reloads} reloads for the storm, expected 1 or 2")
    expect_eq(len(dig(kd, "UnloadedWindows")), reloads, "one window without a crash kernel per reload")
    expect_eq(dig(kd, "LastError"), "", "LastError")
