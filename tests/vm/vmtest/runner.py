"""Scenarios: finding and loading them, and one run of a guest from initramfs
to verdict."""

from __future__ import annotations

import dataclasses
import importlib
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from .errors import HarnessError
from .host import HERE, SCENARIO_DIR, find_qemu, timeout_scale
from .initramfs import make_initramfs
from .kernel import kernel_release, require_kernel
from .qemu import DEFAULT_BOOT_TIMEOUT, DEFAULT_MEMORY, DEFAULT_SMP, VM
from .report import describe_error, join_details, tail_lines
from .results import Result, decode_puts, generic_checks


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


def discover_scenarios(directory: Path = SCENARIO_DIR) -> dict[str, Path]:
    """Scenario name -> module file; a leading underscore marks a shared module."""
    found = {}
    if directory.is_dir():
        for p in sorted(directory.glob("*.py")):
            if p.name.startswith("_"):
                continue
            found[scenario_name(p.stem)] = p
    return found


def load_scenario(name: str, directory: Path = SCENARIO_DIR) -> Scenario:
    """Imports a scenario as <directory's name>.<module> (the package beside vmtest)."""
    name = scenario_name(name)
    available = discover_scenarios(directory)
    if name not in available:
        raise HarnessError(f"unknown scenario {name!r} (have: {', '.join(available) or 'none'})")
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    module = importlib.import_module(f"{directory.name}.{available[name].stem}")
    for key in ("GUEST_SCRIPT", "check"):
        if not hasattr(module, key):
            raise HarnessError(f"scenario {name} ({available[name]}) lacks {key}")
    return Scenario(name, module)


@dataclasses.dataclass
class Outcome:
    name: str
    ok: bool
    seconds: float
    reason: str = ""
    details: str = ""
    workdir: Optional[Path] = None
    #: Why the first guest was run again (a kernel that never reached /init).
    retried: str = ""


def run_guest(*, name: str, workdir: Path, kernel: Path, append: str, guest_script: str,
              builddir: Optional[Path] = None, binaries=(), host_binaries=(), files=None,
              include_boot=False, next_kernel: Optional[Path] = None, memory=DEFAULT_MEMORY, smp=DEFAULT_SMP, numa=(),
              qemu_args=(), boot_timeout=DEFAULT_BOOT_TIMEOUT, total_timeout=None,
              host: Optional[Callable[[VM], None]] = None) -> tuple[Result, Optional[BaseException], str]:
    """Builds the initramfs, boots, drives and collects. Never raises for VM trouble:
    returns (result, error, tail) where error is what went wrong while running."""
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    kernel_release(kernel)      # before building: a file that is no bzImage fails here
    initrd = make_initramfs(kernel=kernel, workdir=workdir, guest_script=guest_script,
                            builddir=builddir, binaries=binaries, host_binaries=host_binaries,
                            files=files, include_boot=include_boot, next_kernel=next_kernel)
    return boot_and_collect(name=name, workdir=workdir, kernel=kernel, initrd=initrd, append=append,
                            next_kernel=next_kernel, memory=memory, smp=smp, numa=numa,
                            qemu_args=qemu_args, boot_timeout=boot_timeout,
                            total_timeout=total_timeout, host=host, started=t0)


def boot_and_collect(*, name: str, workdir: Path, kernel: Path, initrd: Optional[Path], append: str,
                     next_kernel: Optional[Path] = None, memory=DEFAULT_MEMORY, smp=DEFAULT_SMP,
                     numa=(), qemu_args=(), boot_timeout=DEFAULT_BOOT_TIMEOUT, total_timeout=None,
                     host: Optional[Callable[[VM], None]] = None,
                     started: Optional[float] = None) -> tuple[Result, Optional[BaseException], str]:
    """Boots a prepared guest, drives and collects; never raises for VM trouble."""
    t0 = started if started is not None else time.monotonic()
    release = kernel_release(kernel)
    next_release = kernel_release(next_kernel) if next_kernel else None
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
                    seconds=time.monotonic() - t0, kernel=Path(kernel), kernel_release=release,
                    next_kernel=Path(next_kernel) if next_kernel else None, next_release=next_release)
    tail = tail_lines(console)
    if not console.strip():
        q = vm.qemu_output().strip()
        tail = f"(no console output)\nQEMU said:\n{q}" if q else "(no console output)"
    return result, error, tail


def never_reached_init(result: Result, error: Optional[BaseException]) -> bool:
    """A first boot that panicked or stalled before the initramfs's /init
    printed its first line: nothing of khod or of the scenario had run. Under
    TCG a boot very rarely dies there (an oops in setup_IO_APIC, a stall after
    the XFRM line, each once in hundreds of CI boots), so such a run is made
    once more; a kernel that always fails there fails both times."""
    failed = error is not None or bool(result.panics)
    return failed and result.boots <= 1 and not result.markers_of("boot")


def early_failure(result: Result, error: Optional[BaseException]) -> str:
    if result.panics:
        return f"boot 1 panicked before /init: {result.panics[-1]}"
    return f"boot 1 never reached /init: {describe_error(error)[0]}"


def run_scenario(sc: Scenario, *, kernel: Optional[Path], builddir: Optional[Path],
                 root: Path) -> Outcome:
    t0 = time.monotonic()
    workdir = root / sc.name
    tail = ""
    try:
        k = require_kernel(kernel)
        find_qemu()
        a = sc.attr
        if a("requires", None):
            a("requires")()  # raises HarnessError, saying what is missing, before anything boots
        boots = a("BOOTS", 1)
        next_kernel = a("NEXT_KERNEL", None)
        if next_kernel is not None:
            next_kernel = require_kernel(Path(next_kernel(k)))
        scale = timeout_scale()
        boot_timeout = float(a("BOOT_TIMEOUT", DEFAULT_BOOT_TIMEOUT)) * scale
        if a("TIMEOUT", None):
            total_timeout = float(a("TIMEOUT")) * scale
        else:
            total_timeout = boot_timeout * max(1, boots or 1) + 30

        def run(dest: Path):
            return run_guest(
                name=sc.name, workdir=dest, kernel=k, append=a("APPEND", ""),
                guest_script=a("GUEST_SCRIPT"), builddir=builddir, binaries=a("BINARIES", ()),
                host_binaries=a("HOST_BINARIES", ()), files=a("FILES", None),
                include_boot=a("INCLUDE_BOOT", False), next_kernel=next_kernel,
                memory=a("MEMORY", DEFAULT_MEMORY), smp=a("SMP", DEFAULT_SMP), numa=a("NUMA", ()),
                qemu_args=a("QEMU_ARGS", ()), boot_timeout=boot_timeout,
                total_timeout=total_timeout, host=a("host", None))
        result, error, tail = run(workdir)
        retried = ""
        if never_reached_init(result, error):
            retried = early_failure(result, error)
            first = workdir.with_name(workdir.name + ".first")
            shutil.rmtree(first, ignore_errors=True)
            workdir.rename(first)
            result, error, tail = run(workdir)
        if error is not None:
            reason, details = describe_error(error)
            if result.panics:
                reason += f" [kernel panic: {result.panics[-1]}]"
            return Outcome(sc.name, False, time.monotonic() - t0, reason,
                           join_details(details, tail), workdir, retried)
        generic_checks(result, boots, a("EXPECT_EXIT", 0))
        sc.module.check(result)
        return Outcome(sc.name, True, time.monotonic() - t0, workdir=workdir, retried=retried)
    except Exception as e:                   # noqa: BLE001
        reason, details = describe_error(e)
        return Outcome(sc.name, False, time.monotonic() - t0, reason, join_details(details, tail), workdir)
