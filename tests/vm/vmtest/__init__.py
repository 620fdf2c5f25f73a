#!/usr/bin/env python3
"""Real-kernel VM tests for khod.

Boots the shared test kernel (Linux with KHO, LUO, kdump and hotplug) in QEMU
(TCG; KVM does not work with it) with a generated busybox initramfs, runs a
scenario's guest script in it, collects what the guest sends back and lets the
scenario judge the result.

    vmtest.py [--builddir DIR] [--kernel PATH] [--keep] [--json-summary FILE] [SCENARIO ...]
    vmtest.py capture [--kexec] --append "<cmdline words>" --paths FILE --out DIR
    vmtest.py list

Python 3 standard library only. See tests/vm/README.md.
"""

from __future__ import annotations

import argparse
import codecs
import dataclasses
import gzip
import hashlib
import importlib
import io
import json
import os
import re
import select
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable, Iterable, Optional

# this package lives in tests/vm/vmtest/; HERE is tests/vm
HERE = Path(__file__).resolve().parent.parent
REPO = HERE.parent.parent
SCENARIO_DIR = HERE / "scenarios"

#: What a guest needs to run khod on its own system bus (start_khod in
#: guest-khod.sh): the bus daemon, busctl, the bus config and khod's policy.
KHOD_BUS_HOST_BINARIES = ["/usr/bin/dbus-daemon", "/usr/bin/busctl"]
KHOD_BUS_FILES = {
    str(HERE / "files/dbus-system.conf"): "/etc/khod-vm/dbus-system.conf",
    str(HERE / "guest-khod.sh"): "/etc/khod-vm/guest-khod.sh",
    str(REPO / "src/khod/dbus/org.kexec.khod1.conf"): "/usr/share/dbus-1/system.d/org.kexec.khod1.conf",
}

#: Every line the guest infrastructure prints for the host looks like this.
MARKER_PREFIX = "KHOD-VM:"
MARKER_RE = re.compile(r"KHOD-VM: (\S+)(?: (.*?))?\s*$")
PANIC_RE = re.compile(r"Kernel panic - not syncing.*")

DEFAULT_MEMORY = "1G,slots=4,maxmem=4G"
DEFAULT_SMP = "2,sockets=4,cores=1,threads=1,maxcpus=4"
#: Always on the kernel command line, before the scenario's words.
BASE_APPEND = "console=ttyS0 panic=-1"
DEFAULT_BOOT_TIMEOUT = 90.0
TAIL_LINES = 40

#: Product binaries from the meson build dir, installed as /usr/bin/<name>.
PRODUCT_BINARIES = {
    "khoctl": "src/khoctl/khoctl",
    "khod": "src/khod/khod",
    "kexec-load-probe": "tests/kexec-load-probe",  # test-only (tests/vm/kexec-load-probe.cpp)
}

#: Directories the dynamic loader searches without an ld.so.cache (Debian x86_64).
LOADER_DEFAULT_DIRS = {
    "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib",
    "/lib64", "/usr/lib64",
}


# --------------------------------------------------------------------------
# errors and small helpers


class HarnessError(Exception):
    """The test could not be run as asked (missing QEMU, kernel, binary, ...)."""


class VMError(Exception):
    """The VM misbehaved: it hung, died early, or QEMU failed."""


class VMTimeout(VMError):
    pass


class VMExited(VMError):
    pass


class CheckFailed(AssertionError):
    """A scenario's expectation did not hold."""


def expect(cond, message: str):
    """Like assert, but never compiled away and always with a message."""
    if not cond:
        raise CheckFailed(message)


def expect_eq(actual, expected, what: str):
    if actual != expected:
        raise CheckFailed(f"{what}: expected {expected!r}, got {actual!r}")


def dig(doc, path: str):
    """doc['a']['b'][0] as dig(doc, 'a.b.0'), failing with the path that is missing."""
    cur = doc
    done = []
    for part in path.split("."):
        try:
            if isinstance(cur, list):
                cur = cur[int(part)]
            else:
                cur = cur[part]
        except (KeyError, IndexError, ValueError, TypeError):
            where = ".".join(done) or "<top>"
            have = sorted(cur) if isinstance(cur, dict) else type(cur).__name__
            raise CheckFailed(f"JSON has no {path!r} (stopped at {where!r}; it has {have})") from None
        done.append(part)
    return cur


def log(msg: str):
    print(msg, flush=True)


def find_qemu() -> str:
    qemu = os.environ.get("KHOD_VM_QEMU", "qemu-system-x86_64")
    path = shutil.which(qemu)
    if not path:
        raise HarnessError(f"QEMU not found ({qemu!r} is not on PATH; run tools/setup, "
                           "or set KHOD_VM_QEMU)")
    return path


def default_kernel() -> Path:
    env = os.environ.get("KHOD_VM_KERNEL")
    if env:
        return Path(env)
    return Path(os.path.normpath(REPO / ".." / "shared" / "vm" / "bzImage"))


def require_kernel(path: Optional[Path]) -> Path:
    kernel = Path(path) if path else default_kernel()
    if not kernel.is_file():
        raise HarnessError(f"kernel not found: {kernel} (expected shared/vm/bzImage beside the "
                           "repo; set KHOD_VM_KERNEL or pass --kernel)")
    return kernel.resolve()


