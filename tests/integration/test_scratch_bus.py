"""org.kexec.khod1.Scratch.Plan: khod's scratch planner over the bus gives what
`khoctl scratch plan` gives, on a tree captured from the 7.2 kernel."""

import json
import os
import subprocess
import unittest
from pathlib import Path

from khodbus import REPO, Khod, PrivateBus

BUILDDIR = Path(os.environ.get("KHOD_BUILDDIR", REPO / "build"))


class ScratchPlanOverBus(unittest.TestCase):
    def setUp(self):
        self.bus = PrivateBus()
        self.khod = Khod(self.bus, BUILDDIR, "scratch-7.2-default")
        self.khod.start()

    def tearDown(self):
        self.khod.close()
        self.bus.close()

    def test_plan_matches_khoctl(self):
        r = self.khod.busctl("--json=short", "call", "org.kexec.khod1", "/org/kexec/khod1",
                             "org.kexec.khod1.Scratch", "Plan", "sssu", "", "", "", "25")
        self.assertEqual(r.returncode, 0, r.stderr)
        parameter, fits, verdict, plan_json = json.loads(r.stdout)["data"]
        self.assertTrue(parameter.startswith("kho_scratch="), parameter)
        self.assertEqual(verdict, "exact", "the captured boot's areas are predicted exactly")
        self.assertTrue(fits)
        plan = json.loads(plan_json)
        direct = subprocess.run([str(BUILDDIR / "src/khoctl/khoctl"), "--sysroot", str(self.khod.sysroot),
                                 "--json", "scratch", "plan"], capture_output=True, text=True)
        self.assertEqual(direct.returncode, 0, direct.stderr)
        self.assertEqual(plan, json.loads(direct.stdout), "khod and khoctl plan alike")

    def test_bad_headroom_is_refused(self):
        r = self.khod.busctl("call", "org.kexec.khod1", "/org/kexec/khod1", "org.kexec.khod1.Scratch", "Plan",
                             "sssu", "", "", "", "5000")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("at most 1000", r.stderr)

    def test_missing_image_names_the_path(self):
        r = self.khod.busctl("call", "org.kexec.khod1", "/org/kexec/khod1", "org.kexec.khod1.Scratch", "Plan",
                             "sssu", "/nonexistent/bzImage", "", "", "25")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("/nonexistent/bzImage", r.stderr)


if __name__ == "__main__":
    unittest.main()
