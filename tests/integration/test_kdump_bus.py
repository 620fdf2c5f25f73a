"""khod's org.kexec.khod1.Kdump on a private bus, driven by khoctl and busctl.

khod runs over copies of the kdump fixture trees captured from the 7.2 kernel
(kdump-7.2-load: a crash kernel loaded with `kexec -p`, crash_hotplug 0;
kdump-7.2-file: one loaded with `kexec -s -p`, crash_hotplug 1), with
--fake-kexec (the fake backend does to the tree what the kernel does to
sysfs: crash_loaded 0 while loading, 1 and crash_hotplug 1 after a good load,
ENOEXEC for a file that is not a bzImage, leaving none loaded).

Hotplug events are injected honestly but explicitly: khod --uevent-socket
PATH reads datagrams in the kernel's NETLINK_KOBJECT_UEVENT format from a
unix socket, through the same parser the kernel source uses. The VM tier
(kdump-inplace, kdump-reload) proves the real netlink source and syscalls.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

from khodbus import REPO, Khod, KhodBusTest

BUILDDIR = Path(os.environ.get("KHOD_BUILDDIR", REPO / "build"))
KERNEL = Path(os.environ.get("KHOD_VM_KERNEL", REPO.parent / "shared" / "vm" / "bzImage"))
CRASH_LOADED = "sys/kernel/kexec/crash_loaded"
HOTPLUG = "sys/devices/system/memory/crash_hotplug"


class KdumpKhod(Khod):
    """Khod with --uevent-socket (khodbus.Khod starts khod without it)."""

    def __init__(self, bus, builddir, fixture, conf=None, files=None):
        super().__init__(bus, builddir, fixture)
        self.uevents = self.dir / "uevents.sock"
        for rel, text in (files or {}).items():
            p = self.sysroot / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        if conf is not None:
            p = self.sysroot / "etc/khod/khod.conf"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(conf)

    def arguments(self):
        return super().arguments() + ["--uevent-socket", str(self.uevents)]

    def send_events(self, events):
        """events: (action, subsystem, devpath, seqnum) tuples, sent as the kernel formats them."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            for action, subsystem, devpath, seqnum in events:
                fields = [f"{action}@{devpath}", f"ACTION={action}", f"DEVPATH={devpath}",
                          f"SUBSYSTEM={subsystem}", f"SEQNUM={seqnum}"]
                s.sendto(b"\0".join(f.encode() for f in fields) + b"\0", str(self.uevents))
        finally:
            s.close()


def storm(n, first_seq=10000):
    out = []
    for i in range(n):
        if i % 2:
            out.append(("offline" if i % 4 == 1 else "online", "cpu", "/devices/system/cpu/cpu1", first_seq + i))
        else:
            out.append(("online", "memory", f"/devices/system/memory/memory{8 + i % 8}", first_seq + i))
    return out


