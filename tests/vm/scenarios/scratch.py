"""`khoctl scratch plan` predicts the running kernel's KHO scratch areas: default, fixed, percent, KHO boot.

One VM, four boots of the shared 7.2 kernel, each one asked the same thing:
what areas should this kernel have made, and what does debugfs say it made?

  1  kho=on                          default scale, 200%
  2  kho=on kho_scratch=10M,1M,5M    (kexec_load: a cold KHO boot) the fixed form,
                                     rounded up to 4 MiB; a KHO kexec_file_load of
                                     the same kernel must fail there, as the plan says
  3  kho=on kho_scratch=150%         (kexec_load) the percent form
  4  kho=on kho_scratch=300%         (KHO kexec_file_load from 3) a KHO boot: the
                                     areas are 3's, kho_scratch= is ignored
  5  kho=on kho_scratch=<what 4's plan recommends>  (kexec_load) the areas are
                                     exactly the recommended sizes
  6  kho=on                          (KHO kexec_file_load from 5) the next kernel,
                                     its initrd and its early allocations fit:
                                     swiotlb keeps its 64 MiB

Every boot also runs with memblock=debug (loglevel=4 keeps it off the
console): check() replays the __memblock_reserve / memblock_phys_free lines
to get the kernel's true R (RSRV_KERN bytes below 4 GiB, in all, per node)
at the moment kho_memory_init() ran, shows it next to khoctl's userspace
estimate (r-compare-<stage>.txt in the output dir) and requires the
estimate to be within its stated uncertainty. The kernel's own formula over
the true R must give exactly what debugfs shows, which checks the replay
and the model of which reservations count for which node.
"""

import re

from vmtest import CheckFailed, dig, expect, expect_eq

DESCRIPTION = "khoctl scratch plan vs debugfs: default, fixed, percent, KHO boot, the recommendation (6 boots)"
APPEND = "kho=on memblock=debug loglevel=4"
BINARIES = ["khoctl"]
HOST_BINARIES = ["/usr/sbin/kexec"]
INCLUDE_BOOT = True
BOOTS = 6
BOOT_TIMEOUT = 150

MiB = 1 << 20
ALIGN = 4 * MiB

# The guest side, shared with scratch_numa.py. $1 is the stage; collect()
# leaves plan-N.json, plan-N.txt, show-N.json, truth-N.txt, dmesg-N.txt.
GUEST_COMMON = r'''
stage=$1
base="console=ttyS0 panic=-1 memblock=debug loglevel=4"
self=$(vm-self-initrd /tmp/self.gz) || exit 1

collect() {
    # --kernel/--initrd: what the next kexec in this scenario loads
    khoctl scratch plan --json --kernel /boot/bzImage --initrd "$self" > /tmp/plan.json 2> /tmp/plan.err
    vm-marker plan-rc "$?"
    khoctl scratch plan --kernel /boot/bzImage --initrd "$self" > /tmp/plan.txt 2>&1
    khoctl scratch show --json > /tmp/show.json 2>&1
    vm-marker show-rc "$?"
    dbg=$(awk '$3 == "debugfs" {print $2; exit}' /proc/mounts)
    {
        echo "cmdline=$(cat /proc/cmdline)"
        echo "scratch_len=$(tr '\n' ' ' < $dbg/kho/out/scratch_len)"
        echo "scratch_phys=$(tr '\n' ' ' < $dbg/kho/out/scratch_phys)"
        echo "has_memory=$(cat /sys/devices/system/node/has_memory)"
        echo "kho_in=$([ -d $dbg/kho/in ] && echo yes || echo no)"
    } > /tmp/truth.txt
    dmesg > /tmp/dmesg.txt
    for f in plan.json plan.err plan.txt show.json truth.txt dmesg.txt; do
        vm-put /tmp/$f "$(echo $f | sed "s/\./-$stage./")" || exit 1
    done
}

cold_kexec() {   # kexec_load: the next kernel gets no KHO data and sizes its own areas
    kexec -c -l /boot/bzImage --initrd="$self" --append="$base $1" || exit 1
    vm-marker kexec "$1"
    kexec -e
    exit 1
}

kho_kexec() {    # kexec_file_load with KHO: the next kernel reuses this one's areas
    kexec -s -l /boot/bzImage --initrd="$self" --append="$base $1" || exit 1
    vm-marker kexec "$1"
    kexec -e
    exit 1
}
'''

