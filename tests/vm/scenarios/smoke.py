"""Harness self-test: vm-put byte-exactness, QMP memory hot-add, kexec into a 2nd boot.

Needs no khod binary, so it tells a broken harness (or kernel/QEMU setup)
apart from a broken product. Stage 1 sends a file holding every byte value,
asks the host for a DIMM and waits until the kernel has onlined every memory
block of it (MemTotal must then have grown by exactly those blocks), then
kexecs the same kernel and initramfs (from /boot, inside the initramfs) with
khod.stage=2 appended; stage 2 sends its command line back.
"""

from vmtest import expect, expect_eq

DESCRIPTION = "harness self-test: vm-put, QMP DIMM hot-add, kexec to a 2nd boot"
APPEND = "kho=on"
HOST_BINARIES = ["/usr/sbin/kexec"]
INCLUDE_BOOT = True
BOOTS = 2
DIMM_SIZE = 512 << 20

GUEST_SCRIPT = f"DIMM_SIZE={DIMM_SIZE}\n" + r'''
stage=$1
if [ "$stage" = 1 ]; then
    # every byte value 0..255, then a CR LF pair (must not be mangled by the tty)
    i=0
    while [ $i -lt 256 ]; do printf "\\$(printf %o $i)"; i=$((i + 1)); done > /tmp/bytes.bin
    printf '\r\n' >> /tmp/bytes.bin
    vm-put /tmp/bytes.bin bytes.bin || exit 1

    # The DIMM arrives as memory blocks that the kernel creates and then onlines
    # one by one (auto_online_blocks), so MemTotal passes through partial values
    # (+128 MiB, +4 MiB, ... seen on both kernels): wait on the blocks, not on
    # MemTotal's first change, then read MemTotal once they are all online.
    mem=/sys/devices/system/memory
    block=$(printf %d 0x$(cat $mem/block_size_bytes))
    ls $mem | grep '^memory[0-9]' > /tmp/blocks-before
    memtotal() { awk '/^MemTotal:/ {print $2}' /proc/meminfo; }
    before=$(memtotal)
    vm-marker want-dimm "$before"
    n=0
    while [ $n -lt 300 ]; do
        ls $mem | grep '^memory[0-9]' | grep -vxF -f /tmp/blocks-before > /tmp/blocks-new
        new=0 online=0
        for b in $(cat /tmp/blocks-new); do
            new=$((new + 1))
            [ "$(cat $mem/$b/state)" = online ] && online=$((online + 1))
        done
        [ $((new * block)) -ge $DIMM_SIZE ] && [ $online = $new ] && break
        sleep 0.1
        n=$((n + 1))
    done
    after=$(memtotal)
    vm-marker memtotal-kb "$before $after"
    vm-marker dimm-blocks "$block $new $online"
    # memmap_on_memory=Y would put the DIMM's struct pages in the DIMM itself,
    # outside MemTotal
    vm-marker memmap-on-memory "$(cat /sys/module/memory_hotplug/parameters/memmap_on_memory 2>/dev/null || echo absent)"

    vm-kexec-self 2
    exit 1
fi
cp /proc/cmdline /tmp/cmdline
vm-put /tmp/cmdline cmdline-2
'''


def host(vm):
    vm.wait_marker("want-dimm", timeout=60)
    vm.hotplug_memory(DIMM_SIZE)


def check_dimm(result):
    """The DIMM is whole in the kernel's own memory blocks, and MemTotal grew by
    exactly what those blocks hold."""
    block, new, online = (int(x) for x in result.marker("dimm-blocks").payload.split())
    expect(new * block == DIMM_SIZE,
           f"the kernel made {new} memory blocks of {block} bytes for a {DIMM_SIZE}-byte DIMM")
    expect_eq(online, new, f"of the DIMM's {new} memory blocks, those online")
    expect_eq(result.marker("memmap-on-memory").payload, "N",
              "memory_hotplug.memmap_on_memory (with Y the DIMM's memmap is carved out of it "
              "and this check would have to subtract it)")
    before, after = (int(x) for x in result.marker("memtotal-kb").payload.split())
    grown = (after - before) * 1024
    expect(grown == online * block,
           f"MemTotal grew by {grown} bytes with the DIMM's {online} blocks of {block} bytes online "
           f"({before} kB -> {after} kB)")


def check(result):
    expect_eq(result.file("bytes.bin"), bytes(range(256)) + b"\r\n", "bytes.bin as received")

    check_dimm(result)

    stages = [m.stage for m in result.markers_of("boot")]
    expect_eq(stages, ["1", "2"], "stages of the boots")
    result.marker("kexec", boot=1)
    cmdline = result.text("cmdline-2").split()
    expect("khod.stage=2" in cmdline, f"2nd boot command line lacks khod.stage=2: {cmdline}")
    expect("kho=on" in cmdline, f"2nd boot command line lacks kho=on: {cmdline}")
