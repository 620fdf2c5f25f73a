#!/usr/bin/env python3
"""bench/luo_blackout.py: how long a live update keeps a client from its data
when khod carries it through LUO, against a plain kexec and against a virtio
disk, in one VM run of the shared 7.2 kernel (4 GiB, TCG).

One QEMU run chains six boots through `khoctl prepare/finalize/exec` (khod
under the fd store stand-in, as in tests/vm/scenarios/_luo.py):

  boot 1 (cold)  plain kexec, nothing preserved           -> plain (1st)
  boot 2         khod ready; preserve SMALL (256 MiB) in a memfd through
                 khod (`khoctl luo preserve --fd`), kexec  -> luo-SMALL
  boot 3         retrieve, check every word; preserve SIZE (1 GiB), kexec
                                                           -> luo-SIZE
  boot 4         retrieve, check; write SIZE of the same pattern to a virtio
                 disk (dd oflag=direct, sync), kexec with nothing preserved
                                                           -> disk-SIZE
  boot 5         read it back (dd iflag=direct), check; khod; plain kexec
                                                           -> plain (2nd)
  boot 6         khod ready; done

Every kexec is the same `khoctl exec` of the same kernel and initramfs with
the same command line (but khod.stage=); the client checks the data the same
way on both paths (into a tmpfs file, then `luo-pattern check`: every 8-byte
word and the SHA-256 against the one taken before the kexec).

Clocks: the guest writes `khod-bench: WORD` lines to /dev/kmsg, so each event
carries its kernel's printk timestamp. The host stamps each console line as
it arrives (monotonic). Lines are only ever late, so per kernel
min(arrival - printk time) maps its printk clock to the host clock; that
puts all boots on one clock. Under TCG the guest marks the TSC unstable and
its printk clock follows jiffies until the clocksource switch to hpet (about
1 s in), losing 0.2-1.4 s there, so the lines before and after the switch
get separate offsets ("eras"); the early one gives the host time of printk
zero. khod's phases (LastUpdatePhases, CLOCK_REALTIME) are placed with an
adjtimex reading the guest takes between two marks just before the exec
request (old kernel) and with khod's kernel-start (new kernel: realtime minus
CLOCK_BOOTTIME, which follows the printk clock). The gap across the kexec is
never taken from CLOCK_REALTIME: the next kernel sets it from the RTC in
whole seconds (the JSON has both, "realtime_gap" and "host_gap").

reboot-to-data: from the client's exec request in the old kernel (the
`khoctl exec` line; khod's barrier, its manifest and the kernel's reboot
syscall follow) to the data back and verified in the next kernel; for a
plain kexec, to khod ready in the next kernel.

Goals (issue): luo-SIZE / plain <= 1.10; disk-SIZE / luo-SIZE >= 5. A missed
goal is reported, not an error; the exit code is 1 only for a broken run.

Usage: bench/luo_blackout.py [--builddir build-bench] [--size 1G] [--small 256M] [--json FILE]
                              [--keep DIR] [--analyse DIR]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from optimized_build import DEFAULT_BUILDDIR, require_optimized  # noqa: E402
sys.path.insert(0, str(REPO / "tests" / "vm"))
import vmtest  # noqa: E402
from scenarios import _luo  # noqa: E402

SEED = 42
#: printk line at the start of a console line
PRINTK_RE = re.compile(r"^\[\s*(\d+\.\d+)\] (.*)$")
#: our marks, anywhere in a line (a userspace write to the console may share it)
MARK_RE = re.compile(r"\[\s*(\d+\.\d+)\] khod-bench: (\S+)(?: (.*))?$")
KERNEL_EVENTS = {
    "kexec_core: Starting new kernel": "reboot-syscall",
    "Run /init as init process": "init",
}

GUEST_SCRIPT = r'''
. /etc/khod-vm/guest-khod.sh
LU=org.kexec.khod1.LiveUpdate
stage=$1
# our marks must not be rate limited away
echo on > /proc/sys/kernel/printk_devkmsg
mark() { echo "khod-bench: $*" > /dev/kmsg; }
fail() { mark fail "$*"; vm-marker fail "$*"; cat /tmp/khod.log 2>/dev/null; exit 1; }
rt_usec() { adjtimex | awk '/tv_sec/ {s = $2} /tv_usec/ {u = $2} END {printf "%d%06d\n", s, u}'; }
mark script "$stage"

# khod under the fd store stand-in (as start_khod_stored in scenarios/_luo.py),
# polled every 20 ms; "khod-ready" is when a client first gets an answer.
khod_up() {
    mkdir -p /run/dbus
    dbus-daemon --config-file=/etc/khod-vm/dbus-system.conf || fail "dbus-daemon"
    fdstore-standin --state /run/fdstore -- khod > /tmp/khod.log 2>&1 &
    n=0
    until busctl get-property org.kexec.khod1 /org/kexec/khod1 $LU Enabled > /dev/null 2>&1; do
        n=$((n + 1))
        [ $n -gt 3000 ] && fail "khod did not come up"
        sleep 0.02
    done
    mark khod-ready
}
# SIZE: a memfd of the pattern, preserved as token 7 of session vm1 through khod.
preserve() {
    busctl call org.kexec.khod1 /org/kexec/khod1 $LU CreateSession s vm1 || fail "CreateSession"
    luo-pattern memfd "$1" $SEED -- sh -c 'echo "khod-bench: preserve-start" > /dev/kmsg
        exec khoctl --json luo preserve vm1 7 --fd 3' > /tmp/preserve.out 2>&1 || fail "preserve: $(cat /tmp/preserve.out)"
    mark preserve-done $(head -n 1 /tmp/preserve.out)
}
# SIZE: token 7 back through khod into a tmpfs file, every word checked.
retrieve() {
    khoctl --json luo retrieve vm1 7 /tmp/back.bin > /tmp/retrieve.json 2>&1 || fail "retrieve: $(cat /tmp/retrieve.json)"
    mark data-back
    luo-pattern check /tmp/back.bin "$1" $SEED > /tmp/check.txt 2>&1 || fail "check: $(cat /tmp/check.txt)"
    mark data-verified $(cat /tmp/check.txt)
    rm -f /tmp/back.bin
    khoctl --json luo status > /tmp/status.json 2>&1 || fail "luo status"
    vm-put /tmp/status.json "luo-status-$stage.json"
    khoctl --json luo finish vm1 > /tmp/finish.json 2>&1 || fail "finish: $(cat /tmp/finish.json)"
}
# SIZE: the pattern to the virtio disk, bypassing the page cache, and synced.
save_disk() {
    luo-pattern file /tmp/data "$1" $SEED > /tmp/pattern.txt || fail "pattern file"
    mark save-start
    dd if=/tmp/data of=/dev/vda bs=1M oflag=direct 2> /tmp/dd.txt || fail "dd to disk: $(cat /tmp/dd.txt)"
    sync
    mark save-done $(cat /tmp/pattern.txt)
    rm -f /tmp/data
}
# SIZE: read back from the disk into a tmpfs file (no page cache), checked.
load_disk() {
    dd if=/dev/vda of=/tmp/back.bin bs=1M count=$2 iflag=direct 2> /tmp/dd.txt || fail "dd from disk: $(cat /tmp/dd.txt)"
    mark data-back
    luo-pattern check /tmp/back.bin "$1" $SEED > /tmp/check.txt 2>&1 || fail "check: $(cat /tmp/check.txt)"
    mark data-verified $(cat /tmp/check.txt)
    rm -f /tmp/back.bin
}
# NEXT-STAGE: the same kernel and initramfs staged through khod, then exec.
go() {
    [ -f /tmp/self-initrd.gz ] || vm-self-initrd /tmp/self-initrd.gz > /dev/null || fail "vm-self-initrd"
    khoctl --json prepare --kernel /boot/bzImage --initrd /tmp/self-initrd.gz --reuse-cmdline \
        --append "khod.stage=$1" > /tmp/prepare.json 2>&1 || fail "prepare: $(cat /tmp/prepare.json)"
    khoctl --json finalize > /tmp/finalize.json 2>&1 || fail "finalize: $(cat /tmp/finalize.json)"
    sync
    mark clock-read
    r=$(rt_usec)
    mark exec-request "$r"
    khoctl exec || fail "khoctl exec failed"
    # khod answers before it reboots
    sleep 120
    fail "still running 120 s after khoctl exec"
}

case $stage in
1) khod_up; go 2 ;;
2) khod_up; preserve $SMALL; go 3 ;;
3) khod_up; retrieve $SMALL; preserve $BIG; go 4 ;;
4) khod_up; retrieve $BIG; save_disk $BIG; go 5 ;;
5) load_disk $BIG $BIG_MIB; khod_up; go 6 ;;
6) khod_up; mark done ;;
esac
exit 0
'''

#: which transition (old boot) is which path
PATHS = {1: "plain-1", 2: "luo-small", 3: "luo-big", 4: "disk-big", 5: "plain-2"}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"(\d+)([KMG]?)", text.strip().upper())
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 256M, 1G)")
    n = int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]
    if n == 0 or n % (1 << 20):
        raise argparse.ArgumentTypeError(f"{text}: must be a positive multiple of 1 MiB")
    return n


def human(n: int) -> str:
    return f"{n >> 30}G" if n % (1 << 30) == 0 else f"{n >> 20}M"


class Boot:
    """One kernel's console lines: its printk events and how they map to host time.

    The printk clock of this kernel under TCG loses 0.2-1.4 s before
    "clocksource: Switched to clocksource hpet" (about 1 s in): the TSC is
    marked unstable, so the clock follows jiffies until then. Each of the two
    eras gets its own offset, min(arrival - printk time) over its lines.
    Lines stamped 0.000000 were logged before the clock ran and are left out.
    """

    def __init__(self, index: int, first_arrival: float):
        self.index = index
        self.first_arrival = first_arrival    # the "Linux version" line
        self.switch: float | None = None      # printk time of the clocksource switch
        self.samples: list[tuple[float, float]] = []      # (printk time, arrival)
        self.events: dict[str, tuple[float, str]] = {}    # name -> (printk time, payload)

    def offset(self, late: bool) -> float:
        sw = self.switch if self.switch is not None else float("inf")
        sel = [a - ts for ts, a in self.samples if ts > 0 and (ts >= sw) == late]
        vmtest.expect(sel, f"boot {self.index}: no printk lines in the {'late' if late else 'early'} era")
        return min(sel)

    @property
    def zero(self) -> float:
        """Host monotonic time of this kernel's printk clock zero."""
        return self.offset(False)

    def at(self, ts: float) -> float:
        """Host monotonic time of printk time ts."""
        late = self.switch is not None and ts >= self.switch
        return ts + self.offset(late)

    def host(self, name: str) -> float | None:
        e = self.events.get(name)
        return None if e is None else self.at(e[0])

    def spread(self) -> dict:
        """How far lines came after the era's offset: 0 for the tightest, larger when late."""
        return {"era_step": self.offset(True) - self.offset(False),
                "first_line_before_zero": self.zero - self.first_arrival}


