"""Real-kernel VM tests for khod.

Boots the shared test kernel (Linux with KHO, LUO, kdump and hotplug) in QEMU
(TCG; KVM does not work with it) with a generated busybox initramfs, runs a
scenario's guest script in it, collects what the guest sends back and lets the
scenario judge the result. tests/vm/vmtest.py is its command line.

The modules, in the order a run uses them:

    host       where the repository, scenarios, QEMU and product binaries are
    kernel     the bzImage under test
    initramfs  the guest's root (guest programs from tests/vm/guest/)
    qemu       the VM, its console and its QMP monitor
    results    what came back, and the check helpers (expect, dig, ...)
    runner     scenario discovery, loading and one run
    capture    `vmtest.py capture`: kernel files into fixture trees
    cli        the command line
    report     progress and failure output; errors: the exceptions

Scenarios, benches and fixture scripts use the names below as `vmtest.X` or
`from vmtest import X`. Python 3 standard library only. See tests/vm/README.md.
"""

from .capture import CAPTURE_KEXEC_PREFIX, CAPTURE_SCRIPT, cmd_capture, extract_capture
from .cli import cmd_list, cmd_run, main
from .errors import CheckFailed, HarnessError, VMError, VMExited, VMTimeout
from .host import (HERE, KHOD_BUS_FILES, KHOD_BUS_HOST_BINARIES, PRODUCT_BINARIES, REPO,
                   SCENARIO_DIR, default_builddir, find_qemu, product_binary, timeout_scale)
from .initramfs import Initramfs, make_initramfs, pack_cpio_gz, shared_libraries
from .kernel import default_kernel, kernel_init_size, kernel_release, kernel_version, require_kernel
from .qemu import (BASE_APPEND, DEFAULT_BOOT_TIMEOUT, DEFAULT_MEMORY, DEFAULT_SMP, MARKER_PREFIX,
                   MARKER_RE, PANIC_RE, QMP, VM, Console, Marker, QMPError)
from .report import TAIL_LINES, describe_error, log, tail_lines
from .results import Put, Result, decode_puts, dig, expect, expect_eq, generic_checks
from .runner import (Outcome, Scenario, discover_scenarios, load_scenario, run_guest,
                     run_scenario, scenario_name)
