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

Baseline: the crash kernel is loaded with `kexec -p` (kexec_load, no
hotplug flag); busybox `uevent` runs a hook for every kernel uevent, and the
hook does what Debian's 50-kdump-tools.rules / kdump-config try-reload does
for cpu and memory add/remove/online/offline events: `kexec -p -u` then
`kexec -p ...`. The generator waits for each event's hook before the next
event (lockstep): that keeps the netlink socket from overflowing, and it
flatters the baseline's latency, which in a real storm would queue behind
every earlier reload. Each window without a crash kernel is timed by the
guest kernel's clock (printk timestamps of /dev/kmsg lines written just
before `kexec -p -u` and just after `kexec -p` returns).

khod: `kexec -p` again (so khod must reload, not just watch the kernel
update in place), khod started with the recipe in /etc/khod/khod.conf
(defaults: 1 s settle, 10 s maximum delay), the same N events at full speed.
khod measures its own windows around the syscalls (CLOCK_MONOTONIC).

Printed for each: reloads, total time with no crash kernel loaded, time from
the last event until kdump is current; then the ratios. The goal (issue 4):
>= 100x fewer reloads and >= 100x less unloaded time, current within 1 s of
the last event.

A baseline reload takes about a second under TCG, so the full baseline runs
about an hour; --baseline-events M runs the baseline over the first M
events only and says so (its totals are then also shown scaled to N, marked
as extrapolated).

