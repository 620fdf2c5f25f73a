"""A khod LUO session through the real systemd fd store and a live update
from 7.2 into 7.3, beside systemd's own LUO session in the same kexec.

Boot 1 (shared 7.2 kernel, Debian userspace): session vm1 created and a
16 MiB file preserved in it through khod (khoctl luo create/preserve);
`systemctl restart khod`: the session's fds wait in systemd's fd store for
the new khod, which lists vm1 again with its file. memfd-keeper.service
(FileDescriptorStorePreserve=yes) puts a memfd holding 4 MiB of random bytes
in its own fd store; the file they came from is deleted. prepare, finalize,
`khoctl exec`: with khod.service's FileDescriptorStorePreserve=yes on
systemd 262, khod goes through kexec.target, systemd-shutdown keeps khod's
session fds open until its reboot(2) and preserves the keeper's memfd in
its LUO session "systemd".
Boot 2 (shared 7.3 kernel): PID 1 hands the keeper its memfd back (same
SHA-256) and khod its sessions through its fd store; khod reads its
manifest from them and holds vm1; `khoctl luo retrieve` gives back the
bytes with the SHA-256 of boot 1; finish leaves nothing held.
"""

import json
import re

from vmtest import dig, expect, expect_eq
from vmtest.distro import SHARED_KERNELS

DESCRIPTION = ("khod's LUO session kept by systemd's fd store across systemctl restart khod, then with a "
               "FileDescriptorStorePreserve= service's memfd through one kexec.target 7.2 -> 7.3")
KERNEL = "7.2"
NEXT_KERNEL = "7.3"
BOOTS = 2
TARGET = "/boot/khod-test/bzImage"
KEEPER = "/usr/local/lib/khod-distrotest/memfd-keeper"
# A service that keeps a memfd in its fd store, as systemd.service(5) has it
# for FileDescriptorStorePreserve=: systemd's own LUO session carries it.
KEEPER_UNIT = f"""\
[Unit]
Description=distro-luo: a memfd with random bytes in systemd's fd store
[Service]
Type=oneshot
RemainAfterExit=yes
NotifyAccess=all
FileDescriptorStoreMax=1
FileDescriptorStorePreserve=yes
ExecStart={KEEPER}
"""
# Boot 1: copies pattern.bin into a memfd (perl-base is Essential; no
# python in the image) and stores it with systemd-notify, which stays the
# sender until PID 1 took the message (--exec). Boot 2: says what came back.
KEEPER_SCRIPT = r"""#!/bin/sh
if [ "${LISTEN_FDNAMES:-}" = pattern ] && [ "${LISTEN_PID:-}" = "$$" ]; then
    echo "$(sha256sum < /proc/self/fd/3 | cut -d' ' -f1) $(stat -L -c %s /proc/self/fd/3) $(readlink /proc/self/fd/3)" \
        > /run/memfd-keeper.txt
    exit 0
fi
exec perl -e '
    my $name = "keeper";  # syscall() wants writable strings
    my $fd = syscall(319, $name, 0);  # memfd_create(2), no MFD_CLOEXEC: systemd-notify inherits it
    die "memfd_create: $!\n" if $fd < 0;
    open(my $in, "<:raw", $ARGV[0]) or die "$ARGV[0]: $!\n";
    my $data = do { local $/; <$in> };
    while (length $data) {  # write(2) on the raw fd
        my $n = syscall(1, $fd, $data, length $data);
        die "write: $!\n" if $n <= 0;
        substr($data, 0, $n) = "";
    }
    exec("systemd-notify", "--fd=$fd", "--fdname=pattern", "--exec", "FDSTORE=1", ";", "sleep", "1")
        or die "exec: $!\n";
' /var/lib/memfd-keeper/pattern.bin
"""
# vm2 is never retrieved: khod lets it go when RetrieveTimeoutSec= runs out,
# with the journal entry an operator searches for.
FILES = {TARGET: SHARED_KERNELS["7.3"], "/etc/khod/khod.conf": "[LiveUpdate]\nRetrieveTimeoutSec=30s\n",
         "/etc/systemd/system/memfd-keeper.service": KEEPER_UNIT, KEEPER: KEEPER_SCRIPT}
SESSION_RELEASED = "f8c5a692603446a1bd78a355a6c3ed22"

