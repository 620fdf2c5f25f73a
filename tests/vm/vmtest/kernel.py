"""The kernel under test: which bzImage a run boots."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from .errors import HarnessError
from .host import REPO


def default_kernel() -> Path:
    env = os.environ.get("KHOD_VM_KERNEL")
    if env:
        return Path(env)
    return Path(os.path.normpath(REPO / ".." / "shared" / "vm" / "bzImage"))


def require_kernel(path: Optional[Path]) -> Path:
    kernel = Path(path) if path else default_kernel()
    if not kernel.is_file():
        # only the default deserves a hint; a --kernel that is not there is just that
        hint = "" if path else (" (expected shared/vm/bzImage beside the repo; set "
                                "KHOD_VM_KERNEL or pass --kernel)")
        raise HarnessError(f"kernel not found: {kernel}{hint}")
    return kernel.resolve()


# The x86 boot protocol (Documentation/arch/x86/boot.rst): a bzImage starts
# with the real-mode setup code, whose header holds the magic "HdrS" and the
# offset of a NUL-terminated version string such as
# "7.2.13 (root@host) #1 SMP PREEMPT_DYNAMIC ..." - the same text as
# /proc/version, and its first word is what `uname -r` says.
SETUP_MAGIC_OFFSET = 0x202
SETUP_MAGIC = b"HdrS"
KERNEL_VERSION_FIELD = 0x20e   # u16, the string's offset minus 0x200
KERNEL_VERSION_BASE = 0x200
INIT_SIZE_FIELD = 0x260        # u32 (boot protocol 2.10+): memory the kernel needs to boot
#: The setup code is at most (255 + 1) sectors of 512 bytes; the string is in it.
SETUP_MAX_BYTES = 256 * 512
VERSION_MAX_BYTES = 512


def setup_code(path: Path) -> bytes:
    """The real-mode setup code of a bzImage (its header included)."""
    with open(path, "rb") as f:
        setup = f.read(SETUP_MAX_BYTES)
    if setup[SETUP_MAGIC_OFFSET:SETUP_MAGIC_OFFSET + 4] != SETUP_MAGIC:
        raise HarnessError(f"{path} is not a bzImage (no HdrS setup header)")
    return setup


def kernel_version(path: Path) -> str:
    """The version string of a bzImage, read from its setup header."""
    setup = setup_code(path)
    field = int.from_bytes(setup[KERNEL_VERSION_FIELD:KERNEL_VERSION_FIELD + 2], "little")
    start = KERNEL_VERSION_BASE + field
    raw = setup[start:start + VERSION_MAX_BYTES].split(b"\0", 1)[0]
    if field == 0 or not raw.strip():
        raise HarnessError(f"{path}: the setup header points to no kernel version string")
    return raw.decode("ascii", errors="replace")


def kernel_release(path: Path) -> str:
    """What the booted image's `uname -r` will say: the version string's first word."""
    return kernel_version(path).split()[0]


def kernel_init_size(path: Path) -> int:
    """init_size from a bzImage's setup header: how much memory, from where it is
    loaded, the kernel needs to decompress and start (a kexec segment's memsz)."""
    return int.from_bytes(setup_code(path)[INIT_SIZE_FIELD:INIT_SIZE_FIELD + 4], "little")
