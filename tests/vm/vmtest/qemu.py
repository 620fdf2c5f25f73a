"""One QEMU process and the two channels the host has into it: the serial
console (markers, panics, typing) and QMP (hotplug, events)."""

from __future__ import annotations

import codecs
import dataclasses
import json
import re
import select
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

from .errors import VMError, VMExited, VMTimeout
from .host import find_qemu
from .report import TAIL_LINES, tail_lines


#: Every line the guest infrastructure prints for the host looks like this.
MARKER_PREFIX = "KHOD-VM:"
MARKER_RE = re.compile(r"KHOD-VM: (\S+)(?: (.*?))?\s*$")
PANIC_RE = re.compile(r"Kernel panic - not syncing.*")

DEFAULT_MEMORY = "1G,slots=4,maxmem=4G"
DEFAULT_SMP = "2,sockets=4,cores=1,threads=1,maxcpus=4"
#: Always on the kernel command line, before the scenario's words.
BASE_APPEND = "console=ttyS0 panic=-1"

DEFAULT_BOOT_TIMEOUT = 90.0


@dataclasses.dataclass
class Marker:
    boot: int          # 1 for the first boot, 2 after the first kexec/crash, ...
    stage: str         # khod.stage= of that boot ("1" when absent)
    word: str
    payload: str
    line: int          # console line number (1-based)

    def __str__(self):
        return f"KHOD-VM: {self.word} {self.payload}".rstrip()


class Console:
    """Incremental reader of a stream socket carrying a serial console."""

    def __init__(self, sock: socket.socket, log_path: Path, on_line: Callable[[str], None]):
        self.sock = sock
        self.sock.setblocking(False)
        self.log = open(log_path, "w", encoding="utf-8", errors="replace")
        self.on_line = on_line
        self.text = ""           # everything so far, \r removed
        self.eof = False
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""

    def fileno(self):
        return self.sock.fileno()

    def pump(self, timeout: float) -> bool:
        """Waits up to `timeout` s for output and consumes what arrived. True if any."""
        if self.eof:
            return False
        r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not r:
            return False
        got = False
        while True:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                break
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                self._finish()
                break
            got = True
            self._feed(self._decoder.decode(chunk))
        return got

    def _feed(self, s: str):
        s = s.replace("\r", "")
        if not s:
            return
        self.text += s
        self.log.write(s)
        self.log.flush()
        buf = self._partial + s
        *lines, self._partial = buf.split("\n")
        for line in lines:
            self.on_line(line)

    def _finish(self):
        self._feed(self._decoder.decode(b"", final=True))
        if self._partial:
            self.on_line(self._partial)
            self._partial = ""
        self.eof = True

    def send(self, data: str):
        self.sock.setblocking(True)
        try:
            self.sock.sendall(data.encode())
        finally:
            self.sock.setblocking(False)

    def close(self):
        try:
            self.sock.close()
        finally:
            self.log.close()


class QMPError(VMError):
    pass


class QMP:
    """Minimal QEMU Machine Protocol client over a unix socket."""

    def __init__(self, sock: socket.socket, timeout: float = 15.0):
        """Takes a socket connected to QEMU's QMP monitor; negotiates capabilities."""
        self.sock = sock
        self.sock.setblocking(False)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []
        greeting = self._read(time.monotonic() + timeout)
        if "QMP" not in greeting:
            raise QMPError(f"unexpected QMP greeting: {greeting}")
        self.greeting = greeting
        self.execute("qmp_capabilities", timeout=timeout)

    def _read(self, deadline: float) -> dict:
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise VMTimeout("no answer on QMP")
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                continue
            if not chunk:
                raise VMExited("QMP connection closed (QEMU exited?)")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        line = line.strip()
        if not line:
            return self._read(deadline)
        return json.loads(line)

    def execute(self, command: str, arguments: Optional[dict] = None, timeout: float = 30.0):
        """Runs a command; returns its "return" value, raises QMPError on "error"."""
        self._id += 1
        msg = {"execute": command, "id": self._id}
        if arguments:
            msg["arguments"] = arguments
        self.sock.setblocking(True)
        try:
            self.sock.sendall(json.dumps(msg).encode() + b"\n")
        finally:
            self.sock.setblocking(False)
        deadline = time.monotonic() + timeout
        while True:
            resp = self._read(deadline)
            if "event" in resp:
                self.events.append(resp)
                continue
            if resp.get("id") != self._id:
                continue
            if "error" in resp:
                err = resp["error"]
                raise QMPError(f"QMP {command} failed: {err.get('class')}: {err.get('desc')}")
            return resp.get("return")

    def wait_event(self, name: str, timeout: float = 30.0) -> dict:
        for i, ev in enumerate(self.events):
            if ev["event"] == name:
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            resp = self._read(deadline)
            if resp.get("event") == name:
                return resp
            if "event" in resp:
                self.events.append(resp)

    def close(self):
        self.sock.close()


