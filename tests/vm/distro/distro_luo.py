"""A khod LUO session through the real systemd fd store and a live update
from 7.2 into 7.3.

Boot 1 (shared 7.2 kernel, Debian userspace): session vm1 created and a
16 MiB file preserved in it through khod (khoctl luo create/preserve);
`systemctl restart khod`: the session's fds wait in systemd's fd store for
the new khod, which lists vm1 again with its file; prepare, finalize, exec.
Boot 2 (shared 7.3 kernel): khod retrieves its manifest and holds vm1; `khoctl luo retrieve`
gives back the bytes with the SHA-256 of boot 1; finish leaves nothing held.
"""

import json

from vmtest import dig, expect, expect_eq
from vmtest.distro import SHARED_KERNELS

DESCRIPTION = "khod's LUO session kept by systemd's fd store across systemctl restart khod, then 7.2 -> 7.3"
KERNEL = "7.2"
NEXT_KERNEL = "7.3"
BOOTS = 2
TARGET = "/boot/khod-test/bzImage"
# vm2 is never retrieved: khod lets it go when RetrieveTimeoutSec= runs out,
# with the journal entry an operator searches for.
FILES = {TARGET: SHARED_KERNELS["7.3"], "/etc/khod/khod.conf": "[LiveUpdate]\nRetrieveTimeoutSec=30s\n"}
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
journalctl -b -1 -o short-monotonic --no-pager -u khod > /tmp/khod-1.txt
vm-put /tmp/khod-1.txt khod-journal-1.txt
'''.replace("@TARGET@", TARGET).replace("@RELEASED@", SESSION_RELEASED)


def sessions(doc, direction):
    return {s["name"]: s for s in dig(doc, f"liveupdate.{direction}")}


def check(result):
    for word in ("rc-create", "rc-preserve", "rc-prepare", "rc-finalize"):
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

