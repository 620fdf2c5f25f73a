"""khod's org.kexec.khod1.Handover on a private bus, driven by khoctl and busctl.

Every method, the wrong-state calls, and recovery after SIGKILL, on fixture
sysroots copied from the real 7.2 kernel (stateless ABI) and the derived
6.16 tree (finalize ABI). kexec syscalls are simulated (--fake-kexec): the
VM tier proves the real ones.
"""

import json
import os
import shutil
import signal
import subprocess
import time
import unittest
from pathlib import Path

from khodbus import FIXTURES, REPO, Khod, KhodBusTest, PrivateBus

BUILDDIR = Path(os.environ.get("KHOD_BUILDDIR", REPO / "build"))
KERNEL = Path(os.environ.get("KHOD_VM_KERNEL", REPO.parent / "shared" / "vm" / "bzImage"))
LOADED = "sys/kernel/kexec/loaded"


def wait_for_file(path, proc, timeout=10):
    """Waits (bounded) for a fake backend's marker, failing if proc ended first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.02)


class HandoverBusTest(KhodBusTest):
    fixture = "vm-7.2-kho"

    def setUp(self):
        self.assertTrue(KERNEL.is_file(), f"{KERNEL} missing: the tests need ../shared/vm/bzImage")
        self.khod = Khod(self.bus, BUILDDIR, self.fixture)
        self.khod.start()

    def tearDown(self):
        self.khod.close()

    def ctl(self, *args):
        return self.khoctl_json(*args)

    def prepare(self):
        rc, doc = self.ctl("prepare", "--kernel", str(KERNEL), "--append", "console=ttyS0 kho=on")
        self.assertEqual(rc, 0, doc)
        return doc

    def assertBusError(self, rc, doc, name):
        self.assertEqual(rc, 1, doc)
        self.assertFalse(doc["ok"])
        self.assertEqual(doc["error"]["name"], f"org.kexec.khod1.Error.{name}", doc)
        self.assertTrue(doc["error"]["message"], "an error needs a message a person can act on")


class StatelessAbi(HandoverBusTest):
    def test_initial_properties(self):
        self.assertEqual(self.khod.prop("State"), 's "idle"')
        self.assertEqual(self.khod.prop("Abi"), 's "stateless"')
        self.assertEqual(self.khod.prop("TargetKernel"), 's ""')
        areas = self.khod.prop("ScratchAreas")
        self.assertTrue(areas.startswith("a(usttt) 3 "), areas)
        self.assertIn('"lowmem"', areas)
        self.assertIn("16777216", areas)

    def test_prepare_finalize_abort(self):
        doc = self.prepare()
        self.assertEqual(doc["handover"]["State"], "prepared")
        self.assertEqual(doc["handover"]["TargetKernel"], str(KERNEL))
        self.assertEqual(self.khod.read(LOADED).strip(), "0")

        rc, doc = self.ctl("finalize")
        self.assertEqual(rc, 0, doc)
        self.assertEqual(doc["handover"]["State"], "loaded")
        self.assertEqual(self.khod.read(LOADED).strip(), "1", "Finalize loads the target (kexec_file_load)")

        rc, doc = self.ctl("abort")
        self.assertEqual(rc, 0, doc)
        self.assertEqual(doc["handover"]["State"], "idle")
        self.assertEqual(doc["handover"]["TargetKernel"], "")
        self.assertEqual(self.khod.read(LOADED).strip(), "0", "Abort unloads")

    def test_exec_moves_to_executing(self):
        self.prepare()
        self.assertEqual(self.ctl("finalize")[0], 0)
        rc, doc = self.ctl("exec", "--force")
        self.assertEqual(rc, 0, doc)
        self.assertEqual(doc["handover"]["State"], "executing")

    def test_a_slow_load_leaves_the_bus_answering(self):
        """Finalize's kexec_file_load runs off the event loop. While the fake
        load takes 3 s, properties and khoctl's status calls are answered, and
        an Exec sent meanwhile waits its turn: it sees the target loaded."""
        self.prepare()
        knob = self.khod.sysroot / "fake-kexec/load-delay-ms"
        knob.parent.mkdir(parents=True, exist_ok=True)
        knob.write_text("3000\n")
        khoctl = [str(BUILDDIR / "src/khoctl/khoctl"), "--json"]
        finalize = subprocess.Popen([*khoctl, "finalize"], env=self.bus.env, stdout=subprocess.PIPE, text=True)
        try:
            wait_for_file(knob.with_name(knob.name + ".sleeping"), finalize)
            exec_call = subprocess.Popen([*khoctl, "exec", "--force"], env=self.bus.env, stdout=subprocess.PIPE,
                                         text=True)
            self.assertEqual(self.khod.prop("State"), 's "prepared"')
            rc, doc = self.ctl("kdump", "status")
            self.assertEqual(rc, 0, doc)
            self.assertTrue(knob.with_name(knob.name + ".sleeping").exists(), "answered only after the load")
            self.assertIsNone(finalize.poll())
            out, _ = finalize.communicate(timeout=30)
            self.assertEqual(finalize.returncode, 0, out)
            out, _ = exec_call.communicate(timeout=30)
            self.assertEqual(exec_call.returncode, 0, f"Exec ran before Finalize ended: {out}")
            self.assertEqual(json.loads(out)["handover"]["State"], "executing")
        finally:
            for p in (finalize, locals().get("exec_call")):
                if p and p.poll() is None:
                    p.kill()
                    p.wait()

    def test_wrong_state_calls(self):
        for args in (["finalize"], ["abort"], ["exec"]):
            rc, doc = self.ctl(*args)
            self.assertBusError(rc, doc, "WrongState")
        self.prepare()
        rc, doc = self.ctl("exec")
        self.assertBusError(rc, doc, "WrongState")
        self.assertIn("Finalize first", doc["error"]["message"])
        self.assertEqual(self.ctl("finalize")[0], 0)
        rc, doc = self.ctl("prepare", "--kernel", str(KERNEL))
        self.assertBusError(rc, doc, "WrongState")
        self.assertIn("WrongState", self.khod.prop("LastError"))

    def test_preflight_failure_names_the_file(self):
        rc, doc = self.ctl("prepare", "--kernel", "/nonexistent/bzImage")
        self.assertBusError(rc, doc, "PreflightFailed")
        self.assertIn("/nonexistent/bzImage", doc["error"]["message"])
        self.assertIn("ENOENT", doc["error"]["message"])
        self.assertEqual(self.khod.prop("State"), 's "idle"')

    def test_preflight_failure_says_the_errno_once(self):
        once = "No such file or directory (ENOENT)"
        rc, doc = self.ctl("prepare", "--kernel", "/nonexistent/bzImage")
        self.assertBusError(rc, doc, "PreflightFailed")
        self.assertEqual(doc["error"]["message"].count(once), 1, doc["error"]["message"])
        r = self.khod.khoctl("prepare", "--kernel", "/nonexistent/bzImage")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.count(once), 1, r.stderr)
        self.assertEqual(self.khod.prop("LastError").count(once), 1, "LastError says it once too")
        r = self.khod.khoctl("prepare", "--kernel", str(KERNEL), "--initrd", "/nonexistent/initrd")
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent/initrd", r.stderr)
        self.assertEqual(r.stderr.count(once), 1, r.stderr)

    def test_not_a_bzimage_is_refused_by_preflight(self):
        junk = self.khod.dir / "vmlinuz-junk"
        junk.write_bytes(b"\0" * 8192)
        rc, doc = self.ctl("prepare", "--kernel", str(junk))
        self.assertBusError(rc, doc, "PreflightFailed")
        self.assertIn("kernel:", doc["error"]["message"])
        self.assertIn(str(junk), doc["error"]["message"])

    def assertAnswersPromptly(self):
        """khod's loop still turns: a property read and a khoctl call, each in seconds."""
        self.assertEqual(self.khod.prop("State"), 's "idle"')
        r = self.khod.khoctl("--json", "kdump", "status", timeout=10)
        self.assertIn(r.returncode, (0, 1), r.stderr)
        self.assertTrue(json.loads(r.stdout), r.stdout)

    def test_fifo_kernel_is_refused_without_stalling_khod(self):
        fifo = self.khod.dir / "kernel.fifo"
        os.mkfifo(fifo)
        # A blocking open would wait for a writer until the watchdog killed khod.
        r = self.khod.khoctl("--json", "prepare", "--kernel", str(fifo), timeout=10)
        doc = json.loads(r.stdout)
        self.assertBusError(r.returncode, doc, "PreflightFailed")
        self.assertIn(f"{fifo}: is a FIFO, not a regular file", doc["error"]["message"])
        self.assertAnswersPromptly()

    def test_fifo_initrd_is_refused_without_stalling_khod(self):
        fifo = self.khod.dir / "initrd.fifo"
        os.mkfifo(fifo)
        r = self.khod.khoctl("--json", "prepare", "--kernel", str(KERNEL), "--initrd", str(fifo), timeout=10)
        doc = json.loads(r.stdout)
        self.assertBusError(r.returncode, doc, "PreflightFailed")
        self.assertIn(f"{fifo}: is a FIFO, not a regular file", doc["error"]["message"])
        self.assertAnswersPromptly()

    def test_device_and_directory_kernels_are_refused(self):
        for path, kind in (("/dev/null", "a character device"), (str(self.khod.dir), "a directory")):
            rc, doc = self.ctl("prepare", "--kernel", path)
            self.assertBusError(rc, doc, "PreflightFailed")
            self.assertIn(f"{path}: is {kind}, not a regular file", doc["error"]["message"])

    def test_relative_paths_are_invalid_arguments(self):
        # khoctl makes paths absolute; a raw bus call need not, and khod's cwd is not the caller's.
        for kernel, initrd in (("vmlinuz", ""), (str(KERNEL), "initrd.img")):
            r = self.khod.dbus_send("org.kexec.khod1.Handover", "Prepare", f"string:{kernel}",
                                    f"string:{initrd}", "string:", "uint64:0")
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("org.kexec.khod1.Error.InvalidArgument", r.stderr)
            self.assertIn("must be given as an absolute path", r.stderr)
        r = self.khod.busctl("call", "org.kexec.khod1", "/org/kexec/khod1", "org.kexec.khod1.Handover",
                             "Prepare", "ssst", "vmlinuz", "", "", "0")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("vmlinuz: the target kernel must be given as an absolute path", r.stderr)
        self.assertEqual(self.khod.prop("State"), 's "idle"')

    def test_reuse_cmdline_keeps_kho_and_appends(self):
        rc, doc = self.ctl("prepare", "--kernel", str(KERNEL), "--reuse-cmdline", "--append", "khod.stage=2")
        self.assertEqual(rc, 0, doc)
        words = doc["handover"]["TargetCmdline"].split()
        running = self.khod.read("proc/cmdline").split()
        for w in running:
            self.assertIn(w, words, "--reuse-cmdline starts from the running command line")
        self.assertIn("kho=on", words)
        self.assertIn("kho_scratch=16M,64M,32M", words)
        self.assertEqual(words[-1], "khod.stage=2")

    def test_human_output_and_errors(self):
        r = self.khod.khoctl("finalize")
        self.assertEqual(r.returncode, 1)
        self.assertIn("WrongState", r.stderr)
        self.assertIn("Prepare first", r.stderr)
        r = self.khod.khoctl("prepare", "--kernel", str(KERNEL), "--append", "kho=on")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("state:   prepared", r.stdout)

    def test_busctl_drives_every_method(self):
        b = self.khod.busctl
        path, iface = "/org/kexec/khod1", "org.kexec.khod1.Handover"
        r = b("call", "org.kexec.khod1", path, iface, "Prepare", "ssst", str(KERNEL), "", "kho=on", "0")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.khod.prop("State"), 's "prepared"')
        self.assertEqual(b("call", "org.kexec.khod1", path, iface, "Finalize").returncode, 0)
        self.assertEqual(self.khod.prop("State"), 's "loaded"')
        self.assertEqual(b("call", "org.kexec.khod1", path, iface, "Abort").returncode, 0)
        self.assertEqual(self.khod.prop("State"), 's "idle"')
        r = b("call", "org.kexec.khod1", path, iface, "Abort")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("nothing to abort", r.stderr)
        r = b("introspect", "org.kexec.khod1", path, iface)
        self.assertEqual(r.returncode, 0, r.stderr)
        for member in ("Prepare", "Finalize", "Abort", "Exec", "State", "ScratchAreas", "LastError"):
            self.assertIn(member, r.stdout)

    def test_properties_changed_is_emitted(self):
        mon = subprocess.Popen(
            ["busctl", f"--address={self.bus.address}", "monitor", "--json=short", "org.kexec.khod1"],
            stdout=subprocess.PIPE, text=True)
        try:
            # The monitor is ready once it sees this ping's reply.
            self.khod.busctl("call", "org.kexec.khod1", "/org/kexec/khod1", "org.freedesktop.DBus.Peer", "Ping")
            self.prepare()
            found = None
            for line in mon.stdout:
                msg = json.loads(line)
                if msg.get("member") == "PropertiesChanged":
                    found = msg
                    break
            self.assertIsNotNone(found)
            changed = found["payload"]["data"][1]
            self.assertEqual(changed["State"]["data"], "prepared")
            self.assertIn("TargetKernel", changed)
        finally:
            mon.kill()
            mon.wait()
            mon.stdout.close()

    def test_restart_after_sigkill_recovers_from_kernel(self):
        self.prepare()
        self.assertEqual(self.ctl("finalize")[0], 0)
        self.khod.kill(signal.SIGKILL)
        self.khod.start()
        self.assertEqual(self.khod.prop("State"), 's "loaded"')
        self.assertEqual(self.khod.prop("TargetKernel"), f's "{KERNEL}"')
        # and it can still finish the job
        rc, doc = self.ctl("abort")
        self.assertEqual(rc, 0, doc)
        self.assertEqual(self.khod.read(LOADED).strip(), "0")

    def test_restart_sees_what_changed_behind_its_back(self):
        self.prepare()
        self.khod.kill(signal.SIGKILL)
        self.khod.start()
        self.assertEqual(self.khod.prop("State"), 's "prepared"')
        self.khod.kill(signal.SIGKILL)
        # someone ran `kexec -l` meanwhile: the kernel wins over the record
        self.khod.write(LOADED, "1\n")
        self.khod.start()
        self.assertEqual(self.khod.prop("State"), 's "loaded"')
        self.assertEqual(self.khod.prop("TargetKernel"), 's ""')
        self.assertIn("did not load", self.khod.prop("LastError"))
        self.assertEqual(self.ctl("abort")[0], 0)
        self.assertEqual(self.khod.read(LOADED).strip(), "0")

    def test_record_from_an_earlier_boot_is_ignored(self):
        self.prepare()
        self.khod.kill(signal.SIGKILL)
        record = self.khod.runtime / "handover.json"
        doc = json.loads(record.read_text())
        doc["boot_id"] = "00000000-0000-0000-0000-000000000000"
        record.write_text(json.dumps(doc))
        self.khod.start()
        self.assertEqual(self.khod.prop("State"), 's "idle"')


