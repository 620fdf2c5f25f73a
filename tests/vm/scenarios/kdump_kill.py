"""No lost crash kernel when khod is killed: SIGKILL inside a reload storm,
and a khod killed while no crash kernel is loaded, in the real kernel.

As kdump-reload: the crash kernel is loaded with kexec-tools' plain `kexec -p`
(crash_hotplug 0, so khod must reload), khod imports kdump-tools' recipe.
khod runs under the fd store stand-in, which starts it again when it dies,
as Restart= does under systemd (tests/vm/fdstore-standin.cpp).

1. A watcher SIGKILLs khod the first time kexec_crash_loaded reads 0 during
   the storm: khod is then inside its reload's kexec_file_load, which has
   freed the old image. The signal takes effect when the syscall returns;
   the next khod must have a crash kernel loaded when it signals READY=1,
   within 5 s of its start, whichever image it finds (under TCG the syscall
   the kill waits for takes seconds itself), and reload once in case the
   killed load missed hotplug events.
2. After the storm: khod is stopped (SIGSTOP), the crash kernel unloaded
   with `kexec -p -u` (the state a kill between the kernel freeing the image
   and the load leaves), then khod is SIGKILLed. The next khod must load the
   crash kernel again before READY=1, within 5 s of its start, and say so in
   one journal line.
Then the panic: the capture kernel's /proc/vmcore must cover the hot-added
DIMM, so the image khod put back was built for the memory as it is.
"""

from scenarios import _kdump
from scenarios._kdump import APPEND, BOOTS, CRASH_APPEND, INCLUDE_BOOT, host  # noqa: F401
from vmtest import REPO, CheckFailed, dig, expect, expect_eq

DESCRIPTION = "kdump: khod SIGKILLed inside a reload storm and while nothing is loaded; kdump back within 5 s; vmcore ok"

BINARIES = [*_kdump.BINARIES, "fdstore-standin"]
HOST_BINARIES = _kdump.HOST_BINARIES
FILES = dict(_kdump.FILES)
FILES[str(REPO / "tests/vm/files/kdump-tools.default")] = "/etc/default/kdump-tools"
BACK_WITHIN_S = 5.0

GUEST_SCRIPT = _kdump.guest_script(r'''
    kexec -p /boot/bzImage --initrd=$CRASH_INITRD --append="$CRASH_APPEND" || exit 1
    mkdir -p /run/dbus
    dbus-daemon --config-file=/etc/khod-vm/dbus-system.conf || { echo "dbus-daemon failed"; exit 1; }
    fdstore-standin --state /run/fdstore -- khod > /tmp/khod.log 2>&1 &
    n=0
    until [ -s /run/fdstore/ready ]; do
        n=$((n + 1)); [ $n -gt 300 ] && { echo "khod did not come up"; cat /tmp/khod.log; exit 1; }
        sleep 0.1
    done
    uptime_s() { cut -d' ' -f1 /proc/uptime; }
    # After a kill of pid $1: "<uptime when the stand-in started the next
    # khod> <uptime when that one signalled READY=1> <kexec_crash_loaded then>"
    wait_restarted() {
        n=0
        until r=$(cat /run/fdstore/pid 2>/dev/null) && [ -n "$r" ] && [ "$r" != "$1" ]; do
            n=$((n + 1)); [ $n -gt 3000 ] && { echo "khod was not started again"; cat /tmp/khod.log; exit 1; }
            usleep 10000
        done
        restarted=$(uptime_s)
        n=0
        until r=$(cat /run/fdstore/ready 2>/dev/null) && [ -n "$r" ] && [ "$r" != "$1" ]; do
            n=$((n + 1)); [ $n -gt 3000 ] && { echo "khod did not come back"; cat /tmp/khod.log; exit 1; }
            usleep 10000
        done
        echo "$restarted $(uptime_s) $(cat /sys/kernel/kexec_crash_loaded)"
    }
    # 1: the first moment the crash kernel is gone, khod is inside its reload
    (
        until [ "$(cat /sys/kernel/kexec_crash_loaded)" = 0 ]; do :; done
        pid=$(cat /run/fdstore/pid)
        kill -9 "$pid"
        echo "$pid $(uptime_s)" > /tmp/killed-1
    ) &
    killer=$!
''', after_storm=r'''
    wait $killer
    read pid1 at1 < /tmp/killed-1
    vm-marker kill-1 "$at1 $(wait_restarted "$pid1")"
    wait_idle || exit 1
    # 2: killed while no crash kernel is loaded
    pid2=$(cat /run/fdstore/pid)
    kill -STOP "$pid2"
    kexec -p -u
    vm-marker unloaded "$(cat /sys/kernel/kexec_crash_loaded)"
    at2=$(uptime_s)
    kill -KILL "$pid2"
    vm-marker kill-2 "$at2 $(wait_restarted "$pid2")"
    wait_idle || exit 1
    cp /tmp/khod.log /tmp/khod-kills.log; vm-put /tmp/khod-kills.log
    vm-put /run/fdstore/log fdstore.log
''')


def back_in_time(result, word: str) -> float:
    """kill-N's payload 'KILLED RESTARTED READY CRASH_LOADED' (guest uptimes): the
    next khod had a crash kernel loaded when it signalled READY=1, at most
    BACK_WITHIN_S after the stand-in started it."""
    payload = result.marker(word, boot=1).payload
    try:
        killed, restarted, ready, loaded = payload.split()
        seconds = float(ready) - float(restarted)
        after_kill = float(ready) - float(killed)
    except ValueError:
        raise CheckFailed(f"{word}: not 'KILLED RESTARTED READY LOADED': {payload!r}") from None
    expect_eq(loaded, "1", f"{word}: kexec_crash_loaded when the next khod signalled READY=1")
    expect(0 <= seconds <= BACK_WITHIN_S,
           f"{word}: the next khod was ready {seconds:.2f} s after its start ({after_kill:.2f} s after the kill; "
           f"at most {BACK_WITHIN_S} s)")
    return seconds


def check(result):
    back_in_time(result, "kill-1")
    expect_eq(result.marker("unloaded", boot=1).payload, "0", "kexec_crash_loaded after kexec -p -u")
    back_in_time(result, "kill-2")
    log = result.text("khod-kills.log")
    if "khod was stopped inside a load of /boot/bzImage" in log:  # the kill landed before khod recorded the load
        expect("reload after a load khod was killed in" in log, f"no reload after the killed load:\n{log}")
    started = log.count("started khod as pid")
    expect(started >= 3, f"the stand-in started khod {started} times, expected 3 (two kills):\n{result.text('fdstore.log')}")
    expect("kdump: the crash kernel khod manages was not loaded at start (it was unloaded while khod was not "
           "running): loaded /boot/bzImage again" in log, f"khod never said it loaded the crash kernel again:\n{log}")
    kd = _kdump.check_common(result, min_events=0)  # the last khod saw no storm: it started after it
    expect_eq(dig(kd, "Managed"), True, "Managed after the kills")
    windows = dig(kd, "UnloadedWindows")
    expect(any(w["cause"].startswith("khod restart") and not w["open"] for w in windows),
           f"the last khod counted no window for the crash kernel it put back: {windows}")
    expect_eq(dig(kd, "LastError"), "", "LastError")
