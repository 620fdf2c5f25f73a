// Every status field, on fixture trees copied from the shared 7.2 kernel (see
// tests/fixtures/README.md) and on trees broken on purpose.
#include <gtest/gtest.h>

#include "khod/status.hpp"
#include "tree.hpp"

using namespace khod;
using khod::test::fixture;
using khod::test::TempTree;

namespace {

Status status_of(const std::filesystem::path& root) {
    Sysroot sysroot(root);
    return probe_status(sysroot, StatusOptions{});
}

}  // namespace

TEST(StatusVmKho, KernelAndCommandLine) {
    Status s = status_of(fixture("vm-7.2-kho"));
    ASSERT_TRUE(s.release.ok());
    EXPECT_EQ(*s.release.value, "7.2.13");
    ASSERT_TRUE(s.cmdline.ok());
    EXPECT_NE(s.cmdline.value->find("kho_scratch=16M,64M,32M"), std::string::npos);
}

TEST(StatusVmKho, KhoIsActiveAndStateless) {
    Status s = status_of(fixture("vm-7.2-kho"));
    EXPECT_TRUE(s.kho.debugfs.mounted);
    EXPECT_FALSE(s.kho.debugfs.mounted_now);
    EXPECT_EQ(s.kho.debugfs.mountpoint, "/sys/kernel/debug");
    EXPECT_EQ(s.kho.active, true);
    EXPECT_EQ(s.kho.abi, KhoAbi::stateless);
    EXPECT_EQ(s.kho.cmdline_value, "on");
    EXPECT_EQ(s.kho.cmdline_enabled, true);
    EXPECT_EQ(s.kho.scratch_param_name, "kho_scratch");
    EXPECT_EQ(s.kho.scratch_param, "16M,64M,32M");
    EXPECT_FALSE(s.kho.incoming);
    EXPECT_EQ(s.kho.finalized.state, ProbeState::unsupported);
}

TEST(StatusVmKho, ScratchAreasAreTheOnesTheCommandLineAskedFor) {
    Status s = status_of(fixture("vm-7.2-kho"));
    ASSERT_TRUE(s.kho.scratch.ok()) << s.kho.scratch.error.describe();
    const auto& a = *s.kho.scratch.value;
    ASSERT_EQ(a.size(), 3u);
    EXPECT_EQ(a[0].kind, ScratchAreaKind::lowmem);
    EXPECT_EQ(a[0].size, 16u << 20);
    EXPECT_EQ(a[1].kind, ScratchAreaKind::global);
    EXPECT_EQ(a[1].size, 64u << 20);
    EXPECT_EQ(a[2].kind, ScratchAreaKind::node);
    EXPECT_EQ(a[2].node, 0u);
    EXPECT_EQ(a[2].size, 32u << 20);
    for (const auto& area : a) {
        EXPECT_NE(area.phys, 0u);
        EXPECT_EQ(area.phys % (4u << 20), 0u) << "areas are 4 MiB aligned";
        EXPECT_LT(area.phys + area.size, 1ull << 32) << "1 GiB guest: every area is below 4 GiB";
    }
}

TEST(StatusVmKho, LiveupdateAndKexec) {
    Status s = status_of(fixture("vm-7.2-kho"));
    EXPECT_TRUE(s.liveupdate.present);
    EXPECT_EQ(s.liveupdate.device, "/dev/liveupdate");
    EXPECT_EQ(s.liveupdate.cmdline_value, "on");
    ASSERT_TRUE(s.kexec.loaded.ok());
    EXPECT_FALSE(*s.kexec.loaded.value);
    EXPECT_EQ(s.kexec.loaded.path, "/sys/kernel/kexec/loaded");
    ASSERT_TRUE(s.kexec.crash_loaded.ok());
    EXPECT_FALSE(*s.kexec.crash_loaded.value);
    ASSERT_TRUE(s.kexec.crash_size.ok());
    EXPECT_EQ(*s.kexec.crash_size.value, 268435456u);
    ASSERT_TRUE(s.kexec.crash_elfcorehdr_size.ok());
    EXPECT_EQ(*s.kexec.crash_elfcorehdr_size.value, 462448u);
    ASSERT_TRUE(s.kexec.crash_hotplug_cpu.ok());
    EXPECT_FALSE(*s.kexec.crash_hotplug_cpu.value);
    ASSERT_TRUE(s.kexec.crash_hotplug_memory.ok());
    EXPECT_FALSE(*s.kexec.crash_hotplug_memory.value);
}