class FinalizeAbi(HandoverBusTest):
    fixture = "kho-6.16-finalize"
    OUT = "sys/kernel/debug/kho/out"

    def stage_kernel_finalize(self, fdt: bytes = None):
        """What the 6.16 kernel's finalize creates (a file cannot run kernel
        code): the root fdt and sub_fdts/, taken from kho-6.16-finalized."""
        done = FIXTURES / "kho-6.16-finalized" / self.OUT
        out = self.khod.sysroot / self.OUT
        (out / "fdt").write_bytes(fdt if fdt is not None else (done / "fdt").read_bytes())
        (out / "sub_fdts").mkdir(exist_ok=True)  # git keeps no empty directories
        shutil.copy(done / "sub_fdts" / "kho_test", out / "sub_fdts" / "kho_test")

    def test_finalize_writes_one_then_loads_abort_writes_zero(self):
        self.assertEqual(self.khod.prop("Abi"), 's "finalize"')
        self.prepare()
        self.stage_kernel_finalize()
        self.assertEqual(self.khod.read("sys/kernel/debug/kho/out/finalize").strip(), "0")
        rc, doc = self.ctl("finalize")
        self.assertEqual(rc, 0, doc)
        self.assertEqual(self.khod.read("sys/kernel/debug/kho/out/finalize").strip(), "1")
        self.assertEqual(self.khod.read("sys/kernel/kexec_loaded").strip(), "1")
        self.assertEqual(doc["handover"]["State"], "loaded")
        rc, doc = self.ctl("abort")
        self.assertEqual(rc, 0, doc)
        self.assertEqual(self.khod.read("sys/kernel/debug/kho/out/finalize").strip(), "0")
        self.assertEqual(self.khod.read("sys/kernel/kexec_loaded").strip(), "0")

    def test_root_that_does_not_parse_undoes_the_finalize(self):
        self.prepare()
        self.stage_kernel_finalize(fdt=b"\xd0\x0d\xfe\xed" + b"\xff" * 60)
        rc, doc = self.ctl("finalize")
        self.assertBusError(rc, doc, "KernelRefused")
        self.assertIn("kho/out/fdt", doc["error"]["message"])
        self.assertEqual(self.khod.read(f"{self.OUT}/finalize").strip(), "0", "finalize undone")
        self.assertEqual(self.khod.read("sys/kernel/kexec_loaded").strip(), "0", "nothing loaded")
        self.assertEqual(self.khod.prop("State"), 's "prepared"')

    def test_finalized_by_hand_is_recovered(self):
        self.khod.kill(signal.SIGKILL)
        self.khod.write("sys/kernel/debug/kho/out/finalize", "1\n")
        self.khod.start()
        self.assertEqual(self.khod.prop("State"), 's "finalized"')
        rc, doc = self.ctl("finalize")
        self.assertBusError(rc, doc, "WrongState")  # no target known
        rc, doc = self.ctl("abort")
        self.assertEqual(rc, 0, doc)
        self.assertEqual(self.khod.read("sys/kernel/debug/kho/out/finalize").strip(), "0")


