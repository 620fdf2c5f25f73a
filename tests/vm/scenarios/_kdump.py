"""Shared by the kdump-inplace and kdump-reload scenarios (not a scenario:
the leading underscore keeps vmtest.py from listing it).

Stage 1 loads a crash kernel (each scenario its own way), starts khod, and
makes a storm of hotplug events:
  - CPU events by offlining and onlining cpu1 (`cpuN/online`). Not by QEMU
    CPU hot-add: QEMU 7.2's CPU device_add is accepted, but this kernel
    cannot map the new CPU ("ACPI: Unable to map lapic") and a crash boot
    after it fails;
  - one 1 GiB DIMM hot-added through QMP (object-add memory-backend-ram +
    device_add pc-dimm), whose eight 128 MiB blocks the kernel adds and
    onlines (auto_online_blocks is online_movable);
  - each of those blocks offlined and onlined again.
It waits until khod has nothing pending, sends khod's status, the hot-added
blocks' physical ranges, and panics (echo c > /proc/sysrq-trigger).

Stage "crash" is the capture kernel (same bzImage and initramfs, command
line with khod.stage=crash): it sends the head of /proc/vmcore, whose ELF
program headers the host parses, and the file's size.

With elfcorehdr=True (kdump-inplace), stage 1 also builds khod's own
elfcorehdr just before the panic (`khoctl elfcorehdr build`, read back with
`khoctl --json elfcorehdr show`), and the capture kernel, whose initrd then
carries khoctl and its libraries, reads /proc/vmcore with `khoctl --json
elfcorehdr show`: check_elfcorehdr() compares khod's header with the one
the kernel built and kept current through the storm.
"""

import struct

from vmtest import CheckFailed, KHOD_BUS_FILES, KHOD_BUS_HOST_BINARIES, dig, expect, expect_eq

CRASH_APPEND = "console=ttyS0 panic=-1 khod.stage=crash irqpoll nr_cpus=1 reset_devices"
DIMM_SIZE = 1 << 30
CPU_CYCLES = 10

APPEND = "crashkernel=256M"
BINARIES = ["khoctl", "khod"]
HOST_BINARIES = KHOD_BUS_HOST_BINARIES + ["/usr/sbin/kexec"]
INCLUDE_BOOT = True
BOOTS = 2
FILES = dict(KHOD_BUS_FILES)

# $LOAD_CRASH_KERNEL is each scenario's way of having a crash kernel loaded
# with khod running.
# cpu_storm: CPU_CYCLES offline/online cycles of cpu1, one uevent each way.
CPU_STORM = r'''
cpu_storm() {
    i=0
    while [ $i -lt @CPU_CYCLES@ ]; do
        echo 0 > /sys/devices/system/cpu/cpu1/online || return 1
        echo 1 > /sys/devices/system/cpu/cpu1/online || return 1
        i=$((i + 1))
    done
}
'''.replace("@CPU_CYCLES@", str(CPU_CYCLES))

