"""khod's org.kexec.khod1.LiveUpdate on a private bus, over the fake LUO.

Sessions created (busctl), preserved into (memfds passed through khoctl:
busctl cannot send an "h" argument),
owner checks, the names and errors, the fd store across a SIGKILL, the
barrier before Exec, and a whole "kexec" through the fake: the outgoing
sessions and khod's manifest frozen into the fixture tree become the next
khod's incoming ones. The VM tier proves the same against the real kernel.
"""

import array
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import unittest
from pathlib import Path

from khodbus import REPO, Khod, KhodBusTest

BUILDDIR = Path(os.environ.get("KHOD_BUILDDIR", REPO / "build"))
KERNEL = Path(os.environ.get("KHOD_VM_KERNEL", REPO.parent / "shared" / "vm" / "bzImage"))
IFACE = "org.kexec.khod1.LiveUpdate"
MIB = 1 << 20


class FdStore:
    """What systemd does for Type=notify services with FileDescriptorStoreMax=:
    keeps the fds sent with FDSTORE=1/FDNAME=, drops FDSTOREREMOVE=1 ones,
    and hands them back as LISTEN_FDS/LISTEN_FDNAMES on the next start."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        path.unlink(missing_ok=True)
        self.sock.bind(str(path))
        self.fds = []  # (name, fd)
        self.ready = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                msg, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(253 * 4))
            except OSError:
                return
            fds = array.array("i")
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
            fields = dict(line.split("=", 1) for line in msg.decode().split("\n") if "=" in line)
            with self.lock:
                if fields.get("FDSTORE") == "1":
                    self.fds.extend((fields.get("FDNAME", "stored"), fd) for fd in fds)
                    fds = array.array("i")
                elif fields.get("FDSTOREREMOVE") == "1":
                    keep = []
                    for name, fd in self.fds:
                        if name == fields.get("FDNAME"):
                            os.close(fd)
                        else:
                            keep.append((name, fd))
                    self.fds = keep
            for fd in fds:
                os.close(fd)
            if fields.get("READY") == "1":
                self.ready.set()

    def names(self):
        with self.lock:
            return sorted(name for name, _ in self.fds)

    def close(self):
        self.sock.close()
        with self.lock:
            for _, fd in self.fds:
                os.close(fd)
            self.fds = []


class StoredKhod(Khod):
    """khod started the way systemd starts it, with its fd store."""

    def start(self, timeout=10):
        if not hasattr(self, "store"):
            self.store = FdStore(self.dir / "notify")
        self.store.ready.clear()
        with self.store.lock:
            stored = list(self.store.fds)

        def place_fds():
            # The stored fds at 3.., inheritable, as sd_listen_fds() expects.
            for i, (_, fd) in enumerate(stored):
                os.dup2(fd, 100 + i)
            for i in range(len(stored)):
                os.dup2(100 + i, 3 + i)
                os.close(100 + i)

        env = dict(self.bus.env, NOTIFY_SOCKET=str(self.store.path), SYSTEMD_LOG_TARGET="console")
        if stored:
            env.update(LISTEN_FDS=str(len(stored)), LISTEN_FDNAMES=":".join(n for n, _ in stored))
        # LISTEN_PID must be khod's own pid: the shell's, kept by exec.
        cmd = ["sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh", str(self.builddir / "src/khod/khod"),
               *self.arguments()]
        if not stored:
            cmd = cmd[4:]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         close_fds=False, preexec_fn=place_fds)
        if not self.store.ready.wait(timeout):
            self.proc.kill()
            raise RuntimeError(f"khod did not signal READY=1; log:\n{self.log.read_text()}")

    def close(self):
        self.kill(signal.SIGTERM)
        if hasattr(self, "store"):
            self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def memfd_with(data: bytes, name="payload"):
    fd = os.memfd_create(name, os.MFD_ALLOW_SEALING)
    os.write(fd, data)
    return fd


class LiveUpdateBusTest(KhodBusTest):
    fixture = "vm-7.2-kho"

    def setUp(self):
        self.khod = StoredKhod(self.bus, BUILDDIR, self.fixture)
        self.khod.start()

    def tearDown(self):
        self.khod.close()

    def call(self, method, signature="", *args, pass_fds=(), user=None):
        cmd = ["busctl", f"--address={self.bus.address}", "--json=short", "call", "org.kexec.khod1",
               "/org/kexec/khod1", IFACE, method]
        if signature:
            cmd += [signature, *map(str, args)]
        if user is not None:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, pass_fds=pass_fds)

    def prop(self, name):
        r = self.khod.busctl("--json=short", "get-property", "org.kexec.khod1", "/org/kexec/khod1", IFACE, name)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)["data"]

    def preserve_fd(self, session, token, fd, user=None):
        cmd = [str(BUILDDIR / "src/khoctl/khoctl"), "luo", "preserve", session, str(token), "--fd", str(fd)]
        if user is not None:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, pass_fds=(fd,), env=self.bus.env)

    def preserve(self, session, token, data, user=None):
        fd = memfd_with(data)
        try:
            return self.preserve_fd(session, token, fd, user=user)
        finally:
            os.close(fd)

    def ctl(self, *args):
        return self.khoctl_json(*args)

    def assertRefused(self, r, text):
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn(text, r.stderr)


class Sessions(LiveUpdateBusTest):
    def test_enabled_and_empty_at_start(self):
        self.assertTrue(self.prop("Enabled"))
        self.assertEqual(self.prop("Outgoing"), [])
        self.assertEqual(self.prop("Incoming"), [])
        self.assertEqual(self.prop("LiveUpdateNumber"), 0)

    def test_create_and_preserve_show_in_outgoing(self):
        self.assertEqual(self.call("CreateSession", "s", "vm1").returncode, 0)
        r = self.preserve("vm1", 7, b"\xa5" * (2 * MIB))
        self.assertEqual(r.returncode, 0, r.stderr)
        [(name, uid, unit, files)] = self.prop("Outgoing")
        self.assertEqual((name, uid), ("vm1", 0))
        self.assertEqual(files[0][:2], [7, 2 * MIB])
        self.assertEqual(sorted(self.khod.store.names()), ["luo-out-vm1", "luo-state"])

    def test_names_and_errors(self):
        for bad in ("", "x" * 64, "has space", "a/b"):
            self.assertRefused(self.call("CreateSession", "s", bad), "")
        for reserved in ("khod", "systemd"):
            r = self.call("CreateSession", "s", reserved)
            self.assertRefused(r, reserved)
        self.assertEqual(self.call("CreateSession", "s", "x" * 63).returncode, 0)
        self.assertEqual(self.call("CreateSession", "s", "vm1").returncode, 0)
        self.assertEqual(self.ctl("luo", "create", "made-by-khoctl")[0], 0)
        rc, doc = self.ctl("luo", "preserve", "made-by-khoctl", "1", str(KERNEL))
        self.assertEqual(rc, 0, doc)
        r = self.khod.dbus_send(IFACE, "CreateSession", "string:vm1")
        self.assertIn("org.kexec.khod1.Error.SessionExists", r.stderr)
        r = self.khod.dbus_send(IFACE, "DestroySession", "string:nosuch")
        self.assertIn("org.kexec.khod1.Error.NoSuchSession", r.stderr)
        self.assertEqual(self.preserve("vm1", 1, b"one").returncode, 0)
        self.assertRefused(self.preserve("vm1", 1, b"again"), "")  # the token is taken

    def test_an_ordinary_file_cannot_be_preserved(self):
        self.assertEqual(self.call("CreateSession", "s", "vm1").returncode, 0)
        with open(KERNEL, "rb") as f:
            r = self.preserve_fd("vm1", 1, f.fileno())
        self.assertRefused(r, "memfd")
        self.assertEqual(self.prop("Outgoing")[0][3], [])

    def test_another_uid_cannot_touch_roots_session(self):
        self.assertEqual(self.call("CreateSession", "s", "vm1").returncode, 0)
        self.assertEqual(self.preserve("vm1", 1, b"root's").returncode, 0)
        nobody = 65534
        self.assertRefused(self.preserve("vm1", 2, b"theirs", user=nobody), "")
        self.assertRefused(self.call("DestroySession", "s", "vm1", user=nobody), "")
        self.assertEqual(len(self.prop("Outgoing")[0][3]), 1, "root's session is untouched")
        # Their own session is theirs.
        self.assertEqual(self.call("CreateSession", "s", "nobody1", user=nobody).returncode, 0)
        self.assertEqual(self.preserve("nobody1", 1, b"mine", user=nobody).returncode, 0)
        owners = {s[0]: s[1] for s in self.prop("Outgoing")}
        self.assertEqual(owners, {"vm1": 0, "nobody1": nobody})
        self.assertEqual(self.call("DestroySession", "s", "nobody1").returncode, 0, "root may destroy any")

    def test_destroy_unpreserves_and_leaves_the_store(self):
        self.assertEqual(self.call("CreateSession", "s", "vm1").returncode, 0)
        self.assertEqual(self.call("DestroySession", "s", "vm1").returncode, 0)
        self.assertEqual(self.prop("Outgoing"), [])
        self.assertNotIn("luo-out-vm1", self.khod.store.names())

    def test_sessions_survive_a_sigkill_through_the_fd_store(self):
        self.assertEqual(self.call("CreateSession", "s", "vm1").returncode, 0)
        self.assertEqual(self.preserve("vm1", 7, b"x" * MIB).returncode, 0)
        before = self.prop("Outgoing")
        self.khod.kill(signal.SIGKILL)
        self.khod.start()
        self.assertEqual(self.prop("Outgoing"), before)
        self.assertIn("took back LUO session vm1", self.khod.log.read_text())


class Barrier(LiveUpdateBusTest):
    def stage(self, append="console=ttyS0 kho=on liveupdate=on"):
        rc, doc = self.ctl("prepare", "--kernel", str(KERNEL), "--append", append)
        self.assertEqual(rc, 0, doc)
        rc, doc = self.ctl("finalize")
        self.assertEqual(rc, 0, doc)

    def wait_for_log(self, text, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.khod.log.read_text():
                return time.monotonic()
            time.sleep(0.05)
        self.fail(f"khod never logged {text!r}:\n{self.khod.log.read_text()}")

    def restart_with_inhibit_delay(self, delay):
        (self.khod.sysroot / "etc/khod").mkdir(parents=True, exist_ok=True)
        (self.khod.sysroot / "etc/khod/khod.conf").write_text(f"[LiveUpdate]\nInhibitDelayMaxSec={delay}\n")
        self.khod.kill(signal.SIGTERM)
        self.khod.start()

    def wait_for_inhibitor(self, timeout=10):
        deadline = time.monotonic() + timeout
        while not self.prop("Inhibitors") and time.monotonic() < deadline:
            time.sleep(0.05)

    def test_exec_waits_for_an_inhibitor_then_reboots(self):
        self.stage()
        holder = subprocess.Popen([str(BUILDDIR / "src/khoctl/khoctl"), "luo", "inhibit", "--who", "vmm",
                                   "--why", "pause vCPUs", "--", "sh", "-c",
                                   # dbus-monitor outlives a grep -q reading it: watch its output instead.
                                   "dbus-monitor --address \"$DBUS_SYSTEM_BUS_ADDRESS\" "
                                   "\"type='signal',member='PrepareForKexec'\" > \"$0\" & m=$!; "
                                   "until grep -q 'boolean true' \"$0\"; do sleep 0.05; done; kill $m; sleep 2",
                                   str(self.khod.dir / "monitor.log")],
                                  env=self.bus.env)
        deadline = time.monotonic() + 10
        while not self.prop("Inhibitors") and time.monotonic() < deadline:
            time.sleep(0.05)
        [(who, why, uid, _pid)] = self.prop("Inhibitors")
        self.assertEqual((who, why, uid), ("vmm", "pause vCPUs", 0))
        time.sleep(0.5)  # dbus-monitor subscribed
        asked = time.monotonic()
        rc, doc = self.ctl("exec", "--force")
        self.assertEqual(rc, 0, doc)
        rebooted = self.wait_for_log("rebooting into")
        holder.wait(timeout=15)
        self.assertGreaterEqual(rebooted - asked, 2.0, "Exec went on before the inhibitor was released")
        self.assertIn("inhibitor of vmm released", self.khod.log.read_text())

    def test_an_inhibitor_never_released_times_out_by_name(self):
        self.restart_with_inhibit_delay("1s")
        self.stage()
        holder = subprocess.Popen([str(BUILDDIR / "src/khoctl/khoctl"), "luo", "inhibit", "--who", "stuck-vmm",
                                   "--why", "never", "--", "sleep", "30"], env=self.bus.env)
        try:
            self.wait_for_inhibitor()
            rc, doc = self.ctl("exec", "--force")
            self.assertEqual(rc, 0, doc)
            self.wait_for_log("rebooting into")
            log = self.khod.log.read_text()
            self.assertIn("inhibitor stuck-vmm (never)", log)
            self.assertIn("not released within InhibitDelayMaxSec=", log)
        finally:
            holder.kill()

    def test_no_load_runs_between_exec_and_the_reboot(self):
        """A crash load in the barrier's window would hold the kernel's
        kexec_lock and fail reboot(KEXEC) with EBUSY after Exec was answered:
        calls that load wait from Exec until the reboot (or its abandon)."""
        self.restart_with_inhibit_delay("2s")
        self.stage()
        holder = subprocess.Popen([str(BUILDDIR / "src/khoctl/khoctl"), "luo", "inhibit", "--who", "vmm",
                                   "--why", "pause", "--", "sleep", "30"], env=self.bus.env)
        reload = None
        try:
            self.wait_for_inhibitor()
            rc, doc = self.ctl("exec", "--force")
            self.assertEqual(rc, 0, doc)
            reload = subprocess.Popen([str(BUILDDIR / "src/khoctl/khoctl"), "kdump", "reload"], env=self.bus.env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.wait_for_log("rebooting into")
            self.assertIsNone(reload.poll(), "Kdump.Reload was answered inside the exec's window")
        finally:
            holder.kill()
            if reload:
                reload.kill()
                reload.wait()

    def test_exec_refuses_to_drop_sessions(self):
        self.assertEqual(self.call("CreateSession", "s", "vm1").returncode, 0)
        self.assertEqual(self.preserve("vm1", 7, b"y" * MIB).returncode, 0)
        self.stage(append="console=ttyS0 kho=on")  # no liveupdate=on for the next kernel
        r = self.khod.dbus_send("org.kexec.khod1.Handover", "Exec", "uint64:0")
        self.assertIn("org.kexec.khod1.Error.PreflightFailed", r.stderr)
        self.assertIn("liveupdate=on", r.stderr)
        self.assertIn("1 session(s)", r.stderr)
        self.assertEqual(json.loads(self.khod.busctl(
            "--json=short", "get-property", "org.kexec.khod1", "/org/kexec/khod1",
            "org.kexec.khod1.Handover", "State").stdout)["data"], "loaded")


class AcrossAKexec(LiveUpdateBusTest):
    """The fake LUO freezes outgoing sessions into the tree at the fake reboot;
    moved to incoming/, the next khod finds its manifest and the sessions."""

    def live_update(self, payload, conf=None):
        """Preserves payload as vm1/7, execs, and starts the 'next kernel's' khod."""
        self.assertEqual(self.call("CreateSession", "s", "vm1").returncode, 0)
        self.assertEqual(self.preserve("vm1", 7, payload).returncode, 0)
        rc, doc = self.ctl("prepare", "--kernel", str(KERNEL), "--append", "console=ttyS0 kho=on liveupdate=on")
        self.assertEqual(rc, 0, doc)
        self.assertEqual(self.ctl("finalize")[0], 0)
        self.assertEqual(self.ctl("exec")[0], 0)
        fake = self.khod.sysroot / "fake-luo"
        deadline = time.monotonic() + 10
        while not (fake / "outgoing/khod/0").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertTrue((fake / "outgoing/khod/0").exists(), "the manifest is frozen with the sessions")
        manifest = json.loads((fake / "outgoing/khod/0").read_text())
        self.khod.kill(signal.SIGKILL)
        self.khod.store.close()
        del self.khod.store
        shutil.rmtree(fake / "live", ignore_errors=True)  # a new boot: the old kernel's sessions are gone
        (fake / "outgoing").rename(fake / "incoming")
        if conf:
            (self.khod.sysroot / "etc/khod").mkdir(parents=True, exist_ok=True)
            (self.khod.sysroot / "etc/khod/khod.conf").write_text(conf)
        self.khod.start()
        return manifest

    def test_sessions_nobody_retrieves_are_released_after_retrieve_timeout(self):
        self.live_update(b"z" * 4096, conf="[LiveUpdate]\nRetrieveTimeoutSec=1s\n")
        self.assertEqual([s[0] for s in self.prop("Incoming")], ["vm1"])
        deadline = time.monotonic() + 10
        while self.prop("Incoming") and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(self.prop("Incoming"), [])
        self.assertIn("incoming session vm1 released: its owner did not finish it within RetrieveTimeoutSec=",
                      self.khod.log.read_text())
        self.assertFalse((self.khod.sysroot / "fake-luo/incoming/vm1").exists(), "the kernel finished it")

    def test_outgoing_changes_are_signalled(self):
        monitor = subprocess.Popen(["dbus-monitor", "--address", self.bus.address,
                                    "type='signal',interface='org.freedesktop.DBus.Properties',"
                                    "member='PropertiesChanged'"], stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.3)
            self.assertEqual(self.call("CreateSession", "s", "vm1").returncode, 0)
            time.sleep(0.3)
        finally:
            monitor.terminate()
            out = monitor.communicate(timeout=10)[0]
        self.assertIn(IFACE, out)
        self.assertIn("Outgoing", out)

    def test_data_comes_back_to_its_owner(self):
        payload = bytes(range(256)) * 4096
        manifest = self.live_update(payload)
        self.assertEqual([s["name"] for s in manifest["sessions"]], ["vm1"])
        self.assertIn("retrieved the khod manifest", self.khod.log.read_text())
        [(name, uid, _unit, files)] = self.prop("Incoming")
        self.assertEqual((name, uid), ("vm1", 0))
        self.assertEqual(files[0][:2], [7, len(payload)])
        self.assertFalse(files[0][3])
        out = self.khod.dir / "vm1.out"
        rc, doc = self.ctl("luo", "retrieve", "vm1", "7", str(out))
        self.assertEqual(rc, 0, doc)
        self.assertEqual(out.read_bytes(), payload)
        self.assertTrue(self.prop("Incoming")[0][3][0][3], "retrieved is recorded")
        self.assertRefused(self.call("FinishSession", "s", "vm1", user=65534), "")
        self.assertEqual(self.call("FinishSession", "s", "vm1").returncode, 0)
        self.assertEqual(self.prop("Incoming"), [])
        phases = dict(self.prop("LastUpdatePhases"))
        self.assertGreater(phases["reboot-syscall"], 0)
        self.assertGreaterEqual(phases["reboot-syscall"], phases["exec-requested"])
        self.assertGreater(phases["first-retrieve"], 0)


if __name__ == "__main__":
    unittest.main()
