// kexec_file: the policy reader (on the files the 7.2 kernel printed, and on
// trees changed on purpose), errno explanations, the flags word, the
// next-kernel command line. The real syscall is exercised in the VM tier
// (tests/vm/scenarios/preflight*.py); here only its refusal of a fixture tree.
#include <gtest/gtest.h>

#include "khod/kexec/kexec_file.hpp"
#include "tree.hpp"

using namespace khod;
using khod::test::fixture;
using khod::test::TempTree;

namespace {

// The captured kexec policy files over the captured KHO tree.
void policy_tree(const TempTree& t) {
    t.copy_from(fixture("vm-7.2-kho"));
    t.copy_from(fixture("vm-7.2-kexec-policy"));
}

bool contains(const std::string& hay, const std::string& needle) {
    return hay.find(needle) != std::string::npos;
}

}  // namespace

TEST(KexecPolicy, WhatTheVmKernelShows) {
    TempTree t;
    policy_tree(t);
    KexecPolicy p = read_kexec_policy(Sysroot(t.root()));
    ASSERT_TRUE(p.load_disabled.ok()) << p.load_disabled.error.describe();
    EXPECT_FALSE(*p.load_disabled.value);
    ASSERT_TRUE(p.limit_reboot.ok());
    EXPECT_EQ(*p.limit_reboot.value, -1) << "unlimited";
    ASSERT_TRUE(p.limit_panic.ok());
    EXPECT_EQ(*p.limit_panic.value, -1);
    ASSERT_TRUE(p.cap_sys_boot.ok()) << p.cap_sys_boot.error.describe();
    EXPECT_TRUE(*p.cap_sys_boot.value) << "captured as root: CapEff 000001ffffffffff";
    // No lockdown LSM and no EFI in this kernel: not supported, not an error.
    EXPECT_EQ(p.lockdown.state, ProbeState::unsupported);
    EXPECT_EQ(p.lockdown.path, "/sys/kernel/security/lockdown");
    EXPECT_EQ(p.secure_boot.state, ProbeState::unsupported);
    EXPECT_FALSE(p.config_path);
    EXPECT_FALSE(p.kexec_sig_force) << "not visible without /boot/config-<release>";
}

TEST(KexecPolicy, ChangedOnPurpose) {
    TempTree t;
    policy_tree(t);
    t.write("proc/sys/kernel/kexec_load_disabled", "1\n");
    t.write("proc/sys/kernel/kexec_load_limit_reboot", "0\n");
    t.write("sys/kernel/security/lockdown", "none [integrity] confidentiality\n");
    t.write("proc/self/status", "Name:\tx\nCapEff:\t0000000000000000\n");
    t.write("sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c",
            std::string("\x06\x00\x00\x00\x01", 5));
    t.write("boot/config-7.2.13", "CONFIG_KEXEC_SIG=y\n# CONFIG_KEXEC_SIG_FORCE is not set\n");
    KexecPolicy p = read_kexec_policy(Sysroot(t.root()));
    EXPECT_EQ(p.load_disabled.value, true);
    EXPECT_EQ(p.limit_reboot.value, 0);
    EXPECT_EQ(p.lockdown.value, "integrity");
    EXPECT_EQ(p.cap_sys_boot.value, false);
    EXPECT_EQ(p.secure_boot.value, true);
    EXPECT_EQ(p.config_path, "/boot/config-7.2.13");
    EXPECT_EQ(p.kexec_sig, true);
    EXPECT_EQ(p.kexec_sig_force, false);
}

TEST(KexecPolicy, GarbageIsAnErrorNotAValue) {
    TempTree t;
    policy_tree(t);
    t.write("proc/sys/kernel/kexec_load_limit_reboot", "lots\n");
    t.write("sys/kernel/security/lockdown", "none integrity\n");
    t.write("proc/self/status", "Name:\tx\n");
    t.write("sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c", "ab");
    KexecPolicy p = read_kexec_policy(Sysroot(t.root()));
    EXPECT_EQ(p.limit_reboot.state, ProbeState::error);
    EXPECT_TRUE(contains(p.limit_reboot.error.describe(), "lots"));
    EXPECT_FALSE(p.limit_reboot.value);
    EXPECT_EQ(p.lockdown.state, ProbeState::error);
    EXPECT_EQ(p.cap_sys_boot.state, ProbeState::error);
    EXPECT_EQ(p.secure_boot.state, ProbeState::error);
}