def timeout_scale() -> float:
    """KHOD_VM_TIMEOUT_SCALE stretches every VM time limit (slow CI machines)."""
    try:
        scale = float(os.environ.get("KHOD_VM_TIMEOUT_SCALE", "1"))
    except ValueError:
        raise HarnessError("KHOD_VM_TIMEOUT_SCALE must be a number") from None
    return scale if scale > 0 else 1.0


def tail_lines(text: str, n: int = TAIL_LINES) -> str:
    lines = text.splitlines()
    return "\n".join(lines[-n:])


# --------------------------------------------------------------------------
# initramfs


GUEST_INIT = r"""#!/bin/busybox sh
# /init of the khod VM test initramfs (generated by tests/vm/vmtest.py).
/bin/busybox --install -s /bin
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb
@LD_LIBRARY_PATH@
mkdir -p /proc /sys /dev /tmp /run /root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
stage=1
for w in $(cat /proc/cmdline); do
    case $w in khod.stage=*) stage=${w#khod.stage=} ;; esac
done
export KHOD_VM_STAGE=$stage
# ttyS1 carries vm-put data: no \n -> \r\n translation, no echo
stty -F /dev/ttyS1 raw -echo 2>/dev/null
echo "KHOD-VM: boot $stage $(uname -r)"
sh /scenario.sh "$stage"
rc=$?
echo "KHOD-VM: exit $rc"
sync
poweroff -f
echo "KHOD-VM: poweroff-failed"
while :; do sleep 3600; done
"""

GUEST_VM_PUT = r"""#!/bin/sh
# vm-put <guest-file> [<name>]: send a file to the host over /dev/ttyS1.
# The host decodes it into the run's output dir as <name>.
f=$1
name=${2:-$(basename "$1")}
if [ -z "$f" ] || [ ! -f "$f" ]; then
    echo "vm-put: $f: not a regular file" >&2
    exit 1
fi
case $name in
    ''|.*|*[!A-Za-z0-9._-]*) echo "vm-put: bad name '$name' (use [A-Za-z0-9._-], no leading dot)" >&2; exit 2 ;;
esac
size=$(wc -c < "$f")
sum=$(sha256sum < "$f")
sum=${sum%% *}
{
    echo "KHOD-PUT-BEGIN $name $size $sum"
    base64 "$f"
    echo "KHOD-PUT-END $name"
} > /dev/ttyS1 || { echo "vm-put: write to /dev/ttyS1 failed" >&2; exit 1; }
echo "KHOD-VM: put $name $size $sum"
"""

GUEST_VM_MARKER = r"""#!/bin/sh
# vm-marker <word> [payload...]: print a marker line for the host.
w=$1; shift
echo "KHOD-VM: $w $*"
"""

GUEST_VM_KEXEC_SELF = r"""#!/bin/sh
# vm-kexec-self STAGE: kexec_file_load this boot's kernel and initramfs (/boot,
# scenario INCLUDE_BOOT) with the same command line plus khod.stage=STAGE, and
# boot it. Returns only on failure.
if [ ! -f /boot/bzImage ] || [ ! -f /boot/initrd.gz ]; then
    echo "vm-kexec-self: no /boot in this initramfs (scenario INCLUDE_BOOT is off)" >&2
    exit 1
fi
kexec -s -l /boot/bzImage --initrd=/boot/initrd.gz --append="$(cat /proc/cmdline) khod.stage=$1" || exit 1
vm-marker kexec
kexec -e
echo "kexec -e returned"
exit 1
"""

GUEST_VM_SELF_INITRD = r"""#!/bin/sh
# vm-self-initrd [OUT]: write an initrd identical to the one this system booted
# from, /boot included (for chained kexec). /boot/initrd.gz alone lacks /boot.
out=${1:-/tmp/initrd-self.gz}
if [ ! -f /boot/initrd.gz ] || [ ! -f /boot/bzImage ]; then
    echo "vm-self-initrd: no /boot in this initramfs (scenario INCLUDE_BOOT is off)" >&2
    exit 1
fi
cd / || exit 1
printf 'boot\nboot/bzImage\nboot/initrd.gz\n' | cpio -o -H newc 2>/dev/null | gzip > /tmp/.boot.cpio.gz || exit 1
cat /boot/initrd.gz /tmp/.boot.cpio.gz > "$out" || exit 1
rm -f /tmp/.boot.cpio.gz
echo "$out"
"""


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def shared_libraries(binary: Path) -> list[str]:
    """Absolute paths of the shared objects `binary` needs, the loader included."""
    proc = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
    both = proc.stdout + proc.stderr
    if "not a dynamic executable" in both or "statically linked" in both:
        return []
    if proc.returncode != 0:
        raise HarnessError(f"ldd {binary} failed: {both.strip()}")
    libs = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if "=> not found" in line:
            raise HarnessError(f"{binary}: shared library {line.split()[0]} not found on the host")
        m = re.match(r"(\S+) => (/\S+) \(0x[0-9a-f]+\)$", line)
        if m:
            libs.append(m.group(2))
            continue
        m = re.match(r"(/\S+) \(0x[0-9a-f]+\)$", line)
        if m:                      # the dynamic loader, at its absolute path
            libs.append(m.group(1))
    return libs