GUEST_SCRIPT = CPU_STORM + r'''
[ -f /etc/khod-vm/guest-khod.sh ] && . /etc/khod-vm/guest-khod.sh  # not in the capture initrd
CRASH_APPEND="@CRASH_APPEND@"
ELFCOREHDR="@ELFCOREHDR@"
MAKEDUMPFILE="@MAKEDUMPFILE@"
CRASH_INITRD=/tmp/capture.gz
M=/sys/devices/system/memory

wait_idle() {
    n=0
    while :; do
        khoctl --json kdump status > /tmp/st.json 2>&1
        grep -q '"Pending": false' /tmp/st.json && return 0
        n=$((n + 1))
        if [ $n -gt 300 ]; then echo "khod never settled"; cat /tmp/st.json /tmp/khod.log; return 1; fi
        sleep 0.1
    done
}

# The capture kernel's initrd: the full initramfs (khod and khoctl with their
# debug info, ~90 MiB unpacked) does not unpack in 256 MiB ("Initramfs
# unpacking failed: write error"), so stage 1 packs busybox, /init and the
# scenario into a small one.
mk_capture_initrd() {
    rm -rf /tmp/ci && mkdir -p /tmp/ci/bin /tmp/ci/usr/bin /tmp/ci/etc
    cp /bin/busybox /tmp/ci/bin/ && ln -s busybox /tmp/ci/bin/sh
    cp /init /scenario.sh /tmp/ci/ && cp /usr/bin/vm-put /usr/bin/vm-marker /tmp/ci/usr/bin/
    cp /etc/passwd /etc/group /tmp/ci/etc/
    if [ -n "$ELFCOREHDR" ]; then
        # khoctl (the harness stripped its debug info when it made the
        # initramfs), makedumpfile where asked, and the libraries the
        # dynamic loader names for them.
        progs=/usr/bin/khoctl
        [ -n "$MAKEDUMPFILE" ] && progs="$progs /usr/bin/makedumpfile"
        ld=/lib64/ld-linux-x86-64.so.2
        for prog in $progs; do
            cp $prog /tmp/ci/usr/bin/ || return 1
            for lib in $ld $($ld --list $prog | sed -n 's|.* => \(/[^ ]*\) .*|\1|p'); do
                mkdir -p /tmp/ci${lib%/*} && cp $lib /tmp/ci$lib || return 1
            done
        done
        # Uncompressed: gzip of these 11 MiB takes seconds under TCG.
        (cd /tmp/ci && find . | cpio -o -H newc 2>/dev/null) > $CRASH_INITRD
        return
    fi
    (cd /tmp/ci && find . | cpio -o -H newc 2>/dev/null | gzip) > $CRASH_INITRD
}

if [ "$1" = 1 ]; then
    mk_capture_initrd || exit 1
    @LOAD_CRASH_KERNEL@
    khoctl --json --sysroot / kdump status > /tmp/status-before.json 2>&1
    vm-put /tmp/status-before.json status-before.json

    # CPU events: cpu1 offline/online (not QEMU CPU hot-add, see the scenario docs)
    cpu_storm || exit 1
    vm-marker cpu-storm-done

    # one 1 GiB DIMM through QMP
    ls -d $M/memory* > /tmp/blocks-before
    before=$(wc -l < /tmp/blocks-before)
    vm-marker want-dimm "$before"
    n=0
    while [ "$(ls -d $M/memory* | wc -l)" -lt $((before + 8)) ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
    new_blocks=$(ls -d $M/memory* | grep -v -x -F -f /tmp/blocks-before)
    bs=$(cat $M/block_size_bytes)
    : > /tmp/blocks.txt
    for b in $M/memory*; do
        idx=$(cat $b/phys_index)
        echo "$(basename $b) $((0x$idx * 0x$bs)) $((0x$bs)) $(cat $b/state)" >> /tmp/blocks.txt
    done
    # each of the new blocks offline, then online again
    for b in $new_blocks; do
        echo offline > $b/state || { echo "offline $b failed"; exit 1; }
        echo online > $b/state || { echo "online $b failed"; exit 1; }
    done
    vm-put /tmp/blocks.txt blocks.txt
    wait_idle || exit 1
    @AFTER_STORM@
    khoctl --json kdump status > /tmp/status.json 2>&1
    vm-marker rc-status $?
    vm-put /tmp/status.json status.json
    vm-marker crash-loaded "$(cat /sys/kernel/kexec_crash_loaded) $(cat $M/crash_hotplug)"
    cat /tmp/khod.log
    if [ -n "$ELFCOREHDR" ]; then
        khoctl elfcorehdr build -o /tmp/ech && khoctl --json elfcorehdr show /tmp/ech > /tmp/ech.json 2>&1
        vm-marker rc-ech $?
        vm-put /tmp/ech.json ech.json
        vm-marker cpus "$(cat /sys/devices/system/cpu/possible) $(cat /sys/devices/system/cpu/online)"
    fi
    vm-marker panic
    echo c > /proc/sysrq-trigger
    sleep 30
    echo "still alive after sysrq-c"
    exit 1
fi
if [ "$1" = crash ]; then
    [ -e /proc/vmcore ] || { echo "no /proc/vmcore in the capture kernel"; exit 1; }
    dd if=/proc/vmcore of=/tmp/vmcore-head bs=4096 count=16 2>/dev/null || exit 1
    vm-put /tmp/vmcore-head vmcore-head.bin
    vm-marker vmcore-size "$(stat -c %s /proc/vmcore)"
    if [ -n "$ELFCOREHDR" ]; then
        khoctl --json elfcorehdr show /proc/vmcore > /tmp/vmcore.json 2>&1
        vm-marker rc-vmcore-show $?
        vm-put /tmp/vmcore.json vmcore.json
    fi
    if [ -n "$MAKEDUMPFILE" ]; then
        # What kdump-tools runs in the capture kernel: every page that is not
        # zero, cache, user data or free left out, lzo compressed.
        makedumpfile -l -d 31 /proc/vmcore /tmp/dump > /tmp/makedumpfile.log 2>&1
        vm-marker rc-makedumpfile $?
        cat /tmp/makedumpfile.log
        vm-put /tmp/makedumpfile.log makedumpfile.log
        head -c 4096 /tmp/dump > /tmp/dump-head 2>/dev/null
        vm-put /tmp/dump-head dump-head.bin
        vm-marker dump-size "$(stat -c %s /tmp/dump 2>/dev/null || echo 0)"
    fi
    exit 0
fi
exit 1
'''

