"""The distro tier: scenarios in a Debian testing guest that runs systemd,
dbus, polkitd, udev and kdump-tools for real, with khod installed from its
.deb. Scenarios live in tests/vm/distro/; see tests/vm/README.md.

A scenario module has GUEST_SCRIPT (sh, run by a systemd service once
multi-user.target is up, as `scenario.sh <stage>`) and check(result), and may
set KERNEL ("distro", the default: Debian's own kernel and initramfs from
the image; "7.2" or "7.3": a shared KHO kernel, booted without initramfs),
APPEND, FILES ({guest path: text}), NEXT_KERNEL ("7.3": the release boots
after the first are checked against), MEMORY, SMP, QEMU_ARGS, BOOTS,
BOOT_TIMEOUT, TIMEOUT, EXPECT_EXIT, FINISHES_IN_GUEST (False when the last
boot ends without the script, e.g. in kdump-tools' capture) and host(vm).
`result.disk` is the guest's disk after the run, readable with
`distro_image.read_guest_file`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from . import distro_image
from .errors import CheckFailed, HarnessError
from .host import HERE, REPO, find_qemu, timeout_scale
from .kernel import require_kernel
from .report import describe_error, join_details, log
from .results import expect, generic_checks
from .runner import Outcome, Scenario, boot_and_collect, discover_scenarios, load_scenario, scenario_name
from .cli import add_run_options, conclude, guest_length, report_outcome, run_all, work_root

DISTRO_DIR = HERE / "distro"
SHARED_KERNELS = {"7.2": REPO.parent / "shared/vm/bzImage", "7.3": REPO.parent / "shared/vm/7.3/bzImage"}
DISTRO_MEMORY = "2G,slots=4,maxmem=8G"
DISTRO_BOOT_TIMEOUT = 240.0
#: Every boot of the distro guest; the shared kernels add KHO/LUO words.
BASE_DISTRO_APPEND = "root=/dev/vda rw"
# After a KHO kexec the early allocations, the crashkernel= reservation among
# them, come from the scratch areas: 256M of global scratch cannot hold a 256M
# reservation beside the rest ("cannot allocate crashkernel", seen on 7.2.13).
SHARED_APPEND = "kho=on kho_scratch=32M,512M,64M liveupdate=on crashkernel=256M"
DISTRO_KERNEL_APPEND = "crashkernel=384M memhp_default_state=online_movable"

#: Sourced ahead of every scenario script.
GUEST_LIB = f"""
stay_up() {{ mkdir -p /run/khod-distrotest; : > /run/khod-distrotest/stay-up; }}
# wait_until SECONDS COMMAND...: polls a condition the guest cannot be told about
wait_until() {{
    t=$1; shift
    while ! "$@"; do
        t=$((t - 1)); [ "$t" -ge 0 ] || return 1
        sleep 1
    done
}}
put_journal() {{ journalctl -b -o short-monotonic --no-pager > /tmp/journal.txt 2>&1; vm-put /tmp/journal.txt "journal-$1.txt"; }}
"""


def discover() -> dict[str, Path]:
    return discover_scenarios(DISTRO_DIR)


def load(name: str) -> Scenario:
    return load_scenario(name, DISTRO_DIR)


def boot_files(sc: Scenario, tree: distro_image.DistroTree) -> tuple[Path, Optional[Path], str]:
    which = sc.attr("KERNEL", "distro")
    if which == "distro":
        return tree.kernel, tree.initrd, DISTRO_KERNEL_APPEND
    if which not in SHARED_KERNELS:
        raise HarnessError(f"{sc.name}: KERNEL must be distro, 7.2 or 7.3, not {which!r}")
    return require_kernel(SHARED_KERNELS[which]), None, SHARED_APPEND


def save_journal(disk: Path, workdir: Path):
    """On failure: the guest's persistent journal, as files and, where this
    host's journalctl reads them, as text."""
    dest = workdir / "journal"
    subprocess.run(["debugfs", "-R", f"rdump /var/log/journal {dest.parent}", str(disk)],
                   capture_output=True)
    if dest.is_dir():
        with open(workdir / "journal.txt", "w") as f:
            subprocess.run(["journalctl", "-D", str(dest), "-o", "short-monotonic", "--no-pager"],
                           stdout=f, stderr=subprocess.STDOUT)


