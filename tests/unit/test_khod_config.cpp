// khod.conf(5) with drop-ins, durations, and the recipe imported from
// Debian's kdump-tools and kdumpctl's sysconfig, over temporary /etc trees.
#include <gtest/gtest.h>

#include "khod/kdump/kdump_recipe.hpp"
#include "khod/khod_config.hpp"
#include "tree.hpp"

using namespace khod;
using khod::test::TempTree;

namespace {

// A sysroot with the running kernel's command line and release, as kdump-config reads them.
void running_kernel(const TempTree& t) {
    t.write("proc/cmdline",
            "BOOT_IMAGE=/vmlinuz-7.2.13 root=/dev/sda1 ro crashkernel=256M quiet hugepages=16 iommu=pt\n");
    t.write("proc/sys/kernel/osrelease", "7.2.13\n");
}

}  // namespace

TEST(KhodConfig, DefaultsWithoutAFile) {
    TempTree t;
    auto c = load_khod_config(Sysroot(t.root()));
    ASSERT_TRUE(c) << c.error().describe();
    EXPECT_TRUE(c->files.empty());
    EXPECT_TRUE(c->kdump.watch_hotplug);
    EXPECT_EQ(c->kdump.settle, 1 * usec_per_sec);
    EXPECT_EQ(c->kdump.max_delay, 10 * usec_per_sec);
    EXPECT_EQ(c->kdump.import, RecipeImport::automatic);
    EXPECT_FALSE(c->kdump.recipe());
}

TEST(KhodConfig, DropInsOverrideInLexicalOrderAndCommandLineContinues) {
    TempTree t;
    t.write("etc/khod/khod.conf",
            "# khod\n[Kdump]\nKernel=/boot/vmlinuz\nInitrd=/boot/initrd.img\n"
            "CommandLine=console=ttyS0 irqpoll\n  nr_cpus=1 reset_devices\nSettleSec=2s\n");
    t.write("etc/khod/khod.conf.d/50-fast.conf", "[Kdump]\nSettleSec=250ms\nMaxDelaySec=1.5\n");
    t.write("etc/khod/khod.conf.d/10-slow.conf", "[Kdump]\nSettleSec=5\nWatchHotplug=no\n");
    t.write("etc/khod/khod.conf.d/README", "not a .conf: ignored\n");
    auto c = load_khod_config(Sysroot(t.root()));
    ASSERT_TRUE(c) << c.error().describe();
    ASSERT_EQ(c->files.size(), 3u);
    EXPECT_EQ(c->files[1], "/etc/khod/khod.conf.d/10-slow.conf");
    EXPECT_EQ(c->kdump.settle, 250 * usec_per_msec);
    EXPECT_EQ(c->kdump.max_delay, 1500 * usec_per_msec);
    EXPECT_FALSE(c->kdump.watch_hotplug);
    auto r = c->kdump.recipe();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->kernel, "/boot/vmlinuz");
    EXPECT_EQ(r->cmdline, "console=ttyS0 irqpoll nr_cpus=1 reset_devices");
    EXPECT_EQ(r->source, "/etc/khod/khod.conf");
}

TEST(KhodConfig, ErrorsNameTheFileAndLineAndUnknownKeysWarn) {
    KhodConfig c;
    auto r = apply_khod_config("[Kdump]\nSettleSec=soon\n", "/etc/khod/khod.conf", c);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().describe().find("/etc/khod/khod.conf"), std::string::npos);
    EXPECT_NE(r.error().describe().find("line 2"), std::string::npos) << r.error().describe();
    EXPECT_NE(r.error().describe().find("SettleSec"), std::string::npos);

    r = apply_khod_config("[Kdump]\nKernel=vmlinuz\n", "x.conf", c);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().describe().find("absolute"), std::string::npos);

    r = apply_khod_config("[Kdump]\nCommandLine=" + std::string(250, 'a') + "\n", "x.conf", c);
    ASSERT_FALSE(r) << "inih would cut the line silently";
    EXPECT_NE(r.error().describe().find("longer than"), std::string::npos);

    KhodConfig w;
    ASSERT_TRUE(apply_khod_config("[Kdump]\nSettle=1\n[Other]\nX=1\n", "x.conf", w));
    EXPECT_EQ(w.warnings.size(), 2u);

    // An unknown section is named once, not once per key in it.
    KhodConfig u;
    ASSERT_TRUE(apply_khod_config("[Other]\nX=1\nY=2\n[Kdump]\nZ=3\n[Other]\nW=4\n", "x.conf", u));
    ASSERT_EQ(u.warnings.size(), 2u);
    EXPECT_EQ(u.warnings[0], "x.conf: unknown section [Other], ignored");
    EXPECT_EQ(u.warnings[1], "x.conf: unknown key Z= in [Kdump], ignored");
}