GUEST_SCRIPT = r'''
if [ "$1" = 1 ]; then
    systemctl start khod
    head -c 16M /dev/urandom > /tmp/vm1.bin
    vm-marker sha-1 "$(sha256sum < /tmp/vm1.bin | cut -d' ' -f1)"
    khoctl luo create vm1 > /dev/null 2>&1
    vm-marker rc-create $?
    khoctl luo preserve vm1 7 /tmp/vm1.bin > /dev/null 2>&1
    vm-marker rc-preserve $?
    head -c 1M /dev/urandom > /tmp/vm2.bin
    khoctl luo create vm2 > /dev/null 2>&1 && khoctl luo preserve vm2 1 /tmp/vm2.bin > /dev/null 2>&1
    vm-marker rc-vm2 $?
    pid=$(systemctl show -P MainPID khod)
    systemctl restart khod
    vm-marker restarted "$pid $(systemctl show -P MainPID khod) $(systemctl show -P NFileDescriptorStore khod)"
    khoctl --json luo status > /tmp/luo-restarted.json 2>&1
    vm-put /tmp/luo-restarted.json luo-restarted.json
    mkdir -p /var/lib/memfd-keeper
    head -c 4M /dev/urandom > /var/lib/memfd-keeper/pattern.bin
    vm-marker keeper-sha-1 "$(sha256sum < /var/lib/memfd-keeper/pattern.bin | cut -d' ' -f1)"
    systemctl start memfd-keeper
    wait_until 10 sh -c '[ "$(systemctl show -P NFileDescriptorStore memfd-keeper)" = 1 ]'
    vm-marker keeper-stored $?
    # From here the bytes are only in the memfd.
    rm /var/lib/memfd-keeper/pattern.bin
    sync
    khoctl --json prepare --kernel @TARGET@ --reuse-cmdline --append khod.stage=2 > /tmp/prepare.json 2>&1
    vm-marker rc-prepare $?
    khoctl --json finalize > /tmp/finalize.json 2>&1
    vm-marker rc-finalize $?
    vm-put /tmp/finalize.json finalize.json
    stay_up
    khoctl exec > /tmp/exec.txt 2>&1
    vm-marker rc-exec $?
    cat /tmp/exec.txt
    exit 0
fi
vm-marker keeper-2 "$(systemctl show -P NFileDescriptorStore memfd-keeper) $(systemctl show -P KExecCount)"
systemctl start memfd-keeper
vm-marker keeper-back "$(cat /run/memfd-keeper.txt 2>&1) $(test -e /var/lib/memfd-keeper/pattern.bin && echo file-left)"
khoctl --json luo status > /tmp/luo-2.json 2>&1
vm-put /tmp/luo-2.json luo-2.json
khoctl luo retrieve vm1 7 /tmp/vm1.out > /dev/null 2>&1
vm-marker rc-retrieve $?
vm-marker sha-2 "$(sha256sum < /tmp/vm1.out | cut -d' ' -f1)"
khoctl luo finish vm1 > /dev/null 2>&1
vm-marker rc-finish $?
wait_until 90 sh -c '! khoctl --json luo status | grep -q "\"vm2\""'
vm-marker vm2-released $?
journalctl -b -o json --no-pager MESSAGE_ID=@RELEASED@ > /tmp/released.json 2>&1
vm-put /tmp/released.json released.json
journalctl -b -1 -o short-monotonic --no-pager > /tmp/journal-1.txt
vm-put /tmp/journal-1.txt journal-1.txt
journalctl -b -o short-monotonic --no-pager -u khod > /tmp/khod-2.txt
vm-put /tmp/khod-2.txt khod-journal-2.txt
'''.replace("@TARGET@", TARGET).replace("@RELEASED@", SESSION_RELEASED)


def sessions(doc, direction):
    return {s["name"]: s for s in dig(doc, f"liveupdate.{direction}")}


def line_index(lines: list[str], pattern: str, what: str, start: int = 0) -> int:
    for i, line in enumerate(lines[start:], start):
        if re.search(pattern, line):
            return i
    expect(False, f"{what}: no line matches /{pattern}/")
    return -1


