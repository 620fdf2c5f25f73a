"""A private system bus with khod on it, for the integration tests.

khod runs against a copy of a fixture sysroot with --fake-kexec, so nothing
touches the host's kernel; khoctl and busctl reach it through
DBUS_SYSTEM_BUS_ADDRESS. Readiness comes from khod's own sd_notify READY=1
on a NOTIFY_SOCKET the test listens to, not from polling.
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

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"

# Debian's system.conf, trimmed to what a private bus needs: the default
# policy denies owning names and calling methods, so the shipped policy
# (src/khod/dbus/org.kexec.khod1.conf, included from the tree) is what lets
# khod own its name and decides who may call it, as on a real host.
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <policy user="root">
    <!-- busctl monitor, which some tests watch signals with -->
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <include>{shipped_policy}</include>
  <include>{standin_policy}</include>
</busconfig>
"""

# What polkitd's own policy file grants, for the stand-in authority.
STANDIN_POLICY = REPO / "tests/vm/files/polkit-standin.conf"

# The stand-in authority's rules unless a test says otherwise: every user may
# hold LUO sessions (a site's polkit rule could say so), nothing else.
DEFAULT_POLKIT_RULES = "org.kexec.khod1.manage-sessions * yes\n"


class PrivateBus:
    """A private system bus with the shipped policy, and a stand-in polkit
    authority (tests/vm/polkit-standin) answering from self.polkit_rules."""

    def __init__(self, builddir: Path = None, polkit=True):
        self.dir = Path(tempfile.mkdtemp(prefix="khod-bus-"))
        self.dir.chmod(0o755)  # callers with other uids (setpriv) must reach the socket
        self.socket = self.dir / "system_bus_socket"
        config = self.dir / "bus.conf"
        config.write_text(BUS_CONFIG.format(socket=self.socket, standin_policy=STANDIN_POLICY,
                                            shipped_policy=REPO / "src/khod/dbus/org.kexec.khod1.conf"))
        self.proc = subprocess.Popen(
            ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address"],
            stdout=subprocess.PIPE, text=True)
        self.address = self.proc.stdout.readline().strip()
        self.proc.stdout.close()
        if not self.address:
            raise RuntimeError("dbus-daemon did not start")
        self.env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.address)
        self.polkit_rules = self.dir / "polkit-rules"
        self.polkit_log = self.dir / "polkit-log"
        self.polkit_rules.write_text(DEFAULT_POLKIT_RULES)
        self.polkit = None
        if polkit:
            self.start_polkit(builddir or Path(os.environ.get("KHOD_BUILDDIR", REPO / "build")))

    def start_polkit(self, builddir: Path, delay_ms=0):
        self.stop_polkit()
        self.polkit = subprocess.Popen(
            [str(builddir / "tests/polkit-standin"), "--rules", str(self.polkit_rules), "--log", str(self.polkit_log),
             "--delay-ms", str(delay_ms)],
            stdout=subprocess.PIPE, text=True, env=self.env)
        if self.polkit.stdout.readline().strip() != "ready":
            raise RuntimeError("polkit-standin did not start")
        self.polkit.stdout.close()

    def stop_polkit(self):
        if self.polkit:
            self.polkit.terminate()
            self.polkit.wait(timeout=10)
            self.polkit = None

    def polkit_queries(self):
        return self.polkit_log.read_text().splitlines() if self.polkit_log.exists() else []

    def close(self):
        self.stop_polkit()
        self.proc.terminate()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


class Khod:
    """khod on a private bus, over a writable copy of a fixture."""

    def __init__(self, bus: PrivateBus, builddir: Path, fixture: str, sysroot: Path = None):
        self.bus = bus
        self.builddir = builddir
        self.dir = Path(tempfile.mkdtemp(prefix="khod-root-"))
        self.sysroot = sysroot or self.dir / "sysroot"
        if sysroot is None:
            shutil.copytree(FIXTURES / fixture, self.sysroot, symlinks=True)
        self.runtime = self.dir / "run"
        self.proc = None
        self.log = self.dir / "khod.log"

    def arguments(self):
        """khod's command line, past the program."""
        return ["--sysroot", str(self.sysroot), "--runtime-dir", str(self.runtime), "--fake-kexec"]

    def start(self, timeout=10):
        notify_path = self.dir / "notify"
        if notify_path.exists():
            notify_path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(notify_path))
        sock.settimeout(timeout)
        env = dict(self.bus.env, NOTIFY_SOCKET=str(notify_path), SYSTEMD_LOG_TARGET="console")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([str(self.builddir / "src/khod/khod"), *self.arguments()],
                                         env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                msg = sock.recv(4096).decode()
                if "READY=1" in msg.split("\n"):
                    return
            raise TimeoutError
        except (TimeoutError, socket.timeout):
            self.proc.kill()
            raise RuntimeError(f"khod did not signal READY=1; log:\n{self.log.read_text()}") from None
        finally:
            sock.close()

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
        return self.proc.returncode

    def close(self):
        self.kill(signal.SIGTERM)
        shutil.rmtree(self.dir, ignore_errors=True)

    def khoctl(self, *args, check=False, timeout=30):
        return subprocess.run([str(self.builddir / "src/khoctl/khoctl"), *args], env=self.bus.env,
                              capture_output=True, text=True, timeout=timeout, check=check)

    def busctl(self, *args):
        return subprocess.run(["busctl", f"--address={self.bus.address}", *args],
                              capture_output=True, text=True, timeout=30)

    def dbus_send(self, interface, method, *args):
        """A method call with dbus-send, which (unlike busctl) prints the error's name."""
        return subprocess.run(["dbus-send", f"--bus={self.bus.address}", "--print-reply",
                               "--dest=org.kexec.khod1", "/org/kexec/khod1", f"{interface}.{method}", *args],
                              capture_output=True, text=True, timeout=30)

    def prop(self, name):
        r = self.busctl("get-property", "org.kexec.khod1", "/org/kexec/khod1",
                        "org.kexec.khod1.Handover", name)
        if r.returncode != 0:
            raise RuntimeError(f"busctl get-property {name}: {r.stderr}")
        return r.stdout.strip()

    def read(self, rel):
        return (self.sysroot / rel).read_text()

    def write(self, rel, text):
        (self.sysroot / rel).write_text(text)


class KhodBusTest(unittest.TestCase):
    """One private bus per test class; each test starts its own khod as self.khod."""

    @classmethod
    def setUpClass(cls):
        cls.bus = PrivateBus()

    @classmethod
    def tearDownClass(cls):
        cls.bus.close()

    def khoctl_json(self, *args):
        """Runs `khoctl --json ARGS`; returns (exit status, parsed JSON), failing the test on no JSON."""
        r = self.khod.khoctl("--json", *args)
        try:
            doc = json.loads(r.stdout)
        except json.JSONDecodeError:
            self.fail(f"khoctl {' '.join(args)} printed no JSON (rc {r.returncode}): {r.stdout!r} {r.stderr!r}")
        return r.returncode, doc