TEST(KexecPolicy, ParseLockdownAndConfig) {
    EXPECT_EQ(parse_lockdown("[none] integrity confidentiality\n"), "none");
    EXPECT_EQ(parse_lockdown("none integrity [confidentiality]\n"), "confidentiality");
    EXPECT_FALSE(parse_lockdown("none integrity\n"));
    EXPECT_FALSE(parse_lockdown("[]"));
    const std::string config = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=64\nCONFIG_AB=y\n";
    EXPECT_EQ(kernel_config_value(config, "CONFIG_A"), "y");
    EXPECT_EQ(kernel_config_value(config, "CONFIG_B"), "n");
    EXPECT_EQ(kernel_config_value(config, "CONFIG_C"), "64");
    EXPECT_FALSE(kernel_config_value(config, "CONFIG_D"));
}

TEST(KexecErrno, PermissionNamesTheCause) {
    KexecPolicy p;
    p.load_disabled.state = ProbeState::ok;
    p.load_disabled.value = true;
    p.load_disabled.path = "/proc/sys/kernel/kexec_load_disabled";
    auto msg = explain_kexec_file_errno(EPERM, KexecOp::load, false, p, true);
    EXPECT_TRUE(contains(msg, "/proc/sys/kernel/kexec_load_disabled is 1")) << msg;

    KexecPolicy q;
    q.lockdown.state = ProbeState::ok;
    q.lockdown.value = "integrity";
    q.kexec_sig = false;
    msg = explain_kexec_file_errno(EPERM, KexecOp::load, false, q, true);
    EXPECT_TRUE(contains(msg, "locked down (integrity)")) << msg;
    EXPECT_TRUE(contains(msg, "no KEXEC_SIG")) << msg;

    KexecPolicy r;
    r.limit_panic.state = ProbeState::ok;
    r.limit_panic.value = 0;
    r.limit_panic.path = "/proc/sys/kernel/kexec_load_limit_panic";
    msg = explain_kexec_file_errno(EPERM, KexecOp::unload, true, r, std::nullopt);
    EXPECT_TRUE(contains(msg, "kexec_load_limit_panic is 0")) << msg;

    msg = explain_kexec_file_errno(EPERM, KexecOp::load, false, KexecPolicy{}, std::nullopt);
    EXPECT_TRUE(contains(msg, "CAP_SYS_BOOT")) << msg;
}

TEST(KexecErrno, EachErrnoItsOwnText) {
    const KexecPolicy p;
    auto kho = explain_kexec_file_errno(EADDRNOTAVAIL, KexecOp::load, false, p, true);
    EXPECT_TRUE(contains(kho, "scratch area")) << kho;
    EXPECT_TRUE(contains(kho, "khoctl check")) << kho;
    auto crash = explain_kexec_file_errno(EADDRNOTAVAIL, KexecOp::load, true, p, true);
    EXPECT_TRUE(contains(crash, "crashkernel=")) << crash;
    auto plain = explain_kexec_file_errno(EADDRNOTAVAIL, KexecOp::load, false, p, false);
    EXPECT_FALSE(contains(plain, "scratch")) << plain;
    EXPECT_TRUE(contains(explain_kexec_file_errno(ENOEXEC, KexecOp::load, false, p, true), "bzImage"));
    EXPECT_TRUE(contains(explain_kexec_file_errno(EKEYREJECTED, KexecOp::load, false, p, true), "signature"));
    EXPECT_TRUE(contains(explain_kexec_file_errno(ENOKEY, KexecOp::load, false, p, true), "keyring"));
    EXPECT_TRUE(contains(explain_kexec_file_errno(EBADMSG, KexecOp::load, false, p, true), "malformed"));
    EXPECT_TRUE(contains(explain_kexec_file_errno(EBUSY, KexecOp::load, false, p, true), "kexec lock"));
    EXPECT_TRUE(contains(explain_kexec_file_errno(ENOMEM, KexecOp::load, false, p, true), "memory"));
    EXPECT_TRUE(contains(explain_kexec_file_errno(EINVAL, KexecOp::load, false, p, true), "cmdline_size"));
    EXPECT_TRUE(contains(explain_kexec_file_errno(EFBIG, KexecOp::load, false, p, true), "4 GiB"));
    EXPECT_TRUE(contains(explain_kexec_file_errno(ETXTBSY, KexecOp::load, false, p, true), "writing"));
    EXPECT_TRUE(contains(explain_kexec_file_errno(ENOSYS, KexecOp::unload, false, p, true), "KEXEC_FILE"));
}

TEST(KexecFile, FlagsWord) {
    KexecFileLoad r;
    r.kernel = "/boot/vmlinuz";
    EXPECT_EQ(kexec_file_flags(r), kKexecFileNoInitramfs);
    r.initrd = "/boot/initrd.img";
    EXPECT_EQ(kexec_file_flags(r), 0u);
    r.crash = true;
    r.debug = true;
    r.no_cma = true;
    EXPECT_EQ(kexec_file_flags(r), kKexecFileOnCrash | kKexecFileDebug | kKexecFileNoCma);
    EXPECT_EQ(kKexecFileUnload, 0x1u);
    EXPECT_EQ(kKexecFileOnCrash, 0x2u);
    EXPECT_EQ(kKexecFileNoInitramfs, 0x4u);
}

