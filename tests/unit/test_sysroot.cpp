#include <gtest/gtest.h>

#include "khod/base/probe.hpp"
#include "khod/base/sysroot.hpp"
#include "tree.hpp"

using namespace khod;
using khod::test::TempTree;

TEST(Sysroot, LiveRootMapsKernelPathsToThemselves) {
    Sysroot root("/");
    EXPECT_TRUE(root.is_live());
    EXPECT_EQ(root.sys("kernel/kexec/loaded").host, "/sys/kernel/kexec/loaded");
    EXPECT_EQ(root.proc("cmdline").host, "/proc/cmdline");
    EXPECT_EQ(root.dev("liveupdate").host, "/dev/liveupdate");
    EXPECT_EQ(root.debugfs("kho/out/fdt").host, "/sys/kernel/debug/kho/out/fdt");
    EXPECT_EQ(root.debugfs("kho/out/fdt").kernel, "/sys/kernel/debug/kho/out/fdt");
}

TEST(Sysroot, EmptyAndDotSlashRootsAreLive) {
    EXPECT_TRUE(Sysroot("").is_live());
    EXPECT_TRUE(Sysroot("//").is_live());
}

TEST(Sysroot, FixtureRootPrefixesEveryKernelPath) {
    Sysroot root("/tmp/tree");
    EXPECT_FALSE(root.is_live());
    KernelPath p = root.sys("/kernel/kexec/loaded");  // a leading slash in rel is harmless
    EXPECT_EQ(p.kernel, "/sys/kernel/kexec/loaded");
    EXPECT_EQ(p.host, "/tmp/tree/sys/kernel/kexec/loaded");
    EXPECT_EQ(root.proc("").kernel, "/proc");
    EXPECT_EQ(root.resolve("/dev/liveupdate").host, "/tmp/tree/dev/liveupdate");
    EXPECT_EQ(root.resolve("relative/x").kernel, "/relative/x");
}

TEST(Sysroot, DebugfsFollowsTheMountpointItIsGiven) {
    Sysroot root("/tmp/tree");
    root.set_debugfs_mountpoint("/debug");
    EXPECT_EQ(root.debugfs("kho").kernel, "/debug/kho");
    EXPECT_EQ(root.debugfs("kho").host, "/tmp/tree/debug/kho");
}

TEST(ReadFile, IsByteExactIncludingNulBytes) {
    TempTree t;
    std::string blob("\xd0\x0d\xfe\xed\0\0\x10\0tail", 12);
    t.write("sys/kernel/debug/kho/out/fdt", blob);
    Sysroot root(t.root());
    auto data = read_file(root.debugfs("kho/out/fdt"));
    ASSERT_TRUE(data) << data.error().describe();
    EXPECT_EQ(*data, blob);
}

TEST(ReadFile, MissingFileIsEnoentAndNamesThePath) {
    TempTree t;
    Sysroot root(t.root());
    auto data = read_file(root.sys("kernel/kexec/loaded"));
    ASSERT_FALSE(data);
    EXPECT_EQ(data.error().code, ENOENT);
    EXPECT_EQ(data.error().path, (t.root() / "sys/kernel/kexec/loaded").string());
    EXPECT_NE(data.error().describe().find("ENOENT"), std::string::npos);
    EXPECT_NE(data.error().describe().find("sys/kernel/kexec/loaded"), std::string::npos);
}

TEST(ReadFile, DirectoryInPlaceOfFileIsEisdir) {
    TempTree t;
    t.mkdir("sys/kernel/kexec/loaded");
    Sysroot root(t.root());
    auto data = read_file(root.sys("kernel/kexec/loaded"));
    ASSERT_FALSE(data);
    EXPECT_EQ(data.error().code, EISDIR);
    EXPECT_NE(data.error().describe().find("cannot read"), std::string::npos);
}

TEST(ReadFile, SymlinkLoopIsEloop) {
    TempTree t;
    t.symlink("b", "sys/a");
    t.symlink("a", "sys/b");
    Sysroot root(t.root());
    auto data = read_file(root.sys("a"));
    ASSERT_FALSE(data);
    EXPECT_EQ(data.error().code, ELOOP);
}

