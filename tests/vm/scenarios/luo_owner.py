"""Who may use a LUO session khod holds, across a khod crash and a real kexec.

Who may call khod at all: the shipped D-Bus policy and khod's polkit check.
While no polkit authority runs, uid 65534's CreateSession, DestroySession of
root's vm1, Kdump.Unload and (with the target staged) Handover.Exec are
refused with org.freedesktop.DBus.Error.AccessDenied ("without polkit only
root may do this") and change nothing. For the rest, a stand-in authority
(tests/vm/polkit-standin, not polkit) grants manage-sessions to uid 65534,
as a site's polkit rule would; it is asked about nothing else.

Boot 1 (khod under the fd store stand-in): root creates session vm1 and
preserves a 4 MiB memfd of a pattern (token 7). As uid 65534 (setpriv),
preserving into vm1 and DestroySession vm1 are refused with
org.kexec.khod1.Error.NotOwner (khoctl --json and dbus-send name it; busctl
gives khod's message), while every LiveUpdate property reads as uid 65534
exactly as it reads as root; uid 65534 creates its own session nobody1 and
preserves another pattern in it (token 9). A second opener of
/dev/liveupdate gets it while khod holds both sessions (khod opens the device
only per call). khod is killed with SIGKILL: the stand-in starts it again
with the stored fds, khod says it took both sessions back, and Outgoing is
the same JSON as before the kill (owners included, from khod's luo-state).
Then prepare, finalize and exec.

Boot 2: Incoming holds vm1 for uid 0 and nobody1 for uid 65534 (the owners
came through khod's manifest); as uid 65534, Retrieve of vm1 and
FinishSession vm1 are refused (NotOwner) and no output file is written; root
retrieves vm1 and it matches boot 1's SHA-256 word for word; uid 65534
retrieves its own nobody1 token 9, which matches too, and finishes it.
"""

import json
from pathlib import Path

from scenarios import _luo
from scenarios._luo import APPEND, INCLUDE_BOOT, MEMORY  # noqa: F401
from vmtest import CheckFailed, dig, expect, expect_eq

DESCRIPTION = ("LUO session owners and authorization: uid 65534 refused without polkit, refused another's session, "
               "keeps its own through a khod SIGKILL and a kexec")
HOST_BINARIES = [*_luo.HOST_BINARIES, "/usr/bin/dbus-send"]
BINARIES = [*_luo.BINARIES, "polkit-standin"]
FILES = {**_luo.FILES, str(Path(__file__).resolve().parents[1] / "files/polkit-standin.conf"):
         "/usr/share/dbus-1/system.d/polkit-standin.conf"}
BOOTS = 2
BOOT_TIMEOUT = 90

SIZE, SIZE_BYTES = "4M", 4 << 20
SEED, NOBODY_SEED = 42, 43
PROPERTIES = ["Enabled", "LiveUpdateNumber", "Outgoing", "Incoming", "Inhibitors", "PreviousRelease",
              "LastUpdatePhases"]
NOT_OWNER = "org.kexec.khod1.Error.NotOwner"
ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
# Refused to uid 65534 while no polkit runs: (tag, interface, method, dbus-send arguments).
WITHOUT_POLKIT = [
    ("create", "LiveUpdate", "CreateSession", "string:nobody1"),
    ("destroy-vm1", "LiveUpdate", "DestroySession", "string:vm1"),
    ("unload", "Kdump", "Unload", ""),
]

