#!/usr/bin/env python3
"""distro-storm: one hotplug storm against Debian's own kdump-tools rule and
kdump-config as shipped, and the same storm against khod with its package's
drop-in, in one run of the Debian testing guest of the distro tier.

    bench/distro_storm.py [--deb FILE] [--rounds N] [--json FILE] [--workdir DIR]

The guest boots Debian's kernel, kdump-tools loads the crash kernel, a 1 GiB
DIMM is hot-added through QMP (khod handles that part). Each round of the
storm then offlines and onlines the DIMM's eight 128 MiB blocks and cpu1:
18 uevents. Phase "debian": khod masked and stopped, its drop-in removed, so
Debian's 50-kdump-tools.rules runs `kdump-config try-reload` per event.
Phase "khod": the drop-in back, khod running. For each phase: reloads (the
`kdump-config` runs udevd logged at debug level, plus khod's Reloads), time
with kexec_crash_loaded 0 (sampled every 10 ms by a bash loop in the guest),
and time from the last event until kdump is current (Debian: udev's queue
empty and a crash kernel loaded; khod: Pending false and loaded).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import types
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests/vm"))
from vmtest import distro, distro_image  # noqa: E402
from vmtest.runner import Scenario  # noqa: E402

GUEST = r'''
# The sampler needs bash ($EPOCHREALTIME, read -t without a fork).
[ -n "$BASH_VERSION" ] || exec bash "$0" "$@"
M=/sys/devices/system/memory
exec 9<> /tmp/sampler.fifo 2>/dev/null || { mkfifo /tmp/sampler.fifo; exec 9<> /tmp/sampler.fifo; }
# sampler OUT: time with no crash kernel and the windows, until /tmp/stop-sampler
sampler() {
    local v last now prev=1 total=0 windows=0
    last=${EPOCHREALTIME/./}
    while [ ! -e /tmp/stop-sampler ]; do
        read -r v < /sys/kernel/kexec_crash_loaded
        now=${EPOCHREALTIME/./}
        [ "$prev" = 0 ] && total=$((total + now - last))
        [ "$prev" = 1 ] && [ "$v" = 0 ] && windows=$((windows + 1))
        prev=$v last=$now
        read -t 0.01 -u 9 _
    done
    echo "$total $windows" > "$1"
}
storm() {
    local r=0 b
    while [ $r -lt @ROUNDS@ ]; do
        for b in $BLOCKS; do echo offline > $b/state; echo online > $b/state; done
        echo 0 > /sys/devices/system/cpu/cpu1/online; echo 1 > /sys/devices/system/cpu/cpu1/online
        r=$((r + 1))
    done
    LAST_EVENT=${EPOCHREALTIME/./}
}
kstatus() { khoctl --json kdump status 2>/dev/null; }
khod_current() { kstatus | grep -q '"Pending": false' && [ "$(cat /sys/kernel/kexec_crash_loaded)" = 1 ]; }
debian_current() { udevadm settle --timeout=0 && [ "$(cat /sys/kernel/kexec_crash_loaded)" = 1 ]; }
# phase NAME CURRENT-CHECK: the storm, measured
phase() {
    rm -f /tmp/stop-sampler
    since=$(date +%s)
    sampler /tmp/sampled-$1 &
    start=${EPOCHREALTIME/./}
    storm
    while ! $2; do read -t 0.05 -u 9 _; done
    current=${EPOCHREALTIME/./}
    : > /tmp/stop-sampler; wait
    journalctl --since "@$since" -o cat -u systemd-udevd > /tmp/udevd-$1.txt
    kdump_config=$(grep -c "Starting '/usr/sbin/kdump-config try-reload'" /tmp/udevd-$1.txt)
    failed=$(grep -c "Command \"/usr/sbin/kdump-config try-reload\" returned [1-9]" /tmp/udevd-$1.txt)
    read -r unloaded windows < /tmp/sampled-$1
    echo "{\"phase\": \"$1\", \"storm_usec\": $((LAST_EVENT - start)), \"current_after_usec\": $((current - LAST_EVENT)), \"sampled_unloaded_usec\": $unloaded, \"sampled_windows\": $windows, \"kdump_config_runs\": $kdump_config, \"kdump_config_failed\": $failed}" > /tmp/$1.json
    vm-put /tmp/$1.json $1.json
}

udevadm control --log-level=debug
systemctl start khod
wait_until 60 test -e /run/khod/kdump-hotplug || exit 1
ls -d $M/memory* > /tmp/blocks-before
vm-marker want-dimm 1
wait_until 120 sh -c "[ \$(ls -d $M/memory* | wc -l) -ge \$((\$(wc -l < /tmp/blocks-before) + 8)) ]" || exit 1
BLOCKS=$(ls -d $M/memory* | grep -v -x -F -f /tmp/blocks-before)
for b in $BLOCKS; do wait_until 60 grep -q online $b/state || exit 1; done
wait_until 60 khod_current || exit 1

# Debian as shipped: khod out of the way, its drop-in gone.
systemctl mask --now khod
rm -f /run/udev/rules.d/50-kdump-tools.rules /etc/udev/rules.d/50-kdump-tools.rules
udevadm control --reload
phase debian debian_current

# khod with the package's drop-in.
systemctl unmask khod
systemd-tmpfiles --create khod.conf 2>/dev/null || systemd-tmpfiles --create
udevadm control --reload
systemctl start khod
wait_until 60 test -e /run/khod/kdump-hotplug || exit 1
kstatus > /tmp/khod-before.json
phase khod khod_current
kstatus > /tmp/khod-after.json
vm-put /tmp/khod-before.json khod-before.json
vm-put /tmp/khod-after.json khod-after.json
'''

RESULTS: dict = {}


def host(vm):
    vm.wait_marker("want-dimm", timeout=600)
    vm.hotplug_memory(1 << 30)


def check(result):
    deb, kh = result.json("debian.json"), result.json("khod.json")
    before, after = result.json("khod-before.json")["kdump"], result.json("khod-after.json")["kdump"]
    kh["khod_reloads"] = after["Reloads"] - before["Reloads"]
    kh["khod_unloaded_usec"] = after["UnloadedWindowUsecTotal"] - before["UnloadedWindowUsecTotal"]
    kh["events_seen"] = after["EventsSeen"] - before["EventsSeen"]
    RESULTS.update(debian=deb, khod=kh)


def report(rounds: int) -> str:
    deb, kh = RESULTS["debian"], RESULTS["khod"]
    deb_reloads, kh_reloads = deb["kdump_config_runs"], kh["kdump_config_runs"] + kh["khod_reloads"]
    s = lambda usec: f"{usec / 1e6:9.3f} s"  # noqa: E731
    lines = [
        f"distro-storm: {rounds} rounds x 18 uevents, Debian testing guest, Debian's kernel under TCG",
        f"  debian (50-kdump-tools.rules, kdump-config try-reload per event): reloads {deb_reloads:5}"
        f"   unloaded {s(deb['sampled_unloaded_usec'])} in {deb['sampled_windows']} windows"
        f"   last event -> current {s(deb['current_after_usec'])}   storm {s(deb['storm_usec'])}",
        f"  khod (package drop-in, khod running):                          reloads {kh_reloads:5}"
        f"   unloaded {s(kh['sampled_unloaded_usec'])} in {kh['sampled_windows']} windows"
        f" (khod: {s(kh['khod_unloaded_usec'])})   last event -> current {s(kh['current_after_usec'])}"
        f"   storm {s(kh['storm_usec'])}",
        f"    khod saw {kh['events_seen']} events; kdump-config ran {kh['kdump_config_runs']} times",
    ]
    ratio_reloads = deb_reloads / max(kh_reloads, 1)
    if deb["sampled_unloaded_usec"] >= 10_000:
        unloaded = (f"{deb['sampled_unloaded_usec'] / max(kh['sampled_unloaded_usec'], 10_000):.0f}x less time "
                    "without a crash kernel (khod's below the 10 ms sampling counted as 10 ms)")
    else:
        unloaded = "time without a crash kernel below the 10 ms sampling in both"
    lines.append(f"  ratios: {ratio_reloads:.0f}x fewer reload attempts (khod's 0 counted as 1), {unloaded}, "
                 f"current {deb['current_after_usec'] / max(kh['current_after_usec'], 1):.1f}x sooner")
    lines.append(f"  kdump-config runs that failed: {deb.get('kdump_config_failed', '?')} of {deb_reloads} "
                 "(udevd's log: 'returned 1 (error)')")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deb", type=Path, help="khod .deb (default: tools/package)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--workdir", type=Path)
    args = ap.parse_args()
    root = (args.workdir or Path(tempfile.mkdtemp(prefix="khod-distro-storm-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    deb = args.deb or distro.package_deb(root / "package.log")
    tree = distro_image.prepare_tree(deb, root, root / "image.log")
    module = types.SimpleNamespace(GUEST_SCRIPT=GUEST.replace("@ROUNDS@", str(args.rounds)), check=check,
                                   host=host, TIMEOUT=3600, BOOT_TIMEOUT=3000)
    out = distro.run_one(Scenario("distro-storm", module), tree, root)
    if not out.ok:
        print(f"distro-storm failed: {out.reason}\n{out.details}", file=sys.stderr)
        print(f"work dir kept: {root}", file=sys.stderr)
        return 1
    print(report(args.rounds))
    if args.json:
        args.json.write_text(json.dumps({"rounds": args.rounds, **RESULTS}, indent=2) + "\n")
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
