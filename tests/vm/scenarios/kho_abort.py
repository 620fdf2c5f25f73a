"""prepare -> finalize -> abort through khod in the real kernel: the image
kexec_file_load staged is unloaded again (/sys/kernel/kexec/loaded 1 -> 0)
and khod is idle, with nothing recorded."""

from vmtest import KHOD_BUS_FILES, KHOD_BUS_HOST_BINARIES, dig, expect_eq

DESCRIPTION = "khoctl prepare/finalize/abort: the staged image is unloaded and khod is idle"
APPEND = "kho=on kho_scratch=16M,64M,32M"
BINARIES = ["khoctl", "khod"]
HOST_BINARIES = KHOD_BUS_HOST_BINARIES
INCLUDE_BOOT = True
FILES = dict(KHOD_BUS_FILES)

GUEST_SCRIPT = r'''
. /etc/khod-vm/guest-khod.sh
start_khod || exit 1
vm-marker loaded-0 "$(cat /sys/kernel/kexec/loaded)"
khoctl prepare --kernel /boot/bzImage --initrd /boot/initrd.gz --reuse-cmdline || exit 1
khoctl finalize || { cat /tmp/khod.log; exit 1; }
vm-marker loaded-1 "$(cat /sys/kernel/kexec/loaded)"
khoctl --json abort > /tmp/abort.json 2>&1
vm-marker rc-abort $?
vm-put /tmp/abort.json abort.json
vm-marker loaded-2 "$(cat /sys/kernel/kexec/loaded)"
vm-marker state "$(busctl get-property org.kexec.khod1 /org/kexec/khod1 org.kexec.khod1.Handover State)"
vm-marker record "$(ls /run/khod/handover.json 2>/dev/null)"
# a second abort is refused: nothing to abort
khoctl abort 2> /tmp/abort2.err
vm-marker rc-abort-again $?
vm-put /tmp/abort2.err abort2.err
'''


def check(result):
    expect_eq(result.marker("loaded-0").payload, "0", "kexec loaded before prepare")
    expect_eq(result.marker("loaded-1").payload, "1", "kexec loaded after finalize")
    expect_eq(result.marker("rc-abort").payload, "0", "khoctl abort")
    expect_eq(result.marker("loaded-2").payload, "0", "kexec loaded after abort")
    expect_eq(dig(result.json("abort.json"), "handover.State"), "idle", "State in abort's reply")
    expect_eq(result.marker("state").payload, 's "idle"', "State read with busctl")
    expect_eq(result.marker("record").payload, "", "staged-target record left in /run/khod")
    expect_eq(result.marker("rc-abort-again").payload, "1", "a second abort")
    expect_eq(result.text("abort2.err").strip(), "khoctl: WrongState: nothing to abort: state is idle",
              "a second abort's message")