GUEST_SCRIPT = GUEST_COMMON + r'''
collect
case $stage in
1)  cold_kexec "kho=on kho_scratch=10M,1M,5M khod.stage=2" ;;
2)  # 12+4+8 MiB of scratch cannot hold this kernel: KHO kexec_file_load must refuse
    kexec -s -l /boot/bzImage --initrd="$self" --append="$base kho=on khod.stage=x" > /tmp/kexec-s.err 2>&1
    vm-marker kexec-s-rc "$?"
    kexec -s -u 2>/dev/null
    vm-put /tmp/kexec-s.err kexec-s-2.err
    cold_kexec "kho=on kho_scratch=150% khod.stage=3" ;;
3)  kho_kexec "kho=on kho_scratch=300% khod.stage=4" ;;
4)  # cold-boot with what the plan recommends, then prove a KHO kexec fits in it
    word=$(sed -n 's/^Recommended for the next cold boot: //p' /tmp/plan.txt)
    vm-marker recommended "$word"
    [ -n "$word" ] || exit 1
    cold_kexec "kho=on $word khod.stage=5" ;;
5)  kho_kexec "kho=on khod.stage=6" ;;
esac
'''


# ---------------------------------------------------------------------------
# memblock=debug replay

RES = re.compile(r"__memblock_reserve: \[0x([0-9a-f]+)-0x([0-9a-f]+)\] nid=(-?\d+) flags=([0-9a-f]+) (\S+)")
FREE = re.compile(r"memblock_phys_free: \[0x([0-9a-f]+)-0x([0-9a-f]+)\]")
ALLOC = re.compile(r"memblock_\w+: \d+ bytes align=0x[0-9a-f]+ (?:nid=-?\d+ )?from=\S+ max_addr=\S+ (\S+)")
DUMP = re.compile(r"reserved\[0x[0-9a-f]+\]\s+\[0x([0-9a-f]+)-0x([0-9a-f]+)\], 0x[0-9a-f]+ bytes "
                  r"(?:on node (\d+) )?flags: 0x([0-9a-f]+)")
SRAT = re.compile(r"ACPI: SRAT: Node (\d+) PXM \d+ \[mem 0x([0-9a-f]+)-0x([0-9a-f]+)\]")
RSRV_KERN = 0x20
LOW_LIMIT = 0xFFFFFFFF  # ARCH_LOW_ADDRESS_LIMIT


class Reserved:
    """memblock.reserved as memblock_add_range()/memblock_remove_range() keep it."""

    def __init__(self):
        self.r = []  # [base, end, nid, flags, caller]

    def add(self, base, end, nid, flags, who):
        # A new range only fills the gaps between existing regions.
        cur, gaps = base, []
        for b, e, *_ in sorted(self.r):
            if e <= cur:
                continue
            if b >= end:
                break
            if b > cur:
                gaps.append((cur, b))
            cur = max(cur, e)
        if cur < end:
            gaps.append((cur, end))
        self.r += [[g0, g1, nid, flags, who] for g0, g1 in gaps]

    def cut(self, base, end, nid=None):
        """Removes [base, end), or with nid sets its node (memblock_set_node())."""
        out = []
        for b, e, n, f, w in self.r:
            if e <= base or b >= end:
                out.append([b, e, n, f, w])
                continue
            if b < base:
                out.append([b, base, n, f, w])
            if nid is not None:
                out.append([max(b, base), min(e, end), nid, f, w])
            if e > end:
                out.append([end, e, n, f, w])
        self.r = out

    def kern_size(self, limit=None, nid=None):
        """memblock_reserved_kern_size(limit, nid), clipping as the kernel does."""
        total = 0
        for b, e, n, f, _ in sorted(self.r):
            size = e - b
            if limit is not None:
                if b > limit:
                    break
                if e > limit:
                    size = limit - b
            if (nid is None or n == nid) and f & RSRV_KERN:
                total += size
        return total