TEST(ReadFile, RelativeSymlinksResolveInsideTheTree) {
    TempTree t;
    t.write("sys/kernel/kexec/loaded", "1\n");
    t.symlink("kexec/loaded", "sys/kernel/kexec_loaded");
    Sysroot root(t.root());
    auto flag = read_flag(root.sys("kernel/kexec_loaded"));
    ASSERT_TRUE(flag);
    EXPECT_TRUE(*flag);
}

TEST(ParseU64, AcceptsDecimalAndHex) {
    EXPECT_EQ(*parse_u64("268435456\n", "x"), 268435456u);
    EXPECT_EQ(*parse_u64("0x2d800000", "x"), 0x2d800000u);
    EXPECT_EQ(*parse_u64("  0X10 ", "x"), 16u);
    EXPECT_EQ(*parse_u64("18446744073709551615", "x"), UINT64_MAX);
}

TEST(ParseU64, RejectsGarbageSignsAndOverflow) {
    for (const char* bad : {"", "   ", "-1", "+1", "12abc", "0x", "0xzz", "18446744073709551616", "1 2"}) {
        auto v = parse_u64(bad, "f");
        EXPECT_FALSE(v) << "accepted \"" << bad << "\"";
        if (!v) {
            EXPECT_EQ(v.error().path, "f");
        }
    }
}

TEST(ReadHexU64, ReadsBlockSizeBytes) {
    TempTree t;
    t.write("sys/devices/system/memory/block_size_bytes", "8000000\n");
    Sysroot root(t.root());
    EXPECT_EQ(*read_hex_u64(root.sys("devices/system/memory/block_size_bytes")), 0x8000000u);
    t.write("sys/x", "zz\n");
    EXPECT_FALSE(read_hex_u64(root.sys("x")));
}

// read_value() takes one read(): a page or more is not an attribute's value,
// and says so rather than parsing a part of it.
TEST(ReadValue, OneValueInOneReadAndAPageIsRefused) {
    TempTree t;
    Sysroot root(t.root());
    t.write("sys/devices/system/cpu/cpu0/crash_notes", "7dc1a000\n");
    auto v = read_value(root.sys("devices/system/cpu/cpu0/crash_notes"));
    ASSERT_TRUE(v) << v.error().describe();
    EXPECT_EQ(*v, "7dc1a000\n");
    t.write("sys/big", std::string(4096, '1'));
    auto big = read_u64(root.sys("big"));
    ASSERT_FALSE(big);
    EXPECT_NE(big.error().describe().find("not one value"), std::string::npos) << big.error().describe();
    auto missing = read_value(root.sys("none"));
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ENOENT);
}

// A KernelDir reads below itself with openat(); what it reads, and the
// paths its errors name, are those of the whole path.
TEST(KernelDir, ReadsBelowItselfAndErrorsNameTheWholePath) {
    TempTree t;
    Sysroot root(t.root());
    t.write("sys/devices/system/cpu/cpu3/crash_notes", "7dc1a000\n");
    t.write("sys/devices/system/cpu/cpu3/bad", "zz\n");
    t.write("sys/devices/system/cpu/big", std::string(4096, '1'));
    auto cpus = KernelDir::open(root.sys("devices/system/cpu"));
    ASSERT_TRUE(cpus) << cpus.error().describe();
    EXPECT_EQ(*read_value(*cpus, "cpu3/crash_notes"), "7dc1a000\n");
    EXPECT_EQ(*read_hex_u64(*cpus, "cpu3/crash_notes"), 0x7dc1a000u);
    EXPECT_EQ(cpus->below("cpu3/crash_notes").kernel, "/sys/devices/system/cpu/cpu3/crash_notes");

    auto missing = read_hex_u64(*cpus, "cpu9/crash_notes");
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ENOENT);
    EXPECT_EQ(missing.error().path, (t.root() / "sys/devices/system/cpu/cpu9/crash_notes").string());
    auto bad = read_hex_u64(*cpus, "cpu3/bad");
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().path, (t.root() / "sys/devices/system/cpu/cpu3/bad").string());
    auto big = read_value(*cpus, "big");
    ASSERT_FALSE(big);
    EXPECT_NE(big.error().describe().find("not one value"), std::string::npos) << big.error().describe();

    auto no_dir = KernelDir::open(root.sys("devices/system/node"));
    ASSERT_FALSE(no_dir);
    EXPECT_EQ(no_dir.error().code, ENOENT);
    EXPECT_EQ(no_dir.error().path, (t.root() / "sys/devices/system/node").string());
}

