#!/bin/sh
# vm-kexec-self STAGE: kexec_file_load this boot's kernel and initramfs (/boot,
# scenario INCLUDE_BOOT) with the same command line plus khod.stage=STAGE, and
# boot it. Returns only on failure.
if [ ! -f /boot/bzImage ] || [ ! -f /boot/initrd.gz ]; then
    echo "vm-kexec-self: no /boot in this initramfs (scenario INCLUDE_BOOT is off)" >&2
    exit 1
fi
kexec -s -l /boot/bzImage --initrd=/boot/initrd.gz --append="$(cat /proc/cmdline) khod.stage=$1" || exit 1
vm-marker kexec
kexec -e
echo "kexec -e returned"
exit 1
