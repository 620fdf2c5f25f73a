#!/usr/bin/env python3
"""bench/hotplug_storm.py: kdump under a storm of CPU and memory hotplug
events, per-event reloads (the way distributions' udev rules do it) against
khod, in one VM run of the shared 7.2 kernel (crashkernel=256M).

The storm is synthesized, N events (default 3840, the count of a 32 GiB ->
512 GiB guest resize in 128 MiB blocks), one uevent each, cycling through:
cpu1 offline/online (`cpuN/online`), offline/online of the blocks of a 1 GiB
DIMM hot-added through QMP at the start (`memoryN/state`), and "online"
written to a block's and to cpu1's `uevent` file (synthetic events, which
per-event rules reload on just the same).

Three rules run before khod, each over the same storm, through busybox
`uevent` running a hook for every kernel uevent (cpu and memory
add/remove/online/offline):
  per-event  what Debian's 50-kdump-tools.rules (kdump-config try-reload)
             does: `kexec -p -u` then `kexec -p ...` (kexec_load) per event;
  throttled  kdump-utils' kdump-udev-throttler over a `kexec -p` image: the
             first event takes a lock, waits 1 s and for udev to settle (3 s
             from inside a RUN program), drops the lock and reloads; the
             events meanwhile do nothing;
  guarded    the rule openSUSE's kdump and kdump-utils ship, over a
             `kexec -s -p` (kexec_file_load) image: no reload where
             crash_hotplug reads 1, since the kernel updates in place.
The generator waits for each event's hook before the next event (lockstep):
that keeps the netlink socket from overflowing, and it flatters the per-event
rule's latency, which in a real storm would queue behind every earlier
reload. Each window without a crash kernel is timed by the guest kernel's
clock (printk timestamps of /dev/kmsg lines written just before
`kexec -p -u` and just after `kexec -p` returns).

khod: `kexec -p` again (so khod must reload, not just watch the kernel
update in place), khod started with the recipe in /etc/khod/khod.conf
(defaults: 1 s settle, 10 s maximum delay), the same N events at full speed.
khod measures its own windows around the syscalls (CLOCK_MONOTONIC).

Printed in one table: for each, reloads, total time with no crash kernel
loaded, time from the last event until kdump is current, and how many times
fewer khod's reloads and unloaded time are. The goal (issue 4, against the
per-event rule):
>= 100x fewer reloads and >= 100x less unloaded time, current within 1 s of
the last event.

A per-event reload takes about a second under TCG, so that rule over the full
storm runs about an hour; --baseline-events M runs it over the first M
events only and says so (its totals are then also shown scaled to N, marked
as extrapolated).

Usage: bench/hotplug_storm.py [--builddir build-bench] [--events N] [--baseline-events M] [--json FILE]
"""

import argparse
import json
import re
import sys
import tempfile
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from optimized_build import DEFAULT_BUILDDIR, require_optimized  # noqa: E402
sys.path.insert(0, str(REPO / "tests" / "vm"))
import vmtest  # noqa: E402

CRASH_APPEND = "console=ttyS0 panic=-1 khod.stage=crash irqpoll nr_cpus=1 reset_devices"
STAMP_RE = re.compile(r"^\[\s*(\d+\.\d+)\] khod-bench: (\S+)(?: (\S+))?(?: (\S+))?", re.M)

#: The rules run before khod, in order: (phase, what it is, where it ships).
RULES = [
    ("per-event", "a reload per event (kexec -p -u; kexec -p)", "Debian kdump-tools, RHEL 7"),
    ("throttled", "kdump-udev-throttler, kexec -p", "kdump-utils without the guard, RHEL 8"),
    ("guarded", "crash_hotplug guard, kexec -s -p", "openSUSE kdump, kdump-utils"),
]