TEST(KhodConfig, Durations) {
    EXPECT_EQ(*parse_duration("1", "d"), 1 * usec_per_sec);
    EXPECT_EQ(*parse_duration("1.25s", "d"), 1250 * usec_per_msec);
    EXPECT_EQ(*parse_duration("500ms", "d"), 500 * usec_per_msec);
    EXPECT_EQ(*parse_duration("250000us", "d"), 250 * usec_per_msec);
    EXPECT_EQ(*parse_duration("2min", "d"), 120 * usec_per_sec);
    EXPECT_EQ(*parse_duration(".5", "d"), 500 * usec_per_msec);
    for (const char* bad : {"", "s", "1h", "-1", "1.2.3", "1.0000001", "abc", "99999999999999999999"})
        EXPECT_FALSE(parse_duration(bad, "d")) << bad;
}

TEST(ShellAssignments, AsAShellReadsThem) {
    auto v = parse_shell_assignments(
        "# comment\nUSE_KDUMP=1\nexport KDUMP_KERNEL=/var/lib/kdump/vmlinuz  # trailing\n"
        "KDUMP_CMDLINE_APPEND=\"irqpoll nr_cpus=1 \\\"q\\\"\"\nA='lit $x'\nEMPTY=\n",
        "/etc/default/kdump-tools");
    ASSERT_TRUE(v) << v.error().describe();
    EXPECT_EQ(v->at("USE_KDUMP"), "1");
    EXPECT_EQ(v->at("KDUMP_KERNEL"), "/var/lib/kdump/vmlinuz");
    EXPECT_EQ(v->at("KDUMP_CMDLINE_APPEND"), "irqpoll nr_cpus=1 \"q\"");
    EXPECT_EQ(v->at("A"), "lit $x");
    EXPECT_EQ(v->at("EMPTY"), "");
    for (const char* bad :
         {"A=$B\n", "A=\"x $(uname -r)\"\n", "A=\"open\n", "echo hi\n", "A=1 B=2\n", "A=`x`\n"}) {
        auto r = parse_shell_assignments(bad, "f");
        ASSERT_FALSE(r) << bad;
        EXPECT_NE(r.error().describe().find("line 1"), std::string::npos);
    }
}

TEST(KdumpImport, DebianKdumpToolsDefaults) {
    TempTree t;
    running_kernel(t);
    t.write("etc/default/kdump-tools", "USE_KDUMP=1\nKDUMP_COREDIR=\"/var/crash\"\n");
    Sysroot root(t.root());
    auto r = import_kdump_tools(root);
    ASSERT_TRUE(r) << r.error().describe();
    ASSERT_TRUE(*r);
    EXPECT_EQ((*r)->kernel, "/var/lib/kdump/vmlinuz");
    EXPECT_EQ((*r)->initrd, "/var/lib/kdump/initrd.img");
    EXPECT_EQ((*r)->cmdline,
              "root=/dev/sda1 ro quiet reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 irqpoll "
              "usbcore.nousb");
    EXPECT_EQ((*r)->source, "/etc/default/kdump-tools");
}

