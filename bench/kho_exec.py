#!/usr/bin/env python3
"""bench/kho_exec.py: how long a live update takes to reach the reboot syscall,
through khod versus kexec-tools, in one VM run of the shared 7.2 kernel.

Each round kexecs twice: once the kexec-tools way (`kexec -s -l ... && kexec
-e`), once through khod (`khoctl finalize && khoctl exec --force`, after a
`khoctl prepare` that is not timed: it has no counterpart in kexec-tools).
Times come from the guest kernel's own clock: the guest writes a line to
/dev/kmsg when a command starts, and the kernel logs "kexec_core: Starting
new kernel" inside the reboot syscall, so both ends carry printk timestamps.

Printed, per path and as ratios against the kexec-tools baseline of the same
run:
  exec   command start -> reboot syscall, for `kexec -e` vs `khoctl exec --force`
  total  command start -> reboot syscall, for the load plus the exec
The goal (issue 3): khoctl exec --force within 1.1x of kexec-tools.

Usage: bench/kho_exec.py [--builddir build-bench] [--rounds N] [--json FILE]
"""

import argparse
import json
import re
import statistics
import sys
import tempfile
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from optimized_build import DEFAULT_BUILDDIR, require_optimized  # noqa: E402
sys.path.insert(0, str(REPO / "tests" / "vm"))
import vmtest  # noqa: E402

STAMP_RE = re.compile(r"^\[\s*(\d+\.\d+)\] (khod-bench: (\S+)|kexec_core: Starting new kernel)")
START_RE = re.compile(r"^\[\s*(\d+\.\d+)\] khod-bench: start-(begin|end) (\S+)", re.M)

GUEST_SCRIPT = r'''
. /etc/khod-vm/guest-khod.sh
stage=$1
last=$((2 * ROUNDS + 1))
[ "$stage" = "$last" ] && exit 0
next="khod.stage=$((stage + 1))"
# the next stage needs /boot too, so both paths load the full self-initrd
initrd=$(vm-self-initrd /tmp/initrd-self.gz) || exit 1
# Where the exec's time goes: each program's start alone (it prints and exits).
echo "khod-bench: start-begin kexec" > /dev/kmsg; kexec --version > /dev/null
echo "khod-bench: start-end kexec" > /dev/kmsg
echo "khod-bench: start-begin khoctl" > /dev/kmsg; khoctl exec --help > /dev/null
echo "khod-bench: start-end khoctl" > /dev/kmsg
if [ $((stage % 2)) = 1 ]; then
    echo "khod-bench: baseline-load" > /dev/kmsg
    kexec -s -l /boot/bzImage --initrd="$initrd" --append="$(cat /proc/cmdline) $next" &&
        echo "khod-bench: baseline-exec" > /dev/kmsg && kexec -e
else
    start_khod || exit 1
    khoctl prepare --kernel /boot/bzImage --initrd "$initrd" --reuse-cmdline --append "$next" > /dev/null || exit 1
    echo "khod-bench: khod-load" > /dev/kmsg
    khoctl finalize > /dev/null &&
        echo "khod-bench: khod-exec" > /dev/kmsg && khoctl exec --force
fi
sleep 60
exit 1
'''


def parse_starts(console: str) -> dict[str, list[float]]:
    """Seconds each program took to start, print and exit, by program."""
    out: dict[str, list[float]] = {}
    begun: dict[str, float] = {}
    for m in START_RE.finditer(console):
        t, edge, prog = float(m.group(1)), m.group(2), m.group(3)
        if edge == "begin":
            begun[prog] = t
        elif prog in begun:
            out.setdefault(prog, []).append(t - begun.pop(prog))
    return out


def parse(console: str) -> dict[str, list[float]]:
    """Seconds from each mark to the next 'Starting new kernel', by mark."""
    out: dict[str, list[float]] = {}
    pending: dict[str, float] = {}
    for line in console.splitlines():
        m = STAMP_RE.match(line)
        if not m:
            continue
        t = float(m.group(1))
        if m.group(3):
            pending[m.group(3)] = t
        else:
            for mark, start in pending.items():
                out.setdefault(mark, []).append(t - start)
            pending = {}
    return out