def replay_memblock(dmesg: str) -> dict:
    """The true R when kho_memory_init() ran, from a memblock=debug boot log."""
    mb = Reserved()
    srat, numa_done, seeded, dumping, caller = [], False, False, False, None
    for line in dmesg.splitlines():
        if not seeded:
            # The first "MEMBLOCK configuration" dump holds what was reserved
            # before memblock=debug was parsed (the kernel image, the initrd).
            m = DUMP.search(line)
            if m:
                dumping = True
                mb.add(int(m[1], 16), int(m[2], 16) + 1, int(m[3]) if m[3] else -1, int(m[4], 16), "early")
                continue
            if dumping:
                seeded = True
        m = SRAT.search(line)
        if m:
            srat.append((int(m[1]), int(m[2], 16), int(m[3], 16) + 1))
            continue
        m = ALLOC.search(line)
        if m:
            caller = re.sub(r"\+0x.*", "", m[1])
            if caller == "kho_memory_init":
                break
            continue
        m = RES.search(line)
        if m:
            nid = int(m[3])
            if not numa_done and nid >= 0:
                # numa_clear_kernel_node_hotplug() gave earlier regions the nid of their address
                for n, b, e in srat:
                    mb.cut(b, e, nid=n)
                numa_done = True
            who = caller if m[5].startswith("memblock_alloc_range_nid") and caller else re.sub(r"\+0x.*", "", m[5])
            mb.add(int(m[1], 16), int(m[2], 16) + 1, nid, int(m[4], 16), who)
            caller = None
            continue
        m = FREE.search(line)
        if m:
            mb.cut(int(m[1], 16), int(m[2], 16) + 1)
    else:
        raise CheckFailed("no kho_memory_init allocation in the memblock=debug log (was memblock=debug on?)")
    nodes = sorted({n for n, *_ in srat}) or [0]
    by_caller = {}
    for b, e, n, f, w in mb.r:
        if f & RSRV_KERN:
            by_caller[(w, n)] = by_caller.get((w, n), 0) + (e - b)
    return {"low": mb.kern_size(LOW_LIMIT), "total": mb.kern_size(),
            "node": {n: mb.kern_size(nid=n) for n in nodes}, "by_caller": by_caller}


def up(x, a=ALIGN):
    return ((x - 1) | (a - 1)) + 1 if x else 0