class VM:
    """One QEMU process: console on a socket, vm-put port in a file, QMP socket.

    Boot-time bound: each boot (the first one, and each later one announced by
    a `KHOD-VM: boot` marker after kexec or a crash) gets `boot_timeout`
    seconds; the whole run gets `total_timeout`. Anything waiting past either
    raises VMTimeout.
    """

    def __init__(self, *, kernel: Path, initrd: Optional[Path], workdir: Path, append: str = "",
                 memory: str = DEFAULT_MEMORY, smp: str = DEFAULT_SMP,
                 numa: Iterable[str] = (), qemu_args: Iterable[str] = (),
                 boot_timeout: float = DEFAULT_BOOT_TIMEOUT, total_timeout: Optional[float] = None):
        self.kernel = Path(kernel)
        self.initrd = Path(initrd) if initrd else None
        self.workdir = Path(workdir)
        self.append = " ".join([BASE_APPEND, append]).strip()
        self.memory = memory
        self.smp = smp
        self.numa = list(numa)
        self.qemu_args = list(qemu_args)
        self.boot_timeout = boot_timeout
        self.total_timeout = total_timeout or boot_timeout * 3
        self.sockdir = self._socket_dir()
        self.console_sock = self.sockdir / "console.sock"
        self.qmp_sock = self.sockdir / "qmp.sock"
        self.console_log = self.workdir / "console.log"
        self.serial1_log = self.workdir / "serial1.log"
        self.qemu_log = self.workdir / "qemu.log"
        self.proc: Optional[subprocess.Popen] = None
        self.console: Optional[Console] = None
        self.qmp: Optional[QMP] = None
        self.markers: list[Marker] = []
        self.panics: list[str] = []
        self.boot = 0
        self.stage = "?"
        self.killed = False
        self._cursor = 0
        self._marker_cursor = 0
        self._seen_boot = False
        self._lineno = 0
        self._start = None
        self._hard_deadline = None
        self._boot_deadline = None
        self._dimms = 0

    def _socket_dir(self) -> Path:
        # unix socket paths are limited to 107 bytes
        if len(str(self.workdir / "console.sock")) < 100:
            return self.workdir
        self._own_sockdir = Path(tempfile.mkdtemp(prefix="khodvm-"))
        return self._own_sockdir

    # -- lifecycle
    def command(self) -> list[str]:
        cmd = [find_qemu(),
               "-accel", "tcg", "-cpu", "max", "-machine", "q35",
               "-m", self.memory, "-smp", self.smp]
        for n in self.numa:
            cmd += ["-numa", n]
        cmd += ["-nodefaults", "-display", "none", "-no-reboot", "-S",
                "-kernel", str(self.kernel)]
        if self.initrd:
            cmd += ["-initrd", str(self.initrd)]
        cmd += ["-append", self.append,
                "-chardev", f"socket,id=con0,path={self.console_sock},server=on,wait=off",
                "-serial", "chardev:con0",
                "-chardev", f"file,id=put0,path={self.serial1_log}",
                "-serial", "chardev:put0",
                "-chardev", f"socket,id=qmp0,path={self.qmp_sock},server=on,wait=off",
                "-mon", "chardev=qmp0,mode=control"]
        cmd += self.qemu_args
        return cmd

    def start(self):
        self.workdir.mkdir(parents=True, exist_ok=True)
        for p in (self.console_sock, self.qmp_sock):
            if p.exists():
                p.unlink()
        cmd = self.command()
        (self.workdir / "qemu.cmd").write_text(shlex.join(cmd) + "\n")
        self._qemu_log_f = open(self.qemu_log, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._qemu_log_f,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        con = self._connect(self.console_sock)
        self.console = Console(con, self.console_log, self._on_line)
        self.qmp = QMP(self._connect(self.qmp_sock))
        self._start = time.monotonic()
        self._hard_deadline = self._start + self.total_timeout
        self._boot_deadline = self._start + self.boot_timeout
        self.boot = 1
        self.qmp.execute("cont")

    def _connect(self, path: Path, timeout: float = 20.0) -> socket.socket:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise VMExited(f"QEMU exited at startup (status {self.proc.returncode}): "
                               f"{self.qemu_output().strip()}")
            if path.exists():
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(str(path))
                    return s
                except (ConnectionRefusedError, FileNotFoundError):
                    s.close()
            if time.monotonic() > deadline:
                raise VMError(f"QEMU did not create {path} within {timeout}s")
            time.sleep(0.05)

    def qemu_output(self) -> str:
        try:
            return self.qemu_log.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.killed = True
            self.proc.kill()
            self.proc.wait()

    def close(self):
        self.kill()
        if self.console:
            # drain what QEMU wrote before it died
            while self.console.pump(0):
                pass
            self.console.close()
        if self.qmp:
            self.qmp.close()
        if getattr(self, "_qemu_log_f", None):
            self._qemu_log_f.close()
        own = getattr(self, "_own_sockdir", None)
        if own:
            shutil.rmtree(own, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # -- console
    def _on_line(self, line: str):
        self._lineno += 1
        m = MARKER_RE.search(line)
        if m:
            word, payload = m.group(1), m.group(2) or ""
            if word == "boot":
                if self._seen_boot:       # not the first boot: kexec or crash kernel
                    self.boot += 1
                self._seen_boot = True
                self.stage = payload.split()[0] if payload else "?"
                self._boot_deadline = time.monotonic() + self.boot_timeout
            self.markers.append(Marker(self.boot, self.stage, word, payload, self._lineno))
        p = PANIC_RE.search(line)
        if p:
            self.panics.append(p.group(0))

    def _deadline(self, user_deadline: Optional[float]) -> float:
        # recomputed on every wait step: a new boot moves the boot deadline
        d = min(self._hard_deadline, self._boot_deadline)
        return d if user_deadline is None else min(d, user_deadline)

    def _timeout_reason(self, what: str, timeout: Optional[float]) -> str:
        now = time.monotonic()
        if now >= self._hard_deadline:
            return f"{what}: run exceeded its total limit of {self.total_timeout:.0f}s"
        if now >= self._boot_deadline:
            return (f"{what}: boot {self.boot} (stage {self.stage}) did not finish within "
                    f"{self.boot_timeout:.0f}s")
        return f"{what}: not seen within {timeout:.0f}s"

    def _wait(self, found: Callable[[], object], what: str, timeout: Optional[float]):
        user_deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            hit = found()
            if hit is not None:
                return hit
            if self.console.eof:
                raise VMExited(f"{what}: the VM exited (QEMU status {self._qemu_status()})")
            left = self._deadline(user_deadline) - time.monotonic()
            if left <= 0:
                raise VMTimeout(self._timeout_reason(what, timeout))
            self.console.pump(min(left, 1.0))
            self._check_alive()

    def wait_for(self, regex, timeout: Optional[float] = None) -> re.Match:
        """Waits for `regex` in the console output after the previous wait_for match
        (re.MULTILINE). The console spans all boots of the VM (kexec, crash kernel)."""
        rx = re.compile(regex, re.MULTILINE) if isinstance(regex, str) else regex

        def found():
            m = rx.search(self.console.text, self._cursor)
            if m:
                self._cursor = m.end()
            return m
        return self._wait(found, f"waiting for /{rx.pattern}/", timeout)

    def wait_marker(self, word: str, timeout: Optional[float] = None) -> Marker:
        """Waits for the next `KHOD-VM: <word> ...` line not yet returned by
        wait_marker (its own cursor over the marker list); returns it."""
        def found():
            for i in range(self._marker_cursor, len(self.markers)):
                if self.markers[i].word == word:
                    self._marker_cursor = i + 1
                    return self.markers[i]
            return None
        return self._wait(found, f"waiting for 'KHOD-VM: {word}'", timeout)

    def wait_exit(self, timeout: Optional[float] = None) -> int:
        """Reads the console until QEMU exits (guest powered off); returns its status."""
        user_deadline = None if timeout is None else time.monotonic() + timeout
        while not self.console.eof:
            left = self._deadline(user_deadline) - time.monotonic()
            if left <= 0:
                raise VMTimeout(self._timeout_reason("waiting for the VM to power off", timeout))
            self.console.pump(min(left, 1.0))
            if self.proc.poll() is not None:
                while self.console.pump(0.2):
                    pass
                break
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            raise VMError("QEMU closed the console but did not exit") from None

    def _check_alive(self):
        if self.proc.poll() is not None and not self.console.eof:
            while self.console.pump(0.2):
                pass

    def _qemu_status(self):
        try:
            return self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "still running"

    def send(self, text: str):
        """Types `text` on the guest console (ttyS0)."""
        self.console.send(text)

    def tail(self, n: int = TAIL_LINES) -> str:
        return tail_lines(self.console.text if self.console else "", n)

    # -- QMP conveniences for scenarios
    def hotplug_memory(self, size: int, node: Optional[int] = None) -> str:
        """Hot-adds a pc-dimm of `size` bytes (optionally on NUMA node); returns its id."""
        self._dimms += 1
        mem_id, dimm_id = f"hpmem{self._dimms}", f"hpdimm{self._dimms}"
        self.qmp.execute("object-add", {"qom-type": "memory-backend-ram", "id": mem_id,
                                        "size": int(size)})
        args = {"driver": "pc-dimm", "id": dimm_id, "memdev": mem_id}
        if node is not None:
            args["node"] = int(node)
        self.qmp.execute("device_add", args)
        return dimm_id

    def elapsed(self) -> float:
        return time.monotonic() - self._start if self._start else 0.0