def split_boots(lines: list[tuple[float, str]]) -> list[Boot]:
    """Console lines (host arrival, text) into kernels: each starts at 'Linux version'."""
    boots: list[Boot] = []
    for arrival, line in lines:
        m = PRINTK_RE.match(line)
        if m and m.group(2).startswith("Linux version "):
            boots.append(Boot(len(boots) + 1, arrival))
        if not boots:
            continue
        b = boots[-1]
        if m:
            ts = float(m.group(1))
            b.samples.append((ts, arrival))
            if b.switch is None and m.group(2).startswith("clocksource: Switched to clocksource"):
                b.switch = ts
            for text, name in KERNEL_EVENTS.items():
                if m.group(2).startswith(text) and name not in b.events:
                    b.events[name] = (ts, "")
        mk = MARK_RE.search(line)
        if mk and mk.group(2) not in b.events:
            b.events[mk.group(2)] = (float(mk.group(1)), mk.group(3) or "")
    return boots


def phases_of(status: dict) -> dict[str, int]:
    return {p["phase"]: p["realtime_usec"] for p in vmtest.dig(status, "liveupdate.last_update_phases")}


def sha_in(payload: str) -> str:
    words = payload.split()
    vmtest.expect("sha256" in words, f"no sha256 in {payload!r}")
    return words[words.index("sha256") + 1]


