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
        raise HarnessError(f"kernel not found: {kernel} (expected shared/vm/bzImage beside the "
                           "repo; set KHOD_VM_KERNEL or pass --kernel)")
    return kernel.resolve()
