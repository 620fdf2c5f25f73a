"""The barrier before a live update's reboot: delay inhibitors, PrepareForKexec
and InhibitDelayMaxSec=, on a real kexec.

Boot 1: /etc/khod/khod.conf sets InhibitDelayMaxSec=5s; khod's stderr is
/dev/kmsg, so every line it logs is in the kernel's log (printk timestamp,
on the console) before khod goes on, and survives the reboot on the console.
A 4 MiB memfd of a pattern is preserved in session vm1; two clients take
inhibitors with `khoctl luo inhibit`: "vmm" runs a script that waits until
dbus-monitor shows PrepareForKexec(true), says so, sleeps 2 s and exits;
"stuck-vmm" runs `sleep 600`. The Inhibitors property lists both as
(who, why, uid 0, pid of each khoctl). Then `khoctl exec`.

It proves, from the kernel's timestamps on the console: the vmm client saw
PrepareForKexec(true) after the exec was asked for; khod logged
"inhibitor of vmm released" at least 2 s after that; khod gave up on
stuck-vmm (naming who, why, uid and pid) between 5 and 8 s after the exec was
asked for, and never saw it released; the kernel started the new kernel only
after that. Boot 2: the memfd comes back through khod word for word with boot
1's SHA-256 (the barrier did not cost the data), and LastUpdatePhases puts
5-8 s between exec-requested and inhibitors-released.
"""

import re

from scenarios import _luo
from scenarios._luo import APPEND, BINARIES, FILES, INCLUDE_BOOT, MEMORY  # noqa: F401
from vmtest import dig, expect, expect_eq

DESCRIPTION = "delay inhibitors before a live update: one released after PrepareForKexec, one timed out at InhibitDelayMaxSec=5s"
HOST_BINARIES = [*_luo.HOST_BINARIES, "/usr/bin/dbus-monitor"]
BOOTS = 2
BOOT_TIMEOUT = 90

SIZE, SIZE_BYTES, SEED = "4M", 4 << 20, 42
DELAY_MAX = 5       # InhibitDelayMaxSec= in boot 1
VMM_SLEEP = 2       # what the vmm client takes after PrepareForKexec(true)

# The vmm client: run by `khoctl luo inhibit`, so the inhibitor is held
# exactly as long as this script runs.
VMM_SCRIPT = r'''
n=0
until grep -A1 'member=PrepareForKexec' /tmp/monitor.txt 2>/dev/null | grep -q 'boolean true'; do
    n=$((n + 1))
    if [ $n -gt 600 ]; then echo "khod-vm: vmm: no PrepareForKexec(true) in 60 s" > /dev/kmsg; exit 1; fi
    sleep 0.1
done
echo "khod-vm: vmm saw PrepareForKexec(true)" > /dev/kmsg
vm-marker vmm-saw-prepare > /dev/console
sleep ''' + str(VMM_SLEEP) + r'''
echo "khod-vm: vmm done, releasing" > /dev/kmsg
'''