GUEST_SCRIPT = r'''
. /etc/khod-vm/guest-khod.sh
''' + _luo.GUEST_FUNCTIONS + r'''
# util-linux setpriv by its path: for a bare "setpriv" busybox sh runs its own
# applet, which has no --reuid.
AS="/usr/bin/setpriv --reuid=65534 --regid=65534 --clear-groups"
# as uid 65534: the method through busctl (khod's message) and dbus-send (the error name)
nobody_call() {  # TAG METHOD SESSION
    $AS busctl call org.kexec.khod1 /org/kexec/khod1 $LU "$2" s "$3" > /tmp/o 2>&1
    vm-marker rc-$1-busctl $?
    vm-put /tmp/o $1-busctl.txt
    $AS dbus-send --system --print-reply --dest=org.kexec.khod1 /org/kexec/khod1 $LU."$2" string:"$3" > /tmp/o 2>&1
    vm-marker rc-$1-dbus-send $?
    vm-put /tmp/o $1-dbus-send.txt
}
# as uid 65534 with dbus-send: TAG INTERFACE METHOD [ARG]
nobody_send() {
    $AS dbus-send --system --print-reply --dest=org.kexec.khod1 /org/kexec/khod1 org.kexec.khod1.$2."$3" $4 \
        > /tmp/o 2>&1
    vm-marker rc-denied-$1 $?
    vm-put /tmp/o denied-$1.txt
}
# The site's rule, as a polkit rule would say it: uid 65534 may hold sessions.
start_polkit() {
    echo "org.kexec.khod1.manage-sessions 65534 yes" > /tmp/polkit-rules
    polkit-standin --rules /tmp/polkit-rules --log /tmp/polkit.log > /tmp/polkit.out 2>&1 &
    polkit_pid=$!
    n=0
    until grep -q ready /tmp/polkit.out; do
        n=$((n + 1))
        if [ $n -gt 100 ]; then echo "polkit-standin did not start"; cat /tmp/polkit.out; exit 1; fi
        sleep 0.1
    done
}
stop_polkit() {
    kill "$polkit_pid"; wait "$polkit_pid"
    vm-put /tmp/polkit.log polkit-$1.log
}
if [ "$1" = 1 ]; then
    start_khod_stored || exit 1
    # Boot 2 kexecs no further: the initramfs without /boot will do.
    ln -s /boot/initrd.gz /tmp/self-initrd.gz
    preserve_pattern ''' + f"{SIZE} {SEED}" + r'''
    vm-marker nobody-ids "$($AS id -u) $($AS id -g) $($AS id -G)"

    # No polkit yet: only root may change anything.
    busctl get-property org.kexec.khod1 /org/kexec/khod1 org.kexec.khod1.Kdump Loaded > /tmp/loaded-before.txt
''' + "".join(f"    nobody_send {tag} {interface} {method} {arg}\n" for tag, interface, method, arg in WITHOUT_POLKIT) + r'''    busctl get-property org.kexec.khod1 /org/kexec/khod1 org.kexec.khod1.Kdump Loaded > /tmp/loaded-after.txt
    vm-put /tmp/loaded-before.txt; vm-put /tmp/loaded-after.txt
    lu_prop Outgoing > /tmp/outgoing-denied.json; vm-put /tmp/outgoing-denied.json
    start_polkit

    $AS luo-pattern memfd ''' + f"{SIZE} {NOBODY_SEED}" + r''' -- khoctl --json luo preserve vm1 8 --fd 3 > /tmp/o 2>&1
    vm-marker rc-nobody-preserve-vm1 $?
    sed 1d /tmp/o > /tmp/nobody-preserve-vm1.json; vm-put /tmp/nobody-preserve-vm1.json
    nobody_call nobody-destroy-vm1 DestroySession vm1

    : > /tmp/props-nobody.txt; : > /tmp/props-root.txt
    for p in ''' + " ".join(PROPERTIES) + r'''; do
        out=$($AS busctl --json=short get-property org.kexec.khod1 /org/kexec/khod1 $LU $p 2>&1)
        echo "$p $? $out" >> /tmp/props-nobody.txt
        out=$(lu_prop $p 2>&1)
        echo "$p $? $out" >> /tmp/props-root.txt
    done
    vm-put /tmp/props-nobody.txt props-nobody-1.txt
    vm-put /tmp/props-root.txt props-root-1.txt

    $AS busctl call org.kexec.khod1 /org/kexec/khod1 $LU CreateSession s nobody1
    vm-marker rc-nobody-create $?
    $AS luo-pattern memfd ''' + f"{SIZE} {NOBODY_SEED}" + r''' -- khoctl --json luo preserve nobody1 9 --fd 3 > /tmp/o 2>&1
    vm-marker rc-nobody-preserve $?
    head -n 1 /tmp/o > /tmp/nobody-pattern-1.txt; vm-put /tmp/nobody-pattern-1.txt
    sed 1d /tmp/o > /tmp/nobody-preserve.json; vm-put /tmp/nobody-preserve.json

    luo-pattern open-device > /tmp/o 2>&1
    vm-marker open-device "$? $(cat /tmp/o)"

    lu_prop Outgoing > /tmp/outgoing-before-kill.json; vm-put /tmp/outgoing-before-kill.json
    old=$(cat /run/fdstore/pid)
    kill -9 "$old"
    vm-marker killed-khod "$old"
    n=0
    until new=$(cat /run/fdstore/pid 2>/dev/null) && [ -n "$new" ] && [ "$new" != "$old" ] \
            && lu_prop Enabled > /dev/null 2>&1; do
        n=$((n + 1))
        if [ $n -gt 300 ]; then echo "khod did not come back"; cat /tmp/khod.log; exit 1; fi
        sleep 0.1
    done
    vm-marker khod-back "$new"
    lu_prop Outgoing > /tmp/outgoing-after-kill.json; vm-put /tmp/outgoing-after-kill.json
    cp /tmp/khod.log /tmp/khod-1.log; vm-put /tmp/khod-1.log
    stop_polkit 1
    stage_target /boot/bzImage
    vm-marker state-before-denied-exec "$(busctl get-property org.kexec.khod1 /org/kexec/khod1 org.kexec.khod1.Handover State)"
    nobody_send exec Handover Exec uint64:0
    vm-marker state-after-denied-exec "$(busctl get-property org.kexec.khod1 /org/kexec/khod1 org.kexec.khod1.Handover State)"
    vm-marker exec
    khoctl exec
    sleep 60
    echo "still running 60 s after exec"; cat /tmp/khod.log
    exit 1
fi
start_khod_stored || exit 1
start_polkit
$AS khoctl --json luo retrieve vm1 7 /tmp/x > /tmp/nobody-retrieve-vm1.json 2>&1
vm-marker rc-nobody-retrieve-vm1 $?
vm-put /tmp/nobody-retrieve-vm1.json
if [ -e /tmp/x ]; then vm-marker nobody-output written; else vm-marker nobody-output none; fi
nobody_call nobody-finish-vm1 FinishSession vm1
retrieve_pattern ''' + f"{SIZE} {SEED}" + r'''
$AS khoctl --json luo retrieve nobody1 9 /tmp/nobody1.bin > /tmp/nobody-retrieve.json 2>&1
vm-marker rc-nobody-retrieve $?
vm-put /tmp/nobody-retrieve.json
$AS luo-pattern check /tmp/nobody1.bin ''' + f"{SIZE} {NOBODY_SEED}" + r''' > /tmp/nobody-check.txt 2>&1
vm-marker rc-nobody-check $?
vm-put /tmp/nobody-check.txt nobody-check-2.txt
$AS khoctl --json luo finish nobody1 > /tmp/nobody-finish.json 2>&1
vm-marker rc-nobody-finish $?
vm-put /tmp/nobody-finish.json
cp /tmp/khod.log /tmp/khod-2-end.log; vm-put /tmp/khod-2-end.log
stop_polkit 2
'''


