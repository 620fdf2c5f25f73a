"""The build a benchmark measures must be an optimized one: tools/test keeps
build/ at -O0 for its compile time, and a -O0 khod would put the compiler's
choice, not khod's, in every ratio."""

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Where the benchmarks look by default: set up as bench/README.md says.
DEFAULT_BUILDDIR = REPO / "build-bench"


def require_optimized(builddir: Path) -> Path:
    """`builddir`, or exits saying how to set up one that is optimized."""
    info = builddir / "meson-info" / "intro-buildoptions.json"
    try:
        options = {o["name"]: o["value"] for o in json.loads(info.read_text())}
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"{builddir} is not a meson build dir ({info}: {e}); set one up with "
                 f"'meson setup {DEFAULT_BUILDDIR.name} -Dbench=true && ninja -C {DEFAULT_BUILDDIR.name}'")
    if options.get("optimization") in ("0", "g", "plain") or options.get("b_sanitize", "none") != "none":
        sys.exit(f"{builddir} is built with optimization={options.get('optimization')} "
                 f"b_sanitize={options.get('b_sanitize')}: benchmarks need an optimized build without "
                 f"sanitizers, such as 'meson setup {DEFAULT_BUILDDIR.name} -Dbench=true'")
    return builddir