class Initramfs:
    """Collects files for a guest root and packs them (cpio newc + gzip).

    Paths are guest-absolute. Host files are copied (symlinks followed) when
    the archive is built.
    """

    def __init__(self):
        # guest path -> ("host", Path, mode[, strip]) | ("data", bytes, mode) | ("link", target)
        self._files: dict[str, tuple] = {}
        self.lib_dirs: set[str] = set()

    # -- adding content
    def add_file(self, host: Path, guest: str, mode: Optional[int] = None):
        host = Path(host)
        if not host.exists():
            raise HarnessError(f"file for the initramfs not found: {host}")
        self._files[self._norm(guest)] = ("host", host, mode)

    def add_tree(self, host: Path, guest: str):
        host = Path(host)
        if host.is_dir():
            for entry in sorted(host.iterdir()):
                self.add_tree(entry, f"{guest.rstrip('/')}/{entry.name}")
        else:
            self.add_file(host, guest)

    def add_data(self, guest: str, data, mode: int = 0o644):
        if isinstance(data, str):
            data = data.encode()
        self._files[self._norm(guest)] = ("data", data, mode)

    def add_symlink(self, guest: str, target: str):
        self._files[self._norm(guest)] = ("link", target)

    def add_binary(self, host: Path, guest: Optional[str] = None):
        """An ELF executable plus every shared library it needs (at the host's paths)."""
        host = Path(host)
        if not host.is_file():
            raise HarnessError(f"binary not found: {host}")
        if not is_elf(host):
            raise HarnessError(f"not an ELF file: {host}")
        self.add_file(host, guest or str(host), 0o755)
        # Debug info would triple khod's and khoctl's size, and the initramfs
        # must fit in the scratch areas for the KHO kexec scenarios.
        self._files[self._norm(guest or str(host))] += (True,)
        for lib in shared_libraries(host):
            self.add_file(Path(lib), lib, 0o755)
            self.lib_dirs.add(os.path.dirname(lib))

    def has(self, guest: str) -> bool:
        return self._norm(guest) in self._files

    @staticmethod
    def _norm(guest: str) -> str:
        p = os.path.normpath("/" + guest.lstrip("/"))
        if p == "/":
            raise HarnessError("cannot add the root directory as a file")
        return p

    # -- building
    def populate(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        for guest, spec in sorted(self._files.items()):
            dest = root / guest.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists() or dest.is_symlink():
                dest.unlink()
            if spec[0] == "link":
                os.symlink(spec[1], dest)
                continue
            if spec[0] == "host":
                if len(spec) > 3 and spec[3]:
                    subprocess.run(["objcopy", "--strip-debug", str(spec[1]), str(dest)], check=True)
                else:
                    shutil.copyfile(spec[1], dest)
                mode = spec[2]
                if mode is None:
                    mode = 0o755 if os.access(spec[1], os.X_OK) else 0o644
            else:
                dest.write_bytes(spec[1])
                mode = spec[2]
            os.chmod(dest, mode)

    def build(self, staging: Path, out: Path) -> bytes:
        """Lays the files out under `staging` (emptied first) and packs them into
        `out` (gzip'd newc cpio). Returns the archive's bytes."""
        root = staging
        if root.exists():
            shutil.rmtree(root)
        self.populate(root)
        data = pack_cpio_gz(root)
        out.write_bytes(data)
        return data


def pack_cpio_gz(root: Path) -> bytes:
    """`cpio -o -H newc` of the tree under root (owner root:root), gzip'd."""
    names = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        if rel != ".":
            names.append(rel)
        for fn in sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]):
            names.append(os.path.normpath(os.path.join(rel, fn)))
    listing = "".join(n + "\0" for n in names).encode()
    proc = subprocess.run(["cpio", "-o", "-H", "newc", "-0", "-R", "0:0", "--quiet"],
                          cwd=root, input=listing, capture_output=True)
    if proc.returncode != 0:
        raise HarnessError(f"cpio failed: {proc.stderr.decode(errors='replace').strip()}")
    return gzip.compress(proc.stdout, compresslevel=6, mtime=0)


# --------------------------------------------------------------------------
# console, QMP, VM


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

    def __init__(self, *, kernel: Path, initrd: Path, workdir: Path, append: str = "",
                 memory: str = DEFAULT_MEMORY, smp: str = DEFAULT_SMP,
                 numa: Iterable[str] = (), qemu_args: Iterable[str] = (),
                 boot_timeout: float = DEFAULT_BOOT_TIMEOUT, total_timeout: Optional[float] = None):
        self.kernel = Path(kernel)
        self.initrd = Path(initrd)
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
                "-kernel", str(self.kernel), "-initrd", str(self.initrd),
                "-append", self.append,
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


# --------------------------------------------------------------------------
# what the guest sent back


@dataclasses.dataclass
class Put:
    name: str
    size: int
    sha256: str
    path: Path