def expect_refused(result, boot: int, tag: str, what: str):
    """tag's busctl and dbus-send calls (nobody_call) failed with NotOwner."""
    for tool in ("busctl", "dbus-send"):
        rc = result.marker(f"rc-{tag}-{tool}", boot=boot).payload
        expect(rc != "0", f"{what} as uid 65534 ({tool}) succeeded")
    msg = result.text(f"{tag}-busctl.txt")
    expect("belongs to uid 0" in msg, f"{what} as uid 65534: busctl said {msg!r}")
    err = result.text(f"{tag}-dbus-send.txt")
    expect(f"Error {NOT_OWNER}:" in err, f"{what} as uid 65534: dbus-send said {err!r}, not {NOT_OWNER}")


def expect_denied(result, tag: str, what: str, because: str):
    """nobody_send TAG was refused by khod's authorization, saying because."""
    expect(result.marker(f"rc-denied-{tag}", boot=1).payload != "0", f"{what} as uid 65534 succeeded")
    err = result.text(f"denied-{tag}.txt")
    expect(f"Error {ACCESS_DENIED}:" in err and because in err,
           f"{what} as uid 65534: dbus-send said {err!r}, not {ACCESS_DENIED} with {because!r}")


def expect_refused_json(result, name: str, what: str):
    doc = result.json(name)
    expect_eq(dig(doc, "ok"), False, f"{what} as uid 65534")
    expect_eq(dig(doc, "error.name"), NOT_OWNER, f"{what} as uid 65534: the error")