def run_one(sc: Scenario, tree: distro_image.DistroTree, root: Path) -> Outcome:
    t0 = time.monotonic()
    workdir = root / sc.name
    workdir.mkdir(parents=True, exist_ok=True)
    tail = ""
    disk = workdir / "disk.img"
    try:
        a = sc.attr
        kernel, initrd, kernel_append = boot_files(sc, tree)
        files = {f"{distro_image.TOOLS_DIR}/scenario.sh": "#!/bin/sh\n" + GUEST_LIB + a("GUEST_SCRIPT")}
        files.update(a("FILES", {}))
        distro_image.pack_disk(tree, files, disk, workdir / "build.log")
        scale = timeout_scale()
        boots = a("BOOTS", 1)
        boot_timeout = float(a("BOOT_TIMEOUT", DISTRO_BOOT_TIMEOUT)) * scale
        total = float(a("TIMEOUT", 0)) * scale or boot_timeout * max(1, boots or 1) + 60
        append = " ".join([BASE_DISTRO_APPEND, kernel_append, a("APPEND", "")]).strip()
        qemu_args = ["-drive", f"file={disk},if=virtio,format=raw", *a("QEMU_ARGS", ())]
        next_kernel = a("NEXT_KERNEL", None)
        if next_kernel is not None:  # a live update into another shared kernel
            next_kernel = require_kernel(SHARED_KERNELS[next_kernel])
        result, error, tail = boot_and_collect(
            name=sc.name, workdir=workdir, kernel=kernel, initrd=initrd, append=append, next_kernel=next_kernel,
            memory=a("MEMORY", DISTRO_MEMORY), smp=a("SMP", "2,sockets=4,cores=1,threads=1,maxcpus=4"),
            qemu_args=qemu_args, boot_timeout=boot_timeout, total_timeout=total,
            host=a("host", None), started=t0)
        result.disk = disk
        if error is not None:
            reason, details = describe_error(error)
            raise CheckFailed(reason + ("\n" + details if details else ""))
        if a("FINISHES_IN_GUEST", True):
            generic_checks(result, boots, a("EXPECT_EXIT", 0))
        else:
            expect(result.markers_of("boot"), "the scenario service never ran (no 'KHOD-VM: boot' line)")
            expect(not result.put_errors, "vm-put transfer problems: " + "; ".join(result.put_errors))
        sc.module.check(result)
        return Outcome(sc.name, True, time.monotonic() - t0, workdir=workdir)
    except Exception as e:                   # noqa: BLE001
        reason, details = describe_error(e)
        if disk.exists():
            save_journal(disk, workdir)
            details = join_details(details, f"guest journal: {workdir / 'journal.txt'}")
        return Outcome(sc.name, False, time.monotonic() - t0, reason, join_details(details, tail), workdir)


def package_deb(log_path: Path) -> Path:
    """Builds the .deb of the tree under test with tools/package; its last line is the path."""
    with open(log_path, "w") as f:
        r = subprocess.run([str(REPO / "tools/package")], stdout=subprocess.PIPE, stderr=f, text=True)
        f.write(r.stdout)
    lines = r.stdout.strip().splitlines()
    if r.returncode != 0 or not lines or not Path(lines[-1]).is_file():
        raise HarnessError(f"tools/package failed (exit {r.returncode}); see {log_path}")
    return Path(lines[-1])


def arguments(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="distrotest.py", description="Run khod's Debian guest scenarios.")
    ap.add_argument("--deb", type=Path, default=None,
                    help="khod .deb to install (default: build one with tools/package)")
    add_run_options(ap)  # SCENARIO "list" lists them
    return ap.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = arguments(list(sys.argv[1:] if argv is None else argv))
    if args.scenarios == ["list"]:
        for name in discover():
            log(f"{name:20} {load(name).description}")
        return 0
    names = [scenario_name(n) for n in args.scenarios] or list(discover())
    root, keep = work_root(args, "khod-distro-")
    outcomes: list[Outcome] = []
    try:
        tree = guest_tree(args, root, names, outcomes)
        if tree:
            outcomes += run_all(names, lambda n: load_and_run(n, tree, root), args.jobs, guest_length(load))
    except BaseException:
        conclude(outcomes, root, keep, None)
        raise
    return conclude(outcomes, root, keep, args.json_summary)


def load_and_run(name: str, tree: distro_image.DistroTree, root: Path) -> Outcome:
    try:
        sc = load(name)
    except Exception as e:                   # noqa: BLE001
        reason, details = describe_error(e)
        return Outcome(name, False, 0.0, reason, details)
    return run_one(sc, tree, root)


def guest_tree(args: argparse.Namespace, root: Path, names: list[str],
               outcomes: list[Outcome]) -> Optional[distro_image.DistroTree]:
    """The prepared guest tree, or None after failing every scenario with why."""
    try:
        find_qemu()
        t0 = time.monotonic()
        deb = args.deb or package_deb(root / "package.log")
        tree = distro_image.prepare_tree(deb, root, root / "image.log")
    except Exception as e:                   # noqa: BLE001 - every scenario fails with it
        reason, details = describe_error(e)
        for n in names:
            outcomes.append(Outcome(n, False, 0.0, reason, details))
            report_outcome(outcomes[-1])
        return None
    log(f"guest tree ready in {time.monotonic() - t0:.0f}s: {deb.name} in Debian "
        f"{distro_image.SUITE}, kernel {tree.release}")
    return tree
