"""A live update through khod with KHO's debugfs out of its reach: what a
kernel without KEXEC_HANDOVER_DEBUGFS shows, or khod.service where
sys-kernel-debug.mount is missing (the unit allows no mount).

debugfs stays unmounted, and khod runs without CAP_SYS_ADMIN so it cannot
mount it either (setpriv). (Booting with debugfs=off is no stand-in: the
7.2 kernel's KHO fails to initialise without its debugfs directory, LUO then
fails too, and khod rightly refuses.) /dev/liveupdate (LUO runs only on KHO)
is then what says KHO is on: `khoctl status --no-mount` must say so, `khoctl
check --no-mount` warns that the scratch areas are not visible instead of
refusing, Prepare and Finalize go through (the kernel checks the segments'
placement itself) and `exec --force` reboots. The second kernel must print
TEST_KEXEC_HANDOVER's "KHO restore succeeded" and log the exec from this
release.
"""

from scenarios import _kho
from vmtest import KHOD_BUS_FILES, KHOD_BUS_HOST_BINARIES, dig, expect, expect_eq

DESCRIPTION = "debugfs out of khod's reach: /dev/liveupdate says KHO is on; prepare/finalize/exec; KHO restored"
APPEND = "kho=on kho_scratch=16M,64M,32M liveupdate=on"
BINARIES = ["khoctl", "khod"]
HOST_BINARIES = KHOD_BUS_HOST_BINARIES + ["/usr/bin/setpriv"]
INCLUDE_BOOT = True
BOOTS = 2
FILES = dict(KHOD_BUS_FILES)

GUEST_SCRIPT = r'''
. /etc/khod-vm/guest-khod.sh
stage=$1
if [ "$stage" = 1 ]; then
    khoctl --json status --no-mount > /tmp/status.json 2>&1
    vm-put /tmp/status.json status-1.json
    KHOD_WRAPPER="/usr/bin/setpriv --bounding-set -sys_admin --inh-caps -sys_admin" start_khod || exit 1
    vm-marker debugfs-mounted "$(grep -c debugfs /proc/mounts)"
    khoctl --json prepare --kernel /boot/bzImage --initrd /boot/initrd.gz \
        --reuse-cmdline --append khod.stage=2 > /tmp/prepare.json 2>&1
    vm-marker rc-prepare $?
    vm-put /tmp/prepare.json prepare.json
    khoctl --json check --no-mount --kernel /boot/bzImage --initrd /boot/initrd.gz --reuse-cmdline \
        > /tmp/check.json 2>&1
    vm-marker rc-check $?
    vm-put /tmp/check.json check.json
    khoctl --json finalize > /tmp/finalize.json 2>&1
    vm-marker rc-finalize $?
    vm-put /tmp/finalize.json finalize.json
    vm-marker loaded "$(cat /sys/kernel/kexec/loaded)"
    vm-marker exec
    khoctl exec --force
    sleep 60
    echo "still running 60 s after exec"
    cat /tmp/khod.log
    exit 1
fi
khoctl --json status --no-mount > /tmp/status.json 2>&1
vm-put /tmp/status.json status-2.json
'''


def check(result):
    status = result.json("status-1.json")
    expect_eq(dig(status, "kho.active"), True, "khoctl status: kho.active with debugfs=off")
    expect("/dev/liveupdate exists" in dig(status, "kho.active_reason"),
           f"khoctl status's reason: {dig(status, 'kho.active_reason')}")
    for word in ("rc-prepare", "rc-check", "rc-finalize"):
        expect_eq(result.marker(word, boot=1).payload, "0", f"{word} in stage 1")
    prepared = result.json("prepare.json")
    expect_eq(dig(prepared, "handover.State"), "prepared", "State after prepare")
    expect_eq(result.marker("debugfs-mounted", boot=1).payload, "0", "debugfs mounts after khod started")
    checks = {c["name"]: c for c in dig(result.json("check.json"), "checks")}
    expect_eq(checks["scratch-fit"]["status"], "warning", "khoctl check: scratch-fit without debugfs")
    expect_eq(checks["kho"]["status"], "ok", "khoctl check: kho")
    _kho.check_loaded(result)
    _kho.check_restored(result)
    expect_eq(dig(result.json("status-2.json"), "kho.active"), True, "khoctl status in the 2nd kernel")