def analyse(boots: list[Boot], statuses: dict[int, dict], big: int, small: int) -> dict:
    """Per path: event times in seconds from its exec request (host-aligned), and totals."""
    out = {}
    for old_i, path in PATHS.items():
        old, new = boots[old_i - 1], boots[old_i]
        t0 = old.host("exec-request")
        vmtest.expect(t0 is not None, f"boot {old_i}: no exec-request mark")
        ev: dict[str, float] = {}

        def put(name, host_t):
            if host_t is not None:
                ev[name] = host_t - t0

        put("reboot-syscall", old.host("reboot-syscall"))
        ev["next-kernel-zero"] = new.zero - t0
        put("init", new.host("init"))
        if path != "disk-big":      # boot 5 reads the disk first, then starts khod for the next stage
            put("khod-ready", new.host("khod-ready"))
        put("data-back", new.host("data-back"))
        put("data-verified", new.host("data-verified"))
        khod = {}
        st = statuses.get(old_i + 1)
        if st is not None:
            ph = phases_of(st)
            # Old kernel: the realtime the guest read (adjtimex) between its clock-read and
            # exec-request marks, taken at their midpoint, places khod's realtime phases.
            ts_b = old.events["exec-request"][0]
            ts_a = old.events.get("clock-read", (ts_b, ""))[0]
            rt0 = int(old.events["exec-request"][1]) / 1e6
            mid = old.at((ts_a + ts_b) / 2) - t0
            khod["placement-error"] = (ts_b - ts_a) / 2
            for name in ("exec-requested", "inhibitors-released", "reboot-syscall"):
                if ph.get(name):
                    khod[name] = mid + ph[name] / 1e6 - rt0
            # New kernel: realtime - kernel-start is CLOCK_BOOTTIME, which follows the printk
            # clock (both lost the jiffies era's time), so it maps with the late offset.
            ks = ph.get("kernel-start", 0) / 1e6
            for name in ("khod-ready", "first-retrieve"):
                if ph.get(name) and ks:
                    khod[name] = new.at(ph[name] / 1e6 - ks) - t0
            if ph.get("reboot-syscall") and ks:
                # What CLOCK_REALTIME across the kexec says of reboot-syscall -> kernel start,
                # against the host's view of the same gap (khod's phase -> printk zero).
                khod["realtime_gap"] = ks - ph["reboot-syscall"] / 1e6
                khod["host_gap"] = ev["next-kernel-zero"] - khod["reboot-syscall"]
        end = "khod-ready" if path.startswith("plain") else "data-verified"
        vmtest.expect(end in ev, f"{path}: no {end} in boot {old_i + 1}")
        before = {}
        if path.startswith("luo"):
            b = old.events
            before["preserve"] = b["preserve-done"][0] - b["preserve-start"][0]
            before["sha-before"] = sha_in(b["preserve-done"][1])
        elif path == "disk-big":
            b = old.events
            before["save"] = b["save-done"][0] - b["save-start"][0]
            before["sha-before"] = sha_in(b["save-done"][1])
        if "sha-before" in before:
            after = sha_in(new.events["data-verified"][1])
            vmtest.expect_eq(after, before["sha-before"], f"{path}: SHA-256 before and after the kexec")
        out[path] = {"events": ev, "khod": khod, "before": before,
                     "reboot_to_data": ev[end], "end": end,
                     "size": big if path.endswith("big") else small if path == "luo-small" else 0}
    return out


