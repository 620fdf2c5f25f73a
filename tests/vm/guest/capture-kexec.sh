# capture --kexec, before capture.sh: stage 1 only does a KHO kexec
# (kexec_file_load, the same kernel, initramfs and command line plus
# khod.stage=2); the capture proper runs in the second kernel, so kho/in
# exists there.
if [ "$1" = 1 ]; then
    vm-kexec-self 2
    exit 1
fi