GUEST_SCRIPT = r'''
. /etc/khod-vm/guest-khod.sh
''' + _luo.GUEST_FUNCTIONS + r'''
kmsg() { echo "khod-vm: $*" > /dev/kmsg; }
# khod with stderr on /dev/kmsg: each write is a kernel log record, stored
# before khod's write returns, so nothing it logs before the reboot syscall
# can be lost, and each record has the kernel's timestamp.
start_khod_kmsg() {
    echo on > /proc/sys/kernel/printk_devkmsg   # no rate limit on /dev/kmsg writers
    mkdir -p /run/dbus
    dbus-daemon --config-file=/etc/khod-vm/dbus-system.conf || { echo "dbus-daemon failed"; return 1; }
    khod > /dev/kmsg 2>&1 &
    n=0
    until lu_prop Enabled > /dev/null 2>&1; do
        n=$((n + 1))
        if [ $n -gt 300 ]; then echo "khod did not come up"; return 1; fi
        sleep 0.1
    done
    vm-marker khod-up
}
if [ "$1" = 1 ]; then
    mkdir -p /etc/khod
    printf '[LiveUpdate]\nInhibitDelayMaxSec=''' + str(DELAY_MAX) + r'''s\n' > /etc/khod/khod.conf
    start_khod_kmsg || exit 1
    # Boot 2 kexecs no further: the initramfs without /boot will do.
    ln -s /boot/initrd.gz /tmp/self-initrd.gz
    preserve_pattern ''' + f"{SIZE} {SEED}" + r'''

    # The vmm client's eyes: khod's PrepareForKexec, and a probe signal of
    # our own to know the monitor is listening.
    dbus-monitor --system "type='signal',sender='org.kexec.khod1',interface='$LU',member='PrepareForKexec'" \
        "type='signal',path='/vm/probe'" > /tmp/monitor.txt 2>&1 &
    n=0
    until grep -q 'member=Ready' /tmp/monitor.txt 2>/dev/null; do
        n=$((n + 1))
        if [ $n -gt 100 ]; then echo "dbus-monitor does not listen"; cat /tmp/monitor.txt; exit 1; fi
        busctl emit /vm/probe vm.Probe Ready
        sleep 0.1
    done
    cat > /tmp/vmm.sh << 'EOF'
''' + VMM_SCRIPT + r'''EOF
    khoctl luo inhibit --who vmm --why "pause vCPUs" -- sh /tmp/vmm.sh > /tmp/vmm.out 2>&1 &
    vmm_pid=$!
    khoctl luo inhibit --who stuck-vmm --why never -- sleep 600 > /tmp/stuck.out 2>&1 &
    stuck_pid=$!
    vm-marker inhibitor-pids "$vmm_pid $stuck_pid"
    n=0
    until lu_prop Inhibitors > /tmp/inhibitors.json && grep -q '"vmm"' /tmp/inhibitors.json \
            && grep -q '"stuck-vmm"' /tmp/inhibitors.json; do
        n=$((n + 1))
        if [ $n -gt 100 ]; then echo "the inhibitors never showed"; cat /tmp/inhibitors.json /tmp/*.out; exit 1; fi
        sleep 0.1
    done
    vm-put /tmp/inhibitors.json inhibitors-1.json

    stage_target /boot/bzImage
    grep -q 'member=PrepareForKexec' /tmp/monitor.txt && { echo "PrepareForKexec before the exec"; exit 1; }
    kmsg exec-requested
    # khoctl prints "waiting for inhibitor ..." on the console just as khod's
    # record of the same words reaches it: two writers on one UART can cut each
    # other's lines (seen once in CI), so khoctl's output goes to a file.
    khoctl exec > /tmp/exec.out 2>&1
    vm-marker rc-exec $?
    sleep 60
    echo "still running 60 s after exec"
    exit 1
fi
start_khod_stored || exit 1
retrieve_pattern ''' + f"{SIZE} {SEED}" + r'''
'''

STAMP = re.compile(r"^\[\s*(\d+\.\d+)\] (.*)$")


def boot1_log(result) -> list[tuple[float, str]]:
    """The timestamped kernel log lines boot 1 left on the console."""
    lines = result.console.split("\n")[: result.marker("boot", boot=2).line - 1]
    return [(float(m.group(1)), m.group(2)) for m in map(STAMP.match, lines) if m]


def at(log, pattern: str) -> tuple[float, str]:
    """The one boot-1 log line that matches pattern (a regex), with its time."""
    found = [(t, text) for t, text in log if re.search(pattern, text)]
    expect(found, f"boot 1's kernel log has no line matching {pattern!r}")
    expect(len(found) == 1, f"boot 1's kernel log has {len(found)} lines matching {pattern!r}: {found}")
    return found[0]


