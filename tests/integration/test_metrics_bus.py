"""`khoctl metrics` and khod's MetricsFile= on a private bus, and the journal
entries (MESSAGE_ID and KHOD_* fields) behind them.

khod runs over the kdump fixture with --fake-kexec and a khod.conf naming a
MetricsFile; crash kernel reloads, hotplug events and failed loads (a kernel
file spoiled while the fake load sleeps, after the checks passed) change the
numbers, and the file must follow each change without any call. Over the LUO
fixture, a whole live update through the fake gives the sessions and phase
metrics and the staged/exec/restored entries. Without journald khod writes
each entry to stderr with its MESSAGE_ID and fields in brackets, which is
what the tests read. Every output also passes `promtool check metrics`
(tools/setup installs it).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

from khodbus import REPO, KhodBusTest
from test_kdump_bus import KdumpKhod, storm
from test_luo_bus import StoredKhod, memfd_with

BUILDDIR = Path(os.environ.get("KHOD_BUILDDIR", REPO / "build"))
KERNEL = Path(os.environ.get("KHOD_VM_KERNEL", REPO.parent / "shared" / "vm" / "bzImage"))
PROMTOOL = shutil.which("promtool")
IDS = {name: value for name, value in re.findall(r'(\w+) = "([0-9a-f]{32})"',
                                                 (REPO / "src/khod/message_ids.hpp").read_text())}


def parse(text):
    """The samples of a text exposition: {'name{labels}': float}."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return samples


