#!/bin/sh
# vm-put <guest-file> [<name>]: send a file to the host over /dev/ttyS1.
# The host decodes it into the run's output dir as <name>.
f=$1
name=${2:-$(basename "$1")}
if [ -z "$f" ] || [ ! -f "$f" ]; then
    echo "vm-put: $f: not a regular file" >&2
    exit 1
fi
case $name in
    ''|.*|*[!A-Za-z0-9._-]*) echo "vm-put: bad name '$name' (use [A-Za-z0-9._-], no leading dot)" >&2; exit 2 ;;
esac
size=$(wc -c < "$f")
sum=$(sha256sum < "$f")
sum=${sum%% *}
{
    echo "KHOD-PUT-BEGIN $name $size $sum"
    base64 "$f"
    echo "KHOD-PUT-END $name"
} > /dev/ttyS1 || { echo "vm-put: write to /dev/ttyS1 failed" >&2; exit 1; }
echo "KHOD-VM: put $name $size $sum"
