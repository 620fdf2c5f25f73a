# capture guest script (`vmtest.py capture`, tests/fixtures/capture-kdump.py):
# copies the paths listed in /capture.paths to $STAGE, tars it and sends it.
# A scenario script body: the harness puts it in /scenario.sh, $1 = boot stage.
STAGE=/tmp/capture
mkdir -p $STAGE
: > $STAGE/DEVICES
: > $STAGE/UNREADABLE
mkdir -p /sys/kernel/debug
mount -t debugfs debugfs /sys/kernel/debug || echo "KHOD-VM: note debugfs-mount-failed"

unreadable() { echo "$1: $2" >> $STAGE/UNREADABLE; }

# normpath P: P with '.', '..' and repeated '/' removed lexically
normpath() {
    local out= c
    set -f
    local IFS=/
    for c in $1; do
        case $c in ''|.) ;; ..) out=${out%/*} ;; *) out="$out/$c" ;; esac
    done
    set +f
    echo "${out:-/}"
}

# follow P: while P is a symlink, recreate it in $STAGE and go to its target
follow() {
    local p=$1 t n=0
    # /proc/self would name the short-lived helper process: keep it a directory
    case $p in /proc/self|/proc/thread-self) echo "$p"; return ;; esac
    while [ -L "$p" ] && [ $n -lt 40 ]; do
        n=$((n + 1))
        t=$(readlink "$p")
        mkdir -p "$STAGE$(dirname "$p")"
        [ -L "$STAGE$p" ] || ln -s "$t" "$STAGE$p"
        case $t in /*) ;; *) t=$(dirname "$p")/$t ;; esac
        p=$(resolve "$(normpath "$t")")
    done
    echo "$p"
}

# resolve P: P with the symlinks in its parent directories resolved; those
# symlinks are recreated in $STAGE, so the captured tree keeps the same shape
resolve() {
    local p=$1 parent
    [ "$p" = / ] && { echo /; return; }
    parent=$(follow "$(resolve "$(dirname "$p")")")
    if [ "$parent" = / ]; then echo "/$(basename "$p")"; else echo "$parent/$(basename "$p")"; fi
}

copy() {
    local src=$1 dst=$STAGE$1 e rc
    if [ -L "$src" ]; then
        mkdir -p "$(dirname "$dst")"
        rm -rf "$dst"
        ln -s "$(readlink "$src")" "$dst"
    elif [ -d "$src" ]; then
        mkdir -p "$dst"
        for e in "$src"/* "$src"/.[!.]* "$src"/..?*; do
            [ -e "$e" ] || [ -L "$e" ] || continue
            copy "$e"
        done
    elif [ -c "$src" ] || [ -b "$src" ]; then
        mkdir -p "$(dirname "$dst")"
        : > "$dst"
        echo "$src $(printf '%d:%d' 0x$(stat -c %t "$src") 0x$(stat -c %T "$src")) $(printf '0%o' 0x$(stat -c %f "$src"))" >> $STAGE/DEVICES
    elif [ -f "$src" ]; then
        mkdir -p "$(dirname "$dst")"
        # never trust st_size on sysfs/debugfs/proc: read the content
        timeout 10 cat "$src" > "$dst" 2> /tmp/capture.err < /dev/null
        rc=$?
        if [ $rc -ne 0 ]; then
            rm -f "$dst"
            if [ $rc = 124 ] || [ $rc = 143 ]; then
                unreadable "$src" "timed out after 10s (blocking read?)"
            else
                unreadable "$src" "$(head -n 1 /tmp/capture.err | sed 's/^cat: //') (exit $rc)"
            fi
        fi
    else
        unreadable "$src" "unsupported file type: $(stat -c %F "$src")"
    fi
}

# copy_elf_head P: only the ELF header and program headers of P, for files
# that are GiBs or TiBs past them (/proc/kcore); the bytes are the kernel's.
copy_elf_head() {
    local src=$1 dst=$STAGE$1 phoff phentsize phnum len
    if [ "$(od -An -t x1 -N 5 "$src" 2>/dev/null | tr -d ' ')" != 7f454c4602 ]; then
        unreadable "$src" "not readable as an ELF64 file (elfhead:)"
        return
    fi
    phoff=$(od -An -t u8 -j 32 -N 8 "$src" | tr -d ' ')
    set -- $(od -An -t u2 -j 54 -N 4 "$src")
    phentsize=$1 phnum=$2
    len=$((phoff + phentsize * phnum))
    [ $len -lt 64 ] && len=64
    mkdir -p "$(dirname "$dst")"
    if ! head -c $len "$src" > "$dst"; then
        rm -f "$dst"
        unreadable "$src" "head -c $len failed"
    fi
}

while IFS= read -r line <&3 || [ -n "$line" ]; do
    case $line in ''|'#'*) continue ;; esac
    case $line in elfhead:*) copy_elf_head "${line#elfhead:}"; continue ;; esac
    found=0
    for p in $line; do          # globs expand here
        if [ -e "$p" ] || [ -L "$p" ]; then
            found=1
            case $p in
                */) copy "$(follow "$(resolve "$(normpath "$p")")")" ;;  # trailing /: follow
                *) copy "$(resolve "$(normpath "$p")")" ;;
            esac
        fi
    done
    [ $found = 1 ] || unreadable "$line" "No such file or directory"
done 3< /capture.paths

cd $STAGE || exit 1
tar -cf /tmp/capture.tar . || exit 1
vm-put /tmp/capture.tar capture.tar || exit 1
echo "KHOD-VM: captured $(find . -type f | wc -l) files, $(find . -type l | wc -l) symlinks"
