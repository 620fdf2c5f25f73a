"""Where the harness finds things on the host: the repository, the scenarios,
QEMU, the meson build dir and the product binaries in it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional

from .errors import HarnessError


#: tests/vm: this package is tests/vm/vmtest/.
HERE = Path(__file__).resolve().parent.parent
REPO = HERE.parent.parent
SCENARIO_DIR = HERE / "scenarios"
#: The shell programs the harness installs in the guest.
GUEST_DIR = HERE / "guest"

#: What a guest needs to run khod on its own system bus (start_khod in
#: guest/khod.sh): the bus daemon, busctl, the bus config and khod's policy.
KHOD_BUS_HOST_BINARIES = ["/usr/bin/dbus-daemon", "/usr/bin/busctl"]
KHOD_BUS_FILES = {
    str(HERE / "files/dbus-system.conf"): "/etc/khod-vm/dbus-system.conf",
    str(GUEST_DIR / "khod.sh"): "/etc/khod-vm/guest-khod.sh",
    str(REPO / "src/khod/dbus/org.kexec.khod1.conf"): "/usr/share/dbus-1/system.d/org.kexec.khod1.conf",
}

#: Product binaries from the meson build dir, installed as /usr/bin/<name>.
PRODUCT_BINARIES = {
    "khoctl": "src/khoctl/khoctl",
    "khod": "src/khod/khod",
    "kexec-load-probe": "tests/kexec-load-probe",  # test-only (tests/vm/kexec-load-probe.cpp)
    "luo-pattern": "tests/luo-pattern",            # test-only (tests/vm/luo-pattern.cpp)
    "fdstore-standin": "tests/fdstore-standin",    # test-only (tests/vm/fdstore-standin.cpp)
    "polkit-standin": "tests/polkit-standin",      # test-only (tests/vm/polkit-standin.cpp)
    "no-kexec-file": "tests/no-kexec-file",        # test-only (tests/vm/no-kexec-file.cpp)
}

#: Product files that are not programs: build-dir path and where the guest gets them.
PRODUCT_FILES = {
    # The native crash loader's purgatory; scenarios point khod.conf's Purgatory= at it.
    "purgatory.o": ("purgatory/purgatory.o", "/usr/lib/khod-vm/purgatory.o"),
}


def find_qemu() -> str:
    qemu = os.environ.get("KHOD_VM_QEMU", "qemu-system-x86_64")
    path = shutil.which(qemu)
    if not path:
        raise HarnessError(f"QEMU not found ({qemu!r} is not on PATH; run tools/setup, "
                           "or set KHOD_VM_QEMU)")
    return path


def guest_program(name: str) -> str:
    """The text of tests/vm/guest/<name>, a shell program for the guest."""
    path = GUEST_DIR / name
    try:
        return path.read_text()
    except OSError as e:
        raise HarnessError(f"guest program missing: {path} ({e.strerror})") from None


def timeout_scale() -> float:
    """KHOD_VM_TIMEOUT_SCALE stretches every VM time limit (slow CI machines)."""
    try:
        scale = float(os.environ.get("KHOD_VM_TIMEOUT_SCALE", "1"))
    except ValueError:
        raise HarnessError("KHOD_VM_TIMEOUT_SCALE must be a number") from None
    return scale if scale > 0 else 1.0


def default_builddir() -> Optional[Path]:
    env = os.environ.get("KHOD_BUILDDIR")
    return Path(env) if env else REPO / "build"


def product_binary(builddir: Optional[Path], name: str) -> Path:
    known = {**PRODUCT_BINARIES, **{k: v[0] for k, v in PRODUCT_FILES.items()}}
    if name not in known:
        raise HarnessError(f"unknown product binary {name!r} (known: {', '.join(known)})")
    if builddir is None:
        raise HarnessError(f"{name} needed but no --builddir given")
    path = Path(builddir) / known[name]
    if not path.is_file():
        raise HarnessError(f"{name} not built: {path} does not exist (build with meson/ninja "
                           f"and pass the build dir as --builddir)")
    return path
