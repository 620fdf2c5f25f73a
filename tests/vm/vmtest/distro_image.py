"""The Debian guest of the distro tier: a testing rootfs from mmdebstrap
(cached by its recipe), khod's .deb installed into it with apt, the test
runner unit added, packed into an ext4 disk image with mke2fs -d.

The rootfs tarball is built once per recipe and kept in
~/.cache/khod/distro-rootfs/<key>/root.tar; a second run of the tier only
extracts it. Needs root: mmdebstrap's root mode, chroot for apt, and an
extracted tree with the right owners for mke2fs -d.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Optional

from .errors import HarnessError
from .host import GUEST_DIR

SUITE = "forky"
MIRROR = os.environ.get("KHOD_DEBIAN_MIRROR", "http://deb.debian.org/debian")
#: What the scenarios need in the guest besides khod's own dependencies,
#: which are listed too so that installing the .deb needs no download.
PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "polkitd", "udev", "kexec-tools", "kdump-tools",
    "makedumpfile", "linux-image-cloud-amd64", "initramfs-tools", "passwd", "procps",
    # Priority required, so on every installed Debian, but not Essential, so
    # not in --variant=apt by itself; systemd's .mount units need it.
    "mount",
    "libfdt1", "libelf1t64", "libinih1", "libssl3t64", "libsystemd0", "libudev1",
    "zlib1g", "liblzma5", "libzstd1", "liblz4-1",
]
#: kdump-tools' kernel hook builds /var/lib/kdump/initrd.img-<release> with
#: mkinitramfs, but skips that inside a chroot (its modules list would be the
#: build host's); this does the same for the image, with MODULES=most.
KDUMP_INITRD_HOOK = ('chroot "$1" sh -c \'for k in /boot/vmlinuz-*; do v=${k#/boot/vmlinuz-}; '
                     'mkinitramfs -o /var/lib/kdump/initrd.img-$v $v; done\'')
#: Changes to what the recipe does must change the cache key.
RECIPE_VERSION = "2"
IMAGE_SIZE = "2G"
TOOLS_DIR = "/usr/local/lib/khod-distrotest"

RUNNER_UNIT = f"""[Unit]
Description=khod distro test scenario
After=multi-user.target
[Service]
Type=exec
ExecStart={TOOLS_DIR}/run
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
TTYReset=no
TTYVHangup=no
[Install]
WantedBy=multi-user.target
"""

#: Runs the scenario's script once the system is up, then powers off unless
#: the script asked to stay up (it started a kexec or a crash).
RUNNER = f"""#!/bin/sh
stage=1
for w in $(cat /proc/cmdline); do
    case $w in khod.stage=*) stage=${{w#khod.stage=}} ;; esac
done
export KHOD_VM_STAGE=$stage PATH={TOOLS_DIR}:/usr/sbin:/usr/bin:/sbin:/bin
stty -F /dev/ttyS1 raw -echo 2>/dev/null
echo "KHOD-VM: boot $stage $(uname -r)"
sh {TOOLS_DIR}/scenario.sh "$stage"
rc=$?
[ -e /run/khod-distrotest/stay-up ] && exit 0
echo "KHOD-VM: exit $rc"
systemctl poweroff
"""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "khod" / "distro-rootfs"


def recipe_key() -> str:
    text = "\n".join([SUITE, MIRROR, RECIPE_VERSION, KDUMP_INITRD_HOOK, *sorted(PACKAGES)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _run(cmd: list[str], what: str, log: Path, **kw):
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, **kw)
    if r.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise HarnessError(f"{what} failed (exit {r.returncode}); see {log}:\n{tail}")


def require_root():
    if os.geteuid() != 0:
        raise HarnessError("the distro tier needs root (mmdebstrap, chroot, mke2fs -d of a root-owned tree)")
    for tool in ("mmdebstrap", "mke2fs", "chroot"):
        if not shutil.which(tool):
            raise HarnessError(f"{tool} not found (tools/setup installs it)")


def base_rootfs(log: Path) -> Path:
    """The cached rootfs tarball for this recipe, built when missing."""
    require_root()
    d = cache_root() / recipe_key()
    tar = d / "root.tar"
    if tar.is_file():
        return tar
    d.mkdir(parents=True, exist_ok=True)
    partial = d / "root.tar.partial"
    # The registry's Release files can be past Valid-Until.
    _run(["mmdebstrap", "--variant=apt", "--aptopt=Acquire::Check-Valid-Until \"false\"",
          "--include=" + ",".join(PACKAGES), "--customize-hook=" + KDUMP_INITRD_HOOK, "--format=tar", SUITE, str(partial), MIRROR],
         f"mmdebstrap of Debian {SUITE}", log)
    partial.rename(tar)
    return tar


@dataclasses.dataclass
class DistroTree:
    """An extracted rootfs with khod installed: packed again for each scenario."""
    root: Path
    release: str          # the distribution kernel's release
    kernel: Path          # its vmlinuz, copied out of the tree
    initrd: Path          # its initramfs


def _distro_kernel(root: Path, outdir: Path) -> tuple[str, Path, Path]:
    vmlinuz = sorted((root / "boot").glob("vmlinuz-*"))
    if not vmlinuz:
        raise HarnessError(f"no /boot/vmlinuz-* in {root}")
    release = vmlinuz[-1].name[len("vmlinuz-"):]
    initrd = root / "boot" / f"initrd.img-{release}"
    if not initrd.is_file():
        raise HarnessError(f"no {initrd} for the distribution kernel {release}")
    outdir.mkdir(parents=True, exist_ok=True)
    k, i = outdir / f"vmlinuz-{release}", outdir / f"initrd.img-{release}"
    shutil.copyfile(vmlinuz[-1], k)
    shutil.copyfile(initrd, i)
    return release, k, i


def install_deb(root: Path, deb: Path, log: Path):
    """apt inside the tree installs the package, as a user would."""
    target = root / "tmp" / deb.name
    shutil.copyfile(deb, target)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C.UTF-8")
    # The maintainer scripts and triggers (systemd-tmpfiles, journalctl
    # --update-catalog) need /proc, /sys and /dev: mounted in a mount
    # namespace of the install's own, so they vanish with it.
    script = (f'mount -t proc proc "$1/proc" && mount -t sysfs sysfs "$1/sys" && '
              f'mount --rbind /dev "$1/dev" && exec chroot "$1" apt-get install -y '
              f'--no-install-recommends /tmp/{deb.name}')
    _run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "install-deb", str(root)],
         f"apt-get install {deb.name} in the guest tree", log, env=env)
    target.unlink()


def add_test_runner(root: Path):
    tools = root / TOOLS_DIR.lstrip("/")
    tools.mkdir(parents=True, exist_ok=True)
    for name in ("vm-put", "vm-marker"):
        dst = tools / name
        shutil.copyfile(GUEST_DIR / f"{name}.sh", dst)
        dst.chmod(0o755)
    (tools / "run").write_text(RUNNER)
    (tools / "run").chmod(0o755)
    unit = root / "etc/systemd/system/khod-distrotest.service"
    unit.write_text(RUNNER_UNIT)
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "khod-distrotest.service"
    if not link.is_symlink():
        link.symlink_to("/etc/systemd/system/khod-distrotest.service")
    (root / "etc/fstab").write_text("/dev/vda / ext4 rw,errors=remount-ro 0 1\n")
    (root / "etc/hostname").write_text("khod-guest\n")
    # The console carries the markers: no login prompt on it.
    mask = root / "etc/systemd/system/serial-getty@ttyS0.service"
    if not mask.is_symlink():
        mask.symlink_to("/dev/null")


def prepare_tree(deb: Path, workdir: Path, log: Path) -> DistroTree:
    tar = base_rootfs(log)
    root = workdir / "rootfs"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    _run(["tar", "-C", str(root), "--numeric-owner", "-xpf", str(tar)], "extracting the rootfs", log)
    install_deb(root, deb, log)
    add_test_runner(root)
    release, kernel, initrd = _distro_kernel(root, workdir / "boot")
    return DistroTree(root, release, kernel, initrd)


#: pack_disk lends the one shared tree to a scenario: guests started in
#: parallel (--jobs) take turns at it.
_TREE_IN_USE = threading.Lock()


def pack_disk(tree: DistroTree, scenario_files: dict[str, bytes | str | Path], disk: Path, log: Path):
    """Packs the tree with the scenario's files (guest path -> content or a
    host file) into `disk`, then puts the tree back as it was for the next
    scenario."""
    with _TREE_IN_USE:
        _pack_disk(tree, scenario_files, disk, log)


def _pack_disk(tree: DistroTree, scenario_files: dict[str, bytes | str | Path], disk: Path, log: Path):
    saved: dict[Path, Optional[bytes]] = {}
    try:
        for guest_path, content in scenario_files.items():
            dst = tree.root / guest_path.lstrip("/")
            saved[dst] = dst.read_bytes() if dst.is_file() else None
            dst.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                data = content.read_bytes()
            else:
                data = content.encode() if isinstance(content, str) else content
            dst.write_bytes(data)
            # What a scenario writes is a script or a config file.
            dst.chmod(0o755 if data.startswith(b"#!") else 0o644)
        if disk.exists():
            disk.unlink()
        _run(["mke2fs", "-q", "-t", "ext4", "-d", str(tree.root), "-L", "khod-guest", str(disk),
              IMAGE_SIZE], "mke2fs -d of the guest disk", log)
    finally:
        for dst, before in saved.items():
            if before is None:
                dst.unlink(missing_ok=True)
            else:
                dst.write_bytes(before)


def read_guest_file(disk: Path, path: str, dest: Path) -> Optional[Path]:
    """Copies one file out of the (powered-off) guest's disk with debugfs."""
    r = subprocess.run(["debugfs", "-R", f"dump -p {path} {dest}", str(disk)],
                       capture_output=True, text=True)
    return dest if r.returncode == 0 and dest.is_file() and dest.stat().st_size else None


def list_guest_dir(disk: Path, path: str) -> list[str]:
    r = subprocess.run(["debugfs", "-R", f"ls -p {path}", str(disk)], capture_output=True, text=True)
    names = []
    for line in r.stdout.splitlines():  # /inode/mode/uid/gid/name/size/
        parts = line.strip("/").split("/")
        if len(parts) >= 5 and parts[4] not in (".", ".."):
            names.append(parts[4])
    return names


def scratch_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