class KdumpBusTest(KhodBusTest):
    fixture = "kdump-7.2-load"
    conf = None
    files = None

    def setUp(self):
        self.assertTrue(KERNEL.is_file(), f"{KERNEL} missing: the tests need ../shared/vm/bzImage")
        self.tmp = Path(tempfile.mkdtemp(prefix="khod-kdump-"))
        self.initrd = self.tmp / "initrd.img"
        self.initrd.write_bytes(b"\0" * 4096)
        conf = self.conf.format(kernel=KERNEL, initrd=self.initrd) if self.conf else None
        self.khod = KdumpKhod(self.bus, BUILDDIR, self.fixture, conf, self.files)
        self.khod.start()

    def tearDown(self):
        self.khod.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def ctl(self, *args):
        return self.khoctl_json("--sysroot", str(self.khod.sysroot), "kdump", *args)

    def status(self):
        rc, doc = self.ctl("status")
        self.assertEqual(rc, 0, doc)
        return doc["kdump"]

    def wait_settled(self, events, timeout=10):
        """Until khod has seen `events` events and has nothing pending (khod works in its own time)."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.status()
            if st["EventsSeen"] >= events and not st["Pending"]:
                return st
            if time.monotonic() > deadline:
                self.fail(f"khod did not settle: {st}\n{self.khod.log.read_text()}")
            time.sleep(0.05)


class ReloadWhereTheKernelCannotUpdate(KdumpBusTest):
    conf = ("[Kdump]\nKernel={kernel}\nInitrd={initrd}\n"
            "CommandLine=console=ttyS0 irqpoll\n  nr_cpus=1 reset_devices\nSettleSec=200ms\nMaxDelaySec=2\n")

    def test_a_slow_load_leaves_the_bus_answering_and_loses_no_event(self):
        """Loads run off the event loop: while the fake kexec_file_load takes
        2 s, status is answered; hotplug events sent meanwhile wait in the
        socket and are all counted after it; a second Reload waits its turn."""
        knob = self.khod.sysroot / "fake-kdump/load-delay-ms"
        knob.parent.mkdir(parents=True, exist_ok=True)
        knob.write_text("2000\n")
        sleeping = knob.with_name(knob.name + ".sleeping")
        khoctl = [str(BUILDDIR / "src/khoctl/khoctl"), "--json", "--sysroot", str(self.khod.sysroot), "kdump"]
        first = subprocess.Popen([*khoctl, "reload"], env=self.bus.env, stdout=subprocess.PIPE, text=True)
        second = None
        try:
            deadline = time.monotonic() + 10
            while not sleeping.exists():
                self.assertIsNone(first.poll(), "the reload ended before its load began")
                self.assertLess(time.monotonic(), deadline, "the fake load never began")
                time.sleep(0.02)
            before = self.status()
            self.assertTrue(sleeping.exists(), "status was answered only after the load")
            self.assertEqual(before["EventsSeen"], 0)
            self.assertTrue(before["Pending"], "a load in the kernel is not a settled state")
            self.khod.send_events(storm(10))
            second = subprocess.Popen([*khoctl, "reload"], env=self.bus.env, stdout=subprocess.PIPE, text=True)
            self.assertIsNone(first.poll())
            for call in (first, second):
                out, _ = call.communicate(timeout=30)
                self.assertEqual(call.returncode, 0, out)
            knob.unlink()
            st = self.wait_settled(10)
            self.assertEqual(st["EventsSeen"], 10, "every event sent during the load was read after it")
            self.assertTrue(st["Loaded"])
            self.assertGreaterEqual(st["Reloads"], 2)
        finally:
            for call in (first, second):
                if call and call.poll() is None:
                    call.kill()
                    call.wait()

    def test_initial_state(self):
        st = self.status()
        self.assertTrue(st["Loaded"])
        self.assertFalse(st["Managed"], "the image was loaded by kexec -p, not by khod")
        self.assertEqual(st["InPlaceUpdate"], {"cpu": "no", "memory": "no"})
        self.assertEqual(st["EventSource"], "test-socket")
        self.assertEqual(st["Reloads"], 0)
        self.assertEqual(st["LastReloadUsec"], 0)
        self.assertEqual(st["Recipe"]["kernel"], str(KERNEL))
        self.assertEqual(st["Recipe"]["cmdline"], "console=ttyS0 irqpoll nr_cpus=1 reset_devices")
        self.assertEqual(st["Recipe"]["source"], "/etc/khod/khod.conf")
        rc, doc = self.ctl("status")
        self.assertEqual(doc["kernel"]["crash_loaded"], True)
        self.assertEqual(doc["kernel"]["crash_elfcorehdr_size"], 462448)
        self.assertTrue((self.khod.runtime / "kdump-hotplug").exists(), "the udev drop-ins' marker")
        # Nothing to warn about when all is well (it once warned of a signal sent before it was on the bus).
        self.assertNotIn("warning", self.khod.log.read_text())

    def test_a_storm_is_one_reload_then_the_kernel_updates_in_place(self):
        self.khod.send_events(storm(200))
        st = self.wait_settled(200)
        self.assertEqual(st["Reloads"], 1, st)
        self.assertTrue(st["Loaded"])
        self.assertTrue(st["Managed"])
        self.assertEqual(st["InPlaceUpdate"], {"cpu": "yes", "memory": "yes"})
        self.assertGreater(st["LastReloadUsec"], 0)
        self.assertEqual(len(st["UnloadedWindows"]), 1)
        w = st["UnloadedWindows"][0]
        self.assertFalse(w["open"])
        self.assertEqual(w["cause"], "200 hotplug events")
        self.assertEqual(st["UnloadedWindowUsecTotal"], w["duration_usec"])
        self.assertEqual(self.khod.read(CRASH_LOADED).strip(), "1")
        self.assertEqual(self.khod.read(HOTPLUG).strip(), "1")
        # the next storm is the kernel's business
        self.khod.send_events(storm(50, first_seq=20000))
        st = self.wait_settled(250)
        self.assertEqual(st["Reloads"], 1, st)

    def test_reloaded_signal(self):
        mon = subprocess.Popen(["busctl", f"--address={self.bus.address}", "monitor", "--json=short",
                                "--match", "type='signal',interface='org.kexec.khod1.Kdump',member='Reloaded'"],
                               stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.3)  # busctl subscribes before the storm
            self.khod.send_events(storm(10))
            self.wait_settled(10)
            line = ""
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and "Reloaded" not in line:
                line = mon.stdout.readline()
            msg = json.loads(line)
            cause, events, duration, unloaded, ok, error = msg["payload"]["data"]
            self.assertEqual((cause, events, ok, error), ("10 hotplug events", 10, True, ""))
            self.assertGreaterEqual(duration, unloaded)
        finally:
            mon.send_signal(signal.SIGTERM)
            mon.wait(timeout=5)


class LoadUnloadRollback(KdumpBusTest):
    fixture = "kdump-7.2-file"

    def test_no_recipe_then_load(self):
        st = self.status()
        self.assertEqual(st["Recipe"]["kernel"], "")
        rc, doc = self.ctl("reload")
        self.assertEqual(rc, 1)
        self.assertEqual(doc["error"]["name"], "org.kexec.khod1.Error.NoRecipe")
        rc, doc = self.ctl("load", "--kernel", str(KERNEL), "--initrd", str(self.initrd), "--append", "nr_cpus=1")
        self.assertEqual(rc, 0, doc)
        self.assertEqual(doc["kdump"]["Recipe"]["source"], "khoctl kdump load")
        self.assertEqual(doc["kdump"]["Reloads"], 1, "it replaced the captured image")
        self.assertTrue(doc["kdump"]["Managed"])

    def test_what_the_loader_would_refuse_costs_no_crash_kernel(self):
        # kexec_file_load frees the loaded crash image before it reads the
        # new one: these must be refused before the kernel is asked.
        rc, doc = self.ctl("load", "--kernel", str(KERNEL), "--append", "nr_cpus=1")
        self.assertEqual(rc, 0, doc)
        windows = self.status()["UnloadedWindows"]
        not_a_kernel = self.tmp / "vmlinuz-broken"
        not_a_kernel.write_bytes(b"\x7fELF" + b"\0" * 8192)
        for args, says in ((("--kernel", str(not_a_kernel)), "is not a bzImage"),
                           (("--kernel", str(KERNEL), "--append", "x" * 5000), "command line")):
            with self.subTest(says=says):
                rc, doc = self.ctl("load", *args)
                self.assertEqual(rc, 1, doc)
                self.assertEqual(doc["error"]["name"], "org.kexec.khod1.Error.PreflightFailed")
                self.assertIn(says, doc["error"]["message"])
                st = self.status()
                self.assertTrue(st["Loaded"])
                self.assertEqual(st["Recipe"]["kernel"], str(KERNEL))
                self.assertIn("PreflightFailed", st["LastError"])
                self.assertEqual(self.khod.read(CRASH_LOADED).strip(), "1")
                self.assertEqual(st["UnloadedWindows"], windows, "no window without a crash kernel")

    def test_missing_file_is_refused_before_anything_is_unloaded(self):
        rc, doc = self.ctl("load", "--kernel", str(self.tmp / "nope"))
        self.assertEqual(rc, 1)
        self.assertEqual(doc["error"]["name"], "org.kexec.khod1.Error.InvalidArgument")
        self.assertIn("nope", doc["error"]["message"])
        self.assertTrue(self.status()["Loaded"])
        self.assertEqual(self.status()["UnloadedWindows"], [])

    def test_fifo_is_refused_without_stalling_khod(self):
        fifo = self.tmp / "kernel.fifo"
        os.mkfifo(fifo)
        for args in (("--kernel", str(fifo)), ("--kernel", str(KERNEL), "--initrd", str(fifo))):
            r = self.khod.khoctl("--json", "--sysroot", str(self.khod.sysroot), "kdump", "load", *args,
                                 timeout=10)
            doc = json.loads(r.stdout)
            self.assertEqual(r.returncode, 1, doc)
            self.assertEqual(doc["error"]["name"], "org.kexec.khod1.Error.InvalidArgument")
            self.assertIn(f"{fifo}: is a FIFO, not a regular file", doc["error"]["message"])
            self.assertTrue(self.status()["Loaded"], "refused before the loaded crash kernel was touched")
        self.assertEqual(self.status()["UnloadedWindows"], [])

    def test_relative_path_is_an_invalid_argument(self):
        r = self.khod.dbus_send("org.kexec.khod1.Kdump", "Load", "string:vmlinuz", "string:", "string:",
                                "uint64:0")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("org.kexec.khod1.Error.InvalidArgument", r.stderr)
        self.assertIn("must be given as an absolute path", r.stderr)

    def test_unknown_load_flags_are_refused(self):
        for flags in ("8", "3", "6"):  # an undefined bit; two loaders at once
            r = self.khod.busctl("call", "org.kexec.khod1", "/org/kexec/khod1", "org.kexec.khod1.Kdump",
                                 "Load", "ssst", str(KERNEL), "", "", flags)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn(f"Load: flags {int(flags):#x}: pass 0, or exactly one of LOADER_FILE", r.stderr)
        self.assertEqual(self.status()["UnloadedWindows"], [], "refused before anything was unloaded")

    def test_loader_is_the_recipes_and_kept_for_reloads(self):
        rc, doc = self.ctl("load", "--kernel", str(KERNEL), "--loader", "native")
        self.assertEqual(rc, 0, doc)
        self.assertEqual(doc["kdump"]["Loader"], "native")
        rc, doc = self.ctl("reload")
        self.assertEqual(rc, 0, doc)
        self.assertEqual(doc["kdump"]["Loader"], "native", "a reload keeps the recipe's loader")
        rc, doc = self.ctl("load", "--kernel", str(KERNEL))
        self.assertEqual(rc, 0, doc)
        self.assertEqual(doc["kdump"]["Loader"], "file", "no --loader: khod.conf's Loader= (default file)")
        r = self.khod.khoctl("kdump", "load", "--kernel", str(KERNEL), "--loader", "kexec")
        self.assertEqual(r.returncode, 2, "an unknown --loader is a usage error")

    def test_unload_and_reload(self):
        rc, doc = self.ctl("load", "--kernel", str(KERNEL))
        self.assertEqual(rc, 0, doc)
        rc, doc = self.ctl("unload")
        self.assertEqual(rc, 0, doc)
        self.assertFalse(doc["kdump"]["Loaded"])
        self.assertFalse(doc["kdump"]["Managed"])
        self.assertTrue(doc["kdump"]["UnloadedWindows"][-1]["open"])
        self.assertEqual(self.khod.read(CRASH_LOADED).strip(), "0")
        rc, doc = self.ctl("reload")
        self.assertEqual(rc, 0, doc)
        self.assertTrue(doc["kdump"]["Loaded"])
        self.assertFalse(doc["kdump"]["UnloadedWindows"][-1]["open"])

    def test_in_place_events_reload_nothing(self):
        self.khod.send_events(storm(100))
        st = self.wait_settled(100)
        self.assertEqual(st["Reloads"], 0)
        self.assertTrue(st["Loaded"])

    def test_human_status(self):
        r = self.khod.khoctl("--sysroot", str(self.khod.sysroot), "kdump", "status")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("in-place update: cpu yes, memory yes", r.stdout)
        self.assertIn("kernel:          crash kernel loaded, in-place update cpu yes memory yes", r.stdout)
        self.assertIn("crash kernel:    loaded", r.stdout)


class ImportedFromKdumpTools(KdumpBusTest):
    files = {"etc/default/kdump-tools": "USE_KDUMP=1\nKDUMP_KERNEL=/var/lib/kdump/vmlinuz\n"}

    def test_recipe_source(self):
        st = self.status()
        self.assertEqual(st["Recipe"]["source"], "/etc/default/kdump-tools")
        self.assertEqual(st["Recipe"]["kernel"], "/var/lib/kdump/vmlinuz")
        self.assertIn("nr_cpus=1", st["Recipe"]["cmdline"])
        self.assertNotIn("crashkernel=", st["Recipe"]["cmdline"])



class AfterALiveUpdate(KdumpBusTest):
    """The first khod of a boot that came through a live update (kho/in in
    debugfs, from the 7.2 kernel after a KHO kexec) finds no crash kernel and
    loads its recipe before it takes its bus name, that is, before READY=1."""
    fixture = "vm-7.2-kho-in"
    conf = "[Kdump]\nKernel={kernel}\nInitrd={initrd}\nCommandLine=nr_cpus=1\n"
    files = {"sys/kernel/kexec_crash_size": "268435456\n"}

    def test_the_crash_kernel_is_loaded_again(self):
        st = self.status()
        self.assertTrue(st["Loaded"], st)
        self.assertTrue(st["Managed"], st)
        self.assertEqual(self.khod.read("sys/kernel/kexec_crash_loaded").strip(), "1")
        log = self.khod.log.read_text()
        self.assertIn(f"crash kernel {KERNEL} loaded after the live update", log)
        # The restored entry names the release the kexec came from, by the
        # kernel's kexec-metadata record, though no khod manifest came.
        self.assertIn("through a KHO kexec from 7.2.13;", log)
        self.assertIn("KHOD_PREVIOUS_RELEASE=7.2.13", log)

    def test_a_restart_in_the_same_boot_does_not_load_again(self):
        rc, doc = self.ctl("unload")
        self.assertEqual(rc, 0, doc)
        self.khod.kill(signal.SIGTERM)
        self.khod.start()
        self.assertFalse(self.status()["Loaded"], "an operator's unload outlives a khod restart")


if __name__ == "__main__":
    unittest.main()


class KilledInsideAStep(KdumpBusTest):
    """khod SIGKILLed from inside the fake backend (fake-kdump/kill-at), at
    each point a crash load or unload passes; the next khod must put back
    what the kill took away before it reports ready."""

    conf = ("[Kdump]\nKernel={kernel}\nInitrd={initrd}\nCommandLine=console=ttyS0 nr_cpus=1\n"
            "SettleSec=200ms\nMaxDelaySec=2\n")

    def kill_at(self, point, trigger):
        knob = self.khod.sysroot / "fake-kdump/kill-at"
        knob.parent.mkdir(exist_ok=True)
        knob.write_text(point + "\n")
        trigger()
        self.assertEqual(self.khod.proc.wait(timeout=15), -signal.SIGKILL, self.khod.log.read_text())
        self.assertFalse(knob.exists())

    def restart(self):
        self.khod.start()  # returns at READY=1
        return self.khod.read(CRASH_LOADED).strip()

    def test_inside_a_storms_reload_the_crash_kernel_is_back_before_ready(self):
        self.kill_at("load-after-free", lambda: self.khod.send_events(storm(20)))
        self.assertEqual(self.khod.read(CRASH_LOADED).strip(), "0", "killed with no crash kernel loaded")
        self.assertEqual(self.restart(), "1", "loaded again before READY=1")
        st = self.status()
        self.assertTrue(st["Loaded"])
        self.assertTrue(st["Managed"])
        [window] = st["UnloadedWindows"]
        self.assertFalse(window["open"])
        self.assertTrue(window["cause"].startswith("khod restart: khod was stopped inside a load"), window)
        self.assertIn("kdump: the crash kernel khod manages was not loaded at start (khod was stopped inside a load",
                      self.khod.log.read_text())

    def test_inside_a_load_after_the_kernel_took_it_the_new_recipe_stands(self):
        def load():
            self.khod.khoctl("--sysroot", str(self.khod.sysroot), "kdump", "load", "--kernel", str(KERNEL),
                             "--append", "nr_cpus=1 the-new-one", timeout=15)
        self.kill_at("load-after-load", load)
        self.assertEqual(self.restart(), "1")
        st = self.status()
        self.assertTrue(st["Managed"])
        self.assertIn("the-new-one", st["Recipe"]["cmdline"])
        self.assertIn("reloads use that recipe", self.khod.log.read_text())
        # The killed load may have missed hotplug events: one reload, SettleSec= later.
        st = self.wait_settled(0)
        self.assertEqual(st["Reloads"], 1, st)
        self.assertIn("the-new-one", st["Recipe"]["cmdline"])
        self.assertTrue(st["Loaded"])

    def test_inside_an_unload_the_unload_stands(self):
        rc, doc = self.ctl("reload")
        self.assertEqual(rc, 0, doc)
        self.kill_at("unload-after-free", lambda: self.ctl("unload"))
        self.assertEqual(self.restart(), "0", "the Unload asked for is not undone")
        st = self.status()
        self.assertFalse(st["Loaded"])
        self.assertFalse(st["Managed"])
        self.assertIn("stopped inside an Unload; no crash kernel is loaded, as asked", self.khod.log.read_text())


class DamagedRecord(KdumpBusTest):
    """A kdump.json that is not a record (truncated, hand-edited, wrong types)
    counts for nothing: khod starts, answers, and writes a good one."""

    fixture = "kdump-7.2-file"

    def test_each_damage_is_survived(self):
        for damage in (b'{"version": 1, "boot_id": ', b'{"version":1,"boot_id":"x","managed":"yes"}',
                       b"\xff\xfe\x00 not json", b'[1, 2, 3]'):
            with self.subTest(damage=damage):
                self.khod.kill(signal.SIGTERM)
                (self.khod.runtime / "kdump.json").write_bytes(damage)
                self.khod.start()
                st = self.status()
                self.assertTrue(st["Loaded"])
                self.assertFalse(st["Managed"], "a damaged record says nothing about who manages kdump")
                rc, doc = self.ctl("load", "--kernel", str(KERNEL), "--append", "nr_cpus=1")
                self.assertEqual(rc, 0, doc)
                json.loads((self.khod.runtime / "kdump.json").read_text())
