"""khod's polkit actions under the real polkitd: an unprivileged user is
refused every mutating call, an admin granted by a polkit rule is let
through, and everyone reads the properties. Shared (the leading
underscore): distro-enable runs it at the end of its boot, which saves CI a
guest boot, and distro-polkit runs it alone.
"""

from vmtest import expect, expect_eq
ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
# (tag, interface, method, dbus-send arguments): every method behind a polkit action.
MUTATING = [
    ("prepare", "Handover", "Prepare", "string:/nonexistent string: string: uint64:0"),
    ("finalize", "Handover", "Finalize", ""),
    ("abort", "Handover", "Abort", ""),
    ("exec", "Handover", "Exec", "uint64:0"),
    ("load", "Kdump", "Load", "string:/nonexistent string: string: uint64:0"),
    ("unload", "Kdump", "Unload", ""),
    ("reload", "Kdump", "Reload", ""),
    ("create-session", "LiveUpdate", "CreateSession", "string:polkit-test"),
    ("inhibit", "LiveUpdate", "Inhibit", "string:polkit-test string:a-test"),
]
PROPERTIES = [("Handover", "State"), ("Kdump", "Loaded"), ("LiveUpdate", "Enabled")]
FILES = {"/etc/polkit-1/rules.d/50-khod-admins.rules": """\
// khod's actions for the members of khodadm, without a password.
polkit.addRule(function(action, subject) {
    if (action.id.indexOf("org.kexec.khod1.") == 0 && subject.isInGroup("khodadm"))
        return polkit.Result.YES;
});
"""}


def _calls() -> str:
    lines = []
    for tag, iface, method, args in MUTATING:
        lines.append(f"call {tag} org.kexec.khod1.{iface}.{method} {args}".rstrip())
    for iface, prop in PROPERTIES:
        lines.append(f"get {iface}-{prop} org.kexec.khod1.{iface} {prop}")
    return "\n".join(lines)


GUEST_SCRIPT = r'''
# polkit: run last, since the admin's calls change khod's state (Unload, a session)
groupadd --system khodadm
useradd --create-home --shell /bin/sh alice
useradd --create-home --shell /bin/sh --groups khodadm opsadmin
systemctl start khod
systemctl is-active -q polkit || systemctl start polkit
vm-marker polkit "$(systemctl is-active polkit)"

# run_as USER TAG COMMAND...: the answer in USER-TAG.txt, the status in a marker
run_as() {
    u=$1 tag=$2; shift 2
    runuser -u "$u" -- "$@" > "/tmp/$u-$tag.txt" 2>&1
    vm-marker "rc-$u-$tag" $?
    vm-put "/tmp/$u-$tag.txt" "$u-$tag.txt"
}
for who in "user alice" "admin opsadmin"; do
    set -- $who
    role=$1 name=$2
    while read -r kind tag member args; do
        case $kind in
        call) run_as "$name" "$tag" dbus-send --system --print-reply --dest=org.kexec.khod1 \
                  /org/kexec/khod1 "$member" $args ;;
        get) run_as "$name" "$tag" busctl get-property org.kexec.khod1 /org/kexec/khod1 "$member" "$args" ;;
        esac
    done <<EOF
''' + _calls() + r'''
EOF
done
journalctl -b --no-pager -o short-monotonic -u khod -u polkit > /tmp/journal.txt
vm-put /tmp/journal.txt khod-polkit-journal.txt
'''


def check(result):
    expect_eq(result.marker("polkit").payload, "active", "polkitd")
    for tag, iface, method, _ in MUTATING:
        refused = result.text(f"alice-{tag}.txt")
        expect(result.marker(f"rc-alice-{tag}").payload != "0" and f"Error {ACCESS_DENIED}" in refused,
               f"{iface}.{method} as an unprivileged user: {refused.strip()!r}, not {ACCESS_DENIED}")
        allowed = result.text(f"opsadmin-{tag}.txt")
        # Authorized calls may still fail on their own terms (no such file, wrong state).
        expect(ACCESS_DENIED not in allowed,
               f"{iface}.{method} as a khodadm member: refused despite the polkit rule: {allowed.strip()!r}")
    for iface, prop in PROPERTIES:
        for user in ("alice", "opsadmin"):
            expect_eq(result.marker(f"rc-{user}-{iface}-{prop}").payload, "0",
                      f"busctl get-property {iface}.{prop} as {user}")
    journal = result.text("khod-polkit-journal.txt")
    expect("polkit denied" in journal, "khod logged no polkit denial")
