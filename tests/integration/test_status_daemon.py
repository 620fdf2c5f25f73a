"""`khoctl status` beside the kernel's state reports khod's own (handover
state, crash kernel, sessions) from the bus, and still reports the kernel's
when khod cannot be reached."""

import json
import os
import unittest
from pathlib import Path

from khodbus import REPO, Khod, PrivateBus

BUILDDIR = Path(os.environ.get("KHOD_BUILDDIR", REPO / "build"))


class StatusWithDaemon(unittest.TestCase):
    def setUp(self):
        self.bus = PrivateBus()
        self.khod = Khod(self.bus, BUILDDIR, "vm-7.2-kho")
        self.khod.start()

    def tearDown(self):
        self.khod.close()
        self.bus.close()

    def status(self, *args):
        r = self.khod.khoctl("--sysroot", str(self.khod.sysroot), "--json", "status", *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def test_daemon_state_beside_the_kernel(self):
        doc = self.status("--daemon=yes")
        self.assertTrue(doc["daemon"]["reachable"])
        self.assertEqual(doc["daemon"]["handover"]["State"], "idle")
        self.assertIn("Loaded", doc["daemon"]["kdump"])
        self.assertIn("Outgoing", doc["daemon"]["liveupdate"])
        self.assertIn("kho", doc, "the kernel's part is still there")
        human = self.khod.khoctl("--sysroot", str(self.khod.sysroot), "status", "--daemon=yes")
        self.assertIn("khod:        handover idle, crash kernel not loaded", human.stdout)

    def test_a_fixture_sysroot_leaves_the_daemon_out_by_default(self):
        self.assertNotIn("daemon", self.status())

    def test_khod_gone_is_reported_not_fatal(self):
        self.khod.kill()
        doc = self.status("--daemon=yes")
        self.assertFalse(doc["daemon"]["reachable"])
        self.assertTrue(doc["daemon"]["message"], "the failure says why")
        self.assertIn("kho", doc)


if __name__ == "__main__":
    unittest.main()
