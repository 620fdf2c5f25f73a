"""The build packaging/ makes carries no test backends: khod configured with
the options of packaging/debian/rules has no fake kexec or kdump code in it,
and `--fake-kexec` says plainly that this build cannot do it. What it ships
carries all of meson.build's hardening, fortification included."""

import os
import re
import shlex
import subprocess
import unittest
from pathlib import Path

from hardening import check_hardened, fortifiable
from khodbus import REPO

PACKAGED_BUILDDIR = os.environ.get("KHOD_PACKAGED_BUILDDIR")


def packaging_meson_options() -> list[str]:
    rules = (REPO / "packaging/debian/rules").read_text()
    m = re.search(r"dh_auto_configure --(.*)", rules)
    return shlex.split(m.group(1)) if m else []


@unittest.skipUnless(PACKAGED_BUILDDIR, "KHOD_PACKAGED_BUILDDIR not set (tools/test --tier bus sets it)")
class PackagedBuild(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.khod = Path(PACKAGED_BUILDDIR) / "src/khod/khod"

    def test_packaging_turns_the_test_backends_off(self):
        self.assertIn("-Dtest_backends=false", packaging_meson_options())

    def test_build_was_configured_as_packaging_does(self):
        r = subprocess.run(["meson", "introspect", "--buildoptions", PACKAGED_BUILDDIR], capture_output=True,
                           text=True, check=True)
        self.assertIn('"name": "test_backends", "value": false', r.stdout.replace("\n", " "))

    def test_khod_has_no_fake_backend_code(self):
        r = subprocess.run(["nm", "-C", str(self.khod)], capture_output=True, text=True, check=True)
        self.assertNotIn("FakeKexecBackend", r.stdout)
        self.assertNotIn("FakeKdumpBackend", r.stdout)
        self.assertIn("khod::make_backends", r.stdout)

    def test_shipped_programs_are_hardened_and_fortified(self):
        builddir = Path(PACKAGED_BUILDDIR)
        self.assertTrue(fortifiable(builddir), "the packaged build is not optimized: it cannot be fortified")
        for program in (self.khod, builddir / "src/khoctl/khoctl"):
            with self.subTest(program=program.name):
                check_hardened(self, program, fortified=True)

    def test_fake_kexec_is_refused_by_name(self):
        r = subprocess.run([str(self.khod), "--sysroot", str(REPO / "tests/fixtures/vm-7.2-kho"), "--fake-kexec"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("this build of khod has no test backends", r.stderr)


if __name__ == "__main__":
    unittest.main()