TEST(StatusVmNoKho, KhoInactiveEverythingElseStillReported) {
    Status s = status_of(fixture("vm-7.2-nokho"));
    EXPECT_TRUE(s.kho.debugfs.mounted);
    EXPECT_EQ(s.kho.active, false);
    EXPECT_EQ(s.kho.abi, KhoAbi::unknown);
    EXPECT_FALSE(s.kho.cmdline_value);
    EXPECT_EQ(s.kho.scratch.state, ProbeState::unsupported);
    EXPECT_FALSE(s.liveupdate.present);
    ASSERT_TRUE(s.kexec.crash_size.ok());
    EXPECT_EQ(*s.kexec.crash_size.value, 268435456u);
    EXPECT_EQ(*s.release.value, "7.2.13");
}

TEST(StatusFinalizeAbi, SixSixteenTreeIsDetectedWithItsFinalizeState) {
    Status s = status_of(fixture("kho-6.16-finalize"));
    EXPECT_EQ(s.kho.abi, KhoAbi::finalize);
    EXPECT_EQ(s.kho.active, true);
    ASSERT_TRUE(s.kho.finalized.ok());
    EXPECT_FALSE(*s.kho.finalized.value);
    EXPECT_EQ(s.kho.finalized.path, "/sys/kernel/debug/kho/out/finalize");
    ASSERT_TRUE(s.kho.scratch.ok());
    EXPECT_EQ(s.kho.scratch.value->size(), 3u);
    // 6.16 has only the old /sys/kernel/kexec_* names.
    ASSERT_TRUE(s.kexec.loaded.ok());
    EXPECT_EQ(s.kexec.loaded.path, "/sys/kernel/kexec_loaded");
    EXPECT_EQ(s.kexec.crash_size.path, "/sys/kernel/kexec_crash_size");
    EXPECT_FALSE(s.liveupdate.present);
}

TEST(StatusAbi, BootmemFilesMeanSevenFour) {
    TempTree t;
    t.copy_from(fixture("vm-7.2-kho"));
    t.remove("sys/kernel/debug/kho/out/scratch_phys");
    t.remove("sys/kernel/debug/kho/out/scratch_len");
    t.write("sys/kernel/debug/kho/out/bootmem_phys", "0x2d800000\n0x22000000\n");
    t.write("sys/kernel/debug/kho/out/bootmem_len", "0x1000000\n0x4000000\n");
    Status s = status_of(t.root());
    EXPECT_EQ(s.kho.abi, KhoAbi::stateless_bootmem);
    EXPECT_EQ(s.kho.scratch_param_name, "kho_bootmem");
    ASSERT_TRUE(s.kho.scratch.ok());
    EXPECT_EQ(s.kho.scratch.value->size(), 2u);
    EXPECT_EQ(s.kho.scratch.path, "/sys/kernel/debug/kho/out/bootmem_phys");
}