Usage: bench/hotplug_storm.py [--builddir build] [--events N] [--baseline-events M] [--json FILE]
"""

import argparse
import json
import re
import sys
import tempfile
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "vm"))
import vmtest  # noqa: E402

CRASH_APPEND = "console=ttyS0 panic=-1 khod.stage=crash irqpoll nr_cpus=1 reset_devices"
STAMP_RE = re.compile(r"^\[\s*(\d+\.\d+)\] khod-bench: (\S+)(?: (\S+))?", re.M)

HOOK = r'''#!/bin/sh
# One per-event reload, as 50-kdump-tools.rules' PROGRAM="kdump-config try-reload".
case "$SUBSYSTEM/$ACTION" in
    cpu/add|cpu/remove|cpu/online|cpu/offline|memory/add|memory/remove|memory/online|memory/offline) ;;
    *) exit 0 ;;
esac
echo "<6>khod-bench: reload-begin $SEQNUM" > /dev/kmsg
kexec -p -u
kexec -p /boot/bzImage --initrd=/tmp/crash.gz --append="$CRASH_APPEND"
echo "<6>khod-bench: reload-end $SEQNUM" > /dev/kmsg
echo "$SEQNUM" >> /tmp/hook-done
'''

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

# --- baseline: a reload per event
kexec -p /boot/bzImage --initrd=/tmp/crash.gz --append="$CRASH_APPEND" || exit 1
vm-marker baseline-start "$(cat $M/crash_hotplug)"
uevent sh /bench-hook.sh &
UEVENT=$!
sleep 1
i=0
while [ $i -lt $NB ]; do
    want=$(( $(hooks_done) + 1 ))
    emit $i
    [ $i = $((NB - 1)) ] && stamp baseline-last-event
    n=0
    while [ "$(hooks_done)" -lt $want ] && [ $n -lt 300 ]; do sleep 0.01; n=$((n + 1)); done
    [ $n -lt 300 ] || echo "event $i: no hook ran within 3 s"
    i=$((i + 1))
    [ $((i % 256)) = 0 ] && vm-marker baseline-progress "$i $(hooks_done)"
done
kill $UEVENT
restore
vm-marker baseline-done "$(hooks_done)"

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
    mod.HOST_BINARIES = vmtest.KHOD_BUS_HOST_BINARIES + ["/usr/sbin/kexec"]
    mod.INCLUDE_BOOT = True
    mod.BOOTS = 1
    conf = Path(tempfile.mkdtemp(prefix="khod-bench-conf-"))
    (conf / "khod.conf").write_text(
        f"[Kdump]\nKernel=/boot/bzImage\nInitrd=/tmp/crash.gz\nCommandLine={CRASH_APPEND}\n")
    (conf / "hook.sh").write_text(HOOK)
    mod.FILES = {
        **vmtest.KHOD_BUS_FILES,
        str(conf / "khod.conf"): "/etc/khod/khod.conf",
        str(conf / "hook.sh"): "/bench-hook.sh",
    }
    mod.GUEST_SCRIPT = (GUEST_SCRIPT.replace("@CRASH_APPEND@", CRASH_APPEND)
                        .replace("@EVENTS@", str(events)).replace("@BASELINE@", str(baseline)))
    mod.BOOT_TIMEOUT = 600 + 2.0 * baseline + 0.2 * events
    mod.TIMEOUT = mod.BOOT_TIMEOUT + 60
    mod.results = {}

    def host(vm):
        vm.wait_marker("want-dimm", timeout=120)
        vm.hotplug_memory(1 << 30)

    def check(result):
        mod.results["stamps"] = result.text("stamps.txt")
        mod.results["khod"] = result.json("khod-status.json")
        mod.results["baseline_hooks"] = int(result.marker("baseline-done").payload)

    mod.host = host
    mod.check = check
    return mod


def analyse(stamps: str) -> dict:
    begins, windows, marks = {}, [], {}
    for m in STAMP_RE.finditer(stamps):
        t, what, arg = float(m.group(1)), m.group(2), m.group(3)
        if what == "reload-begin":
            begins[arg] = t
        elif what == "reload-end" and arg in begins:
            windows.append((begins.pop(arg), t))
        else:
            marks[what] = t
    return {"windows": windows, "marks": marks}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--builddir", type=Path, default=REPO / "build")
    ap.add_argument("--events", type=int, default=3840)
    ap.add_argument("--baseline-events", type=int, default=None,
                    help="run the baseline over this many events only (default: all)")
    ap.add_argument("--keep", type=Path, help="keep the VM work dir here")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
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
    k = mod.results["khod"]["kdump"]
    windows = a["windows"]
    base_reloads = len(windows)
    base_unloaded = sum(e - b for b, e in windows)
    base_latency = windows[-1][1] - a["marks"]["baseline-last-event"] if windows else float("nan")
    k_reloads = k["Reloads"]
    k_unloaded = k["UnloadedWindowUsecTotal"] / 1e6
    if k["LastReloadUsec"] > k["LastEventUsec"]:
        k_latency = (k["LastReloadUsec"] - k["LastEventUsec"]) / 1e6
        how = "last reload end - last event, khod's clock"
    else:
        k_latency = 0.0
        how = "the kernel updated the image in place at each event"
    observed = a["marks"]["khod-idle"] - a["marks"]["khod-last-event"]

    print(f"hotplug storm: {args.events} events (baseline over {nb}), shared 7.2 kernel under TCG")
    print(f"  baseline (kexec -p -u; kexec -p per event): reloads {base_reloads:6d}   "
          f"unloaded {base_unloaded:9.3f} s   last event -> current {base_latency:7.3f} s (lockstep)")
    if nb < args.events:
        scale = args.events / max(nb, 1)
        print(f"    scaled to {args.events} events (extrapolated, not measured): reloads {base_reloads * scale:.0f}, "
              f"unloaded {base_unloaded * scale:.1f} s")
    print(f"  khod (coalesced kexec_file_load ON_CRASH):  reloads {k_reloads:6d}   "
          f"unloaded {k_unloaded:9.3f} s   last event -> current {k_latency:7.3f} s ({how})")
    print(f"    khod: {k['EventsSeen']} events seen from {k['EventSource']}; guest saw khod idle "
          f"{observed:.3f} s after its last event (includes the 200 ms post-load check and 50 ms polling)")
    scale = args.events / max(nb, 1)
    r_ratio = base_reloads * scale / k_reloads if k_reloads else float("inf")
    u_ratio = base_unloaded * scale / k_unloaded if k_unloaded else float("inf")
    note = " (baseline extrapolated to N)" if nb < args.events else ""
    print(f"  ratios{note}: {r_ratio:.0f}x fewer reloads (goal >= 100x), {u_ratio:.0f}x less unloaded time "
          f"(goal >= 100x); khod current {k_latency:.3f} s after the last event (goal <= 1 s)")
    if args.json:
        args.json.write_text(json.dumps({
            "events": args.events, "baseline_events": nb,
            "baseline": {"reloads": base_reloads, "unloaded_s": base_unloaded, "latency_s": base_latency,
                         "hooks": mod.results["baseline_hooks"]},
            "khod": {"reloads": k_reloads, "unloaded_s": k_unloaded, "latency_s": k_latency,
                     "observed_idle_s": observed, "status": k},
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