# Every hook reacts to the same events: the ones after which the crash
# kernel's elfcorehdr no longer matches the machine.
EVENT_FILTER = r"""case "$SUBSYSTEM/$ACTION" in
    cpu/add|cpu/remove|cpu/online|cpu/offline|memory/add|memory/remove|memory/online|memory/offline) ;;
    *) exit 0 ;;   # not one of the storm's events: the generator does not count it
esac
"""

RELOAD = r"""echo "<6>khod-bench: reload-begin $PHASE $SEQNUM" > /dev/kmsg
kexec -p -u
kexec -p /boot/bzImage --initrd=/tmp/crash.gz --append="$CRASH_APPEND"
echo "<6>khod-bench: reload-end $PHASE $SEQNUM" > /dev/kmsg
"""

#: A reload per event, as Debian's 50-kdump-tools.rules' PROGRAM="kdump-config try-reload".
PER_EVENT_HOOK = "#!/bin/sh\n" + EVENT_FILTER + RELOAD + 'echo "$SEQNUM" >> /tmp/hook-done\n'

#: The rule openSUSE's kdump and kdump-utils ship: nothing where the kernel
#: keeps the image current itself (ATTRS{crash_hotplug}=="1", read on the cpu
#: or memory root device above the event's), else a reload.
GUARDED_HOOK = ("#!/bin/sh\n" + EVENT_FILTER +
                'if [ "$(cat /sys/devices/system/$SUBSYSTEM/crash_hotplug)" != 1 ]; then\n' + RELOAD + "fi\n"
                'echo "$SEQNUM" >> /tmp/hook-done\n')

#: kdump-utils' (RHEL 8's) kdump-udev-throttler: the first event takes a
#: lock, waits 1 s and for udev to settle, drops the lock and reloads; events
#: that find the lock taken do nothing. udevd hands later events to other
#: workers while it runs, so the waiting part goes to the background here
#: (busybox uevent would wait for it). `udevadm settle --timeout 3` called from
#: a RUN program waits for the queue to empty, and the queue holds the event
#: whose program is running: it always runs to its timeout, hence the 4 s
#: window after a storm's first event its authors describe.
THROTTLED_HOOK = ("#!/bin/sh\n" + EVENT_FILTER + r"""exec 9> /tmp/kdump-udev-throttle
if ! flock -n 9; then echo "$SEQNUM" >> /tmp/hook-done; exit 0; fi
touch /tmp/throttler.$SEQNUM
echo "$SEQNUM" >> /tmp/hook-done
(
    sleep 1 && sleep 3   # sleep 1 && udevadm settle --timeout 3
    exec 9>&-
""" + RELOAD.replace("\n", "\n    ").rstrip() + r"""
    rm -f /tmp/throttler.$SEQNUM
) &
""")

