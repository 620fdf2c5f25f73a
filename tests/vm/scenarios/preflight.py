"""`khoctl check` against a real KHO kexec_file_load, default scratch sizes.

The guest runs `khoctl check --json` on its own /boot/bzImage and
/boot/initrd.gz, then loads the same files for real through lib/khod/kexec/kexec_file
(tests/vm/kexec-load-probe) with KEXEC_FILE_DEBUG, so the kernel logs where it
put every segment, and unloads again. The check compares the prediction with
the kernel: fits or not, and each segment's address and size, exactly.

preflight_noroom.py and preflight_tight.py reuse everything here with other
scratch sizes.
"""

import re

from vmtest import CheckFailed, dig, expect, expect_eq

DESCRIPTION = "khoctl check predicts a KHO kexec_file_load's placement; a real load agrees (16M,64M,32M)"
APPEND = "kho=on kho_scratch=16M,64M,32M"
BINARIES = ["khoctl", "kexec-load-probe"]
INCLUDE_BOOT = True

MiB = 1 << 20

GUEST_SCRIPT = r'''
CHECK="khoctl check --kernel /boot/bzImage --initrd /boot/initrd.gz --reuse-cmdline"
$CHECK --json > /tmp/check.json 2> /tmp/check.err
vm-marker check-rc $?
cat /tmp/check.err
vm-put /tmp/check.json check.json
$CHECK > /tmp/check.txt 2>&1
cat /tmp/check.txt
vm-put /tmp/check.txt check.txt

# khoctl mounted debugfs; read what the kernel says, without khoctl
dbg=$(awk '$3 == "debugfs" {print $2; exit}' /proc/mounts)
one() { tr '\n' ' ' < "$1" | sed 's/ *$//'; }
{
    echo "scratch_phys=$(one $dbg/kho/out/scratch_phys)"
    echo "scratch_len=$(one $dbg/kho/out/scratch_len)"
    echo "initrd_size=$(wc -c < /boot/initrd.gz)"
    echo "cmdline=$(cat /proc/cmdline)"
    echo "loaded_before=$(cat /sys/kernel/kexec/loaded)"
} > /tmp/truth.txt

# the real thing: load with KEXEC_FILE_DEBUG (placement in dmesg), then unload
dmesg -c > /dev/null
kexec-load-probe load --kernel /boot/bzImage --initrd /boot/initrd.gz \
    --cmdline "$(cat /proc/cmdline)" --debug > /tmp/load.txt 2>&1
echo "load_rc=$?" >> /tmp/truth.txt
echo "load_out=$(cat /tmp/load.txt)" >> /tmp/truth.txt
echo "loaded_after_load=$(cat /sys/kernel/kexec/loaded)" >> /tmp/truth.txt
dmesg > /tmp/dmesg-load.txt
kexec-load-probe unload > /tmp/unload.txt 2>&1
echo "unload_rc=$?" >> /tmp/truth.txt
echo "unload_out=$(cat /tmp/unload.txt)" >> /tmp/truth.txt
echo "loaded_after_unload=$(cat /sys/kernel/kexec/loaded)" >> /tmp/truth.txt
cat /tmp/truth.txt
vm-put /tmp/truth.txt truth.txt
vm-put /tmp/dmesg-load.txt dmesg-load.txt
'''

# kexec_file.c (KEXEC_FILE_DEBUG) after a successful load, one line per segment in order:
#   kexec_file: segment[0]: buf=0x... bufsz=0x1000 mem=0x2a7f0000 memsz=0x1000
SEGMENT_RE = re.compile(r"segment\[(\d+)\]: buf=\S+ bufsz=0x([0-9a-f]+) mem=0x([0-9a-f]+) memsz=0x([0-9a-f]+)")
# kexec-bzimage64.c, printed as each segment is placed (also before a failure)
PLACED_RE = {
    "purgatory": re.compile(r"Loaded purgatory at 0x([0-9a-f]+)"),
    "boot-params": re.compile(r"Loaded boot_param, command line and misc at 0x([0-9a-f]+) bufsz=0x[0-9a-f]+ "
                              r"memsz=0x([0-9a-f]+)"),
    "kernel": re.compile(r"Loaded 64bit kernel at 0x([0-9a-f]+) bufsz=0x[0-9a-f]+ memsz=0x([0-9a-f]+)"),
    "initrd": re.compile(r"Loaded initrd at 0x([0-9a-f]+) bufsz=0x[0-9a-f]+ memsz=0x([0-9a-f]+)"),
}


BOOT_PARAMS_BUFSZ_RE = re.compile(r"Loaded boot_param, command line and misc at 0x[0-9a-f]+ bufsz=0x([0-9a-f]+)")


def parse_truth(text: str) -> dict:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def kernel_segments(dmesg: str) -> list:
    """[(mem, memsz)] in segment order, from the KEXEC_FILE_DEBUG segment list."""
    segs = {}
    for m in SEGMENT_RE.finditer(dmesg):
        segs[int(m.group(1))] = (int(m.group(3), 16), int(m.group(4), 16))
    return [segs[i] for i in sorted(segs)]


