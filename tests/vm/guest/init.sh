#!/bin/busybox sh
# /init of the khod VM test initramfs (installed by tests/vm/vmtest/initramfs.py).
# The harness replaces the @LD_LIBRARY_PATH@ line with an export of the
# library dirs the loader does not search by itself, or with nothing.
/bin/busybox --install -s /bin
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb
@LD_LIBRARY_PATH@
mkdir -p /proc /sys /dev /tmp /run /root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
stage=1
for w in $(cat /proc/cmdline); do
    case $w in khod.stage=*) stage=${w#khod.stage=} ;; esac
done
export KHOD_VM_STAGE=$stage
# ttyS1 carries vm-put data: no \n -> \r\n translation, no echo
stty -F /dev/ttyS1 raw -echo 2>/dev/null
echo "KHOD-VM: boot $stage $(uname -r)"
sh /scenario.sh "$stage"
rc=$?
echo "KHOD-VM: exit $rc"
sync
poweroff -f
echo "KHOD-VM: poweroff-failed"
while :; do sleep 3600; done
