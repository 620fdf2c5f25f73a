"""khod as a Debian system service: enabled with systemctl, introspected with
busctl, started by D-Bus activation, restarted by Restart= after SIGKILL and
by the watchdog after SIGSTOP, with a prepared handover kept throughout.
Then, in the same boot, its polkit actions under the real polkitd
(distro/_polkit.py).

Runs on the shared 7.2 kernel (KHO, so there is handover state to keep)
booting the Debian rootfs directly (everything it needs is built in).
"""

import re

from distro import _polkit
from vmtest import dig, expect, expect_eq
from vmtest.distro import SHARED_KERNELS

DESCRIPTION = ("systemctl enable --now, busctl introspect, D-Bus activation, Restart=, WatchdogSec=; "
               "real polkitd: mutating calls refused to a user, allowed to a rule's admin")
KERNEL = "7.2"
FILES = {"/boot/khod-test/bzImage": SHARED_KERNELS["7.2"], **_polkit.FILES}
INTERFACES = ["org.kexec.khod1.Handover", "org.kexec.khod1.Scratch", "org.kexec.khod1.Kdump",
              "org.kexec.khod1.LiveUpdate", "org.freedesktop.DBus.Properties",
              "org.freedesktop.DBus.Introspectable", "org.freedesktop.DBus.Peer"]

GUEST_SCRIPT = r'''
main_pid() { systemctl show -P MainPID khod; }
# restarted_from PID: khod runs again, under a new main process
restarted_from() { p=$(main_pid); [ "$p" != 0 ] && [ "$p" != "$1" ] && systemctl is-active -q khod; }

vm-marker before "$(systemctl is-enabled khod) $(systemctl is-active khod)"
systemctl disable --now khod
vm-marker disabled "$(systemctl is-enabled khod) $(systemctl is-active khod)"
systemctl enable --now khod
vm-marker enabled "$(systemctl is-enabled khod) $(systemctl is-active khod)"
busctl introspect --no-pager org.kexec.khod1 /org/kexec/khod1 > /tmp/introspect.txt 2>&1
vm-marker rc-introspect $?
vm-put /tmp/introspect.txt introspect.txt

khoctl --json prepare --kernel /boot/khod-test/bzImage --reuse-cmdline > /tmp/prepare.json 2>&1
vm-marker rc-prepare $?
vm-put /tmp/prepare.json prepare.json

# D-Bus activation: the first call after a stop starts the unit again.
systemctl stop khod
vm-marker stopped "$(systemctl is-active khod)"
khoctl --json status > /tmp/status-activated.json 2>&1
vm-marker rc-activated $?
vm-marker activated "$(systemctl is-active khod)"
vm-put /tmp/status-activated.json status-activated.json

pid=$(main_pid)
systemctl kill -s SIGKILL khod
wait_until 60 restarted_from "$pid"
vm-marker killed "$pid $(main_pid) $(systemctl show -P NRestarts khod)"
khoctl --json status > /tmp/status-killed.json 2>&1
vm-put /tmp/status-killed.json status-killed.json

# A khod that stops answering (SIGSTOP) stops pinging the watchdog.
pid=$(main_pid)
stopped_at=$(cut -d' ' -f1 /proc/uptime)
kill -STOP "$pid"
wait_until 120 restarted_from "$pid"
vm-marker watchdog "$pid $(main_pid) $stopped_at $(systemctl show -P WatchdogUSec khod)"
khoctl --json status > /tmp/status-watchdog.json 2>&1
vm-put /tmp/status-watchdog.json status-watchdog.json
# The rest of what khod does under its sandbox: a scratch plan (/proc/iomem
# with real addresses needs CAP_SYS_ADMIN) and an abort.
busctl --json=short call org.kexec.khod1 /org/kexec/khod1 org.kexec.khod1.Scratch Plan sssu "" "" "" 25 \
    > /tmp/plan.json 2>&1
vm-marker rc-plan $?
vm-put /tmp/plan.json plan.json
khoctl --json abort > /tmp/abort.json 2>&1
vm-marker rc-abort $?
vm-put /tmp/abort.json abort.json
journalctl -b --no-pager -o short-monotonic -u khod -u dbus > /tmp/khod-journal.txt 2>&1
vm-put /tmp/khod-journal.txt khod-journal.txt
''' + _polkit.GUEST_SCRIPT


def handover_state(result, name):
    doc = result.json(name)
    return dig(doc, "daemon.handover.State") if "daemon" in doc else dig(doc, "handover.State")


def check(result):
    # Debian's default for a daemon: the package enables the unit (started at
    # the next boot), without starting it at install (dh_installsystemd --no-start).
    expect_eq(result.marker("before").payload, "enabled active", "khod at the first boot after the install")
    expect_eq(result.marker("disabled").payload, "disabled inactive", "after systemctl disable --now khod")
    expect_eq(result.marker("enabled").payload, "enabled active", "after systemctl enable --now khod")
    expect_eq(result.marker("rc-introspect").payload, "0", "busctl introspect")
    listing = result.text("introspect.txt")
    for iface in INTERFACES:
        expect(f"\n{iface} " in "\n" + listing, f"busctl introspect lacks {iface}")
    expect_eq(result.marker("rc-prepare").payload, "0", "khoctl prepare")
    expect_eq(handover_state(result, "prepare.json"), "prepared", "State after prepare")

    expect_eq(result.marker("stopped").payload, "inactive", "after systemctl stop khod")
    expect_eq(result.marker("rc-activated").payload, "0", "khoctl status with khod stopped")
    expect_eq(result.marker("activated").payload, "active", "khod after the status call")
    journal = result.text("khod-journal.txt")
    expect("Activating via systemd: service name='org.kexec.khod1'" in journal,
           "dbus did not log the activation of org.kexec.khod1")
    expect_eq(handover_state(result, "status-activated.json"), "prepared", "State after activation")

    before, after, restarts = result.marker("killed").payload.split()
    expect(after not in ("0", before), f"khod was not restarted after SIGKILL (pid {before} -> {after})")
    expect(int(restarts) >= 1, f"NRestarts after SIGKILL: {restarts}")
    expect_eq(handover_state(result, "status-killed.json"), "prepared", "State after SIGKILL and restart")

    before, after, stopped_at, watchdog_usec = result.marker("watchdog").payload.split()
    expect(after not in ("0", before), f"khod was not restarted after SIGSTOP (pid {before} -> {after})")
    expect_eq(watchdog_usec, "30s", "WatchdogUSec of the installed unit")
    timeouts = re.findall(r"^\[ *([0-9.]+)\] .*khod.service: Watchdog timeout", journal, re.M)
    expect(timeouts, "systemd did not log a watchdog timeout for khod")
    # The last ping came at most WatchdogSec= before the stop; systemd gives
    # up on khod within WatchdogSec= of it (boot-clock seconds of the journal).
    waited = float(timeouts[-1]) - float(stopped_at)
    expect(0 < waited <= 30.5, f"the watchdog fired {waited:.1f}s after SIGSTOP, WatchdogSec=30s")
    expect_eq(handover_state(result, "status-watchdog.json"), "prepared", "State after the watchdog restart")

    expect_eq(result.marker("rc-plan").payload, "0", "Scratch.Plan under the unit")
    parameter, fits, _verdict, _plan = result.json("plan.json")["data"]
    expect(parameter.startswith("kho_scratch=") and fits, f"Scratch.Plan: {parameter}, fits {fits}")
    expect_eq(result.marker("rc-abort").payload, "0", "khoctl abort")
    expect_eq(handover_state(result, "abort.json"), "idle", "State after abort")
    _polkit.check(result)