def make_module(rounds: int):
    mod = types.ModuleType("kho_exec_bench")
    mod.DESCRIPTION = "khoctl exec vs kexec -e: time to the reboot syscall"
    # The self-initrd (with /boot for the next stage) is about 70 MiB: the
    # global area must hold it, or kexec_file_load fails with EADDRNOTAVAIL.
    mod.APPEND = "kho=on kho_scratch=16M,192M,32M"
    mod.BINARIES = ["khoctl", "khod"]
    mod.HOST_BINARIES = vmtest.KHOD_BUS_HOST_BINARIES + ["/usr/sbin/kexec"]
    mod.INCLUDE_BOOT = True
    mod.BOOTS = 2 * rounds + 1
    mod.FILES = dict(vmtest.KHOD_BUS_FILES)
    mod.GUEST_SCRIPT = f"ROUNDS={rounds}\n" + GUEST_SCRIPT
    mod.results = {}
    mod.starts = {}

    def check(result):
        times = parse(result.console)
        for mark in ("baseline-load", "baseline-exec", "khod-load", "khod-exec"):
            vmtest.expect(len(times.get(mark, [])) == rounds,
                          f"expected {rounds} '{mark}' timings, got {times.get(mark)}")
        mod.results.update(times)
        mod.starts = parse_starts(result.console)

    mod.check = check
    return mod


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--builddir", type=Path, default=DEFAULT_BUILDDIR)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    require_optimized(args.builddir)

    mod = make_module(args.rounds)
    scenario = vmtest.Scenario("bench-kho-exec", mod)
    with tempfile.TemporaryDirectory(prefix="khod-bench-") as tmp:
        outcome = vmtest.run_scenario(scenario, kernel=None, builddir=args.builddir, root=Path(tmp))
        if not outcome.ok:
            print(f"bench failed: {outcome.reason}\n{outcome.details}")
            return 1
    t = mod.results
    med = {k: statistics.median(v) for k, v in t.items()}
    rows = [
        ("exec", "kexec -e", med["baseline-exec"], "khoctl exec --force", med["khod-exec"]),
        ("total", "kexec -s -l && kexec -e", med["baseline-load"],
         "khoctl finalize && khoctl exec --force", med["khod-load"]),
    ]
    print(f"time from the command to the reboot syscall (guest kernel clock, median of {args.rounds} rounds)")
    for name, base_cmd, base, khod_cmd, ours in rows:
        print(f"  {name:5}  baseline {base_cmd:28} {base * 1000:8.1f} ms   "
              f"khod {khod_cmd:40} {ours * 1000:8.1f} ms   ratio {ours / base:5.2f}x")
    # Like with like: the exec alone against the exec alone (the load is timed apart, in "total").
    ratio = med["khod-exec"] / med["baseline-exec"]
    print(f"  headline: khoctl exec --force / kexec -e = {ratio:.2f}x (goal <= 1.10x)")
    starts = {k: statistics.median(v) for k, v in mod.starts.items()}
    extra = med["khod-exec"] - med["baseline-exec"]
    start_extra = starts["khoctl"] - starts["kexec"]
    print(f"  where khod's extra {extra * 1000:.1f} ms go (medians of {len(mod.starts['kexec'])} starts in the same run):")
    print(f"    program start: khoctl exec --help {starts['khoctl'] * 1000:.1f} ms, kexec --version "
          f"{starts['kexec'] * 1000:.1f} ms: {start_extra * 1000:.1f} ms more")
    print(f"    the rest (bus connection, Get Inhibitors, Exec, khod up to the syscall): "
          f"{(extra - start_extra) * 1000:.1f} ms")
    if args.json:
        args.json.write_text(json.dumps({"rounds": args.rounds, "seconds": t, "median": med,
                                         "starts": mod.starts}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
