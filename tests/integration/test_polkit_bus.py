"""Who may call khod: the shipped D-Bus policy and polkit.

khod on a private bus that applies the shipped policy file, with a stand-in
polkit authority (tests/vm/polkit-standin) answering from a rules file. A
caller with another uid (setpriv) is refused each mutating method, allowed
when the authority says yes, asked to authenticate when it says so, and
refused when no authority runs; root never asks; reading is for everyone;
a slow authority does not stop khod from answering others.
"""

import os
import subprocess
import time
import unittest
from pathlib import Path

from khodbus import REPO, KhodBusTest
from test_luo_bus import StoredKhod, memfd_with

BUILDDIR = Path(os.environ.get("KHOD_BUILDDIR", REPO / "build"))
KERNEL = Path(os.environ.get("KHOD_VM_KERNEL", REPO.parent / "shared" / "vm" / "bzImage"))
NOBODY = 65534
ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
LIVE_UPDATE = "org.kexec.khod1.live-update"
KDUMP = "org.kexec.khod1.manage-kdump"
SESSIONS = "org.kexec.khod1.manage-sessions"

# Every mutating method with arguments dbus-send can give, and its action.
# Preserve takes an fd, which dbus-send cannot send: it goes through khoctl.
MUTATING = [
    ("Handover", "Prepare", [f"string:{KERNEL}", "string:", "string:", "uint64:0"], LIVE_UPDATE),
    ("Handover", "Finalize", [], LIVE_UPDATE),
    ("Handover", "Abort", [], LIVE_UPDATE),
    ("Handover", "Exec", ["uint64:0"], LIVE_UPDATE),
    ("Kdump", "Load", [f"string:{KERNEL}", "string:", "string:", "uint64:0"], KDUMP),
    ("Kdump", "Unload", [], KDUMP),
    ("Kdump", "Reload", [], KDUMP),
    ("LiveUpdate", "CreateSession", ["string:theirs"], SESSIONS),
    ("LiveUpdate", "DestroySession", ["string:vm1"], SESSIONS),
    ("LiveUpdate", "Retrieve", ["string:vm1", "uint64:1"], SESSIONS),
    ("LiveUpdate", "FinishSession", ["string:vm1"], SESSIONS),
    ("LiveUpdate", "Inhibit", ["string:vmm", "string:pausing"], SESSIONS),
]


def as_user(user, cmd):
    if user is None:
        return cmd
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]


