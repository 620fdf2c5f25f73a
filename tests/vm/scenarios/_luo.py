"""What the LUO scenarios (luo_*.py) share: a guest big enough for a 256 MiB
memfd and the scratch the README's upgrade used, khod with an fd store
stand-in, and shell functions for the client side.

The client is what a VMM would be: `luo-pattern memfd` fills a memfd with a
seeded pattern and execs `khoctl luo preserve --fd 3`, which hands the memfd
to khod over D-Bus (busctl cannot send an "h" argument, so busctl is used for
every call that takes no fd: CreateSession and the properties). After the
kexec, `khoctl luo retrieve` writes the memfd khod got back from LUO to a
file, and `luo-pattern check` compares every word.
"""

from vmtest import KHOD_BUS_FILES, KHOD_BUS_HOST_BINARIES, dig, expect, expect_eq

APPEND = "kho=on kho_scratch=32M,320M,64M liveupdate=on"
MEMORY = "2G,slots=4,maxmem=4G"
BINARIES = ["khoctl", "khod", "luo-pattern", "fdstore-standin"]
HOST_BINARIES = [*KHOD_BUS_HOST_BINARIES, "/usr/bin/setpriv"]
INCLUDE_BOOT = True
FILES = dict(KHOD_BUS_FILES)
SIZE = "256M"
SIZE_BYTES = 256 << 20
SEED = 42

# Sourced by the guest scripts after guest-khod.sh.
GUEST_FUNCTIONS = r'''
LU=org.kexec.khod1.LiveUpdate
lu_busctl() { busctl --json=short "$@" org.kexec.khod1 /org/kexec/khod1 $LU; }
lu_prop() { busctl --json=short get-property org.kexec.khod1 /org/kexec/khod1 $LU "$1"; }
# khod under the fd store stand-in, as khod.service runs it under systemd.
start_khod_stored() {
    mkdir -p /run/dbus
    dbus-daemon --config-file=/etc/khod-vm/dbus-system.conf || { echo "dbus-daemon failed"; return 1; }
    fdstore-standin --state /run/fdstore -- khod "$@" > /tmp/khod.log 2>&1 &
    n=0
    until busctl get-property org.kexec.khod1 /org/kexec/khod1 $LU Enabled > /dev/null 2>&1; do
        n=$((n + 1))
        if [ $n -gt 300 ]; then echo "khod did not come up"; cat /tmp/khod.log; return 1; fi
        sleep 0.1
    done
    vm-marker khod-up
}
# stage 1: session vm1 (busctl), a SIZE memfd of the pattern preserved as token 7 (khoctl).
preserve_pattern() {
    busctl call org.kexec.khod1 /org/kexec/khod1 $LU CreateSession s vm1
    vm-marker rc-create $?
    luo-pattern memfd "$1" "$2" -- khoctl --json luo preserve vm1 7 --fd 3 > /tmp/preserve.out 2>&1
    vm-marker rc-preserve $?
    head -n 1 /tmp/preserve.out > /tmp/pattern.txt
    sed 1d /tmp/preserve.out > /tmp/preserve.json
    vm-put /tmp/pattern.txt pattern-1.txt
    vm-put /tmp/preserve.json preserve.json
    lu_prop Outgoing > /tmp/outgoing.json; vm-put /tmp/outgoing.json outgoing-1.json
}
# stage 1: stage the target with liveupdate=on kept (prepare, finalize).
stage_target() {
    khoctl --json prepare --kernel "$1" --initrd /tmp/self-initrd.gz --reuse-cmdline \
        --append "khod.stage=2" > /tmp/prepare.json 2>&1
    vm-marker rc-prepare $?
    vm-put /tmp/prepare.json prepare.json
    khoctl --json finalize > /tmp/finalize.json 2>&1
    vm-marker rc-finalize $?
    vm-put /tmp/finalize.json finalize.json
}
# stage 1: stage_target, then Exec without --force.
live_update_into() {
    stage_target "$1"
    vm-marker exec
    khoctl exec
    vm-marker rc-exec $?
    sleep 60
    echo "still running 60 s after exec"; cat /tmp/khod.log
    exit 1
}
# stage 2: what khod holds, the data back through khod, checked word by word.
retrieve_pattern() {
    lu_prop Incoming > /tmp/incoming.json; vm-put /tmp/incoming.json incoming-2.json
    khoctl --json luo status > /tmp/luo-status.json; vm-put /tmp/luo-status.json luo-status-2.json
    khoctl --json luo retrieve vm1 7 /tmp/vm1.bin > /tmp/retrieve.json 2>&1
    vm-marker rc-retrieve $?
    vm-put /tmp/retrieve.json retrieve.json
    luo-pattern check /tmp/vm1.bin "$1" "$2" > /tmp/check.txt 2>&1
    vm-marker rc-check $?
    vm-put /tmp/check.txt check-2.txt
    rm -f /tmp/vm1.bin
    khoctl --json luo finish vm1 > /tmp/finish.json 2>&1
    vm-marker rc-finish $?
    vm-put /tmp/finish.json finish.json
    cp /tmp/khod.log /tmp/khod-2.log; vm-put /tmp/khod-2.log khod-2.log
}
'''