def decode_puts(serial_log: Path, outdir: Path) -> tuple[dict[str, Put], list[str]]:
    """Decodes vm-put frames from the ttyS1 log into outdir. Returns (puts, errors)."""
    puts: dict[str, Put] = {}
    errors: list[str] = []
    if not serial_log.exists():
        return puts, ["no ttyS1 log"]
    outdir.mkdir(parents=True, exist_ok=True)
    cur = None
    body: list[str] = []
    for raw in serial_log.read_bytes().split(b"\n"):
        line = raw.replace(b"\r", b"").decode("ascii", errors="replace").strip()
        if line.startswith("KHOD-PUT-BEGIN "):
            if cur:
                errors.append(f"{cur[0]}: transfer cut off (no end line)")
            parts = line.split()
            if len(parts) != 4 or not parts[2].isdigit():
                errors.append(f"bad vm-put header: {line!r}")
                cur = None
                continue
            cur = (parts[1], int(parts[2]), parts[3])
            body = []
        elif line.startswith("KHOD-PUT-END "):
            if not cur:
                errors.append(f"vm-put end without begin: {line!r}")
                continue
            name, size, sha = cur
            cur = None
            try:
                data = base64_decode("".join(body))
            except ValueError as e:
                errors.append(f"{name}: bad base64: {e}")
                continue
            if len(data) != size or hashlib.sha256(data).hexdigest() != sha:
                errors.append(f"{name}: corrupted in transfer (got {len(data)} bytes, "
                              f"expected {size})")
                continue
            if name in puts:
                errors.append(f"{name}: sent twice (vm-put names must be unique in a run)")
                continue
            if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", name):
                errors.append(f"bad vm-put name {name!r}")
                continue
            path = outdir / name
            path.write_bytes(data)
            puts[name] = Put(name, size, sha, path)
        elif cur is not None:
            body.append(line)
    if cur:
        errors.append(f"{cur[0]}: transfer cut off (no end line)")
    return puts, errors


def base64_decode(text: str) -> bytes:
    import binascii
    try:
        return binascii.a2b_base64(text.encode())
    except binascii.Error as e:
        raise ValueError(str(e)) from None


@dataclasses.dataclass
class Result:
    """What a scenario's check() gets."""
    name: str
    workdir: Path
    outdir: Path
    console: str
    markers: list[Marker]
    puts: dict[str, Put]
    put_errors: list[str]
    panics: list[str]
    boots: int
    qemu_status: Optional[int]
    seconds: float

    def tail(self, n: int = TAIL_LINES) -> str:
        return tail_lines(self.console, n)

    def markers_of(self, word: str, boot: Optional[int] = None) -> list[Marker]:
        return [m for m in self.markers if m.word == word and (boot is None or m.boot == boot)]

    def marker(self, word: str, boot: Optional[int] = None) -> Marker:
        """The single `word` marker (of `boot`, if given); fails if absent or repeated."""
        found = self.markers_of(word, boot)
        where = f" in boot {boot}" if boot else ""
        expect(found, f"guest never printed 'KHOD-VM: {word}'{where}")
        expect(len(found) == 1, f"'KHOD-VM: {word}' printed {len(found)} times{where}")
        return found[0]

    def exit_codes(self) -> list[tuple[int, str, int]]:
        out = []
        for m in self.markers_of("exit"):
            try:
                out.append((m.boot, m.stage, int(m.payload.split()[0])))
            except (ValueError, IndexError):
                out.append((m.boot, m.stage, -1))
        return out

    def file(self, name: str) -> bytes:
        if name not in self.puts:
            extra = f"; transfer errors: {'; '.join(self.put_errors)}" if self.put_errors else ""
            have = ", ".join(sorted(self.puts)) or "none"
            raise CheckFailed(f"guest did not send {name!r} (received: {have}){extra}")
        return self.puts[name].path.read_bytes()

    def text(self, name: str) -> str:
        return self.file(name).decode("utf-8", errors="replace")

    def json(self, name: str):
        data = self.text(name)
        try:
            return json.loads(data)
        except json.JSONDecodeError as e:
            raise CheckFailed(f"{name} is not valid JSON ({e}); it starts with: "
                              f"{data[:300]!r}") from None


# --------------------------------------------------------------------------
# scenarios


@dataclasses.dataclass
class Scenario:
    name: str
    module: object

    def attr(self, key, default=None):
        return getattr(self.module, key, default)

    @property
    def description(self) -> str:
        return self.attr("DESCRIPTION", "") or (self.module.__doc__ or "").strip().split("\n")[0]


def scenario_name(stem: str) -> str:
    return stem.replace("_", "-")


def discover_scenarios() -> dict[str, Path]:
    found = {}
    if SCENARIO_DIR.is_dir():
        for p in sorted(SCENARIO_DIR.glob("*.py")):
            if p.name.startswith("_"):
                continue
            found[scenario_name(p.stem)] = p
    return found


def load_scenario(name: str) -> Scenario:
    name = scenario_name(name)
    available = discover_scenarios()
    if name not in available:
        raise HarnessError(f"unknown scenario {name!r} (have: {', '.join(available) or 'none'})")
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    module = importlib.import_module(f"scenarios.{available[name].stem}")
    for key in ("GUEST_SCRIPT", "check"):
        if not hasattr(module, key):
            raise HarnessError(f"scenario {name} ({available[name]}) lacks {key}")
    return Scenario(name, module)


def product_binary(builddir: Optional[Path], name: str) -> Path:
    if name not in PRODUCT_BINARIES:
        raise HarnessError(f"unknown product binary {name!r} (known: {', '.join(PRODUCT_BINARIES)})")
    if builddir is None:
        raise HarnessError(f"{name} needed but no --builddir given")
    path = Path(builddir) / PRODUCT_BINARIES[name]
    if not path.is_file():
        raise HarnessError(f"{name} not built: {path} does not exist (build with meson/ninja "
                           f"and pass the build dir as --builddir)")
    return path


