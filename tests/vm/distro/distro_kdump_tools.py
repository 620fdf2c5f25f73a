"""Debian's own kdump-tools with khod's package drop-in, on Debian's own kernel.

kdump-tools.service loads the crash kernel at boot. khod, started with
Loader=native, reloads kdump-tools' recipe as its own kexec_load image (its
elfcorehdr, purgatory and boot_params; /proc/kcore from the unit's OpenFile=),
which the kernel must update in place (crash_hotplug 1). With khod running, a
storm (cpu1 offline/online cycles, a 1 GiB DIMM hot-added through QMP, its
blocks offlined and onlined) costs at most one reload by khod and no
`kdump-config` run at all (udevd logs every program it runs at debug level).
Then khod is stopped and a second DIMM is hot-added: the hot-add rule's
SYSTEMD_WANTS starts khod again. Then a panic: kdump-tools' own capture
(kdump-tools-dump.service in the crash kernel, makedumpfile) writes a dump
under /var/crash, which the host reads off the disk; the dump's page range
must reach past both DIMMs.
"""

import struct

from scenarios._kdump import CPU_CYCLES, CPU_STORM, DIMM_SIZE, covered
from vmtest import CheckFailed, dig, distro_image, expect, expect_eq

DESCRIPTION = "kdump-tools + khod's drop-in: storm without kdump-config, SYSTEMD_WANTS, a real dump in /var/crash"
FINISHES_IN_GUEST = False
TIMEOUT = 900
DIMMS: list[tuple[int, int]] = []

GUEST_SCRIPT = CPU_STORM + r'''
M=/sys/devices/system/memory
kstatus() { khoctl --json kdump status > "/tmp/$1.json" 2>&1; vm-put "/tmp/$1.json" "$1.json"; }
idle() { khoctl --json kdump status 2>/dev/null | grep -q '"Pending": false'; }
# hot_add N: asks the host for DIMM N, waits until its eight blocks are online
hot_add() {
    ls -d $M/memory* > /tmp/blocks-before
    vm-marker want-dimm "$1"
    wait_until 120 sh -c "[ \$(ls -d $M/memory* | wc -l) -ge \$((\$(wc -l < /tmp/blocks-before) + 8)) ]" || return 1
    NEW_BLOCKS=$(ls -d $M/memory* | grep -v -x -F -f /tmp/blocks-before)
    for b in $NEW_BLOCKS; do wait_until 60 grep -q online $b/state || return 1; done
}

udevadm control --log-level=debug
vm-marker at-boot "$(systemctl is-active kdump-tools) $(cat /sys/kernel/kexec_crash_loaded) $(systemctl is-active khod)"
kdump-config status > /tmp/kdump-config-status.txt 2>&1
vm-put /tmp/kdump-config-status.txt kdump-config-status.txt
# The 50-kdump-tools.rules udevd uses: the first of /etc, /run, /usr/lib.
for d in /etc/udev/rules.d /run/udev/rules.d /usr/lib/udev/rules.d; do
    [ -e $d/50-kdump-tools.rules ] && break
done
dpkg -S "$(readlink -f $d/50-kdump-tools.rules)" > /tmp/dropin.txt 2>&1
vm-marker rc-dropin $?
vm-put /tmp/dropin.txt dropin.txt
# khod takes over kdump-tools' recipe with its own kexec_load image
# (Loader=native): the storm, the restart and the dump below all run on it.
mkdir -p /etc/khod/khod.conf.d
printf '[Kdump]\nLoader=native\n' > /etc/khod/khod.conf.d/50-native.conf
systemctl restart khod  # it may be running already (activated at boot): it reads khod.conf at start
wait_until 30 test -e /run/khod/kdump-hotplug || exit 1
khoctl --json kdump reload > /tmp/native-load.json 2>&1
vm-marker rc-native-load $?
vm-put /tmp/native-load.json native-load.json
vm-marker native-hotplug "$(cat /sys/kernel/kexec_crash_loaded) $(cat /sys/devices/system/cpu/crash_hotplug) $(cat $M/crash_hotplug)"
kstatus status-before
since=$(date +%s)

cpu_storm || exit 1
hot_add 1 || { echo "DIMM 1 did not come online"; exit 1; }
for b in $NEW_BLOCKS; do
    echo offline > $b/state || { echo "offline $b failed"; exit 1; }
    echo online > $b/state || { echo "online $b failed"; exit 1; }
done
wait_until 60 idle || { echo "khod never settled"; exit 1; }
kstatus status-storm
journalctl --since "@$since" -o short-monotonic --no-pager -u systemd-udevd > /tmp/udevd-storm.txt
vm-put /tmp/udevd-storm.txt udevd-storm.txt

systemctl stop khod
vm-marker stopped "$(systemctl is-active khod) $(test -e /run/khod/kdump-hotplug && echo marker || echo no-marker)"
hot_add 2 || { echo "DIMM 2 did not come online"; exit 1; }
wait_until 60 systemctl is-active -q khod
vm-marker after-hot-add "$(systemctl is-active khod)"
wait_until 60 idle
kstatus status-after
vm-marker crash-loaded "$(cat /sys/kernel/kexec_crash_loaded)"
journalctl -b -o json --no-pager -u khod > /tmp/khod-journal.json
vm-put /tmp/khod-journal.json khod-journal.json
journalctl -b -o short-monotonic --no-pager > /tmp/journal.txt
vm-put /tmp/journal.txt journal-1.txt
sync
stay_up
vm-marker panic
echo c > /proc/sysrq-trigger
'''