STATE = {}


def guest_script(load_crash_kernel: str, after_storm: str = "", elfcorehdr: bool = False,
                 makedumpfile: bool = False) -> str:
    """makedumpfile (with elfcorehdr): the capture kernel also writes a dump
    with Debian's makedumpfile (HOST_BINARIES must bring it)."""
    return (GUEST_SCRIPT.replace("@CRASH_APPEND@", CRASH_APPEND)
            .replace("@ELFCOREHDR@", "1" if elfcorehdr else "")
            .replace("@MAKEDUMPFILE@", "1" if makedumpfile else "")
            .replace("@CPU_CYCLES@", str(CPU_CYCLES))
            .replace("@LOAD_CRASH_KERNEL@", load_crash_kernel)
            .replace("@AFTER_STORM@", after_storm))


def host(vm):
    vm.wait_marker("want-dimm", timeout=120)
    vm.hotplug_memory(DIMM_SIZE)
    devices = vm.qmp.execute("query-memory-devices")
    dimms = [d["data"] for d in devices if d.get("type") == "dimm"]
    STATE["dimm"] = (int(dimms[-1]["addr"]), int(dimms[-1]["size"]))


def pt_loads(head: bytes) -> list[tuple[int, int]]:
    """(paddr, memsz) of every PT_LOAD in an ELF64 little-endian core's headers."""
    if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
        raise CheckFailed(f"/proc/vmcore does not start with an ELF64 LE header: {head[:16].hex()}")
    e_phoff, = struct.unpack_from("<Q", head, 0x20)
    e_phentsize, e_phnum = struct.unpack_from("<HH", head, 0x36)
    if e_phoff + e_phentsize * e_phnum > len(head):
        raise CheckFailed(f"program headers end past the {len(head)} bytes read "
                          f"(phoff {e_phoff}, {e_phnum} x {e_phentsize})")
    out = []
    for i in range(e_phnum):
        p_type, _flags, _off, _vaddr, paddr, _filesz, memsz, _align = struct.unpack_from(
            "<IIQQQQQQ", head, e_phoff + i * e_phentsize)
        if p_type == 1:
            out.append((paddr, memsz))
    return out


def covered(ranges: list[tuple[int, int]], start: int, size: int) -> bool:
    """Whether [start, start + size) lies within the union of the ranges."""
    pos, end = start, start + size
    for a, n in sorted(ranges):
        if a <= pos < a + n:
            pos = a + n
        if pos >= end:
            return True
    return pos >= end


