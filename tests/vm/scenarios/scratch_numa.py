"""`khoctl scratch plan` on two NUMA nodes (QEMU -numa, 1 GiB each): default scale, then 150%.

The second half of the `scratch` proof: per-node areas. Boot 1 uses the
default scale, boot 2 (kexec_load, so a cold KHO boot) kho_scratch=150%.
Each compares khoctl's prediction of every area, the two node areas
included, with debugfs, and khoctl's per-node R with a memblock=debug replay
(see scratch.py). Which node holds the kernel image and the initrd decides
which node area is the big one; KASLR moves the image between boots.
"""

from scenarios.scratch import GUEST_COMMON, check_stage, sizes
from vmtest import dig, expect, expect_eq

DESCRIPTION = "khoctl scratch plan vs debugfs on two NUMA nodes: default and 150% (2 boots)"
APPEND = "kho=on memblock=debug loglevel=4"
BINARIES = ["khoctl"]
HOST_BINARIES = ["/usr/sbin/kexec"]
INCLUDE_BOOT = True
BOOTS = 2
BOOT_TIMEOUT = 150
MEMORY = "2G,slots=4,maxmem=4G"
NUMA = ["node,nodeid=0,cpus=0,memdev=m0", "node,nodeid=1,cpus=1,memdev=m1"]
QEMU_ARGS = ["-object", "memory-backend-ram,id=m0,size=1G", "-object", "memory-backend-ram,id=m1,size=1G"]

GUEST_SCRIPT = GUEST_COMMON + r'''
collect
case $stage in
1)  cold_kexec "kho=on kho_scratch=150% khod.stage=2" ;;
esac
'''


def check(result):
    expect_eq([m.stage for m in result.markers_of("boot")], ["1", "2"], "stages of the boots")
    for stage, scale in (("1", 200), ("2", 150)):
        plan, truth = check_stage(result, stage, scale, [0, 1])
        expect_eq(truth["has_memory"], "0-1", f"stage {stage}: has_memory")
        expect_eq(dig(plan, "area_nodes"), [0, 1], f"stage {stage}: nodes with an area")
        expect_eq(len(sizes(truth)), 4, f"stage {stage}: lowmem, global and one area per node")
        areas = dig(plan, "prediction.areas")
        expect_eq([a["node"] for a in areas[2:]], [0, 1], f"stage {stage}: node of the per-node areas")
        # Each node's 1 GiB is 8 sections of 128 MiB, 2 MiB of struct pages each.
        for part in dig(plan, "reserved.parts"):
            if part["name"] == "memmap":
                expect_eq(part["bytes"], 16 << 20, f"stage {stage}: memmap of node {part['node']}")
    p1 = dig(result.json("plan-1.json"), "param.scale")
    p2 = dig(result.json("plan-2.json"), "param.scale")
    expect((p1, p2) == (200, 150), f"scales {p1}, {p2}")
