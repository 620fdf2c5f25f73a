"""The command line: run scenarios, list them, or capture fixtures."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional

from .capture import cmd_capture
from .host import SCENARIO_DIR, default_builddir
from .report import describe_error, join_details, log
from .runner import Outcome, Scenario, discover_scenarios, load_scenario, run_scenario, scenario_name


def run_arguments(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="vmtest.py", description="Run khod VM scenarios.")
    ap.add_argument("--builddir", type=Path, default=default_builddir(),
                    help="meson build dir with src/khoctl/khoctl and src/khod/khod "
                         "(default: $KHOD_BUILDDIR or <repo>/build)")
    ap.add_argument("--kernel", type=Path, default=None,
                    help="bzImage (default: $KHOD_VM_KERNEL or <repo>/../shared/vm/bzImage)")
    add_run_options(ap)
    return ap.parse_args(argv)


def add_run_options(ap: argparse.ArgumentParser):
    """What work_root() and conclude() read, shared by vmtest.py and distrotest.py."""
    ap.add_argument("--keep", action="store_true", help="keep the work dir (console logs, disks, files)")
    ap.add_argument("--workdir", type=Path, default=None, help="where to put work files (implies --keep)")
    ap.add_argument("--json-summary", type=Path, default=None, help="write a JSON summary here")
    ap.add_argument("--jobs", "-j", type=positive_int, default=default_jobs(),
                    help="guests run at once (default: $KHOD_VM_JOBS or 1); a TCG guest keeps "
                         "about one core busy, so on 2 cores 2 jobs finish the tier in about 60%% of the time")
    ap.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="default: all")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def default_jobs() -> int:
    try:
        return max(1, int(os.environ.get("KHOD_VM_JOBS", "1")))
    except ValueError:
        return 1


def longest_first(names: list[str], boots_of: Callable[[str], int]) -> list[str]:
    """The order guests start in: the ones with most boots first, so a long one
    does not start last and keep the run waiting alone (a stable sort)."""
    return sorted(names, key=lambda n: -boots_of(n))


def guest_length(load: Callable[[str], Scenario]) -> Callable[[str], int]:
    """How long a scenario's guest runs, roughly, for longest_first(): its
    boots, or its own TIMEOUT in 2-minute units where it set one (kdump-tools:
    boot, crash, capture); 1 for one that does not load (its run says why)."""
    def length(name: str) -> int:
        try:
            sc = load(name)
        except Exception:                   # noqa: BLE001
            return 1
        return max(int(sc.attr("BOOTS", 1) or 1), int(float(sc.attr("TIMEOUT", 0) or 0) // 120))
    return length


def run_all(names: list[str], run: Callable[[str], Outcome], jobs: int,
            boots_of: Callable[[str], int] = lambda _: 1) -> list[Outcome]:
    """Runs every scenario, `jobs` at a time, printing each verdict as it comes;
    the outcomes in the order of `names`."""
    if jobs <= 1:
        outcomes = []
        for name in names:
            outcomes.append(run(name))
            report_outcome(outcomes[-1])
        return outcomes
    printing = threading.Lock()

    def run_and_report(name: str) -> Outcome:
        out = run(name)
        with printing:
            report_outcome(out)
        return out

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {n: pool.submit(run_and_report, n) for n in longest_first(names, boots_of)}
    return [futures[n].result() for n in names]


def run_one(name: str, args: argparse.Namespace, root: Path) -> Outcome:
    try:
        sc = load_scenario(name)
    except Exception as e:           # noqa: BLE001
        reason, details = describe_error(e)
        return Outcome(name, False, 0.0, reason, details)
    return run_scenario(sc, kernel=args.kernel, builddir=args.builddir, root=root)


def report_outcome(out: Outcome):
    """PASS/FAIL line; a failure's further lines and details indented below it."""
    if out.ok:
        log(f"PASS {out.name} ({out.seconds:.1f}s)")
        if out.retried:
            log(f"    run twice: {out.retried}")
        return
    first, _, rest = out.reason.partition("\n")
    log(f"FAIL {out.name}: {first}")
    details = join_details(rest, out.details)
    if out.retried:
        details = join_details(f"(the second run; the first: {out.retried})", details)
    if details:
        log("    " + details.replace("\n", "\n    "))


def write_summary(path: Path, outcomes: list[Outcome], keep: bool):
    passed = sum(o.ok for o in outcomes)
    summary = {"passed": passed, "failed": len(outcomes) - passed, "scenarios": [
        {"name": o.name, "ok": o.ok, "seconds": round(o.seconds, 2), "reason": o.reason,
         "retried": o.retried,
         "workdir": str(o.workdir) if keep and o.workdir else None}
        for o in outcomes]}
    path.write_text(json.dumps(summary, indent=2) + "\n")


def work_root(args: argparse.Namespace, prefix: str) -> tuple[Path, bool]:
    """The run's work dir and whether to keep it (--workdir implies --keep)."""
    if args.workdir:
        root = args.workdir.resolve()
        root.mkdir(parents=True, exist_ok=True)
        return root, True
    return Path(tempfile.mkdtemp(prefix=prefix)), args.keep


def conclude(outcomes: list[Outcome], root: Path, keep: bool, json_summary: Optional[Path]) -> int:
    """Removes or names the work dir, writes the summary, prints the count; the exit status."""
    if keep:
        log(f"work dir kept: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    passed = sum(o.ok for o in outcomes)
    failed = len(outcomes) - passed
    if json_summary:
        write_summary(json_summary, outcomes, keep)
    log(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def cmd_run(argv: list[str]) -> int:
    args = run_arguments(argv)
    names = [scenario_name(n) for n in args.scenarios] or list(discover_scenarios())
    root, keep = work_root(args, "khod-vmtest-")
    outcomes: list[Outcome] = []
    try:
        if not names:
            outcomes.append(Outcome("(none)", False, 0.0, f"no scenarios in {SCENARIO_DIR}"))
        outcomes += run_all(names, lambda n: run_one(n, args, root), args.jobs, guest_length(load_scenario))
    except BaseException:
        conclude(outcomes, root, keep, None)
        raise
    return conclude(outcomes, root, keep, args.json_summary)


def cmd_list(argv: list[str]) -> int:
    for name in discover_scenarios():
        try:
            desc = load_scenario(name).description
        except Exception as e:                # noqa: BLE001
            desc = f"(cannot load: {e})"
        log(f"{name:16} {desc}")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "capture":
        return cmd_capture(argv[1:])
    if argv and argv[0] == "list":
        return cmd_list(argv[1:])
    return cmd_run(argv)
