"""A live update through systemd: `khoctl prepare/finalize/exec` without
--force goes through kexec.target (services stopped in order, the journal
flushed to disk), the next kernel restores the KHO state, and khod, whose
crash kernel recipe is in khod.conf, loads the crash kernel again before it
reports ready: kdump is armed again after a live update with nobody asking.

On the shared 7.2 kernel into itself. kdump-tools is disabled, so any crash
kernel in the second boot is khod's.

Then, in the second boot, two loads the kernel refuses after it freed the
crash kernel it held (kernel/kexec_file.c frees it before it places the new
image): an initrd just as large as khod's own fit check allows, which
leaves no room for the elfcorehdr, purgatory and boot parameters the kernel
places too. khod loads the last good image again ("rolled back"). Then with
kernel.kexec_load_limit_panic=1, which kexec_load_permitted() counts down
per call before anything is freed, the same load spends the last permitted
call and the rollback is refused with EPERM ("left unloaded"). Both entries
are read back with `journalctl -o json MESSAGE_ID=...`.
"""

import json
import re
import struct

from vmtest import dig, expect, expect_eq
from vmtest.distro import SHARED_KERNELS

DESCRIPTION = "prepare/finalize/exec through kexec.target; KHO restored; khod re-arms kdump before READY"
KERNEL = "7.2"
BOOTS = 2
TARGET = "/boot/khod-test/bzImage"
# The kernel of the loads the kernel refuses: the same file by another name,
# so the entries tell the refused recipe from the one rolled back to.
BIG_KERNEL = "/var/lib/khod-test/crash-bzImage"
BIG_INITRD = "/var/lib/khod-test/initrd-too-big"
CRASH_CMDLINE = "root=/dev/vda ro console=ttyS0 nr_cpus=1 irqpoll reset_devices"
ROLLED_BACK = "aa7aacb066284a1f97175b9eae8a211b"
UNLOADED = "1873f029e0b848c08aa7ab87e263a91c"


def kernel_bytes_needed(bzimage) -> int:
    """What khod's crash fit check counts for the kernel
    (lib/khod/kdump/crash_preflight.cpp): max(init_size, the payload after
    the setup sectors), page-aligned."""
    data = bzimage.read_bytes()
    setup_sects = data[0x1f1] or 4
    init_size, = struct.unpack_from("<I", data, 0x260)
    need = max(init_size, len(data) - (setup_sects + 1) * 512)
    return (need + 4095) // 4096 * 4096
FILES = {
    TARGET: SHARED_KERNELS["7.2"],
    "/etc/khod/khod.conf": f"""\
[Kdump]
Kernel={TARGET}
CommandLine=root=/dev/vda ro console=ttyS0 nr_cpus=1 irqpoll reset_devices
""",
}

GUEST_SCRIPT = r'''
if [ "$1" = 1 ]; then
    systemctl disable --now kdump-tools
    kdump-config unload > /dev/null 2>&1
    systemctl start khod
    khoctl --json kdump reload > /tmp/reload.json 2>&1
    vm-marker rc-reload $?
    vm-put /tmp/reload.json reload.json
    khoctl --json prepare --kernel @TARGET@ --reuse-cmdline --append khod.stage=2 > /tmp/prepare.json 2>&1
    vm-marker rc-prepare $?
    vm-put /tmp/prepare.json prepare.json
    khoctl --json finalize > /tmp/finalize.json 2>&1
    vm-marker rc-finalize $?
    vm-put /tmp/finalize.json finalize.json
    vm-marker loaded "$(cat /sys/kernel/kexec/loaded 2>/dev/null || cat /sys/kernel/kexec_loaded)"
    stay_up
    vm-marker exec
    khoctl exec > /tmp/exec.txt 2>&1
    vm-marker rc-exec $?
    exit 0
fi
vm-marker crash-loaded "$(cat /sys/kernel/kexec_crash_loaded)"
khoctl --json status > /tmp/status-2.json 2>&1
vm-put /tmp/status-2.json status-2.json
journalctl -b -1 -o short-monotonic --no-pager > /tmp/journal-1.txt 2>&1
vm-put /tmp/journal-1.txt journal-before-exec.txt
journalctl -b -o short-monotonic --no-pager > /tmp/journal-2.txt 2>&1
vm-put /tmp/journal-2.txt journal-after-exec.txt
# khod's structured entries of both boots, as an operator would search them
journalctl -o json --no-pager _SYSTEMD_UNIT=khod.service > /tmp/khod.json 2>&1
vm-put /tmp/khod.json khod-journal.json
journalctl -x -b -1 --no-pager MESSAGE_ID=@EXEC@ > /tmp/explained.txt 2>&1
vm-put /tmp/explained.txt exec-explained.txt

# A load the kernel refuses after it freed the crash kernel: an initrd that
# fills the crashkernel= region to the byte, as far as khod's check counts.
mkdir -p /var/lib/khod-test
ln -sf @TARGET@ @BIG_KERNEL@
truncate -s $(($(cat /sys/kernel/kexec_crash_size) - @KERNEL_NEED@)) @BIG_INITRD@
big_load() {
    khoctl --json kdump load --kernel @BIG_KERNEL@ --initrd @BIG_INITRD@ --append "@CMDLINE@" > "/tmp/$1.json" 2>&1
    vm-marker "rc-$1" $?
    vm-put "/tmp/$1.json" "$1.json"
    vm-marker "crash-loaded-$1" "$(cat /sys/kernel/kexec_crash_loaded)"
}
big_load load-rolled-back
# One more permitted crash load: the refused one spends it, the rollback gets EPERM.
echo 1 > /proc/sys/kernel/kexec_load_limit_panic
big_load load-unloaded
for id in @ROLLED@ @UNLOADED@; do
    wait_until 10 sh -c "journalctl -b -q -o cat MESSAGE_ID=$id | grep -q ."
    journalctl -b -o json --no-pager MESSAGE_ID=$id > /tmp/$id.json 2>&1
    vm-put /tmp/$id.json journal-$id.json
done
'''.replace("@TARGET@", TARGET).replace("@EXEC@", "347a8cd146c64b9ea154f181e87ce3df").replace(
    "@BIG_KERNEL@", BIG_KERNEL).replace("@BIG_INITRD@", BIG_INITRD).replace(
    "@KERNEL_NEED@", str(kernel_bytes_needed(SHARED_KERNELS["7.2"]))).replace("@CMDLINE@", CRASH_CMDLINE).replace(
    "@ROLLED@", ROLLED_BACK).replace("@UNLOADED@", UNLOADED)