def host(vm):
    for n in (1, 2):
        vm.wait_marker("want-dimm", timeout=600)
        vm.hotplug_memory(DIMM_SIZE)
        devices = vm.qmp.execute("query-memory-devices")
        dimm = [d["data"] for d in devices if d.get("type") == "dimm"][-1]
        DIMMS.append((int(dimm["addr"]), int(dimm["size"])))


def unflatten_head(data: bytes, size: int) -> bytes:
    """The first `size` bytes of the dump a flattened makedumpfile stream
    (-F, what kdump-tools writes when it pipes) stands for: a 4 KiB header
    signed "makedumpfile", then records of big-endian (offset, length) + data."""
    if not data.startswith(b"makedumpfile"):
        return data[:size]
    out = bytearray(size)
    pos = 4096
    while pos + 16 <= len(data):
        offset, length = struct.unpack_from(">qq", data, pos)
        pos += 16
        if offset < 0 or length < 0:      # the end marker is -1, -1
            break
        if offset < size:
            chunk = data[pos:pos + min(length, size - offset)]
            out[offset:offset + len(chunk)] = chunk
        pos += length
    return bytes(out)


def dump_max_pfn(path) -> int:
    """max_mapnr of a kdump-compressed dump: the page frame after the last one
    the crash kernel's elfcorehdr described."""
    head = unflatten_head(path.read_bytes(), 4096 * 4)
    if head[:8] != b"KDUMP   ":
        raise CheckFailed(f"{path.name} is not a kdump-compressed dump: {head[:8]!r}")
    version, = struct.unpack_from("<i", head, 8)
    block_size, = struct.unpack_from("<i", head, 428)
    max_mapnr, = struct.unpack_from("<I", head, 440)
    if version >= 6:  # the 64-bit count in the sub-header, one block in
        max_mapnr, = struct.unpack_from("<Q", head, block_size + 96)
    return max_mapnr


def crash_files(result) -> tuple[str, list[str]]:
    dirs = [d for d in distro_image.list_guest_dir(result.disk, "/var/crash") if d[:1].isdigit()]
    expect(dirs, f"kdump-tools wrote nothing under /var/crash: {distro_image.list_guest_dir(result.disk, '/var/crash')}")
    return dirs[-1], distro_image.list_guest_dir(result.disk, f"/var/crash/{dirs[-1]}")


def check(result):
    expect_eq(result.marker("at-boot").payload.split()[:2], ["active", "1"],
              "kdump-tools.service and kexec_crash_loaded at boot")
    expect_eq(result.marker("rc-dropin").payload, "0", "dpkg -S of the 50-kdump-tools.rules in force")
    expect(result.text("dropin.txt").startswith("khod:"), f"the drop-in is not khod's: {result.text('dropin.txt')}")

    native = result.json("native-load.json")
    expect_eq(result.marker("rc-native-load").payload, "0", f"khoctl kdump reload with Loader=native: {native}")
    expect_eq(dig(native, "kdump.Loader"), "native", "Loader of the reloaded kdump-tools recipe")
    expect_eq(dig(native, "kdump.Recipe.source"), "/etc/default/kdump-tools", "the recipe reloaded natively")
    expect_eq(result.marker("native-hotplug").payload, "1 1 1",
              "kexec_crash_loaded and crash_hotplug (cpu, memory) after khod's kexec_load in its sandbox")
    before = dig(result.json("status-before.json"), "kdump")
    storm = dig(result.json("status-storm.json"), "kdump")
    reloads = dig(storm, "Reloads") - dig(before, "Reloads")
    expect(reloads <= 1, f"khod reloaded {reloads} times for one storm")
    expect(dig(storm, "EventsSeen") - dig(before, "EventsSeen") >= 2 * CPU_CYCLES + 16,
           f"khod saw too few events: {dig(storm, 'EventsSeen')} after {dig(before, 'EventsSeen')}")
    udevd = result.text("udevd-storm.txt")
    expect("kdump-config" not in udevd, "udevd ran kdump-config during the storm:\n" +
           "\n".join(line for line in udevd.splitlines() if "kdump-config" in line)[:2000])
    expect("Running in test mode" not in udevd and udevd.strip(), "no udevd debug log for the storm")

    expect_eq(result.marker("stopped").payload, "inactive no-marker", "khod stopped, its marker gone")
    expect_eq(result.marker("after-hot-add").payload, "active", "khod after the DIMM hot-add (SYSTEMD_WANTS)")
    expect_eq(dig(result.json("status-after.json"), "kdump.Loaded"), True, "crash kernel after the 2nd DIMM")
    expect_eq(dig(result.json("status-after.json"), "kdump.Loader"), "native", "Loader after khod's restart")
    expect_eq(result.marker("crash-loaded").payload, "1", "kexec_crash_loaded before the panic")

    expect_eq(len(DIMMS), 2, "DIMMs the host hot-added")
    stamp, files = crash_files(result)
    dumps = [f for f in files if f.startswith("dump.")]
    expect(dumps and any(f.startswith("dmesg.") for f in files), f"/var/crash/{stamp} holds {files}")
    local = distro_image.read_guest_file(result.disk, f"/var/crash/{stamp}/{dumps[0]}", result.outdir / dumps[0])
    expect(local is not None, f"cannot read /var/crash/{stamp}/{dumps[0]} off the disk")
    end = dump_max_pfn(local) * 4096
    for addr, size in DIMMS:
        expect(covered([(0, end)], addr, size),
               f"the dump ends at {end:#x}, short of the DIMM at [{addr:#x}, {addr + size:#x})")
    expect_eq(size, DIMM_SIZE, "DIMM size from QMP")