def check_kexec_target(result):
    """Boot 1's exec went through systemd: khod said why, then systemd
    stopped khod and reached kexec.target; boot 2's khod got its sessions
    from the fd store and the keeper its memfd from systemd's session."""
    before = result.text("journal-1.txt").splitlines()
    through = line_index(before, r"khod\[\d+\]: .*are held: going through kexec\.target, since systemd \d+",
                         "khod choosing kexec.target")
    manifest = line_index(before, r"khod\[\d+\]: manifest written to LUO session khod", "khod's manifest")
    # After the manifest: the restart earlier stopped khod too.
    stopped = line_index(before, r"Stopped khod\.service", "khod stopped by systemd", manifest)
    target = line_index(before, r"Reached target kexec\.target", "systemd's kexec.target", stopped)
    expect(through < manifest < stopped < target,
           f"expected kexec.target chosen, manifest, khod stopped, kexec.target reached in that order "
           f"(lines {through}, {manifest}, {stopped}, {target} of boot 1's journal)")
    khod2 = result.text("khod-journal-2.txt")
    for name in ("khod", "vm1", "vm2"):
        expect(re.search(rf"LUO session {name} came through the kexec in the fd store", khod2),
               f"boot 2's khod does not say session {name} came in its fd store:\n{khod2[-3000:]}")
    expect("no khod manifest named it" not in khod2, f"khod released a carried session:\n{khod2[-3000:]}")
    stored, kexecs = result.marker("keeper-2", boot=2).payload.split()
    expect_eq(stored, "1", "memfd-keeper's fd store after the kexec (NFileDescriptorStore)")
    expect_eq(kexecs, "1", "systemd's KExecCount after the kexec (PID 1 found its LUO session)")
    # (memfd_luo does not carry the memfd's name: /proc shows "/ (deleted)".)
    back = result.marker("keeper-back", boot=2).payload
    sha, size = (back.split() + ["", ""])[:2]
    expect_eq(sha, result.marker("keeper-sha-1", boot=1).payload, "SHA-256 of the keeper's memfd after the kexec")
    expect_eq(size, str(4 << 20), "size of the keeper's memfd after the kexec")
    expect("file-left" not in back, "pattern.bin was still on disk in boot 2")


def check(result):
    for word in ("rc-create", "rc-preserve", "rc-prepare", "rc-finalize", "keeper-stored"):
        expect_eq(result.marker(word, boot=1).payload, "0", word)
    before, after, stored = result.marker("restarted", boot=1).payload.split()
    expect(after not in ("0", before), f"khod was not restarted ({before} -> {after})")
    expect(int(stored) >= 1, f"khod.service's fd store holds {stored} fds after the restart")
    kept = sessions(result.json("luo-restarted.json"), "outgoing")
    expect("vm1" in kept and len(kept["vm1"]["files"]) == 1,
           f"vm1 and its file not held by the restarted khod: {kept}")
    expect_eq([m.stage for m in result.markers_of("boot")], ["1", "2"], "stages of the boots")
    incoming = sessions(result.json("luo-2.json"), "incoming")
    expect("vm1" in incoming, f"vm1 did not come through the kexec: {sorted(incoming)}")
    expect_eq(result.marker("rc-retrieve", boot=2).payload, "0", "khoctl luo retrieve")
    expect_eq(result.marker("sha-2", boot=2).payload, result.marker("sha-1", boot=1).payload,
              "SHA-256 of the file after the live update")
    expect_eq(result.marker("rc-finish", boot=2).payload, "0", "khoctl luo finish")
    expect_eq(result.marker("rc-vm2", boot=1).payload, "0", "vm2 created and preserved")
    expect_eq(result.marker("vm2-released", boot=2).payload, "0", "vm2 let go after RetrieveTimeoutSec=")
    entries = [json.loads(line) for line in result.text("released.json").splitlines() if line.startswith("{")]
    expect_eq([e.get("KHOD_SESSION") for e in entries], ["vm2"], f"MESSAGE_ID={SESSION_RELEASED} entries")
    for key, value in (("KHOD_UID", "0"), ("KHOD_FILES", "1"), ("KHOD_FILES_UNRETRIEVED", "1")):
        expect_eq(entries[0].get(key), value, f"MESSAGE_ID={SESSION_RELEASED}: {key}")
    check_kexec_target(result)