def kernel_formula(r: dict, scale: int, nodes) -> list:
    """scratch_size_update()/scratch_size_node() of 7.2 over a true R."""
    low = r["low"] * scale // 100
    out = [up(low), up(r["total"] * scale // 100 - low)]
    return out + [up(r["node"][n] * scale // 100) for n in nodes]


# ---------------------------------------------------------------------------
# checks


def parse_truth(text: str) -> dict:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def sizes(truth: dict) -> list:
    return [int(x, 0) for x in truth["scratch_len"].split()]


def compare_r(result, stage: str, plan: dict, true_r: dict) -> str:
    """Writes r-compare-<stage>.txt (estimate vs replay) and checks the estimate."""
    res = dig(plan, "reserved")
    lines = [f"stage {stage}: R estimated by khoctl from userspace vs replayed from memblock=debug",
             f"{'':24}{'estimate':>14}{'+-':>10}{'true':>14}{'diff':>10}"]
    checks = [("R below 4 GiB", res["low"], res["low_uncertainty"], true_r["low"]),
              ("R", res["total"], res["uncertainty"], true_r["total"])]
    for n, v in true_r["node"].items():
        node = res["node"].get(str(n))
        if node is not None:
            checks.append((f"R(node {n})", node["bytes"], node["uncertainty"], v))
    for name, est, unc, true in checks:
        lines.append(f"{name:24}{est:>14}{unc:>10}{true:>14}{est - true:>+10}")
    lines.append("")
    lines.append("khoctl's parts (bytes, +-, node, source):")
    for p in res["parts"]:
        lines.append(f"  {p['name']:44} {p['bytes']:>12} {p['uncertainty']:>8} {str(p['node']):>5}  {p['source']}")
    lines.append("")
    lines.append("replayed RSRV_KERN regions by allocating function (bytes, nid):")
    for (who, n), v in sorted(true_r["by_caller"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  {who:44} {v:>12} {n:>5}")
    text = "\n".join(lines) + "\n"
    (result.outdir / f"r-compare-{stage}.txt").write_text(text)
    for name, est, unc, true in checks:
        expect(abs(est - true) <= unc,
               f"stage {stage}: {name} estimated {est} +- {unc} but the kernel had {true}\n{text}")
    return text


def check_prediction(stage: str, plan: dict, truth: dict):
    actual = sizes(truth)
    areas = dig(plan, "prediction.areas")
    expect_eq(len(areas), len(actual), f"stage {stage}: areas in the plan vs debugfs scratch_len")
    for a, size in zip(areas, actual):
        expect_eq(a["actual"], size, f"stage {stage}: area {a['index']} 'actual' vs debugfs")
        if a["predicted"] == size:
            expect_eq(a["verdict"], "exact", f"stage {stage}: area {a['index']} verdict")
            continue
        expect(abs(a["predicted"] - size) <= ALIGN and a["verdict"] == "within-alignment" and a["reason"],
               f"stage {stage}: area {a['index']} ({a['kind']}): predicted {a['predicted']}, debugfs {size}, "
               f"verdict {a['verdict']!r}, reason {a['reason']!r}")
    expect(dig(plan, "prediction.verdict") in ("exact", "within-alignment"),
           f"stage {stage}: plan verdict {dig(plan, 'prediction.verdict')!r}")


def check_stage(result, stage: str, scale, nodes) -> tuple:
    """The common checks of a cold boot; returns (plan, truth, sizes)."""
    rc = int(result.marker("plan-rc", boot=int(stage)).payload)
    expect(rc in (0, 2), f"stage {stage}: khoctl scratch plan exited {rc}: {result.text(f'plan-{stage}.err')}")
    expect_eq(int(result.marker("show-rc", boot=int(stage)).payload), 0, f"stage {stage}: khoctl scratch show rc")
    plan = result.json(f"plan-{stage}.json")
    truth = parse_truth(result.text(f"truth-{stage}.txt"))
    show = result.json(f"show-{stage}.json")
    expect_eq([a["size"] for a in show["areas"]], sizes(truth), f"stage {stage}: scratch show vs debugfs")
    try:
        expect_eq(dig(plan, "rules.id"), "7.0-7.3", f"stage {stage}: rules")
        expect_eq(dig(plan, "prediction.applies"), True, f"stage {stage}: prediction applies on a cold boot")
        check_prediction(stage, plan, truth)
        true_r = replay_memblock(result.text(f"dmesg-{stage}.txt"))
        # The kernel's formula over the true R is exactly what debugfs shows.
        expect_eq(kernel_formula(true_r, scale, nodes) if scale else sizes(truth), sizes(truth),
                  f"stage {stage}: the 7.2 formula over the replayed R vs debugfs")
        compare_r(result, stage, plan, true_r)
    except CheckFailed as e:
        raise CheckFailed(f"{e}\n--- plan-{stage}.txt ---\n{result.text(f'plan-{stage}.txt')}") from None
    return plan, truth


def check(result):
    stages = [m.stage for m in result.markers_of("boot")]
    expect_eq(stages, ["1", "2", "3", "4", "5", "6"], "stages of the boots")

    # 1: default scale 200%
    plan1, _ = check_stage(result, "1", 200, [0])
    expect_eq(dig(plan1, "param.form"), "scale", "stage 1 param form")
    expect_eq(dig(plan1, "param.scale"), 200, "stage 1 scale")
    expect_eq(dig(plan1, "next.images.fits"), True, "stage 1: the next kernel fits the default areas")

    # 2: fixed 10M,1M,5M -> 12, 4, 8 MiB; a KHO kexec cannot fit the kernel there
    plan2, truth2 = check_stage(result, "2", None, [0])
    expect_eq(sizes(truth2), [12 * MiB, 4 * MiB, 8 * MiB], "stage 2: debugfs for kho_scratch=10M,1M,5M")
    expect_eq(dig(plan2, "next.images.fits"), False, "stage 2: plan says the kernel does not fit")
    kexec_rc = int(result.marker("kexec-s-rc", boot=2).payload)
    expect(kexec_rc != 0, f"stage 2: kexec -s -l into 24 MiB of scratch succeeded; the plan said it cannot\n"
                          f"{result.text('kexec-s-2.err')}")

    # 3: 150%
    plan3, truth3 = check_stage(result, "3", 150, [0])
    expect_eq(dig(plan3, "param.scale"), 150, "stage 3 scale")
    expect_eq(dig(plan3, "next.images.fits"), True, "stage 3: the next kernel fits")

    # 4: a KHO boot with kho_scratch=300%: the areas are stage 3's
    plan4 = result.json("plan-4.json")
    truth4 = parse_truth(result.text("truth-4.txt"))
    expect_eq(truth4["kho_in"], "yes", "stage 4 booted through a KHO kexec (kho/in exists)")
    expect_eq(sizes(truth4), sizes(truth3), "stage 4 areas (reused) vs stage 3's")
    expect_eq(dig(plan4, "prediction.applies"), False, "stage 4: prediction applies")
    expect_eq(dig(plan4, "prediction.verdict"), "not-applicable", "stage 4 verdict")
    expect("ignored kho_scratch=" in dig(plan4, "prediction.note"), "stage 4 note names the ignored parameter")
    would = [a["predicted"] for a in dig(plan4, "prediction.areas")]
    expect(would != sizes(truth4), f"stage 4: 300% would give {would}, yet the areas are 3's {sizes(truth4)}")
    expect_eq(dig(plan4, "kho.incoming"), True, "stage 4 kho.incoming")

    # 5: booted cold with the recommendation: the areas are exactly its sizes
    rec = dig(plan4, "recommendation")
    expect_eq(result.marker("recommended", boot=4).payload, rec["word"], "recommended word used for stage 5")
    plan5, truth5 = check_stage(result, "5", None, [0])
    want = [rec["lowmem"]["size"], rec["global"]["size"], rec["pernode"]["size"]]
    expect_eq(sizes(truth5), want, f"stage 5: debugfs for {rec['word']}")
    expect_eq(dig(plan5, "next.ok"), True, f"stage 5: the plan's own fit checks\n{result.text('plan-5.txt')}")
    expect(sum(want) < dig(plan4, "recommendation.default_total"),
           f"the recommendation {want} is not smaller than the default")

    # 6: the KHO kexec into those areas worked, and nothing early was starved
    truth6 = parse_truth(result.text("truth-6.txt"))
    expect_eq(truth6["kho_in"], "yes", "stage 6 booted through a KHO kexec")
    expect_eq(sizes(truth6), want, "stage 6 areas (reused from 5)")
    plan6 = result.json("plan-6.json")
    swiotlb = [p["bytes"] for p in dig(plan6, "reserved.parts") if p["name"] == "swiotlb bounce buffer"]
    expect_eq(swiotlb, [64 * MiB], "stage 6: swiotlb kept its 64 MiB inside the recommended areas")
    dmesg6 = result.text("dmesg-6.txt")
    for bad in ("bounce buffer size adjusted", "Failed to reserve", "cannot allocate"):
        expect(bad not in dmesg6, f"stage 6 kernel log has {bad!r}")
