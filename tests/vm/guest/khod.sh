# Sourced by scenarios that need khod: starts the guest's system bus with
# khod's shipped policy, then khod, and waits until khod owns its name.
# $KHOD_WRAPPER, when set, is run with khod's command line (unshare --net).
start_khod() {
    mkdir -p /run/dbus
    dbus-daemon --config-file=/etc/khod-vm/dbus-system.conf || { echo "dbus-daemon failed"; return 1; }
    ${KHOD_WRAPPER:-} khod "$@" > /tmp/khod.log 2>&1 &
    n=0
    until busctl get-property org.kexec.khod1 /org/kexec/khod1 org.kexec.khod1.Handover State \
            > /dev/null 2>&1; do
        n=$((n + 1))
        if [ $n -gt 200 ]; then
            echo "khod did not take org.kexec.khod1 within 20 s"; cat /tmp/khod.log; return 1
        fi
        sleep 0.1
    done
    vm-marker khod-up
}