def check(result):
    # Exec answers before the barrier: khoctl exec returns 0 and the reboot comes later.
    for word in ("rc-create", "rc-preserve", "rc-prepare", "rc-finalize", "rc-exec"):
        expect_eq(result.marker(word, boot=1).payload, "0", f"{word} in boot 1")
    outgoing = result.json("outgoing-1.json")["data"]
    expect_eq([(s[0], s[1], [f[:2] for f in s[3]]) for s in outgoing], [("vm1", 0, [[7, SIZE_BYTES]])],
              "Outgoing after the preserve")

    # Both inhibitors, as khod saw their callers.
    vmm_pid, stuck_pid = (int(p) for p in result.marker("inhibitor-pids", boot=1).payload.split())
    inhibitors = result.json("inhibitors-1.json")
    expect_eq(inhibitors["type"], "a(ssuu)", "Inhibitors' type")
    expect_eq(sorted(map(tuple, inhibitors["data"])),
              sorted([("vmm", "pause vCPUs", 0, vmm_pid), ("stuck-vmm", "never", 0, stuck_pid)]),
              "Inhibitors before the exec (who, why, uid, pid of each khoctl luo inhibit)")

    # The barrier, on the kernel's clock.
    result.marker("vmm-saw-prepare", boot=1)
    log = boot1_log(result)
    at(log, r"kernel \S+: KHO active yes")  # khod's log does reach the kernel log
    t_exec, _ = at(log, r"^khod-vm: exec-requested$")
    for who, why, pid in (("vmm", "pause vCPUs", vmm_pid), ("stuck-vmm", "never", stuck_pid)):
        at(log, rf"inhibitor taken by {who} \({re.escape(why)}\), uid 0, pid {pid}$")
        t_wait, _ = at(log, rf"waiting for inhibitor {who} \({re.escape(why)}\), uid 0, pid {pid}$")
        expect(t_wait >= t_exec, f"khod waited for {who} before the exec was asked for")
    t_saw, _ = at(log, r"^khod-vm: vmm saw PrepareForKexec\(true\)$")
    t_done, _ = at(log, r"^khod-vm: vmm done, releasing$")
    t_released, _ = at(log, r"inhibitor of vmm released$")
    t_late, _ = at(log, rf"inhibitor stuck-vmm \(never\), uid 0, pid {stuck_pid}, "
                        r"not released within InhibitDelayMaxSec=: going on$")
    t_kexec, _ = at(log, r"kexec_core: Starting new kernel")
    expect(not [text for _, text in log if "inhibitor of stuck-vmm released" in text],
           "khod saw stuck-vmm released, but its sleep 600 held it")
    expect(t_exec <= t_saw, f"vmm saw PrepareForKexec(true) at {t_saw}, before the exec at {t_exec}")
    expect(t_released - t_saw >= VMM_SLEEP,
           f"khod saw vmm released {t_released - t_saw:.3f} s after vmm saw the signal, "
           f"less than its {VMM_SLEEP} s of work")
    expect(t_done <= t_released, "khod saw vmm released before vmm was done")
    expect(DELAY_MAX <= t_late - t_exec < DELAY_MAX + 3,
           f"khod gave up on stuck-vmm {t_late - t_exec:.3f} s after the exec was asked for, "
           f"expected {DELAY_MAX} s and a little")
    expect(t_released < t_late, "vmm's release came after khod had given up on stuck-vmm")
    expect(t_late <= t_kexec < t_late + 3,
           f"the new kernel started {t_kexec - t_late:.3f} s after khod gave up on stuck-vmm")
    at(log, r"manifest written to LUO session khod: 1 session\(s\), 4 MiB$")

    # Boot 2: the data is whole, the phases agree with the console.
    expect_eq([m.stage for m in result.markers_of("boot")], ["1", "2"], "stages of the boots")
    for word in ("rc-retrieve", "rc-check", "rc-finish"):
        expect_eq(result.marker(word, boot=2).payload, "0", f"{word} in boot 2")
    before, after = _luo.sha_of(result.text("pattern-1.txt")), _luo.sha_of(result.text("check-2.txt"))
    expect(result.text("check-2.txt").startswith("OK"), f"pattern check: {result.text('check-2.txt')}")
    expect_eq(after, before, "SHA-256 of the memfd before and after the kexec")
    incoming = result.json("incoming-2.json")["data"]
    expect_eq([(s[0], s[1], [f[:2] for f in s[3]]) for s in incoming], [("vm1", 0, [[7, SIZE_BYTES]])],
              "Incoming in boot 2")
    status = result.json("luo-status-2.json")
    expect_eq(dig(status, "liveupdate.liveupdate_number"), 1, "LiveUpdateNumber")
    phases = {p["phase"]: p["realtime_usec"] for p in dig(status, "liveupdate.last_update_phases")}
    waited = (phases.get("inhibitors-released", 0) - phases.get("exec-requested", 0)) / 1e6
    expect(DELAY_MAX <= waited < DELAY_MAX + 3,
           f"LastUpdatePhases: {waited:.3f} s from exec-requested to inhibitors-released ({phases})")
    expect(phases.get("reboot-syscall", 0) >= phases["inhibitors-released"],
           f"LastUpdatePhases: reboot-syscall before inhibitors-released ({phases})")
    expect_eq(dig(result.json("finish.json"), "liveupdate.incoming"), [], "Incoming after finish")