def line_index(lines: list[str], pattern: str, what: str) -> int:
    for i, line in enumerate(lines):
        if re.search(pattern, line):
            return i
    expect(False, f"{what}: no line matches /{pattern}/")
    return -1


# src/khod/message_ids.hpp: (id, boot, fields each entry must carry)
JOURNAL_EVENTS = [
    ("2f157184e7fa428f9dde14eed001c949", 1, {"KHOD_KERNEL": TARGET, "KHOD_RELEASE": None}),
    ("347a8cd146c64b9ea154f181e87ce3df", 1, {"KHOD_KERNEL": TARGET, "KHOD_SESSIONS": "0"}),
    ("6ee3bb4281e94fc5b995fb50b7a4403c", 2, {"KHOD_PREVIOUS_RELEASE": "@RELEASE@", "KHOD_KHO_INCOMING": "yes"}),
    ("268d8271cba3467e89970473332c6a27", 2, {"KHOD_KERNEL": TARGET, "KHOD_RELOAD_REASON": "live update"}),
]


def check_journal_events(result):
    entries = [json.loads(line) for line in result.text("khod-journal.json").splitlines() if line.startswith("{")]
    boots = sorted({e["_BOOT_ID"] for e in entries}, key=lambda b: min(
        int(e["__REALTIME_TIMESTAMP"]) for e in entries if e["_BOOT_ID"] == b))
    expect_eq(len(boots), 2, "boots in khod's journal")
    for message_id, boot, fields in JOURNAL_EVENTS:
        found = [e for e in entries if e.get("MESSAGE_ID") == message_id and e["_BOOT_ID"] == boots[boot - 1]]
        expect(len(found) == 1, f"boot {boot}: {len(found)} journal entries with MESSAGE_ID={message_id}")
        for key, value in fields.items():
            expect(key in found[0], f"MESSAGE_ID={message_id}: no {key} in {sorted(found[0])}")
            if value is not None:  # @RELEASE@: the kernel under test, which the kexec came from
                want = result.kernel_release if value == "@RELEASE@" else value
                expect_eq(found[0][key], want, f"MESSAGE_ID={message_id}: {key}")
    explained = result.text("exec-explained.txt")
    expect("-- Subject:" in explained or "Defined-By: khod" in explained or "Documentation: man:khod(8)" in explained,
           f"journalctl -x shows no catalog text for the exec entry:\n{explained[:1500]}")