GUEST_SCRIPT = r'''
. /etc/khod-vm/guest-khod.sh
export CRASH_APPEND="@CRASH_APPEND@"
N=@EVENTS@
NB=@BASELINE@
M=/sys/devices/system/memory
CPU=/sys/devices/system/cpu/cpu1
stamp() { echo "<6>khod-bench: $*" > /dev/kmsg; }
# The crash kernel's initrd: busybox only (the capture stage never runs here;
# the full initramfs would make every load read ~30 MiB more).
mkdir -p /tmp/ci/bin && cp /bin/busybox /tmp/ci/bin/ && (cd /tmp/ci && find . | cpio -o -H newc 2>/dev/null | gzip) > /tmp/crash.gz

ls -d $M/memory* > /tmp/blocks-before
vm-marker want-dimm
n=0
while [ "$(ls -d $M/memory* | wc -l)" -lt $(( $(wc -l < /tmp/blocks-before) + 8 )) ] && [ $n -lt 300 ]; do
    sleep 0.1; n=$((n + 1))
done
set -- $(ls -d $M/memory* | grep -v -x -F -f /tmp/blocks-before)
[ $# = 8 ] || { echo "expected 8 hot-added blocks, got $#"; exit 1; }
B0=$1 B1=$2 B2=$3 B3=$4 B4=$5 B5=$6 B6=$7 B7=$8
block() { eval echo \$B$(( $1 % 8 )); }

# emit I: exactly one uevent, real (cpu1 or a DIMM block toggled) or synthetic.
emit() {
    case $(( $1 % 16 )) in
        0|1) if [ "$(cat $CPU/online)" = 1 ]; then echo 0 > $CPU/online; else echo 1 > $CPU/online; fi ;;
        2|3|8|9)
            # offlining can fail with EBUSY (pages not migrated yet): retry, else
            # send the event synthetically, so each step is still one event
            b=$(block $(( $1 / 16 )))
            if [ "$(cat $b/state)" = online ]; then
                echo offline > $b/state 2>/dev/null || echo offline > $b/state 2>/dev/null ||
                    echo offline > $b/uevent
            else
                echo online > $b/state
            fi ;;
        4|6|10|12|14) echo online > $(block $1)/uevent ;;
        *) echo online > $CPU/uevent ;;
    esac
}
restore() {
    echo 1 > $CPU/online 2>/dev/null
    for b in $B0 $B1 $B2 $B3 $B4 $B5 $B6 $B7; do
        [ "$(cat $b/state)" = online ] || echo online > $b/state
    done
}
hooks_done() { [ -f /tmp/hook-done ] && wc -l < /tmp/hook-done || echo 0; }

# run_rule PHASE HOOK EVENTS: the storm with a hook run for every uevent,
# one event after the other once the hook has returned (lockstep)
run_rule() {
    phase=$1 hook=$2 events=$3
    rm -f /tmp/hook-done
    vm-marker $phase-start "$(cat $M/crash_hotplug)"
    PHASE=$phase uevent sh $hook &
    UEVENT=$!
    sleep 1
    i=0
    while [ $i -lt $events ]; do
        want=$(( $(hooks_done) + 1 ))
        emit $i
        [ $i = $((events - 1)) ] && stamp $phase-last-event
        n=0
        while [ "$(hooks_done)" -lt $want ] && [ $n -lt 300 ]; do sleep 0.01; n=$((n + 1)); done
        [ $n -lt 300 ] || echo "$phase event $i: no hook ran within 3 s"
        i=$((i + 1))
        [ $((i % 256)) = 0 ] && vm-marker $phase-progress "$i $(hooks_done)"
    done
    # a throttler still waiting reloads after the last event: that is part of its latency
    n=0
    while ls /tmp/throttler.* > /dev/null 2>&1 && [ $n -lt 600 ]; do sleep 0.05; n=$((n + 1)); done
    kill $UEVENT
    restore
    vm-marker $phase-done "$(hooks_done)"
}

# --- a reload per event
kexec -p /boot/bzImage --initrd=/tmp/crash.gz --append="$CRASH_APPEND" || exit 1
run_rule per-event /bench-hook.sh $NB

# --- kdump-utils' throttler, over kexec_load (no hotplug flag)
kexec -p -u
kexec -p /boot/bzImage --initrd=/tmp/crash.gz --append="$CRASH_APPEND" || exit 1
run_rule throttled /bench-throttled.sh $N

# --- the crash_hotplug guard, over kexec -s -p (kexec_file_load: the kernel updates in place)
kexec -p -u
kexec -s -p /boot/bzImage --initrd=/tmp/crash.gz --append="$CRASH_APPEND" || exit 1
run_rule guarded /bench-guarded.sh $N

# --- khod: the same storm, at full speed
kexec -p -u
kexec -p /boot/bzImage --initrd=/tmp/crash.gz --append="$CRASH_APPEND" || exit 1
start_khod || exit 1
i=0
while [ $i -lt $N ]; do emit $i; i=$((i + 1)); done
stamp khod-last-event
n=0
until khoctl --json kdump status > /tmp/st.json 2>&1 && grep -q '"Pending": false' /tmp/st.json; do
    n=$((n + 1)); [ $n -gt 1200 ] && { echo "khod never settled"; cat /tmp/st.json; exit 1; }
    sleep 0.05
done
stamp khod-idle
restore
vm-put /tmp/st.json khod-status.json
dmesg | grep khod-bench > /tmp/stamps.txt
vm-put /tmp/stamps.txt stamps.txt
cat /tmp/khod.log | tail -20
'''