TEST(StatusBroken, EveryMissingFileIsUnsupportedNeverZero) {
    TempTree t;
    t.write("proc/self/mounts", "none /sys/kernel/debug debugfs rw 0 0\n");
    t.mkdir("sys/kernel/debug");
    Status s = status_of(t.root());
    EXPECT_EQ(s.release.state, ProbeState::unsupported);
    EXPECT_EQ(s.cmdline.state, ProbeState::unsupported);
    for (const Probe<bool>* p : {&s.kexec.loaded, &s.kexec.crash_loaded, &s.kexec.crash_hotplug_cpu,
                                 &s.kexec.crash_hotplug_memory}) {
        EXPECT_EQ(p->state, ProbeState::unsupported) << p->path;
        EXPECT_FALSE(p->value) << p->path;
    }
    EXPECT_EQ(s.kexec.crash_size.state, ProbeState::unsupported);
    EXPECT_EQ(s.kexec.crash_elfcorehdr_size.state, ProbeState::unsupported);
    EXPECT_EQ(s.kho.active, false);
    EXPECT_FALSE(s.liveupdate.present);

    std::string text = format_status(s);
    EXPECT_NE(text.find("not supported by this kernel (no /sys/kernel/kexec/crash_size)"), std::string::npos)
        << text;
    auto j = to_json(s);
    EXPECT_EQ(j["kexec"]["crash_size"]["status"], "unsupported");
    EXPECT_TRUE(j["kexec"]["crash_size"]["value"].is_null());
}

TEST(StatusBroken, UnreadableFilesNameThePathAndErrno) {
    TempTree t;
    t.copy_from(fixture("vm-7.2-kho"));
    // Root reads through file modes, so make the reads fail the way they can for root.
    t.remove("sys/kernel/kexec/crash_size");
    t.mkdir("sys/kernel/kexec/crash_size");
    t.remove("sys/devices/system/memory/crash_hotplug");
    t.symlink("crash_hotplug", "sys/devices/system/memory/crash_hotplug");
    t.remove("sys/kernel/debug/kho/out/scratch_len");
    t.mkdir("sys/kernel/debug/kho/out/scratch_len");
    Status s = status_of(t.root());

    EXPECT_EQ(s.kexec.crash_size.state, ProbeState::error);
    EXPECT_EQ(s.kexec.crash_size.error.code, EISDIR);
    EXPECT_EQ(s.kexec.crash_hotplug_memory.state, ProbeState::error);
    EXPECT_EQ(s.kexec.crash_hotplug_memory.error.code, ELOOP);
    EXPECT_EQ(s.kho.scratch.state, ProbeState::error);
    EXPECT_EQ(s.kho.scratch.error.code, EISDIR);
    // The untouched fields are still read.
    EXPECT_TRUE(s.kexec.loaded.ok());

    auto j = to_json(s);
    EXPECT_EQ(j["kexec"]["crash_size"]["status"], "error");
    EXPECT_EQ(j["kexec"]["crash_size"]["errno"], EISDIR);
    std::string err = j["kexec"]["crash_size"]["error"];
    EXPECT_NE(err.find((t.root() / "sys/kernel/kexec/crash_size").string()), std::string::npos) << err;
    EXPECT_NE(err.find("EISDIR"), std::string::npos) << err;
    std::string text = format_status(s);
    EXPECT_NE(text.find("error: " + (t.root() / "sys/devices/system/memory/crash_hotplug").string()),
              std::string::npos)
        << text;
}

TEST(StatusBroken, MalformedValuesAreErrorsNotZeros) {
    TempTree t;
    t.copy_from(fixture("vm-7.2-kho"));
    t.write("sys/kernel/kexec/crash_size", "lots\n");
    t.write("sys/kernel/kexec/loaded", "2\n");
    t.write("sys/kernel/debug/kho/out/scratch_len", "0x1000000\n0x4000000\n");  // one short
    Status s = status_of(t.root());
    EXPECT_EQ(s.kexec.crash_size.state, ProbeState::error);
    EXPECT_EQ(s.kexec.loaded.state, ProbeState::error);
    EXPECT_EQ(s.kho.scratch.state, ProbeState::error);
    EXPECT_NE(s.kho.scratch.error.describe().find("has 2 areas"), std::string::npos)
        << s.kho.scratch.error.describe();
    t.write("sys/kernel/debug/kho/out/scratch_len", "0x1000000\nbogus\n0x2000000\n");
    Status s2 = status_of(t.root());
    EXPECT_EQ(s2.kho.scratch.state, ProbeState::error);
    EXPECT_NE(s2.kho.scratch.error.describe().find("scratch_len:2"), std::string::npos)
        << s2.kho.scratch.error.describe();
}