TEST(KexecFile, NeverLoadsIntoAFixture) {
    Sysroot root(fixture("vm-7.2-kho"));
    KexecFileLoad r;
    r.kernel = "/nonexistent";
    auto load = kexec_file_load(root, r, true);
    ASSERT_FALSE(load);
    EXPECT_EQ(load.error().code, 0);
    EXPECT_TRUE(contains(load.error().describe(), "live system"));
    auto unload = kexec_file_unload(root, false);
    ASSERT_FALSE(unload);
    EXPECT_TRUE(contains(unload.error().describe(), "live system"));
}

TEST(NextCmdline, ReuseDropsBootSpecificWordsAndKeepsKho) {
    auto running = Cmdline::parse(
        "BOOT_IMAGE=/vmlinuz-7.2 root=/dev/vda1 ro initrd=/initrd.img elfcorehdr=0x1000 kho=on "
        "kho_scratch=16M,64M,32M quiet");
    NextCmdline n = build_next_cmdline(running, {true, std::nullopt, true, "kho_scratch"});
    EXPECT_EQ(n.text, "root=/dev/vda1 ro kho=on kho_scratch=16M,64M,32M quiet");
    EXPECT_EQ(n.dropped, (std::vector<std::string>{"BOOT_IMAGE=/vmlinuz-7.2", "initrd=/initrd.img",
                                                   "elfcorehdr=0x1000"}));
    EXPECT_TRUE(n.added.empty());
}

TEST(NextCmdline, AppendAloneGetsKhoAndTheRunningScratch) {
    auto running = Cmdline::parse("root=/dev/vda1 kho=on kho_scratch=1G,2G,512M");
    NextCmdline n =
        build_next_cmdline(running, {false, std::string("console=ttyS0 quiet"), true, "kho_scratch"});
    EXPECT_EQ(n.text, "console=ttyS0 quiet kho=on kho_scratch=1G,2G,512M");
    EXPECT_EQ(n.added, (std::vector<std::string>{"kho=on", "kho_scratch=1G,2G,512M"}));
    EXPECT_TRUE(n.dropped.empty());
}

TEST(NextCmdline, ReusePlusAppendAndQuotes) {
    auto running = Cmdline::parse("a=\"x y\" kho=1");
    NextCmdline n = build_next_cmdline(running, {true, std::string("b=2"), true, "kho_scratch"});
    EXPECT_EQ(n.text, "a=\"x y\" kho=1 b=2") << "kho=1 is on; no scratch parameter to copy";
}

TEST(NextCmdline, ToldOtherwise) {
    auto running = Cmdline::parse("kho=on kho_scratch=16M,64M,32M");
    // An explicit kho= in --append wins, and keep_kho=false adds nothing.
    NextCmdline n = build_next_cmdline(running, {false, std::string("kho=off"), true, "kho_scratch"});
    EXPECT_EQ(n.text, "kho=off kho_scratch=16M,64M,32M");
    n = build_next_cmdline(running, {false, std::string("console=ttyS0"), false, "kho_scratch"});
    EXPECT_EQ(n.text, "console=ttyS0");
    // A scratch parameter given in --append is not replaced.
    n = build_next_cmdline(running, {true, std::string("kho_scratch=1G,1G,1G"), true, "kho_scratch"});
    EXPECT_EQ(n.text, "kho=on kho_scratch=16M,64M,32M kho_scratch=1G,1G,1G");
    EXPECT_TRUE(n.added.empty());
}

TEST(NextCmdline, BootmemNameOn74) {
    auto running = Cmdline::parse("kho=on kho_bootmem=64M,128M,64M");
    NextCmdline n = build_next_cmdline(running, {false, std::string(""), true, "kho_bootmem"});
    EXPECT_EQ(n.text, "kho=on kho_bootmem=64M,128M,64M");
}

TEST(NextCmdline, BootSpecificWords) {
    EXPECT_TRUE(is_boot_specific({"BOOT_IMAGE", "/x"}));
    EXPECT_TRUE(is_boot_specific({"initrd", "/x"}));
    EXPECT_TRUE(is_boot_specific({"elfcorehdr", "0x1"}));
    EXPECT_TRUE(is_boot_specific({"dmcryptkeys", "0x1"}));
    EXPECT_FALSE(is_boot_specific({"root", "/dev/vda"}));
    EXPECT_FALSE(is_boot_specific({"initrdmem", "1"}));
}
