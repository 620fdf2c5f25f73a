"""`khoctl status` on a kernel with KHO, the Live Update Orchestrator and a crash reservation.

The guest runs `khoctl status --json` first, on a system where nothing has
mounted debugfs yet (so khoctl must mount it itself), then the human table.
Afterwards it reads the same kernel files itself ("truth.txt") so the check
compares khoctl's numbers against the kernel's, not only against constants.

All assertions on the JSON are in check_status(); status_nokho.py reuses it.
"""

from vmtest import CheckFailed, dig, expect, expect_eq

DESCRIPTION = "khoctl status with kho=on, kho_scratch=16M,64M,32M, crashkernel=256M, liveupdate=on"
APPEND = "kho=on kho_scratch=16M,64M,32M crashkernel=256M liveupdate=on"
BINARIES = ["khoctl"]

MiB = 1 << 20
CRASH_SIZE = 256 * MiB
SCRATCH = [(0, "lowmem", 16 * MiB), (1, "global", 64 * MiB), (2, "node", 32 * MiB)]

GUEST_SCRIPT = r'''
# the init never mounts debugfs: khoctl has to
vm-marker debugfs-before "$(grep -c ' debugfs ' /proc/mounts)"

khoctl status --json > /tmp/status.json 2> /tmp/status-json.err
vm-marker rc-json $?
cat /tmp/status-json.err
vm-put /tmp/status.json status.json
vm-put /tmp/status-json.err status-json.err

khoctl status > /tmp/status.txt 2>&1
vm-marker rc-text $?
cat /tmp/status.txt
vm-put /tmp/status.txt status.txt

# what the kernel itself says, read without khoctl
dbg=$(awk '$3 == "debugfs" {print $2; exit}' /proc/mounts)
mounted_after=${dbg:+yes}
if [ -z "$dbg" ]; then
    dbg=/sys/kernel/debug
    mount -t debugfs debugfs $dbg
fi
one() { [ -e "$1" ] && tr '\n' ' ' < "$1" | sed 's/ *$//'; }
{
    echo "release=$(uname -r)"
    echo "debugfs_after_khoctl=${mounted_after:-no}"
    echo "kho_out=$([ -d $dbg/kho/out ] && echo yes || echo no)"
    echo "scratch_phys=$(one $dbg/kho/out/scratch_phys)"
    echo "scratch_len=$(one $dbg/kho/out/scratch_len)"
    echo "has_memory=$(one /sys/devices/system/node/has_memory)"
    echo "loaded=$(one /sys/kernel/kexec/loaded)"
    echo "crash_loaded=$(one /sys/kernel/kexec/crash_loaded)"
    echo "crash_size=$(one /sys/kernel/kexec/crash_size)"
    echo "crash_elfcorehdr_size=$(one /sys/kernel/kexec/crash_elfcorehdr_size)"
    echo "crash_hotplug_cpu=$(one /sys/devices/system/cpu/crash_hotplug)"
    echo "crash_hotplug_memory=$(one /sys/devices/system/memory/crash_hotplug)"
    echo "liveupdate_dev=$([ -c /dev/liveupdate ] && echo yes || echo no)"
} > /tmp/truth.txt
cat /tmp/truth.txt
vm-put /tmp/truth.txt truth.txt
'''


def parse_truth(text: str) -> dict:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _flag(text: str):
    """A sysfs 0/1 file as bool; None when the file was absent."""
    return None if text == "" else text.strip() == "1"


def _num(text: str):
    return None if text == "" else int(text, 0)


def check_runs(result):
    """khoctl ran cleanly both ways and the files came back."""
    expect_eq(result.marker("debugfs-before").payload, "0",
              "debugfs mounts before khoctl ran (the init must not mount it)")
    for word, err in (("rc-json", "status-json.err"), ("rc-text", None)):
        rc = int(result.marker(word).payload)
        detail = f"; stderr: {result.text(err).strip()!r}" if err else ""
        expect(rc == 0, f"khoctl status ({word}) exited with {rc}{detail}")
    table = result.text("status.txt")
    release = parse_truth(result.text("truth.txt"))["release"]
    expect(release in table, f"plain `khoctl status` does not show the release {release}:\n{table}")