def make_module(events: int, baseline: int):
    mod = types.ModuleType("hotplug_storm_bench")
    mod.DESCRIPTION = "per-event kdump reloads vs khod under a hotplug storm"
    mod.APPEND = "crashkernel=256M loglevel=4 log_buf_len=8M"
    mod.BINARIES = ["khoctl", "khod"]
    mod.HOST_BINARIES = vmtest.KHOD_BUS_HOST_BINARIES + ["/usr/sbin/kexec", "/usr/bin/flock"]
    mod.INCLUDE_BOOT = True
    mod.BOOTS = 1
    conf = Path(tempfile.mkdtemp(prefix="khod-bench-conf-"))
    (conf / "khod.conf").write_text(
        f"[Kdump]\nKernel=/boot/bzImage\nInitrd=/tmp/crash.gz\nCommandLine={CRASH_APPEND}\n")
    hooks = {"hook.sh": PER_EVENT_HOOK, "throttled.sh": THROTTLED_HOOK, "guarded.sh": GUARDED_HOOK}
    for name, text in hooks.items():
        (conf / name).write_text(text)
    mod.FILES = {
        **vmtest.KHOD_BUS_FILES,
        str(conf / "khod.conf"): "/etc/khod/khod.conf",
        **{str(conf / name): f"/bench-{name}" for name in hooks},
    }
    mod.GUEST_SCRIPT = (GUEST_SCRIPT.replace("@CRASH_APPEND@", CRASH_APPEND)
                        .replace("@EVENTS@", str(events)).replace("@BASELINE@", str(baseline)))
    mod.BOOT_TIMEOUT = 600 + 2.0 * baseline + 0.6 * events
    mod.TIMEOUT = mod.BOOT_TIMEOUT + 60
    mod.results = {}

    def host(vm):
        vm.wait_marker("want-dimm", timeout=120)
        vm.hotplug_memory(1 << 30)

    def check(result):
        mod.results["stamps"] = result.text("stamps.txt")
        mod.results["khod"] = result.json("khod-status.json")
        mod.results["hooks"] = {phase: int(result.marker(f"{phase}-done").payload) for phase, _, _ in RULES}
        mod.results["crash_hotplug"] = {phase: result.marker(f"{phase}-start").payload for phase, _, _ in RULES}

    mod.host = host
    mod.check = check
    return mod


def analyse(stamps: str) -> dict:
    """Per phase: its reload windows (begin, end) and its marks by name."""
    begins, windows, marks = {}, {}, {}
    for m in STAMP_RE.finditer(stamps):
        t, what = float(m.group(1)), m.group(2)
        if what == "reload-begin":
            begins[(m.group(3), m.group(4))] = t
        elif what == "reload-end" and (m.group(3), m.group(4)) in begins:
            windows.setdefault(m.group(3), []).append((begins.pop((m.group(3), m.group(4))), t))
        else:
            marks[what] = t
    return {"windows": windows, "marks": marks}


def rule_row(a: dict, phase: str, events: int) -> dict:
    """Reloads, time unloaded and last event -> current for one rule's run."""
    windows = a["windows"].get(phase, [])
    last_event = a["marks"][f"{phase}-last-event"]
    current = max((e for _, e in windows), default=None)
    return {"events": events, "reloads": len(windows), "unloaded_s": sum(e - b for b, e in windows),
            # no reload after the last event: the image already described the machine
            "latency_s": max(0.0, current - last_event) if current is not None else 0.0}