TEST(ReadFlag, OnlyZeroAndOne) {
    TempTree t;
    Sysroot root(t.root());
    t.write("sys/f", "0\n");
    EXPECT_FALSE(*read_flag(root.sys("f")));
    t.write("sys/f", "1");
    EXPECT_TRUE(*read_flag(root.sys("f")));
    t.write("sys/f", "2\n");
    auto r = read_flag(root.sys("f"));
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().describe().find("expected 0 or 1"), std::string::npos);
    t.write("sys/f", "");
    EXPECT_FALSE(read_flag(root.sys("f")));
}

TEST(ListDir, SortedWithoutDots) {
    TempTree t;
    t.write("sys/d/b", "");
    t.write("sys/d/a", "");
    t.mkdir("sys/d/c");
    Sysroot root(t.root());
    auto names = list_dir(root.sys("d"));
    ASSERT_TRUE(names);
    EXPECT_EQ(*names, (std::vector<std::string>{"a", "b", "c"}));
    auto missing = list_dir(root.sys("nope"));
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ENOENT);
}

TEST(Exists, MissingVersusPresent) {
    TempTree t;
    t.write("dev/liveupdate", "");
    Sysroot root(t.root());
    EXPECT_TRUE(exists(root.dev("liveupdate")));
    EXPECT_FALSE(exists(root.dev("nothing")));
    EXPECT_FALSE(exists(root.dev("liveupdate/below-a-file")));  // ENOTDIR counts as missing
}

TEST(ParseList, KernelCpuAndNodeLists) {
    EXPECT_EQ(*parse_list("0\n", "l"), (std::vector<unsigned>{0}));
    EXPECT_EQ(*parse_list("0-3,5,7-8", "l"), (std::vector<unsigned>{0, 1, 2, 3, 5, 7, 8}));
    EXPECT_TRUE(parse_list("", "l")->empty());
    for (const char* bad : {"3-1", "a", "1,", ",1", "1--2", "0-4294967295", "1 2"})
        EXPECT_FALSE(parse_list(bad, "l")) << "accepted \"" << bad << "\"";
}

TEST(Probe, MissingIsUnsupportedOtherErrorsAreErrors) {
    TempTree t;
    t.mkdir("sys/kernel/kexec/crash_size");
    Sysroot root(t.root());
    KernelPath missing = root.sys("kernel/kexec/loaded");
    auto p1 = make_probe<bool>(missing, read_flag(missing));
    EXPECT_EQ(p1.state, ProbeState::unsupported);
    EXPECT_FALSE(p1.value);
    EXPECT_EQ(p1.path, "/sys/kernel/kexec/loaded");

    KernelPath dir = root.sys("kernel/kexec/crash_size");
    auto p2 = make_probe<std::uint64_t>(dir, read_u64(dir));
    EXPECT_EQ(p2.state, ProbeState::error);
    EXPECT_EQ(p2.error.code, EISDIR);
    EXPECT_FALSE(p2.value);
}

TEST(Probe, FirstExistingPathWins) {
    TempTree t;
    t.write("sys/kernel/kexec_loaded", "1\n");
    Sysroot root(t.root());
    auto p = probe_first<bool>({root.sys("kernel/kexec/loaded"), root.sys("kernel/kexec_loaded")},
                               [](const KernelPath& k) { return read_flag(k); });
    ASSERT_TRUE(p.ok());
    EXPECT_TRUE(*p.value);
    EXPECT_EQ(p.path, "/sys/kernel/kexec_loaded");

    TempTree empty;
    Sysroot none(empty.root());
    auto q = probe_first<bool>({none.sys("kernel/kexec/loaded"), none.sys("kernel/kexec_loaded")},
                               [](const KernelPath& k) { return read_flag(k); });
    EXPECT_EQ(q.state, ProbeState::unsupported);
    EXPECT_EQ(q.path, "/sys/kernel/kexec/loaded");
}

TEST(Error, DescribeNamesPathMessageAndErrno) {
    Error e = errno_error(EACCES, "/sys/x", "cannot open");
    EXPECT_EQ(e.describe(), "/sys/x: cannot open: Permission denied (EACCES)");
    EXPECT_EQ(plain_error("", "bad").describe(), "bad");
    EXPECT_EQ(errno_name(ENOENT), "ENOENT");
}