STAMPED = "console-stamped.tsv"


def evaluate(workdir: Path, big: int, small: int):
    """The work dir's host-stamped console and khod's status files, analysed."""
    lines = []
    for row in (workdir / STAMPED).read_text().splitlines():
        arrival, _, line = row.partition("\t")
        lines.append((float(arrival), line))
    boots = split_boots(lines)
    vmtest.expect_eq(len(boots), 6, "kernels seen on the console")
    statuses = {}
    for i in (3, 4):
        statuses[i] = json.loads((workdir / "out" / f"luo-status-{i}.json").read_text())
        vmtest.expect(vmtest.dig(statuses[i], "liveupdate.incoming"), f"boot {i}: khod held no incoming session")
    return analyse(boots, statuses, big, small), boots


def make_module(big: int, small: int, disk: Path, lines: list):
    mod = types.ModuleType("luo_blackout_bench")
    mod.DESCRIPTION = "LUO blackout: preserved memfd vs plain kexec vs virtio disk"
    mod.APPEND = _luo.APPEND
    mod.MEMORY = "4G"
    mod.BINARIES = _luo.BINARIES
    mod.HOST_BINARIES = _luo.HOST_BINARIES
    mod.INCLUDE_BOOT = True
    mod.FILES = dict(_luo.FILES)
    mod.QEMU_ARGS = ["-drive", f"file={disk},format=raw,if=virtio,cache=none,aio=threads"]
    mod.BOOTS = 6
    gib = big / (1 << 30)
    # TCG: generating, copying and checking 1 GiB each take tens of seconds
    mod.BOOT_TIMEOUT = 150 + 400 * gib
    mod.GUEST_SCRIPT = (f"SEED={SEED}\nSMALL={human(small)}\nBIG={human(big)}\nBIG_MIB={big >> 20}\n"
                        + GUEST_SCRIPT)
    mod.results = {}

    def host(vm):
        orig = vm.console.on_line

        def on_line(line):
            lines.append((time.monotonic(), line))
            orig(line)
        vm.console.on_line = on_line

    def check(result):
        fails = [m.payload for m in result.markers_of("fail")]
        vmtest.expect(not fails, f"guest failed: {fails}")
        with open(result.workdir / STAMPED, "w") as f:
            for arrival, line in lines:
                f.write(f"{arrival:.6f}\t{line}\n")
        mod.results, mod.boots = evaluate(result.workdir, big, small)

    mod.host = host
    mod.check = check
    return mod


