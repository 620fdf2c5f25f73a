"""`vmtest.py capture`: copy real kernel files (proc, sys, debugfs, dev) into
a sysroot-shaped tree for the unit tests' fixtures."""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from .errors import CheckFailed, HarnessError, VMError
from .host import find_qemu, guest_program, timeout_scale
from .kernel import require_kernel
from .qemu import BASE_APPEND, DEFAULT_BOOT_TIMEOUT, DEFAULT_MEMORY, DEFAULT_SMP
from .report import describe_error, log
from .results import generic_checks
from .runner import run_guest


#: The capture guest script (tests/vm/guest/capture.sh), and what --kexec puts
#: before it (capture-kexec.sh). tests/fixtures/capture-kdump.py uses both.
CAPTURE_SCRIPT = guest_program("capture.sh")
CAPTURE_KEXEC_PREFIX = guest_program("capture-kexec.sh")


def extract_capture(tar_bytes: bytes, out: Path) -> list[tuple[str, str]]:
    """Unpacks the capture tar into out. Returns [(relative path, description)]."""
    out.mkdir(parents=True, exist_ok=True)
    real_out = os.path.realpath(out)
    listing = []
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tf:
        for m in tf.getmembers():
            name = os.path.normpath(m.name.lstrip("/"))
            if name in (".", ""):
                continue
            if name.startswith("..") or os.path.isabs(name):
                raise HarnessError(f"capture tar has a bad member name: {m.name!r}")
            dest = out / name
            parent = os.path.realpath(dest.parent)
            if not (parent == real_out or parent.startswith(real_out + os.sep)):
                raise HarnessError(f"capture member {name!r} would land outside {out}")
            if m.isdir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.is_symlink() or dest.exists():
                if dest.is_dir() and not dest.is_symlink():
                    shutil.rmtree(dest)
                else:
                    dest.unlink()
            if m.issym():
                os.symlink(m.linkname, dest)
                listing.append((name, f"-> {m.linkname}"))
            elif m.isfile():
                data = tf.extractfile(m).read()
                dest.write_bytes(data)
                os.chmod(dest, 0o644)
                listing.append((name, f"{len(data)} bytes"))
            else:
                listing.append((name, "skipped (not a file, directory or symlink)"))
    return listing


def capture_arguments(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="vmtest.py capture",
                                 description="Boot the test kernel and copy kernel files "
                                             "(proc/sys/debugfs/dev) into a sysroot-shaped tree.")
    ap.add_argument("--append", default="", help="kernel command line words")
    ap.add_argument("--paths", type=Path, required=True,
                    help="file listing guest paths, one per line (globs ok, dirs recursive)")
    ap.add_argument("--out", type=Path, required=True, help="output dir (becomes a sysroot)")
    ap.add_argument("--force", action="store_true", help="replace a non-empty --out")
    ap.add_argument("--numa", action="append", default=[], metavar="ARG",
                    help="a QEMU -numa argument (repeatable)")
    ap.add_argument("--memory", default=DEFAULT_MEMORY, help=f"QEMU -m (default {DEFAULT_MEMORY})")
    ap.add_argument("--smp", default=DEFAULT_SMP, help=f"QEMU -smp (default {DEFAULT_SMP})")
    ap.add_argument("--kernel", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--boot-timeout", type=float, default=DEFAULT_BOOT_TIMEOUT)
    ap.add_argument("--kexec", action="store_true",
                    help="first do a KHO kexec (kexec -s -l; kexec -e) into the same kernel with "
                         "khod.stage=2 appended, and capture in that second kernel")
    return ap.parse_args(argv)


def report_capture(out: Path, listing: list[tuple[str, str]], *, kexec: bool, append: str):
    """What was captured, then the DEVICES and UNREADABLE manifests."""
    how = " after a KHO kexec, in the second kernel" if kexec else ""
    log(f"captured into {out}{how} (kernel command line: {BASE_APPEND} {append}):")
    for name, desc in sorted(listing):
        log(f"  {name}  {desc}")
    for manifest in ("DEVICES", "UNREADABLE"):
        text = (out / manifest).read_text() if (out / manifest).exists() else ""
        lines = [l for l in text.splitlines() if l.strip()]
        log(f"{manifest} ({len(lines)}):")
        for l in lines:
            log(f"  {l}")


def cmd_capture(argv: list[str]) -> int:
    args = capture_arguments(argv)
    if not args.paths.is_file():
        log(f"FAIL capture: paths file not found: {args.paths}")
        return 1
    out = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not args.force:
            log(f"FAIL capture: {out} exists and is not empty (use --force to replace it)")
            return 1
        if out.is_dir() and not out.is_symlink():
            shutil.rmtree(out)
        else:
            out.unlink()
    work = Path(tempfile.mkdtemp(prefix="khod-capture-"))
    ok = False
    try:
        kernel = require_kernel(args.kernel)
        find_qemu()
        boots = 2 if args.kexec else 1
        result, error, tail = run_guest(
            name="capture", workdir=work, kernel=kernel, append=args.append,
            guest_script=(CAPTURE_KEXEC_PREFIX if args.kexec else "") + CAPTURE_SCRIPT,
            files={str(args.paths.resolve()): "/capture.paths"},
            host_binaries=["/usr/sbin/kexec"] if args.kexec else (), include_boot=args.kexec,
            memory=args.memory, smp=args.smp, numa=args.numa,
            boot_timeout=args.boot_timeout * timeout_scale(),
            total_timeout=args.boot_timeout * timeout_scale() * boots + 60)
        if error is not None:
            log(f"FAIL capture: {describe_error(error)[0]}")
            log("    " + tail.replace("\n", "\n    "))
            return 1
        try:
            generic_checks(result, boots, 0)
            data = result.file("capture.tar")
        except CheckFailed as e:
            log(f"FAIL capture: {e}")
            log("    " + tail.replace("\n", "\n    "))
            return 1
        report_capture(out, extract_capture(data, out), kexec=args.kexec, append=args.append)
        ok = True
        return 0
    except (HarnessError, VMError) as e:
        log(f"FAIL capture: {e}")
        return 1
    finally:
        if args.keep or (not ok and any(work.iterdir())):
            log(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
