"""The guest's root: busybox, the harness's guest programs, the scenario's
script, binaries and files, packed as a gzip'd newc cpio."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterable, Optional

from .errors import HarnessError
from .host import PRODUCT_FILES, guest_program, product_binary


#: Directories the dynamic loader searches without an ld.so.cache (Debian x86_64).
LOADER_DEFAULT_DIRS = {
    "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib", "/usr/lib",
    "/lib64", "/usr/lib64",
}


#: The harness's own guest commands: guest path -> file in tests/vm/guest/.
GUEST_COMMANDS = {
    "/usr/bin/vm-put": "vm-put.sh",
    "/usr/bin/vm-marker": "vm-marker.sh",
    "/usr/bin/vm-self-initrd": "vm-self-initrd.sh",
    "/usr/bin/vm-kexec-self": "vm-kexec-self.sh",
}


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


def make_initramfs(*, kernel: Path, workdir: Path, guest_script: str,
                   builddir: Optional[Path] = None, binaries: Iterable[str] = (),
                   host_binaries: Iterable[str] = (), files: Optional[dict] = None,
                   include_boot: bool = False, next_kernel: Optional[Path] = None) -> Path:
    """Builds <workdir>/initrd.gz for a guest script; returns its path.
    next_kernel (with include_boot) goes in as /boot/next/bzImage: a live
    update into another kernel."""
    ir = Initramfs()
    busybox = shutil.which("busybox") or "/usr/bin/busybox"
    if not Path(busybox).is_file():
        raise HarnessError("busybox not found (install busybox-static)")
    if shared_libraries(Path(busybox)):
        raise HarnessError(f"{busybox} is dynamically linked; install busybox-static")
    ir.add_file(Path(busybox), "/bin/busybox", 0o755)
    ir.add_symlink("/bin/sh", "busybox")
    for name in binaries:
        if name in PRODUCT_FILES:
            ir.add_file(product_binary(builddir, name), PRODUCT_FILES[name][1], 0o644)
        else:
            ir.add_binary(product_binary(builddir, name), f"/usr/bin/{name}")
    for hb in host_binaries:
        ir.add_binary(Path(hb), str(hb))
    for host, guest in (files or {}).items():
        ir.add_tree(Path(host), guest)
    ir.add_data("/etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n")
    ir.add_data("/etc/group", "root:x:0:\nnogroup:x:65534:\n")
    extra_dirs = sorted(d for d in ir.lib_dirs if d not in LOADER_DEFAULT_DIRS)
    ld_line = f"export LD_LIBRARY_PATH={':'.join(extra_dirs)}" if extra_dirs else ""
    ir.add_data("/init", guest_program("init.sh").replace("@LD_LIBRARY_PATH@", ld_line), 0o755)
    ir.add_data("/scenario.sh", "#!/bin/sh\n# scenario guest script; $1 = boot stage\n"
                + guest_script.lstrip("\n"), 0o755)
    for guest, name in GUEST_COMMANDS.items():
        ir.add_data(guest, guest_program(name), 0o755)
    out = workdir / "initrd.gz"
    base = ir.build(workdir / "initramfs", out)
    if include_boot:
        # A second archive holding the first one and the kernel, appended to it:
        # the kernel unpacks concatenated (compressed) cpio archives in order.
        boot = Initramfs()
        boot.add_file(kernel, "/boot/bzImage", 0o644)
        if next_kernel is not None:
            boot.add_file(next_kernel, "/boot/next/bzImage", 0o644)
        boot.add_data("/boot/initrd.gz", base)
        boot_root = workdir / "initramfs-boot"
        if boot_root.exists():
            shutil.rmtree(boot_root)
        boot.populate(boot_root)
        out.write_bytes(base + pack_cpio_gz(boot_root))
    return out