def make_initramfs(*, kernel: Path, workdir: Path, guest_script: str,
                   builddir: Optional[Path] = None, binaries: Iterable[str] = (),
                   host_binaries: Iterable[str] = (), files: Optional[dict] = None,
                   include_boot: bool = False) -> Path:
    """Builds <workdir>/initrd.gz for a guest script; returns its path."""
    ir = Initramfs()
    busybox = shutil.which("busybox") or "/usr/bin/busybox"
    if not Path(busybox).is_file():
        raise HarnessError("busybox not found (install busybox-static)")
    if shared_libraries(Path(busybox)):
        raise HarnessError(f"{busybox} is dynamically linked; install busybox-static")
    ir.add_file(Path(busybox), "/bin/busybox", 0o755)
    ir.add_symlink("/bin/sh", "busybox")
    for name in binaries:
        ir.add_binary(product_binary(builddir, name), f"/usr/bin/{name}")
    for hb in host_binaries:
        ir.add_binary(Path(hb), str(hb))
    for host, guest in (files or {}).items():
        ir.add_tree(Path(host), guest)
    ir.add_data("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
    ir.add_data("/etc/group", "root:x:0:\n")
    extra_dirs = sorted(d for d in ir.lib_dirs if d not in LOADER_DEFAULT_DIRS)
    ld_line = f"export LD_LIBRARY_PATH={':'.join(extra_dirs)}" if extra_dirs else ""
    ir.add_data("/init", GUEST_INIT.replace("@LD_LIBRARY_PATH@", ld_line), 0o755)
    ir.add_data("/scenario.sh", "#!/bin/sh\n# scenario guest script; $1 = boot stage\n"
                + guest_script.lstrip("\n"), 0o755)
    ir.add_data("/usr/bin/vm-put", GUEST_VM_PUT, 0o755)
    ir.add_data("/usr/bin/vm-marker", GUEST_VM_MARKER, 0o755)
    ir.add_data("/usr/bin/vm-self-initrd", GUEST_VM_SELF_INITRD, 0o755)
    ir.add_data("/usr/bin/vm-kexec-self", GUEST_VM_KEXEC_SELF, 0o755)
    out = workdir / "initrd.gz"
    base = ir.build(workdir / "initramfs", out)
    if include_boot:
        # A second archive holding the first one and the kernel, appended to it:
        # the kernel unpacks concatenated (compressed) cpio archives in order.
        boot = Initramfs()
        boot.add_file(kernel, "/boot/bzImage", 0o644)
        boot.add_data("/boot/initrd.gz", base)
        boot_root = workdir / "initramfs-boot"
        if boot_root.exists():
            shutil.rmtree(boot_root)
        boot.populate(boot_root)
        out.write_bytes(base + pack_cpio_gz(boot_root))
    return out


@dataclasses.dataclass
class Outcome:
    name: str
    ok: bool
    seconds: float
    reason: str = ""
    details: str = ""
    workdir: Optional[Path] = None


def run_guest(*, name: str, workdir: Path, kernel: Path, append: str, guest_script: str,
              builddir: Optional[Path] = None, binaries=(), host_binaries=(), files=None,
              include_boot=False, memory=DEFAULT_MEMORY, smp=DEFAULT_SMP, numa=(),
              qemu_args=(), boot_timeout=DEFAULT_BOOT_TIMEOUT, total_timeout=None,
              host: Optional[Callable[[VM], None]] = None) -> tuple[Result, Optional[BaseException], str]:
    """Builds the initramfs, boots, drives and collects. Never raises for VM trouble:
    returns (result, error, tail) where error is what went wrong while running."""
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    initrd = make_initramfs(kernel=kernel, workdir=workdir, guest_script=guest_script,
                            builddir=builddir, binaries=binaries, host_binaries=host_binaries,
                            files=files, include_boot=include_boot)
    vm = VM(kernel=kernel, initrd=initrd, workdir=workdir, append=append, memory=memory,
            smp=smp, numa=numa, qemu_args=qemu_args, boot_timeout=boot_timeout,
            total_timeout=total_timeout)
    error = None
    status = None
    with vm:
        try:
            vm.start()
            if host:
                host(vm)
            status = vm.wait_exit()
        except BaseException as e:          # noqa: BLE001 - reported by the caller
            if isinstance(e, KeyboardInterrupt):
                raise
            error = e
        finally:
            vm.kill()
    console = vm.console.text if vm.console else ""
    puts, put_errors = decode_puts(vm.serial1_log, workdir / "out")
    result = Result(name=name, workdir=workdir, outdir=workdir / "out", console=console,
                    markers=list(vm.markers), puts=puts, put_errors=put_errors,
                    panics=list(vm.panics), boots=vm.boot, qemu_status=status,
                    seconds=time.monotonic() - t0)
    tail = tail_lines(console)
    if not console.strip():
        q = vm.qemu_output().strip()
        tail = f"(no console output)\nQEMU said:\n{q}" if q else "(no console output)"
    return result, error, tail


def generic_checks(result: Result, boots: Optional[int], expect_exit: Optional[int]):
    """What every run must satisfy before the scenario's own check()."""
    if result.panics and not result.markers_of("exit", result.boots):
        raise CheckFailed(f"kernel panic in boot {result.boots}: {result.panics[-1]}")
    expect(result.markers_of("boot"), "the guest never reached /init (no 'KHOD-VM: boot' line)")
    if boots is not None:
        expect(result.boots == boots, f"expected {boots} boot(s), saw {result.boots}")
    exits = [e for e in result.exit_codes() if e[0] == result.boots]
    expect(exits, f"boot {result.boots} never finished its script (no 'KHOD-VM: exit' line)")
    if expect_exit is not None:
        _, stage, rc = exits[-1]
        expect(rc == expect_exit,
               f"guest script of stage {stage} exited with {rc}, expected {expect_exit}")
    expect(not result.put_errors, "vm-put transfer problems: " + "; ".join(result.put_errors))


def describe_error(e: BaseException) -> tuple[str, str]:
    """(one-line reason, extra details) for a failure."""
    if isinstance(e, (CheckFailed, HarnessError, VMError)):
        return str(e), ""
    if isinstance(e, AssertionError):
        return f"assertion failed: {e}" if str(e) else "assertion failed", traceback.format_exc()
    return f"{type(e).__name__}: {e}", "".join(traceback.format_exception(e))


def run_scenario(sc: Scenario, *, kernel: Optional[Path], builddir: Optional[Path],
                 root: Path) -> Outcome:
    t0 = time.monotonic()
    workdir = root / sc.name
    tail = ""
    try:
        k = require_kernel(kernel)
        find_qemu()
        a = sc.attr
        boots = a("BOOTS", 1)
        scale = timeout_scale()
        boot_timeout = float(a("BOOT_TIMEOUT", DEFAULT_BOOT_TIMEOUT)) * scale
        if a("TIMEOUT", None):
            total_timeout = float(a("TIMEOUT")) * scale
        else:
            total_timeout = boot_timeout * max(1, boots or 1) + 30
        result, error, tail = run_guest(
            name=sc.name, workdir=workdir, kernel=k, append=a("APPEND", ""),
            guest_script=a("GUEST_SCRIPT"), builddir=builddir, binaries=a("BINARIES", ()),
            host_binaries=a("HOST_BINARIES", ()), files=a("FILES", None),
            include_boot=a("INCLUDE_BOOT", False), memory=a("MEMORY", DEFAULT_MEMORY),
            smp=a("SMP", DEFAULT_SMP), numa=a("NUMA", ()), qemu_args=a("QEMU_ARGS", ()),
            boot_timeout=boot_timeout,
            total_timeout=total_timeout,
            host=a("host", None))
        if error is not None:
            reason, details = describe_error(error)
            if result.panics:
                reason += f" [kernel panic: {result.panics[-1]}]"
            return Outcome(sc.name, False, time.monotonic() - t0, reason,
                           _join(details, tail), workdir)
        generic_checks(result, boots, a("EXPECT_EXIT", 0))
        sc.module.check(result)
        return Outcome(sc.name, True, time.monotonic() - t0, workdir=workdir)
    except Exception as e:                   # noqa: BLE001
        reason, details = describe_error(e)
        return Outcome(sc.name, False, time.monotonic() - t0, reason, _join(details, tail), workdir)


def _join(*parts: str) -> str:
    return "\n".join(p.rstrip() for p in parts if p and p.strip())


def default_builddir() -> Optional[Path]:
    env = os.environ.get("KHOD_BUILDDIR")
    return Path(env) if env else REPO / "build"


def cmd_run(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="vmtest.py", description="Run khod VM scenarios.")
    ap.add_argument("--builddir", type=Path, default=default_builddir(),
                    help="meson build dir with src/khoctl/khoctl and src/khod/khod "
                         "(default: $KHOD_BUILDDIR or <repo>/build)")
    ap.add_argument("--kernel", type=Path, default=None,
                    help="bzImage (default: $KHOD_VM_KERNEL or <repo>/../shared/vm/bzImage)")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (console logs, initrds, files)")
    ap.add_argument("--workdir", type=Path, default=None, help="where to put work files (implies --keep)")
    ap.add_argument("--json-summary", type=Path, default=None, help="write a JSON summary here")
    ap.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="default: all")
    args = ap.parse_args(argv)

    names = [scenario_name(n) for n in args.scenarios] or list(discover_scenarios())
    if args.workdir:
        root = args.workdir.resolve()
        root.mkdir(parents=True, exist_ok=True)
        keep = True
    else:
        root = Path(tempfile.mkdtemp(prefix="khod-vmtest-"))
        keep = args.keep
    outcomes: list[Outcome] = []
    try:
        if not names:
            outcomes.append(Outcome("(none)", False, 0.0, f"no scenarios in {SCENARIO_DIR}"))
        for name in names:
            try:
                sc = load_scenario(name)
            except Exception as e:           # noqa: BLE001
                reason, details = describe_error(e)
                out = Outcome(name, False, 0.0, reason, details)
            else:
                out = run_scenario(sc, kernel=args.kernel, builddir=args.builddir, root=root)
            outcomes.append(out)
            if out.ok:
                log(f"PASS {out.name} ({out.seconds:.1f}s)")
            else:
                first, _, rest = out.reason.partition("\n")
                log(f"FAIL {out.name}: {first}")
                details = _join(rest, out.details)
                if details:
                    log("    " + details.replace("\n", "\n    "))
    finally:
        if keep:
            log(f"work dir kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    passed = sum(o.ok for o in outcomes)
    failed = len(outcomes) - passed
    if args.json_summary:
        summary = {"passed": passed, "failed": failed, "scenarios": [
            {"name": o.name, "ok": o.ok, "seconds": round(o.seconds, 2), "reason": o.reason,
             "workdir": str(o.workdir) if keep and o.workdir else None}
            for o in outcomes]}
        args.json_summary.write_text(json.dumps(summary, indent=2) + "\n")
    log(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def cmd_list(argv: list[str]) -> int:
    for name in discover_scenarios():
        try:
            desc = load_scenario(name).description
        except Exception as e:                # noqa: BLE001
            desc = f"(cannot load: {e})"
        log(f"{name:16} {desc}")
    return 0


# --------------------------------------------------------------------------
# capture: copy real kernel files into a sysroot-shaped tree for unit tests

CAPTURE_SCRIPT = r"""
# capture guest script: copies the paths listed in /capture.paths to $STAGE
STAGE=/tmp/capture
mkdir -p $STAGE
: > $STAGE/DEVICES
: > $STAGE/UNREADABLE
mkdir -p /sys/kernel/debug
mount -t debugfs debugfs /sys/kernel/debug || echo "KHOD-VM: note debugfs-mount-failed"

unreadable() { echo "$1: $2" >> $STAGE/UNREADABLE; }

# normpath P: P with '.', '..' and repeated '/' removed lexically
normpath() {
    local out= c
    set -f
    local IFS=/
    for c in $1; do
        case $c in ''|.) ;; ..) out=${out%/*} ;; *) out="$out/$c" ;; esac
    done
    set +f
    echo "${out:-/}"
}

# follow P: while P is a symlink, recreate it in $STAGE and go to its target
follow() {
    local p=$1 t n=0
    # /proc/self would name the short-lived helper process: keep it a directory
    case $p in /proc/self|/proc/thread-self) echo "$p"; return ;; esac
    while [ -L "$p" ] && [ $n -lt 40 ]; do
        n=$((n + 1))
        t=$(readlink "$p")
        mkdir -p "$STAGE$(dirname "$p")"
        [ -L "$STAGE$p" ] || ln -s "$t" "$STAGE$p"
        case $t in /*) ;; *) t=$(dirname "$p")/$t ;; esac
        p=$(resolve "$(normpath "$t")")
    done
    echo "$p"
}

# resolve P: P with the symlinks in its parent directories resolved; those
# symlinks are recreated in $STAGE, so the captured tree keeps the same shape
resolve() {
    local p=$1 parent
    [ "$p" = / ] && { echo /; return; }
    parent=$(follow "$(resolve "$(dirname "$p")")")
    if [ "$parent" = / ]; then echo "/$(basename "$p")"; else echo "$parent/$(basename "$p")"; fi
}

copy() {
    local src=$1 dst=$STAGE$1 e rc
    if [ -L "$src" ]; then
        mkdir -p "$(dirname "$dst")"
        rm -rf "$dst"
        ln -s "$(readlink "$src")" "$dst"
    elif [ -d "$src" ]; then
        mkdir -p "$dst"
        for e in "$src"/* "$src"/.[!.]* "$src"/..?*; do
            [ -e "$e" ] || [ -L "$e" ] || continue
            copy "$e"
        done
    elif [ -c "$src" ] || [ -b "$src" ]; then
        mkdir -p "$(dirname "$dst")"
        : > "$dst"
        echo "$src $(printf '%d:%d' 0x$(stat -c %t "$src") 0x$(stat -c %T "$src")) $(printf '0%o' 0x$(stat -c %f "$src"))" >> $STAGE/DEVICES
    elif [ -f "$src" ]; then
        mkdir -p "$(dirname "$dst")"
        # never trust st_size on sysfs/debugfs/proc: read the content
        timeout 10 cat "$src" > "$dst" 2> /tmp/capture.err < /dev/null
        rc=$?
        if [ $rc -ne 0 ]; then
            rm -f "$dst"
            if [ $rc = 124 ] || [ $rc = 143 ]; then
                unreadable "$src" "timed out after 10s (blocking read?)"
            else
                unreadable "$src" "$(head -n 1 /tmp/capture.err | sed 's/^cat: //') (exit $rc)"
            fi
        fi
    else
        unreadable "$src" "unsupported file type: $(stat -c %F "$src")"
    fi
}

while IFS= read -r line <&3 || [ -n "$line" ]; do
    case $line in ''|'#'*) continue ;; esac
    found=0
    for p in $line; do          # globs expand here
        if [ -e "$p" ] || [ -L "$p" ]; then
            found=1
            case $p in
                */) copy "$(follow "$(resolve "$(normpath "$p")")")" ;;  # trailing /: follow
                *) copy "$(resolve "$(normpath "$p")")" ;;
            esac
        fi
    done
    [ $found = 1 ] || unreadable "$line" "No such file or directory"
done 3< /capture.paths

cd $STAGE || exit 1
tar -cf /tmp/capture.tar . || exit 1
vm-put /tmp/capture.tar capture.tar || exit 1
echo "KHOD-VM: captured $(find . -type f | wc -l) files, $(find . -type l | wc -l) symlinks"
"""


# capture --kexec: stage 1 only does a KHO kexec (kexec_file_load, the same
# kernel, initramfs and command line plus khod.stage=2); the capture proper
# runs in the second kernel, so kho/in exists there.
CAPTURE_KEXEC_PREFIX = r"""
if [ "$1" = 1 ]; then
    vm-kexec-self 2
    exit 1
fi
"""


def extract_capture(tar_bytes: bytes, out: Path) -> list[tuple[str, str]]:
    """Unpacks the capture tar into out. Returns [(relative path, description)]."""
    out.mkdir(parents=True, exist_ok=True)
    real_out = os.path.realpath(out)
    listing = []
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tf:
        for m in tf.getmembers():
            name = os.path.normpath(m.name.lstrip("/"))
            if name in (".", ""):
                continue
            if name.startswith("..") or os.path.isabs(name):
                raise HarnessError(f"capture tar has a bad member name: {m.name!r}")
            dest = out / name
            parent = os.path.realpath(dest.parent)
            if not (parent == real_out or parent.startswith(real_out + os.sep)):
                raise HarnessError(f"capture member {name!r} would land outside {out}")
            if m.isdir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.is_symlink() or dest.exists():
                if dest.is_dir() and not dest.is_symlink():
                    shutil.rmtree(dest)
                else:
                    dest.unlink()
            if m.issym():
                os.symlink(m.linkname, dest)
                listing.append((name, f"-> {m.linkname}"))
            elif m.isfile():
                data = tf.extractfile(m).read()
                dest.write_bytes(data)
                os.chmod(dest, 0o644)
                listing.append((name, f"{len(data)} bytes"))
            else:
                listing.append((name, "skipped (not a file, directory or symlink)"))
    return listing


def cmd_capture(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="vmtest.py capture",
                                 description="Boot the test kernel and copy kernel files "
                                             "(proc/sys/debugfs/dev) into a sysroot-shaped tree.")
    ap.add_argument("--append", default="", help="kernel command line words")
    ap.add_argument("--paths", type=Path, required=True,
                    help="file listing guest paths, one per line (globs ok, dirs recursive)")
    ap.add_argument("--out", type=Path, required=True, help="output dir (becomes a sysroot)")
    ap.add_argument("--force", action="store_true", help="replace a non-empty --out")
    ap.add_argument("--numa", action="append", default=[], metavar="ARG",
                    help="a QEMU -numa argument (repeatable)")
    ap.add_argument("--memory", default=DEFAULT_MEMORY, help=f"QEMU -m (default {DEFAULT_MEMORY})")
    ap.add_argument("--smp", default=DEFAULT_SMP, help=f"QEMU -smp (default {DEFAULT_SMP})")
    ap.add_argument("--kernel", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work dir")
    ap.add_argument("--boot-timeout", type=float, default=DEFAULT_BOOT_TIMEOUT)
    ap.add_argument("--kexec", action="store_true",
                    help="first do a KHO kexec (kexec -s -l; kexec -e) into the same kernel with "
                         "khod.stage=2 appended, and capture in that second kernel")
    args = ap.parse_args(argv)

    if not args.paths.is_file():
        log(f"FAIL capture: paths file not found: {args.paths}")
        return 1
    out = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not args.force:
            log(f"FAIL capture: {out} exists and is not empty (use --force to replace it)")
            return 1
        if out.is_dir() and not out.is_symlink():
            shutil.rmtree(out)
        else:
            out.unlink()
    work = Path(tempfile.mkdtemp(prefix="khod-capture-"))
    ok = False
    try:
        kernel = require_kernel(args.kernel)
        find_qemu()
        boots = 2 if args.kexec else 1
        result, error, tail = run_guest(
            name="capture", workdir=work, kernel=kernel, append=args.append,
            guest_script=(CAPTURE_KEXEC_PREFIX if args.kexec else "") + CAPTURE_SCRIPT,
            files={str(args.paths.resolve()): "/capture.paths"},
            host_binaries=["/usr/sbin/kexec"] if args.kexec else (), include_boot=args.kexec,
            memory=args.memory, smp=args.smp, numa=args.numa,
            boot_timeout=args.boot_timeout * timeout_scale(),
            total_timeout=args.boot_timeout * timeout_scale() * boots + 60)
        if error is not None:
            log(f"FAIL capture: {describe_error(error)[0]}")
            log("    " + tail.replace("\n", "\n    "))
            return 1
        try:
            generic_checks(result, boots, 0)
            data = result.file("capture.tar")
        except CheckFailed as e:
            log(f"FAIL capture: {e}")
            log("    " + tail.replace("\n", "\n    "))
            return 1
        listing = extract_capture(data, out)
        how = " after a KHO kexec, in the second kernel" if args.kexec else ""
        log(f"captured into {out}{how} (kernel command line: {BASE_APPEND} {args.append}):")
        for name, desc in sorted(listing):
            log(f"  {name}  {desc}")
        for manifest in ("DEVICES", "UNREADABLE"):
            text = (out / manifest).read_text() if (out / manifest).exists() else ""
            lines = [l for l in text.splitlines() if l.strip()]
            log(f"{manifest} ({len(lines)}):")
            for l in lines:
                log(f"  {l}")
        ok = True
        return 0
    except (HarnessError, VMError) as e:
        log(f"FAIL capture: {e}")
        return 1
    finally:
        if args.keep or (not ok and any(work.iterdir())):
            log(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "capture":
        return cmd_capture(argv[1:])
    if argv and argv[0] == "list":
        return cmd_list(argv[1:])
    return cmd_run(argv)