def entries_of(result, message_id: str) -> list[dict]:
    text = result.text(f"journal-{message_id}.json")
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def check_refused_loads(result):
    """The two refused loads: the journal entries khod wrote for them, with
    their KHOD_* fields, as journald stored them."""
    for step, after in (("load-rolled-back", "1"), ("load-unloaded", "0")):
        expect(result.marker(f"rc-{step}", boot=2).payload != "0", f"khoctl kdump load ({step}) succeeded")
        expect_eq(result.marker(f"crash-loaded-{step}", boot=2).payload, after, f"kexec_crash_loaded after {step}")
    rolled = [e for e in entries_of(result, ROLLED_BACK) if e.get("KHOD_KERNEL") == BIG_KERNEL]
    expect_eq(len(rolled), 1, f"MESSAGE_ID={ROLLED_BACK} entries for the refused load")
    e = rolled[0]
    for key, value in (("KHOD_ROLLBACK_KERNEL", TARGET), ("KHOD_RELOAD_REASON", "Load"), ("PRIORITY", "4"),
                       ("_SYSTEMD_UNIT", "khod.service")):
        expect_eq(e.get(key), value, f"MESSAGE_ID={ROLLED_BACK}: {key}")
    expect(e.get("KHOD_ERROR"), f"MESSAGE_ID={ROLLED_BACK}: no KHOD_ERROR in {sorted(e)}")
    expect(int(e.get("KHOD_UNLOADED_USEC", "0")) > 0, f"MESSAGE_ID={ROLLED_BACK}: KHOD_UNLOADED_USEC "
           f"{e.get('KHOD_UNLOADED_USEC')!r}: the kernel freed the old image first, so there was a window")
    unloaded = [e for e in entries_of(result, UNLOADED)
                if e.get("KHOD_KERNEL") == BIG_KERNEL and e.get("KHOD_RELOAD_REASON") == "Load"]
    expect_eq(len(unloaded), 1, f"MESSAGE_ID={UNLOADED} entries for the load whose rollback was refused")
    e = unloaded[0]
    for key, value in (("PRIORITY", "3"), ("_SYSTEMD_UNIT", "khod.service")):
        expect_eq(e.get(key), value, f"MESSAGE_ID={UNLOADED}: {key}")
    expect(e.get("KHOD_ERROR") and "KHOD_UNLOADED_USEC" in e, f"MESSAGE_ID={UNLOADED}: fields {sorted(e)}")
    expect("KHOD_ROLLBACK_KERNEL" not in e, f"MESSAGE_ID={UNLOADED} names a rollback kernel: {e}")
    expect("rollback to the last good image failed too" in e["KHOD_ERROR"],
           f"MESSAGE_ID={UNLOADED}: KHOD_ERROR does not say why the rollback failed: {e['KHOD_ERROR']!r}")
    # khod's own answer to the caller says what became of the rollback.
    answer = result.text("load-unloaded.json")
    expect("EPERM" in answer and "rollback" in answer, f"khoctl kdump load's answer:\n{answer[:1500]}")


def check(result):
    for word in ("rc-reload", "rc-prepare", "rc-finalize"):
        expect_eq(result.marker(word, boot=1).payload, "0", word)
    expect_eq(dig(result.json("finalize.json"), "handover.State"), "loaded", "State after finalize")
    expect_eq(result.marker("loaded", boot=1).payload, "1", "kexec_loaded after finalize")
    expect_eq([m.stage for m in result.markers_of("boot")], ["1", "2"], "stages of the boots")
    expect("KHO restore succeeded" in result.console, "the 2nd kernel did not print 'KHO restore succeeded'")

    # The first boot's journal reached the disk and shows systemd taking the
    # system down in order for kexec.target after khod's exec.
    before = result.text("journal-before-exec.txt").splitlines()
    exec_at = line_index(before, r"khod\[\d+\]: .*rebooting into", "khod's exec")
    stopped_at = line_index(before, r"Stopped khod\.service", "khod stopped by systemd")
    target_at = line_index(before, r"Reached target kexec\.target", "systemd's kexec.target")
    journal_at = line_index(before, r"systemd-journald\[\d+\]: Journal stopped", "journald's last words")
    expect(exec_at < stopped_at < target_at < journal_at,
           "expected khod's exec, khod stopped, kexec.target reached and the journal stopped in that order "
           f"(lines {exec_at}, {stopped_at}, {target_at}, {journal_at} of the first boot's journal)")

    # Second boot: khod loaded the crash kernel from khod.conf before READY=1.
    expect_eq(result.marker("crash-loaded", boot=2).payload, "1", "kexec_crash_loaded after the live update")
    after = result.text("journal-after-exec.txt").splitlines()
    loaded_at = line_index(after, r"khod\[\d+\]: .*crash kernel.*(loaded|re-?armed)", "khod's crash kernel load")
    ready_at = line_index(after, r"Started khod\.service", "khod's READY=1 (systemd: Started)")
    expect(loaded_at < ready_at, "khod reported ready before it loaded the crash kernel")
    status = result.json("status-2.json")
    expect_eq(dig(status, "daemon.kdump.Loaded"), True, "khod's Kdump.Loaded after the live update")
    expect_eq(dig(status, "daemon.kdump.Managed"), True, "khod's Kdump.Managed after the live update")
    expect_eq(dig(status, "kho.incoming"), True, "khoctl status: kho.incoming")
    check_journal_events(result)
    check_refused_loads(result)