TEST(KdumpImport, DebianKdumpToolsExplicitAndSwitchedOff) {
    TempTree t;
    running_kernel(t);
    t.write("etc/default/kdump-tools",
            "USE_KDUMP=1\nKDUMP_KERNEL=/boot/vmlinuz-crash\nKDUMP_CMDLINE=\"console=ttyS0\"\n"
            "KDUMP_CMDLINE_APPEND=\"irqpoll\"\n");
    auto r = import_kdump_tools(Sysroot(t.root()));
    ASSERT_TRUE(r && *r);
    EXPECT_EQ((*r)->kernel, "/boot/vmlinuz-crash");
    EXPECT_EQ((*r)->cmdline, "console=ttyS0 irqpoll");
    t.write("etc/default/kdump-tools", "USE_KDUMP=0\n");
    r = import_kdump_tools(Sysroot(t.root()));
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().describe().find("USE_KDUMP"), std::string::npos);
    t.remove("etc/default/kdump-tools");
    r = import_kdump_tools(Sysroot(t.root()));
    ASSERT_TRUE(r);
    EXPECT_FALSE(*r) << "no file: nothing to import";
}

TEST(KdumpImport, Kdumpctl) {
    TempTree t;
    running_kernel(t);
    t.write("etc/sysconfig/kdump",
            "KDUMP_KERNELVER=\"\"\nKDUMP_COMMANDLINE=\"\"\n"
            "KDUMP_COMMANDLINE_REMOVE=\"hugepages hugepagesz slub_debug quiet log_buf_len swiotlb\"\n"
            "KDUMP_COMMANDLINE_APPEND=\"irqpoll nr_cpus=1 reset_devices\"\nKEXEC_ARGS=\"-s\"\n"
            "KDUMP_IMG=\"vmlinuz\"\nKDUMP_IMG_EXT=\"\"\n");
    Sysroot root(t.root());
    auto r = import_kdumpctl(root);
    ASSERT_TRUE(r) << r.error().describe();
    ASSERT_TRUE(*r);
    EXPECT_EQ((*r)->kernel, "/boot/vmlinuz-7.2.13");
    EXPECT_EQ((*r)->initrd, "/boot/initramfs-7.2.13kdump.img");
    EXPECT_EQ((*r)->cmdline, "root=/dev/sda1 ro iommu=pt irqpoll nr_cpus=1 reset_devices");

    // khod.conf's Kernel= wins; Import=kdumpctl skips kdump-tools.
    KdumpConfig k;
    k.import = RecipeImport::kdumpctl;
    t.write("etc/default/kdump-tools", "USE_KDUMP=1\n");
    auto via = resolve_recipe(root, k);
    ASSERT_TRUE(via && *via);
    EXPECT_EQ((*via)->source, "/etc/sysconfig/kdump");
    k.import = RecipeImport::automatic;
    via = resolve_recipe(root, k);
    ASSERT_TRUE(via && *via);
    EXPECT_EQ((*via)->source, "/etc/default/kdump-tools");
    k.kernel = "/boot/mine";
    k.recipe_file = "/etc/khod/khod.conf";
    via = resolve_recipe(root, k);
    ASSERT_TRUE(via && *via);
    EXPECT_EQ((*via)->kernel, "/boot/mine");
    k.kernel.clear();
    k.import = RecipeImport::none;
    via = resolve_recipe(root, k);
    ASSERT_TRUE(via);
    EXPECT_FALSE(*via);
}

TEST(KhodConfig, LiveUpdateSection) {
    KhodConfig c;
    EXPECT_EQ(c.liveupdate.inhibit_delay_max, 10 * usec_per_sec);
    EXPECT_EQ(c.liveupdate.retrieve_timeout, usec_never);
    auto r = apply_khod_config("[LiveUpdate]\nInhibitDelayMaxSec=3s\nRetrieveTimeoutSec=2min\nBogus=1\n",
                               "/etc/khod/khod.conf", c);
    ASSERT_TRUE(r) << r.error().describe();
    EXPECT_EQ(c.liveupdate.inhibit_delay_max, 3 * usec_per_sec);
    EXPECT_EQ(c.liveupdate.retrieve_timeout, 120 * usec_per_sec);
    ASSERT_EQ(c.warnings.size(), 1u);
    EXPECT_NE(c.warnings[0].find("Bogus"), std::string::npos);
    ASSERT_TRUE(apply_khod_config("[LiveUpdate]\nRetrieveTimeoutSec=never\n", "x.conf", c));
    EXPECT_EQ(c.liveupdate.retrieve_timeout, usec_never);
    auto bad = apply_khod_config("[LiveUpdate]\nInhibitDelayMaxSec=never\n", "x.conf", c);
    ASSERT_FALSE(bad);
    EXPECT_NE(bad.error().describe().find("InhibitDelayMaxSec"), std::string::npos);
}