TEST(StatusDebugfs, FixtureWithoutDebugfsIsNeverMountedInto) {
    TempTree t;
    t.copy_from(fixture("vm-7.2-kho"));
    t.write("proc/self/mounts", "proc /proc proc rw 0 0\n");
    Status s = status_of(t.root());
    EXPECT_FALSE(s.kho.debugfs.mounted);
    EXPECT_FALSE(s.kho.debugfs.mounted_now);
    ASSERT_TRUE(s.kho.debugfs.error);
    EXPECT_NE(s.kho.debugfs.error->describe().find("not mounted"), std::string::npos);
    // Without debugfs, /dev/liveupdate says KHO is on (LUO runs only on KHO).
    EXPECT_EQ(s.kho.active, true);
    EXPECT_TRUE(s.kho.without_debugfs);
    EXPECT_NE(s.kho.active_reason.find("/dev/liveupdate exists"), std::string::npos) << s.kho.active_reason;
    EXPECT_EQ(s.kho.abi, KhoAbi::stateless);
    // Without it too (liveupdate=off), KHO's state is unknown and the command line is the only hint.
    t.remove("dev/liveupdate");
    s = status_of(t.root());
    EXPECT_FALSE(s.kho.active);
    EXPECT_FALSE(s.kho.without_debugfs);
    EXPECT_NE(s.kho.active_reason.find("kho=on"), std::string::npos) << s.kho.active_reason;
    EXPECT_EQ(s.kho.abi, KhoAbi::unknown);
}

TEST(StatusDebugfs, MountpointComesFromProcMounts) {
    TempTree t;
    t.write("proc/self/mounts", "debugfs /debug\\040fs debugfs rw 0 0\n");
    t.write("debug fs/kho/out/scratch_phys", "0x20000000\n");
    t.write("debug fs/kho/out/scratch_len", "0x400000\n");
    Status s = status_of(t.root());
    EXPECT_EQ(s.kho.debugfs.mountpoint, "/debug fs");
    EXPECT_EQ(s.kho.abi, KhoAbi::stateless);
    ASSERT_TRUE(s.kho.scratch.ok());
    EXPECT_EQ(s.kho.scratch.value->at(0).size, 0x400000u);
}

TEST(StatusJson, SchemaShape) {
    auto j = to_json(status_of(fixture("vm-7.2-kho")));
    EXPECT_EQ(j["schema"], 1);
    EXPECT_EQ(j["kernel"]["release"]["value"], "7.2.13");
    EXPECT_EQ(j["kho"]["active"], true);
    EXPECT_EQ(j["kho"]["abi"], "stateless");
    EXPECT_EQ(j["kho"]["scratch"]["status"], "ok");
    ASSERT_EQ(j["kho"]["scratch"]["value"].size(), 3u);
    EXPECT_EQ(j["kho"]["scratch"]["value"][1]["size"], 64u << 20);
    EXPECT_EQ(j["kho"]["scratch"]["value"][1]["size_human"], "64 MiB");
    EXPECT_EQ(j["kho"]["scratch"]["value"][2]["node"], 0);
    EXPECT_EQ(j["liveupdate"]["present"], true);
    EXPECT_EQ(j["kexec"]["crash_size"]["value"], 268435456u);
    EXPECT_EQ(j["kexec"]["crash_loaded"]["value"], false);
    EXPECT_EQ(j["crash_hotplug"]["memory"]["status"], "ok");
}

TEST(StatusText, TableNamesEverySection) {
    std::string text = format_status(status_of(fixture("vm-7.2-kho")));
    for (const char* want : {"release                  7.2.13", "ABI                      stateless",
                             "16 MiB (0x1000000)", "64 MiB (0x4000000)", "32 MiB (0x2000000)",
                             "/dev/liveupdate          present", "256 MiB (268435456 bytes)"})
        EXPECT_NE(text.find(want), std::string::npos) << "missing \"" << want << "\" in\n" << text;
}