ROWS = [
    # (key, where, label)
    ("exec-request", "events", "exec request (client runs khoctl exec)"),
    ("exec-requested", "khod", "  khod: Exec begins (PrepareForKexec)"),
    ("inhibitors-released", "khod", "  khod: inhibitors released (none held)"),
    ("reboot-syscall", "khod", "  khod: 'reboot-syscall' (manifest write begins)"),
    ("reboot-syscall", "events", "reboot syscall (kernel: Starting new kernel)"),
    ("next-kernel-zero", "events", "next kernel: printk clock zero"),
    ("init", "events", "next kernel: /init runs"),
    ("khod-ready", "events", "khod ready (a client gets an answer)"),
    ("khod-ready", "khod", "  khod: ready (its own clock)"),
    ("first-retrieve", "khod", "  khod: first Retrieve answered"),
    ("data-back", "events", "data back in the client (tmpfs file)"),
    ("data-verified", "events", "data verified (every word, SHA-256)"),
]


def report(res: dict, big: int, small: int) -> dict:
    names = {"plain-1": "plain", "luo-small": f"LUO {human(small)}", "luo-big": f"LUO {human(big)}",
             "disk-big": f"disk {human(big)}", "plain-2": "plain"}
    order = ["plain-1", "plain-2", "luo-small", "luo-big", "disk-big"]
    print("seconds from the client's exec request in the old kernel (printk clocks, boots aligned on the host clock)")
    print(f"  {'':50}" + "".join(f"{names[p]:>11}" for p in order))
    for key, where, label in ROWS:
        cells = []
        for p in order:
            v = 0.0 if key == "exec-request" else res[p][where].get(key)
            cells.append(f"{v:11.3f}" if v is not None else f"{'-':>11}")
        print(f"  {label:50}" + "".join(cells))
    print(f"  {'reboot-to-data':50}" + "".join(f"{res[p]['reboot_to_data']:11.3f}" for p in order))
    print(f"  {'  (ends at)':50}" + "".join(f"{res[p]['end'].replace('data-', ''):>11}" for p in order))
    kern = {p: res[p]["events"]["init"] for p in order}
    print(f"  {'  of which exec request -> /init (kernels)':50}" + "".join(f"{kern[p]:11.3f}" for p in order))
    print(f"  {'  of which /init -> end (userspace)':50}"
          + "".join(f"{res[p]['reboot_to_data'] - kern[p]:11.3f}" for p in order))
    pre = []
    for p in order:
        b = res[p]["before"]
        v = b.get("preserve", b.get("save"))
        pre.append(f"{v:11.3f}" if v is not None else f"{'-':>11}")
    print(f"  {'before the exec request: preserve / save to disk':50}" + "".join(pre))

    plains = [res["plain-1"]["reboot_to_data"], res["plain-2"]["reboot_to_data"]]
    plain = statistics.mean(plains)
    big_s, small_s = human(big), human(small)

    def t(path, key, where="events"):
        return res[path][where][key]

    variants = {
        # name: (LUO big end, LUO small end, disk end), seconds from the exec request
        "verified": (t("luo-big", "data-verified"), t("luo-small", "data-verified"), t("disk-big", "data-verified")),
        "data_back": (t("luo-big", "data-back"), t("luo-small", "data-back"), t("disk-big", "data-back")),
        "usable": (t("luo-big", "first-retrieve", "khod"), t("luo-small", "first-retrieve", "khod"),
                   t("disk-big", "data-back")),
        "verified_with_save": (t("luo-big", "data-verified") + res["luo-big"]["before"]["preserve"],
                               t("luo-small", "data-verified") + res["luo-small"]["before"]["preserve"],
                               t("disk-big", "data-verified") + res["disk-big"]["before"]["save"]),
    }
    labels = {
        "verified": "to the data verified (the issue's reboot-to-data)",
        "data_back": "to the data in a client file, before the check",
        "usable": "to the data usable (LUO: Retrieve answered; disk: read)",
        "verified_with_save": "verified, + the preserve / save before the exec",
    }
    ratios = {}
    print(f"ratios (plain = mean of the two plain kexecs, {plains[0]:.3f} and {plains[1]:.3f} s, "
          f"to khod ready)")
    print(f"  {'':56}{'LUO ' + big_s + ' / plain':>17}{'LUO ' + small_s + ' / plain':>19}"
          f"{'disk ' + big_s + ' / LUO ' + big_s:>20}")
    for name, (luo, luo_small, disk) in variants.items():
        r = {"luo_over_plain": luo / plain, "luo_small_over_plain": luo_small / plain, "disk_over_luo": disk / luo}
        ratios[name] = r
        print(f"  {labels[name]:56}{r['luo_over_plain']:16.2f}x{r['luo_small_over_plain']:18.2f}x"
              f"{r['disk_over_luo']:19.2f}x")
    # The kernels' part (exec request -> /init) is the same work on every path but for what
    # KHO and LUO do in them; under TCG on a shared host it varies by seconds from one kexec to
    # the next. With every path's kernel part replaced by the median of all five:
    kern = {p: res[p]["events"]["init"] for p in res}
    med = statistics.median(kern.values())
    user = {p: res[p]["reboot_to_data"] - kern[p] for p in res}
    plain_u = statistics.mean([user["plain-1"], user["plain-2"]])
    est = {"kernel_median": med, "kernel_min": min(kern.values()), "kernel_max": max(kern.values()),
           "luo_over_plain": (med + user["luo-big"]) / (med + plain_u),
           "luo_small_over_plain": (med + user["luo-small"]) / (med + plain_u),
           "disk_over_luo": (med + user["disk-big"]) / (med + user["luo-big"])}
    ratios["median_kernel_estimate"] = est
    print(f"  {'verified, every kernel part set to their median':56}{est['luo_over_plain']:16.2f}x"
          f"{est['luo_small_over_plain']:18.2f}x{est['disk_over_luo']:19.2f}x")
    print(f"  (kernel part, exec request -> /init: median {med:.3f} s, range {est['kernel_min']:.3f}-"
          f"{est['kernel_max']:.3f} s over the five kexecs; LUO {big_s}: {kern['luo-big']:.3f} s)")
    v = ratios["verified"]
    ratios["goal_luo_over_plain_met"] = v["luo_over_plain"] <= 1.10
    ratios["goal_disk_over_luo_met"] = v["disk_over_luo"] >= 5
    ratios["plain_mean"] = plain
    print(f"goals (on the issue's reboot-to-data): LUO {big_s} / plain {v['luo_over_plain']:.2f}x, goal <= 1.10: "
          f"{'met' if ratios['goal_luo_over_plain_met'] else 'MISSED'}; disk {big_s} / LUO {big_s} "
          f"{v['disk_over_luo']:.2f}x, goal >= 5: {'met' if ratios['goal_disk_over_luo_met'] else 'MISSED'}")
    return ratios