TEST(KhodConfig, MetricsSection) {
    TempTree t;
    t.write("etc/khod/khod.conf", "[Metrics]\nMetricsFile=/var/lib/prometheus/node-exporter/old.prom\n");
    t.write("etc/khod/khod.conf.d/50-metrics.conf",
            "[Metrics]\nMetricsFile=/var/lib/prometheus/node-exporter/khod.prom\n");
    auto c = load_khod_config(Sysroot(t.root()));
    ASSERT_TRUE(c) << c.error().describe();
    EXPECT_EQ(c->metrics.file, "/var/lib/prometheus/node-exporter/khod.prom");  // the drop-in wins
    EXPECT_TRUE(c->warnings.empty()) << c->warnings[0];

    KhodConfig d;
    EXPECT_TRUE(d.metrics.file.empty());  // off unless set
    ASSERT_TRUE(apply_khod_config("[Metrics]\nMetricsFile=/run/khod.txt\nPort=9\n", "x.conf", d));
    EXPECT_EQ(d.metrics.file, "/run/khod.txt");
    ASSERT_EQ(d.warnings.size(), 2u);  // not *.prom, and the unknown key
    EXPECT_NE(d.warnings[0].find("does not end in .prom"), std::string::npos);
    EXPECT_NE(d.warnings[1].find("Port"), std::string::npos);
    ASSERT_TRUE(apply_khod_config("[Metrics]\nMetricsFile=\n", "x.conf", d));
    EXPECT_TRUE(d.metrics.file.empty());  // a later empty value turns it off
    for (const char* bad : {"khod.prom", "/var/lib/node-exporter/"}) {
        auto r = apply_khod_config(std::string("[Metrics]\nMetricsFile=") + bad + "\n", "x.conf", d);
        ASSERT_FALSE(r) << bad;
        EXPECT_NE(r.error().describe().find("line 2: [Metrics] MetricsFile="), std::string::npos)
            << r.error().describe();
    }
}

TEST(KhodConfig, LoaderAndTheNativeLoadersSettings) {
    TempTree t;
    running_kernel(t);
    auto c = load_khod_config(Sysroot(t.root()));
    ASSERT_TRUE(c) << c.error().describe();
    EXPECT_EQ(c->kdump.loader, CrashLoader::file);
    EXPECT_EQ(c->kdump.native.purgatory, KHOD_PURGATORY_PATH);

    t.write("etc/khod/khod.conf",
            "[Kdump]\nLoader=native\nPurgatory=/opt/khod/purgatory.o\nElfcorehdrMaxCpus=64\n"
            "ElfcorehdrMaxRanges=1024\n");
    t.write("etc/default/kdump-tools", "USE_KDUMP=1\n");
    Sysroot root(t.root());
    c = load_khod_config(root);
    ASSERT_TRUE(c) << c.error().describe();
    EXPECT_EQ(c->kdump.loader, CrashLoader::native);
    EXPECT_EQ(c->kdump.native.purgatory, "/opt/khod/purgatory.o");
    EXPECT_EQ(c->kdump.native.max_cpus, 64u);
    EXPECT_EQ(c->kdump.native.max_ranges, 1024u);
    // An imported recipe is loaded the way khod.conf says.
    auto r = resolve_recipe(root, c->kdump);
    ASSERT_TRUE(r) << r.error().describe();
    ASSERT_TRUE(*r);
    EXPECT_EQ((*r)->source, "/etc/default/kdump-tools");
    EXPECT_EQ((*r)->loader, CrashLoader::native);

    for (const char* bad : {"[Kdump]\nLoader=kexec\n", "[Kdump]\nPurgatory=purgatory.o\n",
                            "[Kdump]\nElfcorehdrMaxCpus=0\n", "[Kdump]\nElfcorehdrMaxRanges=lots\n"}) {
        KhodConfig k;
        auto e = apply_khod_config(bad, "/etc/khod/khod.conf", k);
        EXPECT_FALSE(e) << bad;
    }
}
