"""`khoctl show fdt` before and after a KHO kexec, checked against the raw debugfs blobs.

Stage 1 (cold boot) runs `khoctl show fdt out --json` (khoctl mounts debugfs
itself) and `show fdt in`, which must fail: this boot did not come through a
KHO kexec. It sends the raw kho/out blobs too, so the check decodes them
itself (in Python, from the kernel's struct layouts) rather than trusting
khoctl. Then a KHO kexec (kexec_file_load) into stage 2, which runs
`khoctl show fdt in --json` and `show fdt out --json`.

The checks: stage 1's root is reported truncated exactly when the file is
shorter than its FDT header says; kho_test and kexec-metadata are decoded;
stage 2 reports the kho_test sub-tree, the previous release (that of the
image under test: stage 1 kexecs into itself) and kexec count 1, as the
kernel's own `KHO: exec from: <release> (count 1)` line says,
and the very kho_test and kexec-metadata blobs stage 1 handed over.
"""

import re
import struct

from vmtest import CheckFailed, dig, expect, expect_eq

DESCRIPTION = "khoctl show fdt out (cold boot), KHO kexec, khoctl show fdt in (2nd kernel)"
APPEND = "kho=on kho_scratch=16M,64M,32M crashkernel=256M liveupdate=on"
BINARIES = ["khoctl"]
HOST_BINARIES = ["/usr/sbin/kexec"]
INCLUDE_BOOT = True
BOOTS = 2

GUEST_SCRIPT = r'''
stage=$1
run() {  # run NAME ARGS...: khoctl ARGS > NAME, exit code as marker rc-NAME
    name=$1; shift
    khoctl "$@" > /tmp/$name 2> /tmp/$name.err
    vm-marker rc-$name $?
    cat /tmp/$name.err
    vm-put /tmp/$name $name
}
dbg=/sys/kernel/debug
if [ "$stage" = 1 ]; then
    vm-marker debugfs-before "$(grep -c ' debugfs ' /proc/mounts)"
    run out-1.json show fdt out --json
    run out-1.txt show fdt out
    run in-1.json show fdt in --json
    vm-put /tmp/in-1.json.err in-1.err
    # the raw blobs, for the host to decode on its own
    for f in $dbg/kho/out/fdt $dbg/kho/out/sub_fdts/*; do
        [ -f "$f" ] && vm-put "$f" "raw-out-$(basename "$f")"
    done
    ls $dbg/kho/out/sub_fdts > /tmp/out-names; vm-put /tmp/out-names out-names
    vm-kexec-self 2
    exit 1
fi
run in-2.json show fdt in --json
run in-2.txt show fdt in
run out-2.json show fdt out --json
for f in $dbg/kho/in/fdt $dbg/kho/in/sub_fdts/*; do
    [ -f "$f" ] && vm-put "$f" "raw-in-$(basename "$f")"
done
ls $dbg/kho/in/sub_fdts > /tmp/in-names; vm-put /tmp/in-names in-names
'''


def fdt_header(blob: bytes) -> dict:
    magic, totalsize = struct.unpack_from(">II", blob, 0)
    expect_eq(magic, 0xD00DFEED, "raw kho root FDT magic")
    return {"totalsize": totalsize}


def kexec_metadata(blob: bytes) -> dict:
    """include/linux/kho/abi/kexec_metadata.h: packed {u32; char[65]; u32}, CPU (little-endian) order."""
    expect(len(blob) >= 73, f"raw kexec-metadata is {len(blob)} bytes, expected 73")
    version, release, count = struct.unpack_from("<I65sI", blob, 0)
    return {"version": version, "previous_release": release.split(b"\0", 1)[0].decode(),
            "kexec_count": count}


def check_rc(result, name: str, want: int):
    rc = int(result.marker(f"rc-{name}").payload)
    expect(rc == want, f"khoctl for {name} exited with {rc}, expected {want}")