def check_common(result, event_source: str = "kernel", min_events: int = 2 * CPU_CYCLES + 32) -> dict:
    expect("dimm" in STATE, "the host never hot-added the DIMM")
    addr, size = STATE["dimm"]
    expect_eq(size, DIMM_SIZE, "DIMM size from QMP")
    blocks = [line.split() for line in result.text("blocks.txt").splitlines() if line.strip()]
    in_dimm = [b for b in blocks if addr <= int(b[1]) < addr + size]
    expect_eq(len(in_dimm), 8, f"128 MiB blocks the guest sees in the DIMM at {addr:#x} ({blocks})")

    expect_eq(result.marker("rc-status", boot=1).payload, "0", "khoctl kdump status")
    status = result.json("status.json")
    kd = dig(status, "kdump")
    expect_eq(dig(kd, "EventSource"), event_source, "EventSource")
    # cpu1 offline+online per cycle, 8 blocks added and onlined, 8 offlined and onlined.
    expect(dig(kd, "EventsSeen") >= min_events,
           f"khod saw {dig(kd, 'EventsSeen')} hotplug events, expected at least {min_events}")
    expect_eq(dig(kd, "Loaded"), True, "Loaded after the storm")
    expect_eq(dig(kd, "InPlaceUpdate"), {"cpu": "yes", "memory": "yes"}, "InPlaceUpdate after the storm")
    expect_eq(result.marker("crash-loaded", boot=1).payload, "1 1", "kexec_crash_loaded, crash_hotplug")

    stages = [m.stage for m in result.markers_of("boot")]
    expect_eq(stages, ["1", "crash"], "stages of the boots (the capture kernel must boot)")
    loads = pt_loads(result.file("vmcore-head.bin"))
    expect(loads, "the capture kernel's /proc/vmcore has no PT_LOAD")
    expect(covered(loads, addr, size),
           f"the hot-added DIMM [{addr:#x}, {addr + size:#x}) is not covered by /proc/vmcore's PT_LOADs: "
           + ", ".join(f"[{a:#x}, {a + n:#x})" for a, n in loads))
    vmcore_size = int(result.marker("vmcore-size").payload)
    expect(vmcore_size > 1 << 30, f"/proc/vmcore is {vmcore_size} bytes: the 1 GiB DIMM is not in it")
    return kd


def cpulist_count(text: str) -> int:
    """CPUs in a kernel cpulist such as "0-1,3"."""
    n = 0
    for part in text.strip().split(","):
        a, _, b = part.partition("-")
        n += int(b or a) - int(a) + 1
    return n


def check_elfcorehdr(result):
    """khod's elfcorehdr, built just before the panic, against the kernel's
    own (kexec_file_load's, kept current in place through the storm) as the
    capture kernel's /proc/vmcore shows it."""
    expect_eq(result.marker("rc-ech", boot=1).payload, "0", "khoctl elfcorehdr build && show")
    expect_eq(result.marker("rc-vmcore-show").payload, "0", "khoctl elfcorehdr show /proc/vmcore")
    ours, kernel = result.json("ech.json"), result.json("vmcore.json")
    expect_eq(dig(ours, "form"), "elfcorehdr", "form of khod's header")
    expect_eq(dig(kernel, "form"), "dump", "form of /proc/vmcore")
    possible, online = (cpulist_count(w) for w in result.marker("cpus", boot=1).payload.split())
    expect_eq(len(dig(ours, "cpus")), possible, "khod's CPU notes (one per possible CPU)")
    saved = [n for n in dig(kernel, "notes") if n["type"] == "NT_PRSTATUS"]
    expect_eq(len(saved), online, "NT_PRSTATUS notes in /proc/vmcore (one per CPU online at the crash)")
    expect_eq(len(dig(kernel, "cpus")), online, "CPUs khoctl lists for /proc/vmcore")
    expect_eq(dig(kernel, "vmcoreinfo.fields.OSRELEASE"), result.kernel_release, "VMCOREINFO OSRELEASE")

    def ranges(doc):
        return [(r["start"], r["end"]) for r in dig(doc, "ranges")]
    expect_eq(ranges(ours), ranges(kernel), "RAM ranges: khod's elfcorehdr against the kernel's")
    addr, size = STATE["dimm"]
    expect(covered([(a, e - a) for a, e in ranges(ours)], addr, size),
           f"the hot-added DIMM [{addr:#x}, {addr + size:#x}) is not in khod's RAM ranges: {ranges(ours)}")
    text = dig(ours, "kernel_text")
    expect(text is not None, "khod's elfcorehdr has no kernel text PT_LOAD")
    expect_eq(text, dig(kernel, "kernel_text"), "kernel text (vaddr, paddr, size)")
    expect_eq(dig(ours, "page_offset"), dig(kernel, "page_offset"), "direct map base")


def check_makedumpfile(result):
    """makedumpfile -l -d 31 read /proc/vmcore and wrote a dump: its kdump
    (diskdump) header and a size in the MiB, not an empty or partial file."""
    log = result.text("makedumpfile.log")
    expect_eq(result.marker("rc-makedumpfile").payload, "0", f"makedumpfile -l -d 31 /proc/vmcore: {log}")
    head = result.file("dump-head.bin")
    expect(head[:8] == b"KDUMP   ", f"the dump does not start with the kdump signature: {head[:16]!r}")
    size = int(result.marker("dump-size").payload)
    expect(size > 1 << 20, f"the dump is {size} bytes")