def sha_of(text: str) -> str:
    """The hex digest from luo-pattern's 'sha256 HEX size N' / 'OK sha256 HEX size N'."""
    words = text.split()
    expect("sha256" in words, f"no sha256 in {text!r}")
    return words[words.index("sha256") + 1]


def check_carried(result, *, previous_release: str, size_bytes: int = SIZE_BYTES):
    """The data left through khod in boot 1 and came back whole in boot 2."""
    for word in ("rc-create", "rc-preserve", "rc-prepare", "rc-finalize"):
        expect_eq(result.marker(word, boot=1).payload, "0", f"{word} in boot 1")
    outgoing = result.json("outgoing-1.json")["data"]
    expect_eq([(s[0], s[1]) for s in outgoing], [("vm1", 0)], "Outgoing after the preserve (busctl)")
    expect_eq(outgoing[0][3][0][:2], [7, size_bytes], "token 7's size in Outgoing")
    expect_eq([m.stage for m in result.markers_of("boot")], ["1", "2"], "stages of the boots")
    expect("luo: Retrieved live update data" in result.console,
           "the 2nd kernel did not log 'luo: Retrieved live update data'")
    expect(f"KHO: exec from: {previous_release} (count 1)" in result.console,
           f"the 2nd kernel did not log 'KHO: exec from: {previous_release} (count 1)'")
    log = result.text("khod-2.log")
    expect("retrieved the khod manifest" in log, f"khod did not retrieve its manifest:\n{log}")
    incoming = result.json("incoming-2.json")["data"]
    expect_eq([(s[0], s[1]) for s in incoming], [("vm1", 0)], "Incoming in boot 2: vm1, held for uid 0")
    expect_eq(incoming[0][3][0][:2], [7, size_bytes], "token 7 in Incoming")
    expect_eq(incoming[0][3][0][3], False, "token 7 not yet retrieved by its owner")
    status = result.json("luo-status-2.json")
    expect_eq(dig(status, "liveupdate.previous_release"), previous_release, "PreviousRelease")
    expect_eq(dig(status, "liveupdate.liveupdate_number"), 1, "LiveUpdateNumber")
    phases = [p["phase"] for p in dig(status, "liveupdate.last_update_phases")]
    for phase in ("exec-requested", "inhibitors-released", "reboot-syscall", "kernel-start", "khod-ready"):
        expect(phase in phases, f"last_update_phases lacks {phase}: {phases}")
    for word in ("rc-retrieve", "rc-check", "rc-finish"):
        expect_eq(result.marker(word, boot=2).payload, "0", f"{word} in boot 2")
    before, after = sha_of(result.text("pattern-1.txt")), sha_of(result.text("check-2.txt"))
    expect_eq(after, before, "SHA-256 of the memfd before and after the kexec")
    expect(result.text("check-2.txt").startswith("OK"), f"pattern check: {result.text('check-2.txt')}")
    finished = result.json("finish.json")
    expect_eq(dig(finished, "liveupdate.incoming"), [], "Incoming after finish: nothing left held")


def carry_script(target: str, size: str = SIZE) -> str:
    """luo-memfd's and luo-upgrade's guest: size bytes of the pattern through khod into target."""
    return r'''
. /etc/khod-vm/guest-khod.sh
''' + GUEST_FUNCTIONS + r'''
if [ "$1" = 1 ]; then
    start_khod_stored || exit 1
    vm-self-initrd /tmp/self-initrd.gz
    preserve_pattern ''' + f"{size} {SEED}" + r'''
    live_update_into ''' + target + r'''
fi
uname -r > /tmp/uname.txt; vm-put /tmp/uname.txt uname-2.txt
start_khod_stored || exit 1
retrieve_pattern ''' + f"{size} {SEED}" + "\n"