class Authorization(KhodBusTest):
    fixture = "vm-7.2-kho"

    def setUp(self):
        self.bus.polkit_rules.write_text("")  # the authority grants nothing
        self.bus.polkit_log.unlink(missing_ok=True)
        if self.bus.polkit is None:
            self.bus.start_polkit(BUILDDIR)
        self.khod = StoredKhod(self.bus, BUILDDIR, self.fixture)
        self.khod.start()
        # root's session, which another uid must not be able to end
        self.assertEqual(self.send("LiveUpdate", "CreateSession", "string:vm1").returncode, 0)

    def tearDown(self):
        self.khod.close()

    def send(self, interface, method, *args, user=None):
        cmd = ["dbus-send", f"--bus={self.bus.address}", "--print-reply", "--dest=org.kexec.khod1",
               "/org/kexec/khod1", f"org.kexec.khod1.{interface}.{method}", *args]
        return subprocess.run(as_user(user, cmd), capture_output=True, text=True, timeout=30)

    def preserve(self, user):
        fd = memfd_with(b"theirs")
        try:
            cmd = [str(BUILDDIR / "src/khoctl/khoctl"), "luo", "preserve", "vm1", "9", "--fd", str(fd)]
            return subprocess.run(as_user(user, cmd), capture_output=True, text=True, timeout=30,
                                  pass_fds=(fd,), env=self.bus.env)
        finally:
            os.close(fd)

    def busctl(self, *args, user=None):
        cmd = ["busctl", f"--address={self.bus.address}", *args]
        return subprocess.run(as_user(user, cmd), capture_output=True, text=True, timeout=30)

    def properties(self, interface):
        r = self.busctl("introspect", "org.kexec.khod1", "/org/kexec/khod1", f"org.kexec.khod1.{interface}")
        self.assertEqual(r.returncode, 0, r.stderr)
        return [line.split()[0].lstrip(".") for line in r.stdout.splitlines() if line.split()[1:2] == ["property"]]

    def state(self):
        return {
            "handover": self.khod.prop("State"),
            "sessions": self.busctl("get-property", "org.kexec.khod1", "/org/kexec/khod1",
                                    "org.kexec.khod1.LiveUpdate", "Outgoing").stdout,
            "inhibitors": self.busctl("get-property", "org.kexec.khod1", "/org/kexec/khod1",
                                      "org.kexec.khod1.LiveUpdate", "Inhibitors").stdout,
        }

    def test_another_uid_is_refused_each_mutating_method(self):
        before = self.state()
        for interface, method, args, action in MUTATING:
            with self.subTest(method=method):
                r = self.send(interface, method, *args, user=NOBODY)
                self.assertNotEqual(r.returncode, 0, r.stdout)
                self.assertIn(ACCESS_DENIED, r.stderr)
                self.assertIn(f"{action} uid={NOBODY} interactive=0 -> no", self.bus.polkit_queries())
        r = self.preserve(NOBODY)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Access denied", r.stderr)
        self.assertEqual(self.state(), before, "a refused call changed nothing")

    def test_allowed_when_the_authority_says_yes(self):
        self.bus.polkit_rules.write_text(f"{SESSIONS} {NOBODY} yes\n{KDUMP} {NOBODY} yes\n{LIVE_UPDATE} {NOBODY} yes\n")
        r = self.send("LiveUpdate", "CreateSession", "string:theirs", user=NOBODY)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.send("LiveUpdate", "DestroySession", "string:vm1", user=NOBODY)
        self.assertIn("org.kexec.khod1.Error.NotOwner", r.stderr, "granted, and then root's session is not theirs")
        for interface, method, args, action in MUTATING[:7]:
            with self.subTest(method=method):
                r = self.send(interface, method, *args, user=NOBODY)
                self.assertNotIn(ACCESS_DENIED, r.stderr)
                self.assertIn(f"{action} uid={NOBODY} interactive=0 -> yes", self.bus.polkit_queries())
        self.assertEqual(self.khod.prop("State"), 's "idle"', "Prepare, then Abort, went through")

    def test_one_action_does_not_grant_another(self):
        self.bus.polkit_rules.write_text(f"{SESSIONS} {NOBODY} yes\n")
        self.assertEqual(self.send("LiveUpdate", "CreateSession", "string:theirs", user=NOBODY).returncode, 0)
        self.assertIn(ACCESS_DENIED, self.send("Handover", "Abort", user=NOBODY).stderr)
        self.assertIn(ACCESS_DENIED, self.send("Kdump", "Unload", user=NOBODY).stderr)

    def test_root_never_asks(self):
        for interface, method, args, _ in MUTATING:
            self.send(interface, method, *args)
        self.assertEqual(self.bus.polkit_queries(), [])

    def test_authentication_is_asked_for_only_when_the_caller_allows_it(self):
        self.bus.polkit_rules.write_text(f"{LIVE_UPDATE} * auth\n")
        r = self.send("Handover", "Abort", user=NOBODY)  # dbus-send does not allow it
        self.assertIn("org.freedesktop.DBus.Error.InteractiveAuthorizationRequired", r.stderr)
        r = self.busctl("--allow-interactive-authorization=yes", "call", "org.kexec.khod1", "/org/kexec/khod1",
                        "org.kexec.khod1.Handover", "Abort", user=NOBODY)
        self.assertNotIn("Access denied", r.stderr)
        self.assertEqual(self.bus.polkit_queries()[-2:], [f"{LIVE_UPDATE} uid={NOBODY} interactive=0 -> challenge",
                                                          f"{LIVE_UPDATE} uid={NOBODY} interactive=1 -> yes"])

    def test_reading_is_for_everyone(self):
        for interface in ("Handover", "Kdump", "LiveUpdate", "Scratch"):
            names = self.properties(interface)
            if not names:
                continue
            with self.subTest(interface=interface):
                r = self.busctl("get-property", "org.kexec.khod1", "/org/kexec/khod1",
                                f"org.kexec.khod1.{interface}", *names, user=NOBODY)
                self.assertEqual(r.returncode, 0, r.stderr)
        r = self.busctl("introspect", "org.kexec.khod1", "/org/kexec/khod1", user=NOBODY)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("org.kexec.khod1.LiveUpdate", r.stdout)
        r = self.send("Scratch", "Plan", "string:", "string:", "string:", "uint32:10", user=NOBODY)
        self.assertEqual(r.returncode, 0, r.stderr)
        r = subprocess.run(as_user(NOBODY, [str(BUILDDIR / "src/khoctl/khoctl"), "status"]), env=self.bus.env,
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.bus.polkit_queries(), [], "reading asks nobody")

    def test_without_polkit_only_root(self):
        self.bus.stop_polkit()
        self.bus.polkit_rules.write_text("* * yes\n")  # would grant everything, were it running
        r = self.send("LiveUpdate", "CreateSession", "string:theirs", user=NOBODY)
        self.assertIn(ACCESS_DENIED, r.stderr)
        self.assertIn("only root", r.stderr)
        self.assertEqual(self.send("LiveUpdate", "CreateSession", "string:roots").returncode, 0)

    def test_a_slow_authority_does_not_stop_khod(self):
        self.bus.polkit_rules.write_text(f"{LIVE_UPDATE} * yes\n")
        self.bus.start_polkit(BUILDDIR, delay_ms=3000)
        slow = subprocess.Popen(as_user(NOBODY, ["dbus-send", f"--bus={self.bus.address}", "--print-reply",
                                                 "--dest=org.kexec.khod1", "/org/kexec/khod1",
                                                 "org.kexec.khod1.Handover.Abort"]),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            while not self.bus.polkit_queries():  # the authority has the question
                self.assertIsNone(slow.poll(), "the call ended before polkit answered")
                time.sleep(0.02)
            # While it thinks, khod answers others, reads and calls alike.
            self.assertEqual(self.khod.prop("State"), 's "idle"')
            self.assertEqual(self.send("LiveUpdate", "CreateSession", "string:meanwhile").returncode, 0)
            self.assertIsNone(slow.poll(), "khod answered the others while the slow call waited")
            _, err = slow.communicate(timeout=30)
            self.assertIn("org.kexec.khod1.Error.WrongState", err, "granted, then answered: nothing to abort")
        finally:
            if slow.poll() is None:
                slow.kill()
            self.bus.start_polkit(BUILDDIR)


if __name__ == "__main__":
    unittest.main()