def kernel_placed(dmesg: str) -> dict:
    """{segment name: address} from the bzImage loader's "Loaded ..." lines."""
    out = {}
    for name, rx in PLACED_RE.items():
        m = rx.search(dmesg)
        if m:
            out[name] = int(m.group(1), 16)
    return out


def check_loader_sizes(doc, dmesg):
    """The boot params buffer and the kernel's file part are the sizes the model computed."""
    segs = {s["name"]: s for s in dig(doc, "placement.segments")}
    m = BOOT_PARAMS_BUFSZ_RE.search(dmesg)
    expect(m is not None, "no 'Loaded boot_param' line in dmesg (KEXEC_FILE_DEBUG)")
    expect_eq(segs["boot-params"]["size"], int(m.group(1), 16),
              "boot-params size (boot_params + cmdline + setup_data) vs the kernel's bufsz")


def check_common(result):
    """The check ran, its JSON is sane and matches the kernel's scratch areas and files."""
    doc = result.json("check.json")
    truth = parse_truth(result.text("truth.txt"))
    expect_eq(dig(doc, "schema"), 1, "schema")
    expect_eq(dig(doc, "kho.active"), True, "kho.active")
    names = [c["name"] for c in dig(doc, "checks")]
    expect_eq(names, ["debugfs", "kho", "kernel", "initrd", "cmdline", "scratch-fit", "kexec-allowed",
                      "signature"], "check names, in order")
    status = {c["name"]: c["status"] for c in doc["checks"]}
    for name in ("debugfs", "kho", "kernel", "initrd", "cmdline", "kexec-allowed", "signature"):
        expect_eq(status[name], "ok", f"check {name} ({[c for c in doc['checks'] if c['name'] == name]})")

    release = dig(doc, "kernel.release")
    expect(release == result.kernel_release,
           f"kernel.release {release!r}: the version string of the kernel under test says "
           f"{result.kernel_release!r}")
    expect(dig(doc, "kernel.version").startswith(result.kernel_release + " "),
           "kernel.version starts with the release")
    expect_eq(dig(doc, "initrd.size"), int(truth["initrd_size"]), "initrd.size vs wc -c")
    expect_eq(dig(doc, "cmdline.text"), truth["cmdline"],
              "the reused command line (nothing to drop or add on this boot)")

    phys = [int(x, 0) for x in truth["scratch_phys"].split()]
    lens = [int(x, 0) for x in truth["scratch_len"].split()]
    areas = dig(doc, "kho.scratch")
    expect_eq([(a["phys"], a["size"]) for a in areas], list(zip(phys, lens)),
              "scratch areas vs debugfs scratch_phys/scratch_len")
    return doc, truth


def check_fits(result):
    """Prediction says it fits; the kernel loads it, puts every segment where predicted, and unloads."""
    doc, truth = check_common(result)
    rc = int(result.marker("check-rc").payload)
    expect(rc == 0, f"khoctl check exited {rc}:\n{result.text('check.txt')}")
    expect_eq(dig(doc, "ok"), True, "ok")
    expect_eq(dig(doc, "placement.fits"), True, "placement.fits")

    expect_eq(truth["load_rc"], "0", f"kexec-load-probe load ({truth['load_out']})")
    expect_eq(truth["loaded_before"], "0", "/sys/kernel/kexec/loaded before the load")
    expect_eq(truth["loaded_after_load"], "1", "/sys/kernel/kexec/loaded after the load")
    expect_eq(truth["unload_rc"], "0", f"kexec-load-probe unload ({truth['unload_out']})")
    expect_eq(truth["loaded_after_unload"], "0", "/sys/kernel/kexec/loaded after the unload")

    dmesg = result.text("dmesg-load.txt")
    check_loader_sizes(doc, dmesg)
    predicted = [(s["name"], s["addr"], s["memsz"], s["area"]) for s in dig(doc, "placement.segments")]
    actual = kernel_segments(dmesg)
    expect_eq(len(actual), len(predicted),
              f"segments the kernel placed vs predicted {[p[0] for p in predicted]}")
    for (name, addr, memsz, area), (mem, ksz) in zip(predicted, actual):
        expect((addr, memsz) == (mem, ksz),
               f"segment {name}: predicted {hex(addr)}+{hex(memsz)} (area {area}), "
               f"the kernel put it at {hex(mem)}+{hex(ksz)}")
    return doc, truth


def check(result):
    try:
        doc, _ = check_fits(result)
    except CheckFailed as e:
        raise CheckFailed(f"{e}\n--- khoctl check ---\n{result.text('check.txt')}") from None
    # default sizes: the 35 MiB kernel cannot go in the 16 MiB lowmem area, so it
    # lands in the 64 MiB global area while the small segments stay in lowmem
    # (the initrd goes wherever it fits first; its size follows the build)
    segs = {s["name"]: s for s in dig(doc, "placement.segments")}
    expect_eq(segs["kernel"]["area"], 1, "kernel segment's area")
    for name in ("kho-scratch", "purgatory", "boot-params"):
        expect_eq(segs[name]["area"], 0, f"{name} segment's area")