class MetricsTest(KhodBusTest):
    def metrics(self):
        r = self.khod.khoctl("metrics")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.promtool(r.stdout)
        return r.stdout

    def promtool(self, text):
        if not PROMTOOL:
            self.skipTest("promtool missing: tools/setup installs it (Debian package prometheus)")
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, f"promtool: {r.stdout}{r.stderr}\n{text}")
        self.assertEqual(r.stdout + r.stderr, "", "promtool's lint found something")

    def events(self, message_id):
        """The fields of each entry khod logged with message_id, in order."""
        out = []
        for line in self.khod.log.read_text().splitlines():
            m = re.search(r"\[MESSAGE_ID=" + message_id + r"( .*)?\]$", line)
            if m:
                # A value runs up to the next field (values may hold spaces).
                out.append(dict(re.findall(r" (KHOD_[A-Z_]+)=(.*?)(?= KHOD_[A-Z_]+=|$)", m.group(1) or "")))
        return out

    def wait_for(self, what, check, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                self.fail(f"never: {what}\n{self.khod.log.read_text()}")
            time.sleep(0.05)


class KdumpMetrics(MetricsTest):
    def setUp(self):
        self.assertTrue(KERNEL.is_file(), f"{KERNEL} missing: the tests need ../shared/vm/bzImage")
        self.tmp = Path(tempfile.mkdtemp(prefix="khod-metrics-"))
        self.tmp.chmod(0o755)
        self.initrd = self.tmp / "initrd.img"
        self.initrd.write_bytes(b"\0" * 4096)
        self.kernels = {}
        for name in ("a", "b", "c"):  # copies a test may spoil
            self.kernels[name] = self.tmp / f"vmlinuz-{name}"
            shutil.copyfile(KERNEL, self.kernels[name])
        self.prom = self.tmp / "textfile" / "khod.prom"
        self.prom.parent.mkdir()
        conf = (f"[Kdump]\nKernel={self.kernels['a']}\nInitrd={self.initrd}\nCommandLine=console=ttyS0\n"
                f"SettleSec=100ms\n\n[Metrics]\nMetricsFile={self.prom}\n")
        self.khod = KdumpKhod(self.bus, BUILDDIR, "kdump-7.2-load", conf)
        self.khod.start()

    def tearDown(self):
        self.khod.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def file_samples(self):
        return parse(self.prom.read_text()) if self.prom.exists() else {}

    def wait_file(self, name, value):
        return self.wait_for(f"{self.prom} says {name} {value}", lambda: self.file_samples().get(name) == value
                             and self.file_samples())

    def kdump(self, *args):
        rc, doc = self.khoctl_json("kdump", *args)
        return rc, doc

    def test_metrics_at_start(self):
        text = self.metrics()
        s = parse(text)
        self.assertEqual(s["khod_kdump_loaded"], 1)  # kexec -p loaded one, in the fixture
        self.assertEqual(s["khod_kdump_managed"], 0)
        self.assertEqual(s["khod_kdump_reloads_total"], 0)
        self.assertEqual(s["khod_kdump_unloaded_windows_total"], 0)
        self.assertEqual(s["khod_kdump_unloaded_seconds_total"], 0)
        self.assertEqual(s['khod_luo_sessions{direction="outgoing"}'], 0)
        self.assertNotIn("khod_live_update_phase_seconds", text, "no live update led to this boot")
        for family in ("khod_kdump_loaded gauge", "khod_kdump_reloads_total counter",
                       "khod_kdump_unloaded_windows_total counter", "khod_kdump_unloaded_seconds_total counter",
                       "khod_luo_sessions gauge"):
            self.assertIn(f"# TYPE {family}\n", text)
        # Written at start, readable by node_exporter's user, the same text.
        self.assertEqual(self.prom.stat().st_mode & 0o777, 0o644)
        self.assertEqual(self.prom.read_text(), text)
        self.promtool(self.prom.read_text())
        self.assertEqual(sorted(p.name for p in self.prom.parent.iterdir()), ["khod.prom"], "no temporary left")

    def test_a_reload_updates_the_numbers_the_file_and_the_journal(self):
        before = self.prom.stat().st_ino
        rc, doc = self.kdump("reload")
        self.assertEqual(rc, 0, doc)
        s = self.wait_file("khod_kdump_reloads_total", 1)
        self.assertNotEqual(self.prom.stat().st_ino, before, "replaced by a rename, not rewritten in place")
        self.assertEqual(s["khod_kdump_managed"], 1)
        self.assertEqual(s["khod_kdump_unloaded_windows_total"], 1)
        self.assertGreater(s["khod_kdump_unloaded_seconds_total"], 0)
        self.wait_for("settled", lambda: not self.kdump("status")[1]["kdump"]["Pending"])
        text = self.metrics()
        self.assertEqual(parse(text)["khod_kdump_reloads_total"], 1)
        self.assertEqual(self.prom.read_text(), text, "the file says what khoctl metrics says")
        st = self.kdump("status")[1]["kdump"]
        self.assertEqual(parse(text)["khod_kdump_unloaded_seconds_total"], st["UnloadedWindowUsecTotal"] / 1e6)
        self.assertEqual(st["UnloadedWindowCount"], 1)

        rc, doc = self.khoctl_json("metrics")
        self.assertEqual(rc, 0, doc)
        k = doc["metrics"]["kdump"]
        self.assertEqual((k["loaded"], k["managed"], k["reloads"], k["unloaded_windows"]), (True, True, 1, 1))
        self.assertEqual(k["unloaded_usec"], st["UnloadedWindowUsecTotal"])
        self.assertEqual(doc["metrics"]["luo"], {"outgoing_sessions": 0, "incoming_sessions": 0})
        self.assertEqual(doc["metrics"]["live_update"], {"previous_release": None, "phases": []})

        [event] = self.events(IDS["crash_kernel_reloaded"])
        self.assertEqual(event["KHOD_KERNEL"], str(self.kernels["a"]))
        self.assertEqual(event["KHOD_RELOAD_REASON"], "Reload")
        self.assertEqual(event["KHOD_EVENTS"], "0")
        self.assertEqual(int(event["KHOD_UNLOADED_USEC"]), st["UnloadedWindowUsecTotal"])
        self.assertGreaterEqual(int(event["KHOD_DURATION_USEC"]), int(event["KHOD_UNLOADED_USEC"]))

    def test_hotplug_events_reach_the_file_without_a_call(self):
        self.khod.send_events(storm(6))
        s = self.wait_file("khod_kdump_hotplug_events_total", 6)
        # The image kexec -p loaded is not updated in place: the storm is one reload.
        s = self.wait_file("khod_kdump_reloads_total", 1)
        self.assertEqual(s["khod_kdump_hotplug_events_total"], 6)
        [event] = self.wait_for("the reload's entry", lambda: self.events(IDS["crash_kernel_reloaded"]))
        self.assertEqual(event["KHOD_RELOAD_REASON"], "6 hotplug events")
        self.assertEqual(event["KHOD_EVENTS"], "6")

    def spoil_during_load(self, spoiled, *command):
        """Runs khoctl kdump COMMAND while the fake load sleeps, and overwrites
        `spoiled` meanwhile: the checks passed, the load then fails after the
        kernel freed the loaded image."""
        knob = self.khod.sysroot / "fake-kdump/load-delay-ms"
        knob.parent.mkdir(parents=True, exist_ok=True)
        knob.write_text("1000\n")
        sleeping = knob.with_name(knob.name + ".sleeping")
        call = subprocess.Popen([str(BUILDDIR / "src/khoctl/khoctl"), "--json", "kdump", *command],
                                env=self.bus.env, stdout=subprocess.PIPE, text=True)
        try:
            self.wait_for("the fake load sleeping", sleeping.exists)
            for path in spoiled:
                path.chmod(0o644)
                path.write_bytes(b"\0" * 4096)
            knob.unlink()
            out, _ = call.communicate(timeout=30)
        finally:
            if call.poll() is None:
                call.kill()
                call.wait()
        return call.returncode, json.loads(out)

    def test_a_failed_reload_rolls_back_then_one_leaves_none_loaded(self):
        rc, doc = self.kdump("load", "--kernel", str(self.kernels["b"]), "--initrd", str(self.initrd))
        self.assertEqual(rc, 0, doc)  # b is now the last good image
        rc, doc = self.spoil_during_load([self.kernels["c"]], "load", "--kernel", str(self.kernels["c"]),
                                         "--initrd", str(self.initrd))
        self.assertNotEqual(rc, 0, doc)
        [back] = self.events(IDS["crash_kernel_rolled_back"])
        self.assertEqual(back["KHOD_KERNEL"], str(self.kernels["c"]))
        self.assertEqual(back["KHOD_ROLLBACK_KERNEL"], str(self.kernels["b"]))
        self.assertEqual(back["KHOD_RELOAD_REASON"], "Load")
        s = self.wait_file("khod_kdump_unloaded_windows_total", 2)
        self.assertEqual(s["khod_kdump_loaded"], 1)

        # Now the last good image itself is spoiled: nothing to roll back to.
        rc, doc = self.spoil_during_load([self.kernels["b"]], "reload")
        self.assertNotEqual(rc, 0, doc)
        [gone] = self.events(IDS["crash_kernel_unloaded"])
        self.assertEqual(gone["KHOD_KERNEL"], str(self.kernels["b"]))
        self.assertEqual(gone["KHOD_RELOAD_REASON"], "Reload")
        self.assertIn("KHOD_ERROR", gone)
        s = self.wait_file("khod_kdump_loaded", 0)
        self.assertEqual(s["khod_kdump_unloaded_windows_total"], 3)
        self.assertEqual(parse(self.metrics())["khod_kdump_loaded"], 0)
        self.assertEqual(self.events(IDS["crash_kernel_reloaded"]), [self.events(IDS["crash_kernel_reloaded"])[0]],
                         "only the load of b was a reload")

    def test_an_unwritable_metrics_file_is_said_once_and_khod_goes_on(self):
        self.khod.kill(signal.SIGTERM)
        shutil.rmtree(self.prom.parent)
        self.khod.start()
        self.assertEqual(self.kdump("reload")[0], 0)
        self.assertEqual(self.kdump("reload")[0], 0)
        log = self.khod.log.read_text()
        self.assertEqual(log.count(f"MetricsFile=: {self.prom.parent}"), 1, log)
        self.prom.parent.mkdir()
        self.assertEqual(self.kdump("reload")[0], 0)
        self.wait_file("khod_kdump_reloads_total", 3)


class LiveUpdateMetrics(MetricsTest):
    def setUp(self):
        self.assertTrue(KERNEL.is_file(), f"{KERNEL} missing: the tests need ../shared/vm/bzImage")
        self.khod = StoredKhod(self.bus, BUILDDIR, "vm-7.2-kho")
        self.prom = self.khod.dir / "khod.prom"
        (self.khod.sysroot / "etc/khod").mkdir(parents=True, exist_ok=True)
        (self.khod.sysroot / "etc/khod/khod.conf").write_text(f"[Metrics]\nMetricsFile={self.prom}\n")
        self.khod.start()

    def tearDown(self):
        self.khod.close()

    def luo(self, *args):
        return subprocess.run([str(BUILDDIR / "src/khoctl/khoctl"), "luo", *args], env=self.bus.env,
                              capture_output=True, text=True, timeout=30)

    def test_sessions_and_a_live_update(self):
        self.assertEqual(self.luo("create", "vm1").returncode, 0)
        self.wait_for("the file counts the session",
                      lambda: parse(self.prom.read_text()).get('khod_luo_sessions{direction="outgoing"}') == 1)
        fd = memfd_with(b"m" * 8192)
        try:
            r = subprocess.run([str(BUILDDIR / "src/khoctl/khoctl"), "luo", "preserve", "vm1", "7", "--fd", str(fd)],
                               env=self.bus.env, capture_output=True, text=True, timeout=30, pass_fds=(fd,))
            self.assertEqual(r.returncode, 0, r.stderr)
        finally:
            os.close(fd)
        self.assertEqual(parse(self.metrics())['khod_luo_sessions{direction="outgoing"}'], 1)

        rc, doc = self.khoctl_json("prepare", "--kernel", str(KERNEL), "--append", "console=ttyS0 kho=on liveupdate=on")
        self.assertEqual(rc, 0, doc)
        self.assertEqual(self.khoctl_json("finalize")[0], 0)
        [staged] = self.events(IDS["live_update_staged"])
        self.assertEqual(staged["KHOD_KERNEL"], str(KERNEL))
        self.assertRegex(staged["KHOD_RELEASE"], r"^7\.2\.")  # from the bzImage's header
        self.assertEqual(self.khoctl_json("exec")[0], 0)
        fake = self.khod.sysroot / "fake-luo"
        self.wait_for("the manifest frozen", (fake / "outgoing/khod/0").exists)
        [execd] = self.wait_for("the exec entry", lambda: self.events(IDS["live_update_exec"]))
        self.assertEqual((execd["KHOD_KERNEL"], execd["KHOD_SESSIONS"], execd["KHOD_SESSION_BYTES"]),
                         (str(KERNEL), "1", "8192"))

        # The next boot: the fake kernel hands the sessions over.
        self.khod.kill(signal.SIGKILL)
        self.khod.store.close()
        del self.khod.store
        shutil.rmtree(fake / "live", ignore_errors=True)
        shutil.rmtree(self.khod.runtime, ignore_errors=True)  # /run is empty after a reboot
        (fake / "outgoing").rename(fake / "incoming")
        self.prom.unlink()
        self.khod.start()
        [restored] = self.events(IDS["live_update_restored"])
        self.assertEqual(restored["KHOD_SESSIONS"], "1")
        self.assertEqual(restored["KHOD_SESSIONS_LOST"], "0")
        self.assertNotEqual(restored["KHOD_PREVIOUS_RELEASE"], "unknown")

        text = self.prom.read_text()  # written at start
        self.promtool(text)
        s = parse(text)
        self.assertEqual(s['khod_luo_sessions{direction="incoming"}'], 1)
        self.assertEqual(s['khod_luo_sessions{direction="outgoing"}'], 0)
        self.assertIn("khod_live_update_info{previous_release=", text)
        phases = {k: v for k, v in s.items() if k.startswith("khod_live_update_phase_seconds")}
        self.assertIn('khod_live_update_phase_seconds{phase="inhibitors-released"}', phases)
        self.assertIn('khod_live_update_phase_seconds{phase="reboot-syscall"}', phases)
        self.assertIn('khod_live_update_phase_seconds{phase="khod-ready"}', phases)
        self.assertNotIn('khod_live_update_phase_seconds{phase="first-retrieve"}', phases, "nothing retrieved yet")
        self.assertGreaterEqual(phases['khod_live_update_phase_seconds{phase="inhibitors-released"}'], 0)

        out = self.khod.dir / "vm1.out"
        self.assertEqual(self.luo("retrieve", "vm1", "7", str(out)).returncode, 0)
        s = self.wait_for("the file shows the first retrieve", lambda: (lambda p: p if any(
            "first-retrieve" in k for k in p) else None)(parse(self.prom.read_text())))
        self.assertGreaterEqual(s['khod_live_update_phase_seconds{phase="first-retrieve"}'], 0)
        rc, doc = self.khoctl_json("metrics")
        self.assertEqual(rc, 0, doc)
        self.assertEqual([p["phase"] for p in doc["metrics"]["live_update"]["phases"]][-1], "first-retrieve")
        self.assertEqual(doc["metrics"]["luo"]["incoming_sessions"], 1)

        # A restart in the same boot is no second "restored".
        self.khod.kill(signal.SIGTERM)
        self.khod.start()
        self.assertEqual(len(self.events(IDS["live_update_restored"])), 1)


if __name__ == "__main__":
    unittest.main()