def properties(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        name, rc, value = (line.split(" ", 2) + ["", ""])[:3]
        out[name] = (rc, value)
    return out


def busctl_data(text: str):
    """The data of a `busctl --json=short get-property` answer."""
    try:
        return json.loads(text)["data"]
    except (ValueError, KeyError, TypeError):
        raise CheckFailed(f"not a busctl JSON answer: {text!r}") from None


def busctl_data_text(text: str) -> list:
    return files_of(busctl_data(text))


def files_of(sessions) -> list:
    return [(s[0], s[1], [f[:2] for f in s[3]]) for s in sessions]


def check(result):
    # (no rc-exec: with no inhibitor khod may reboot before khoctl exec's shell goes on)
    for word in ("rc-create", "rc-preserve", "rc-nobody-create", "rc-nobody-preserve", "rc-prepare",
                 "rc-finalize"):
        expect_eq(result.marker(word, boot=1).payload, "0", f"{word} in boot 1")
    expect_eq(result.marker("nobody-ids", boot=1).payload, "65534 65534 65534",
              "uid, gid and groups under setpriv")

    # Boot 1, no polkit: only root passes.
    for tag, _, method, _ in WITHOUT_POLKIT:
        expect_denied(result, tag, method, "without polkit only root may do this")
    expect_eq(result.text("loaded-after.txt"), result.text("loaded-before.txt"), "Kdump.Loaded after the denied Unload")
    expect_eq(busctl_data_text(result.text("outgoing-denied.json")), [("vm1", 0, [[7, SIZE_BYTES]])],
              "Outgoing after the denied calls")
    # The stand-in stopped again before the Exec: root's alone.
    expect_denied(result, "exec", "Exec", "without polkit only root may do this")
    staged = result.marker("state-before-denied-exec", boot=1).payload
    expect_eq(result.marker("state-after-denied-exec", boot=1).payload, staged,
              "Handover State after the denied Exec vs before it")
    expect(staged.startswith("s ") and "idle" not in staged, f"the target was not staged: State {staged}")
    for boot in (1, 2):
        queries = result.text(f"polkit-{boot}.log").splitlines()
        expect(queries and all(q.startswith("org.kexec.khod1.manage-sessions uid=65534 ") for q in queries),
               f"boot {boot}: polkit was asked only about uid 65534's sessions: {queries}")

    # Boot 1: refused in root's session, reading is fine.
    expect(result.marker("rc-nobody-preserve-vm1", boot=1).payload != "0", "uid 65534 preserved into vm1")
    expect_refused_json(result, "nobody-preserve-vm1.json", "Preserve into vm1")
    expect_refused(result, 1, "nobody-destroy-vm1", "DestroySession vm1")
    as_nobody = properties(result.text("props-nobody-1.txt"))
    as_root = properties(result.text("props-root-1.txt"))
    expect_eq(sorted(as_nobody), sorted(PROPERTIES), "properties read as uid 65534")
    for p in PROPERTIES:
        expect_eq(as_nobody[p][0], "0", f"busctl get-property {p} as uid 65534: exit code ({as_nobody[p][1]})")
        expect_eq(as_nobody[p][1], as_root[p][1], f"{p} as uid 65534 and as root")
    expect_eq(busctl_data(as_nobody["Enabled"][1]), True, "Enabled as uid 65534")
    expect_eq(files_of(busctl_data(as_nobody["Outgoing"][1])), [("vm1", 0, [[7, SIZE_BYTES]])],
              "Outgoing read by uid 65534 (its refused preserve added nothing, vm1 still there)")
    expect_eq(result.marker("open-device", boot=1).payload, "0 ok",
              "a second /dev/liveupdate opener while khod holds sessions")

    # khod's SIGKILL: same sessions, same owners.
    before = result.text("outgoing-before-kill.json")
    after = result.text("outgoing-after-kill.json")
    expected = [("vm1", 0, [[7, SIZE_BYTES]]), ("nobody1", 65534, [[9, SIZE_BYTES]])]
    expect_eq(files_of(busctl_data(before)), expected, "Outgoing before the kill")
    expect_eq(after, before, "Outgoing after khod's restart vs before the kill")
    old, new = result.marker("killed-khod", boot=1).payload, result.marker("khod-back", boot=1).payload
    expect(old != new, f"khod came back as the same pid {old}")
    log = result.text("khod-1.log")
    for needle in (f"started khod as pid {new}", "took back LUO session vm1 from the fd store",
                   "took back LUO session nobody1 from the fd store"):
        expect(needle in log, f"khod-1.log lacks {needle!r}:\n{log}")
    expect("no owner recorded" not in log, f"khod lost an owner in the restart:\n{log}")

    # Boot 2: owners came through the manifest.
    expect_eq([m.stage for m in result.markers_of("boot")], ["1", "2"], "stages of the boots")
    incoming = result.json("incoming-2.json")["data"]
    expect_eq(files_of(incoming), expected, "Incoming in boot 2 (owner uids through the manifest)")
    expect(result.marker("rc-nobody-retrieve-vm1", boot=2).payload != "0", "uid 65534 retrieved vm1")
    expect_refused_json(result, "nobody-retrieve-vm1.json", "Retrieve vm1")
    expect_eq(result.marker("nobody-output", boot=2).payload, "none", "output file of the refused retrieve")
    expect_refused(result, 2, "nobody-finish-vm1", "FinishSession vm1")
    for word in ("rc-retrieve", "rc-check", "rc-finish", "rc-nobody-retrieve", "rc-nobody-check",
                 "rc-nobody-finish"):
        expect_eq(result.marker(word, boot=2).payload, "0", f"{word} in boot 2")
    for before_name, after_name, who in (("pattern-1.txt", "check-2.txt", "root's vm1"),
                                         ("nobody-pattern-1.txt", "nobody-check-2.txt", "uid 65534's nobody1")):
        checked = result.text(after_name)
        expect(checked.startswith("OK"), f"pattern check of {who}: {checked}")
        expect_eq(_luo.sha_of(checked), _luo.sha_of(result.text(before_name)),
                  f"SHA-256 of {who} before and after the kexec")
    expect(_luo.sha_of(result.text("pattern-1.txt")) != _luo.sha_of(result.text("nobody-pattern-1.txt")),
           "the two patterns are the same: the checks could not tell the sessions apart")
    status = result.json("luo-status-2.json")
    expect_eq(dig(status, "liveupdate.previous_release"), result.kernel_release, "PreviousRelease")
    expect_eq(dig(status, "liveupdate.liveupdate_number"), 1, "LiveUpdateNumber")
    # After root finished vm1, only nobody1 was left, held for uid 65534.
    left = dig(result.json("finish.json"), "liveupdate.incoming")
    expect_eq([(s["name"], s["uid"]) for s in left], [("nobody1", 65534)], "Incoming after root finished vm1")
    expect_eq(dig(result.json("nobody-finish.json"), "liveupdate.incoming"), [],
              "Incoming after uid 65534 finished nobody1")
    log2 = result.text("khod-2-end.log")
    for needle in ("retrieved the khod manifest", "session nobody1: token 9 retrieved by uid 65534"):
        expect(needle in log2, f"khod-2-end.log lacks {needle!r}:\n{log2}")