def check_stage1(result):
    release = result.kernel_release    # stage 1 is a cold boot of the image under test
    expect_eq(result.marker("debugfs-before").payload, "0", "debugfs mounts before khoctl ran")
    check_rc(result, "out-1.json", 0)
    check_rc(result, "out-1.txt", 0)
    doc = result.json("out-1.json")
    expect_eq(dig(doc, "schema"), 1, "schema")
    expect_eq(dig(doc, "direction"), "out", "direction")
    expect_eq(dig(doc, "error"), None, "error")
    expect_eq(dig(doc, "debugfs.mounted_now"), True, "debugfs.mounted_now (khoctl mounted debugfs)")

    # The root: truncated exactly when the file is shorter than its header says.
    raw = result.file("raw-out-fdt")
    totalsize = fdt_header(raw)["totalsize"]
    want_status = "truncated" if len(raw) < totalsize else "ok"
    expect_eq(dig(doc, "root.status"), want_status,
              f"root.status for a {len(raw)}-byte kho/out/fdt whose header says {totalsize}")
    expect_eq(dig(doc, "root.bytes_read"), len(raw), "root.bytes_read vs the raw file")
    expect_eq(dig(doc, "root.totalsize"), totalsize, "root.totalsize vs the raw header")

    names = result.text("out-names").split()
    expect_eq(sorted(dig(doc, "subtrees")), sorted(names), "sub-trees vs ls kho/out/sub_fdts")
    for name in names:
        expect_eq(dig(doc, f"subtrees.{name}.size"), len(result.file(f"raw-out-{name}")),
                  f"subtrees.{name}.size vs the raw file")

    expect_eq(dig(doc, "subtrees.kho_test.producer"), "kho_test", "subtrees.kho_test.producer")
    expect_eq(dig(doc, "subtrees.kho_test.errors"), [], "subtrees.kho_test.errors")
    expect_eq(dig(doc, "subtrees.kho_test.decoded.magic_ok"), True, "kho_test magic")
    want_meta = kexec_metadata(result.file("raw-out-kexec-metadata"))
    expect_eq(dig(doc, "subtrees.kexec-metadata.decoded"), want_meta, "kexec-metadata decoded vs the raw record")
    expect_eq(dig(doc, "kexec_metadata"), want_meta, "kexec_metadata vs the raw record")
    expect_eq(want_meta, {"version": 1, "previous_release": release, "kexec_count": 1},
              "the raw kexec-metadata a cold boot hands over")
    expect_eq(dig(doc, "subtrees.LUO.decoded.compatible"), "luo-v5", "LUO compatible")
    expect_eq(dig(doc, "subtrees.LUO.decoded.liveupdate_num"), 1, "LUO liveupdate_num on a cold boot")

    text = result.text("out-1.txt")
    expect(f"previous release       {release}" in text, f"the text form lacks the release:\n{text}")

    # No kho/in on a cold boot: an error that says why, exit code 1.
    check_rc(result, "in-1.json", 1)
    err = dig(result.json("in-1.json"), "error")
    expect(isinstance(err, str) and "did not come through a KHO kexec" in err,
           f"show fdt in on a cold boot: error {err!r}")
    return doc