def host_busy() -> float:
    """Core-seconds the host's CPUs have been busy (not idle, not iowait) since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """CPU seconds of this process and its waited-for children (QEMU, cpio, gzip)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def write_json(args, results, ratios, boots, release, seconds):
    if not args.json:
        return
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    doc = {"date": datetime.date.today().isoformat(), "commit": commit, "kernel": release,
           "khod": str(vmtest.product_binary(args.builddir, "khod")), "khod_built": args.khod_built,
           "size": args.size, "small": args.small, "run_seconds": seconds,
           "paths": results, "ratios": ratios,
           "clocks": {b.index: b.spread() for b in boots}}
    args.json.write_text(json.dumps(doc, indent=2) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--builddir", type=Path, default=DEFAULT_BUILDDIR)
    ap.add_argument("--size", type=parse_size, default=parse_size("1G"),
                    help="the large size (default 1G), for LUO and the disk")
    ap.add_argument("--small", type=parse_size, default=parse_size("256M"),
                    help="the small LUO size (default 256M)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", type=Path, help="keep the work files in this (new) directory")
    ap.add_argument("--analyse", type=Path, metavar="DIR",
                    help="no VM: analyse the run kept in DIR (--keep DIR) again, with its --size and --small")
    args = ap.parse_args()
    require_optimized(args.builddir)
    release = vmtest.kernel_release(vmtest.default_kernel())
    # the build dir may be rebuilt during a run: what the initramfs got is what was there now
    mtime = vmtest.product_binary(args.builddir, "khod").stat().st_mtime
    args.khod_built = datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc).isoformat(timespec="seconds")
    if args.analyse:
        results, boots = evaluate(args.analyse / "bench-luo-blackout", args.size, args.small)
        print(f"LUO blackout: {human(args.size)} and {human(args.small)} through khod (kept run {args.analyse})")
        ratios = report(results, args.size, args.small)
        write_json(args, results, ratios, boots, release, None)
        return 0

    lines: list[tuple[float, str]] = []
    t0 = time.monotonic()
    busy0, own0 = host_busy(), own_cpu()
    with tempfile.TemporaryDirectory(prefix="khod-bench-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        disk = root / "disk.raw"
        with open(disk, "wb") as f:
            f.truncate(args.size)
        mod = make_module(args.size, args.small, disk, lines)
        scenario = vmtest.Scenario("bench-luo-blackout", mod)
        outcome = vmtest.run_scenario(scenario, kernel=None, builddir=args.builddir, root=root)
        disk.unlink()
        if not outcome.ok:
            print(f"bench failed: {outcome.reason}\n{outcome.details}")
            return 1
    seconds = time.monotonic() - t0
    others = max(0.0, (host_busy() - busy0) - (own_cpu() - own0))
    print(f"LUO blackout: {human(args.size)} and {human(args.small)} through khod, one VM run "
          f"(4 GiB, 2 vCPUs, TCG), Linux {release}, {seconds:.0f} s")
    busy = host_busy() - busy0
    print(f"  host: {os.cpu_count()} cores busy for {busy:.0f} core-seconds, this run (QEMU, harness) "
          f"{own_cpu() - own0:.0f}, other processes about {others:.0f} (/proc/stat counts per tick)")
    ratios = report(mod.results, args.size, args.small)
    ratios["host_other_core_seconds"] = others
    write_json(args, mod.results, ratios, mod.boots, release, seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
