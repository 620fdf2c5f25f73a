"""What meson.build's hardening leaves in a program, read back with binutils:
shared by the install test (the build under test, as installed) and the
packaged-build test (what ships)."""

import json
import subprocess
import unittest
from pathlib import Path


def run_tool(*argv) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def fortifiable(builddir: Path) -> bool:
    """Whether meson.build asks for _FORTIFY_SOURCE in this build: glibc's
    fortification needs the optimizer and stays off under the sanitizers."""
    options = {o["name"]: o["value"]
               for o in json.loads((builddir / "meson-info/intro-buildoptions.json").read_text())}
    return options.get("optimization") not in ("0", "g") and options.get("b_sanitize") == "none"


def check_hardened(test: unittest.TestCase, path: Path, fortified: bool):
    """PIE, full RELRO, stack protector, fortified libc calls (where the
    build can have them), CET branch markers, libstdc++ assertions."""
    p = str(path)
    test.assertRegex(run_tool("readelf", "-hW", p), r"Type:\s+DYN", "not a PIE")
    test.assertIn("BIND_NOW", run_tool("readelf", "-dW", p), "linked without -z now")
    test.assertIn("GNU_RELRO", run_tool("readelf", "-lW", p), "linked without -z relro")
    imports = run_tool("nm", "-D", "-C", p)
    test.assertIn("__stack_chk_fail", imports, "built without -fstack-protector-strong")
    if fortified:
        test.assertRegex(imports, r"__\w+_chk@", "no fortified libc call: built without _FORTIFY_SOURCE")
    test.assertIn("__glibcxx_assert_fail", imports, "built without _GLIBCXX_ASSERTIONS")
    main = run_tool("objdump", "-d", "--no-show-raw-insn", "--disassemble=main", p)
    test.assertRegex(main, r"<main>:\s*\n\s*[0-9a-f]+:\s*endbr64", "main has no endbr64: no -fcf-protection")