def check_status(doc: dict, truth: dict, *, kho: bool, release: str):
    """Every assertion on `khoctl status --json`. kho: booted with kho=on etc.;
    release: the release of the image under test (result.kernel_release)."""
    expect_eq(dig(doc, "schema"), 1, "schema")
    expect_eq(dig(doc, "kernel.release.value"), release,
              "kernel.release.value vs the booted bzImage's version string")
    expect_eq(dig(doc, "kernel.release.value"), truth["release"], "kernel.release.value vs uname -r")

    # debugfs: nothing had mounted it, so khoctl must have, and said so
    expect_eq(dig(doc, "kho.debugfs.mounted"), True, "kho.debugfs.mounted")
    expect_eq(dig(doc, "kho.debugfs.mounted_now"), True,
              "kho.debugfs.mounted_now (khoctl mounted debugfs itself)")
    expect_eq(dig(doc, "kho.debugfs.mountpoint"), "/sys/kernel/debug", "kho.debugfs.mountpoint")
    expect_eq(dig(doc, "kho.debugfs.error"), None, "kho.debugfs.error")

    # kexec / crash reservation: the same in both scenarios
    expect_eq(dig(doc, "kexec.crash_size.value"), CRASH_SIZE, "kexec.crash_size.value")
    expect_eq(dig(doc, "kexec.crash_size.value"), _num(truth["crash_size"]),
              "kexec.crash_size.value vs /sys/kernel/kexec/crash_size")
    expect_eq(dig(doc, "kexec.crash_loaded.value"), False, "kexec.crash_loaded.value")
    expect_eq(dig(doc, "kexec.loaded.value"), False, "kexec.loaded.value")
    expect_eq(dig(doc, "kexec.crash_elfcorehdr_size.value"),
              _num(truth["crash_elfcorehdr_size"]),
              "kexec.crash_elfcorehdr_size.value vs /sys/kernel/kexec/crash_elfcorehdr_size")
    for kind in ("cpu", "memory"):
        want = _flag(truth[f"crash_hotplug_{kind}"])
        expect_eq(dig(doc, f"crash_hotplug.{kind}.value"), want,
                  f"crash_hotplug.{kind}.value vs /sys/devices/system/{kind}/crash_hotplug")

    if not kho:
        expect_eq(dig(doc, "kho.active"), False, "kho.active on a kernel booted without kho=on")
        expect_eq(dig(doc, "kho.cmdline.kho"), None, "kho.cmdline.kho (no kho= given)")
        expect_eq(dig(doc, "liveupdate.present"), False, "liveupdate.present (no /dev/liveupdate)")
        expect_eq(truth["liveupdate_dev"], "no", "/dev/liveupdate in the guest")
        scratch = dig(doc, "kho.scratch.value")
        expect(not scratch, f"kho.scratch.value should be empty without KHO, got {scratch!r}")
        return

    expect_eq(dig(doc, "kho.active"), True, "kho.active")
    expect_eq(dig(doc, "kho.cmdline.kho"), "on", "kho.cmdline.kho")
    expect_eq(dig(doc, "kho.cmdline.enabled"), True, "kho.cmdline.enabled")
    expect_eq(dig(doc, "kho.abi"), "stateless", "kho.abi")
    expect_eq(dig(doc, "kho.incoming"), False, "kho.incoming (first boot, no KHO kexec)")
    expect_eq(dig(doc, "liveupdate.present"), True, "liveupdate.present")
    expect_eq(truth["liveupdate_dev"], "yes", "/dev/liveupdate in the guest")
    expect_eq(dig(doc, "kho.scratch.status"), "ok", "kho.scratch.status")

    areas = dig(doc, "kho.scratch.value")
    expect(isinstance(areas, list) and len(areas) == len(SCRATCH),
           f"kho.scratch.value: expected {len(SCRATCH)} areas, got {areas!r}")
    phys_truth = [int(x, 0) for x in truth["scratch_phys"].split()]
    len_truth = [int(x, 0) for x in truth["scratch_len"].split()]
    expect_eq(len(phys_truth), len(SCRATCH), "entries in debugfs kho/out/scratch_phys")
    for area, (index, kind, size), phys, length in zip(areas, SCRATCH, phys_truth, len_truth):
        where = f"kho.scratch.value[{index}]"
        expect_eq(area.get("index"), index, f"{where}.index")
        expect_eq(area.get("kind"), kind, f"{where}.kind")
        expect_eq(area.get("size"), size, f"{where}.size")
        expect_eq(area.get("size"), length, f"{where}.size vs debugfs scratch_len")
        expect(isinstance(area.get("phys"), int) and area["phys"] > 0,
               f"{where}.phys should be a non-zero address, got {area.get('phys')!r}")
        expect_eq(area.get("phys"), phys, f"{where}.phys vs debugfs scratch_phys")
        if kind == "node":
            expect_eq(area.get("node"), 0, f"{where}.node")
    lowmem = areas[0]
    expect(lowmem["phys"] + lowmem["size"] <= 1 << 32,
           f"lowmem scratch area ends above 4 GiB: {lowmem!r}")


def check(result):
    check_runs(result)
    doc = result.json("status.json")
    truth = parse_truth(result.text("truth.txt"))
    expect_eq(truth["debugfs_after_khoctl"], "yes",
              "debugfs mounted after khoctl ran (khoctl mounted it)")
    try:
        check_status(doc, truth, kho=True, release=result.kernel_release)
    except CheckFailed as e:
        raise CheckFailed(f"{e}\n--- khoctl status --json ---\n{result.text('status.json')}") from None