def check_stage2(result, out1: dict):
    release = result.kernel_release    # stage 1 kexec'd into the same image
    check_rc(result, "in-2.json", 0)
    check_rc(result, "in-2.txt", 0)
    doc = result.json("in-2.json")
    expect_eq(dig(doc, "direction"), "in", "direction")
    expect_eq(dig(doc, "error"), None, "error")

    # The three facts, and the kernel's own word for two of them.
    expect("kho_test" in dig(doc, "subtrees"), f"no kho_test sub-tree in {sorted(dig(doc, 'subtrees'))}")
    expect_eq(dig(doc, "subtrees.kho_test.producer"), "kho_test", "subtrees.kho_test.producer")
    expect_eq(dig(doc, "kexec_metadata.previous_release"), release, "kexec_metadata.previous_release")
    expect_eq(dig(doc, "kexec_metadata.kexec_count"), 1, "kexec_metadata.kexec_count")
    m = re.search(r"KHO: exec from: (\S+) \(count (\d+)\)", result.console)
    expect(m, "the console has no 'KHO: exec from: <release> (count N)' line")
    expect_eq((dig(doc, "kexec_metadata.previous_release"), dig(doc, "kexec_metadata.kexec_count")),
              (m.group(1), int(m.group(2))), "kexec_metadata vs the console's 'KHO: exec from' line")
    expect("test_kho: KHO restore succeeded" in result.console, "test_kho did not restore its data")

    # The root arrives whole (kho/in/fdt is sized by its own totalsize).
    raw = result.file("raw-in-fdt")
    expect_eq(fdt_header(raw)["totalsize"], len(raw), "kho/in/fdt size vs its header")
    expect_eq(dig(doc, "root.status"), "ok", "root.status")
    expect_eq(dig(doc, "root.version"), "kho-v4", "root.version")
    phys = dig(doc, "root.preserved_memory_map.phys")
    expect(isinstance(phys, int) and phys > 0 and phys % 4096 == 0,
           f"root.preserved_memory_map.phys should be a page address, got {phys!r}")
    names = result.text("in-names").split()
    expect_eq(sorted(dig(doc, "subtrees")), sorted(names), "sub-trees vs ls kho/in/sub_fdts")
    for name in names:
        expect_eq(dig(doc, f"subtrees.{name}.in_root"), True, f"subtrees.{name}.in_root")
        expect_eq(dig(doc, f"subtrees.{name}.blob_size"), len(result.file(f"raw-in-{name}")),
                  f"subtrees.{name}.blob_size vs the raw file")

    # 7.2 frees the incoming LUO record after parsing it at boot; debugfs still
    # shows that memory. Intact or not, khoctl must say which. The raw copy is
    # read after khoctl ran and the record only ever goes from intact to freed,
    # so khoctl may have seen it intact where the raw copy is already zeroed,
    # never the other way round.
    raw_luo = result.file("raw-in-LUO")
    decoded = dig(doc, "subtrees.LUO.decoded")
    if decoded and decoded.get("known"):
        expect_eq(decoded.get("compatible"), "luo-v5", "in LUO record (intact when khoctl read it) decoded")
    else:
        expect(not raw_luo.startswith(b"luo-v5\0"),
               f"khoctl did not decode the in LUO record, yet the copy read after it is intact: {decoded!r}")
        errors = " ".join(dig(doc, "subtrees.LUO.errors"))
        expect("frees the incoming LUO record" in errors,
               f"in LUO holds {raw_luo[:8]!r}, not a LUO record; khoctl's errors: {errors!r}")

    # What stage 1 handed over is what stage 2 got.
    expect_eq(dig(doc, "subtrees.kho_test.decoded"), dig(out1, "subtrees.kho_test.decoded"),
              "kho_test decoded in stage 2 (in) vs stage 1 (out)")
    expect_eq(result.file("raw-in-kho_test"), result.file("raw-out-kho_test"), "the kho_test blob, out vs in")
    expect_eq(result.file("raw-in-kexec-metadata"), result.file("raw-out-kexec-metadata"),
              "the kexec-metadata blob, out vs in")
    text = result.text("in-2.txt")
    expect(f"came from              {release}, kexec count 1" in text, f"the text form lacks the origin:\n{text}")

    # Stage 2's own outgoing state: no root on a KHO boot, and the count goes on.
    check_rc(result, "out-2.json", 0)
    out2 = result.json("out-2.json")
    expect_eq(dig(out2, "root.status"), "missing", "out root.status on a KHO boot (7.2 makes it on cold boots)")
    expect_eq(dig(out2, "kexec_metadata.kexec_count"), 2, "out kexec_metadata.kexec_count in the 2nd kernel")


def check(result):
    stages = [m.stage for m in result.markers_of("boot")]
    expect_eq(stages, ["1", "2"], "stages of the boots")
    try:
        out1 = check_stage1(result)
    except CheckFailed as e:
        raise CheckFailed(f"{e}\n--- stage 1 show fdt out --json ---\n{result.text('out-1.json')}") from None
    try:
        check_stage2(result, out1)
    except CheckFailed as e:
        raise CheckFailed(f"{e}\n--- stage 2 show fdt in --json ---\n{result.text('in-2.json')}") from None
