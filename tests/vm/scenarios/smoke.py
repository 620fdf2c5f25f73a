"""Harness self-test: vm-put byte-exactness, QMP memory hot-add, kexec into a 2nd boot.

Needs no khod binary, so it tells a broken harness (or kernel/QEMU setup)
apart from a broken product. Stage 1 sends a file holding every byte value,
asks the host for a DIMM and waits until the guest sees it, then kexecs the
same kernel and initramfs (from /boot, inside the initramfs) with
khod.stage=2 appended; stage 2 sends its command line back.
"""

from vmtest import expect, expect_eq

DESCRIPTION = "harness self-test: vm-put, QMP DIMM hot-add, kexec to a 2nd boot"
APPEND = "kho=on"
HOST_BINARIES = ["/usr/sbin/kexec"]
INCLUDE_BOOT = True
BOOTS = 2
DIMM_SIZE = 512 << 20

GUEST_SCRIPT = r'''
stage=$1
if [ "$stage" = 1 ]; then
    # every byte value 0..255, then a CR LF pair (must not be mangled by the tty)
    i=0
    while [ $i -lt 256 ]; do printf "\\$(printf %o $i)"; i=$((i + 1)); done > /tmp/bytes.bin
    printf '\r\n' >> /tmp/bytes.bin
    vm-put /tmp/bytes.bin bytes.bin || exit 1

    before=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    vm-marker want-dimm "$before"
    n=0
    after=$before
    while [ "$after" = "$before" ] && [ $n -lt 300 ]; do
        sleep 0.1
        n=$((n + 1))
        after=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    done
    vm-marker memtotal-kb "$before $after"

    vm-kexec-self 2
    exit 1
fi
cp /proc/cmdline /tmp/cmdline
vm-put /tmp/cmdline cmdline-2
'''


def host(vm):
    vm.wait_marker("want-dimm", timeout=60)
    vm.hotplug_memory(DIMM_SIZE)


def check(result):
    expect_eq(result.file("bytes.bin"), bytes(range(256)) + b"\r\n", "bytes.bin as received")

    before, after = (int(x) for x in result.marker("memtotal-kb").payload.split())
    grown = (after - before) * 1024
    expect(grown == DIMM_SIZE,
           f"MemTotal grew by {grown} bytes after hot-adding a {DIMM_SIZE}-byte DIMM "
           f"({before} kB -> {after} kB)")

    stages = [m.stage for m in result.markers_of("boot")]
    expect_eq(stages, ["1", "2"], "stages of the boots")
    result.marker("kexec", boot=1)
    cmdline = result.text("cmdline-2").split()
    expect("khod.stage=2" in cmdline, f"2nd boot command line lacks khod.stage=2: {cmdline}")
    expect("kho=on" in cmdline, f"2nd boot command line lacks kho=on: {cmdline}")