def ratio(theirs: float, ours: float) -> str:
    """How many times khod's figure is smaller; said in words where one is 0."""
    if ours == 0:
        return "both 0" if theirs == 0 else "khod 0"
    if theirs == 0:
        return f"khod {ours:.3g}, they 0"
    return f"{theirs / ours:.0f}x"


def print_table(events: int, nb: int, rows: dict, khod: dict):
    print(f"hotplug storm: {events} events, shared 7.2 kernel under TCG; the rules run their hook per event "
          f"in lockstep, khod gets the events at full speed")
    print(f"  {'':44} {'events':>6} {'reloads':>8} {'unloaded s':>11} {'last event -> current s':>24}"
          f"   khod's reloads / unloaded: fewer by")
    for phase, what, ships in RULES:
        r = rows[phase]
        scale = events / max(r["events"], 1)
        print(f"  {what:44} {r['events']:6d} {r['reloads']:8d} {r['unloaded_s']:11.3f} {r['latency_s']:24.3f}"
              f"   {ratio(r['reloads'] * scale, khod['reloads'])} / {ratio(r['unloaded_s'] * scale, khod['unloaded_s'])}"
              f"   ({ships})")
        if r["events"] < events:
            print(f"  {'   scaled to ' + str(events) + ' events (extrapolated)':44} {events:6d} "
                  f"{r['reloads'] * scale:8.0f} {r['unloaded_s'] * scale:11.1f}")
    print(f"  {'khod (coalesced, then in place)':44} {khod['events']:6d} {khod['reloads']:8d} "
          f"{khod['unloaded_s']:11.3f} {khod['latency_s']:24.3f}")
    print("  goals (issue 4, against the per-event rule): >= 100x fewer reloads, >= 100x less unloaded time, "
          "current <= 1 s after the last event")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--builddir", type=Path, default=DEFAULT_BUILDDIR)
    ap.add_argument("--events", type=int, default=3840)
    ap.add_argument("--baseline-events", type=int, default=None,
                    help="run the baseline over this many events only (default: all)")
    ap.add_argument("--keep", type=Path, help="keep the VM work dir here")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    require_optimized(args.builddir)
    nb = args.events if args.baseline_events is None else min(args.baseline_events, args.events)

    mod = make_module(args.events, nb)
    scenario = vmtest.Scenario("bench-hotplug-storm", mod)
    with tempfile.TemporaryDirectory(prefix="khod-bench-") as tmp:
        root = args.keep or Path(tmp)
        outcome = vmtest.run_scenario(scenario, kernel=None, builddir=args.builddir, root=root)
        if not outcome.ok:
            print(f"bench failed: {outcome.reason}\n{outcome.details}")
            return 1
    a = analyse(mod.results["stamps"])
    rows = {phase: rule_row(a, phase, nb if phase == "per-event" else args.events) for phase, _, _ in RULES}
    k = mod.results["khod"]["kdump"]
    khod = {"events": args.events, "reloads": k["Reloads"], "unloaded_s": k["UnloadedWindowUsecTotal"] / 1e6,
            "latency_s": max(0.0, (k["LastReloadUsec"] - k["LastEventUsec"]) / 1e6)}
    observed = a["marks"]["khod-idle"] - a["marks"]["khod-last-event"]
    print_table(args.events, nb, rows, khod)
    print(f"  khod: {k['EventsSeen']} events seen from {k['EventSource']}; the guest saw khod idle "
          f"{observed:.3f} s after its last event (with the 200 ms post-load check and 50 ms polling)")
    print(f"  crash_hotplug when each rule's storm began: {mod.results['crash_hotplug']}")
    if args.json:
        args.json.write_text(json.dumps({
            "events": args.events, "baseline_events": nb, "rules": rows, "hooks": mod.results["hooks"],
            "khod": {**khod, "observed_idle_s": observed, "status": k},
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