class NoKho(HandoverBusTest):
    fixture = "vm-7.2-nokho"

    def test_prepare_is_not_supported(self):
        self.assertEqual(self.khod.prop("Abi"), 's "unknown"')
        rc, doc = self.ctl("prepare", "--kernel", str(KERNEL))
        self.assertBusError(rc, doc, "NotSupported")
        self.assertIn("kho=on", doc["error"]["message"])


class NonUtf8Cmdline(KhodBusTest):
    """A raw /proc/cmdline can hold any byte; JSON out of khod and khoctl must not throw on it."""

    def setUp(self):
        self.khod = Khod(self.bus, BUILDDIR, "vm-7.2-kho")
        cmdline = self.khod.sysroot / "proc/cmdline"
        cmdline.write_bytes(cmdline.read_bytes().rstrip(b"\n") + b" note=\xff\n")
        self.khod.start()

    def tearDown(self):
        self.khod.close()

    def test_status_json_and_properties_still_work(self):
        r = self.khod.khoctl("--json", "--sysroot", str(self.khod.sysroot), "status", timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)
        json.loads(r.stdout)
        self.assertEqual(self.khod.prop("State"), 's "idle"')
        self.assertEqual(self.khod.prop("LastError"), 's ""')
        self.assertIsNone(self.khod.proc.poll(), "khod is still running")

    def test_a_target_reusing_it_is_staged_and_shown_escaped(self):
        # D-Bus strings must be UTF-8: once a staged command line with a raw
        # byte failed Prepare's reply and every later GetAll of Handover.
        r = self.khod.khoctl("--json", "prepare", "--kernel", str(KERNEL), "--reuse-cmdline", timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(self.khod.prop("State"), 's "prepared"')
        self.assertIn("note=\\\\xff", self.khod.prop("TargetCmdline"))
        r = self.khod.busctl("introspect", "org.kexec.khod1", "/org/kexec/khod1", "org.kexec.khod1.Handover")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.khod.khoctl("--json", "status", timeout=10)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("cannot emit PropertiesChanged", self.khod.log.read_text())


class KhodAbsent(unittest.TestCase):
    def test_khoctl_says_khod_is_not_running(self):
        bus = PrivateBus()
        try:
            r = subprocess.run([str(BUILDDIR / "src/khoctl/khoctl"), "abort"], env=bus.env,
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 1)
            self.assertIn("khod is not running", r.stderr)
        finally:
            bus.close()


if __name__ == "__main__":
    unittest.main()
