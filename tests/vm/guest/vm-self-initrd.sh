#!/bin/sh
# vm-self-initrd [OUT]: write an initrd identical to the one this system booted
# from, /boot included (for chained kexec). /boot/initrd.gz alone lacks /boot.
out=${1:-/tmp/initrd-self.gz}
if [ ! -f /boot/initrd.gz ] || [ ! -f /boot/bzImage ]; then
    echo "vm-self-initrd: no /boot in this initramfs (scenario INCLUDE_BOOT is off)" >&2
    exit 1
fi
cd / || exit 1
printf 'boot\nboot/bzImage\nboot/initrd.gz\n' | cpio -o -H newc 2>/dev/null | gzip > /tmp/.boot.cpio.gz || exit 1
cat /boot/initrd.gz /tmp/.boot.cpio.gz > "$out" || exit 1
rm -f /tmp/.boot.cpio.gz
echo "$out"
