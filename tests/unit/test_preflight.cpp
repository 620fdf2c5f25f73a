// The live update preflight on trees copied from the shared 7.2 kernel
// (vm-7.2-kho with the kexec policy files of vm-7.2-kexec-policy laid over it),
// with the real shared bzImage, and on trees and files broken one way each.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "khod/kho/preflight.hpp"
#include "tree.hpp"

using namespace khod;
using khod::test::fixture;
using khod::test::TempTree;

namespace {

std::filesystem::path shared_bzimage() {
    if (const char* env = std::getenv("KHOD_VM_KERNEL")) return env;
    return (std::filesystem::path(KHOD_FIXTURES) / "../../../shared/vm/bzImage").lexically_normal();
}

class Preflight : public ::testing::Test {
protected:
    void SetUp() override {
        ASSERT_TRUE(std::filesystem::is_regular_file(shared_bzimage()))
            << shared_bzimage() << " is missing (CI has shared/ beside the repository)";
        tree.copy_from(fixture("vm-7.2-kho"));
        tree.copy_from(fixture("vm-7.2-kexec-policy"));
        files.write("initrd.gz", std::string(3 * 1024 * 1024 + 5, 'x'));
        request.kernel = shared_bzimage();
        request.initrd = files.root() / "initrd.gz";
        request.cmdline.reuse = true;
    }
    PreflightReport run() { return run_preflight(Sysroot(tree.root()), request); }
    static const PreflightCheck& get(const PreflightReport& r, const std::string& name) {
        const PreflightCheck* c = r.find(name);
        if (!c) throw std::runtime_error("no check " + name);
        return *c;
    }
    static std::string all(const PreflightReport& r) { return format_preflight(r); }

    TempTree tree;   // the sysroot
    TempTree files;  // kernel/initrd files outside it
    PreflightRequest request;
};

bool contains(const std::string& hay, const std::string& needle) {
    return hay.find(needle) != std::string::npos;
}

}  // namespace

TEST_F(Preflight, EverythingPassesOnTheVmKernel) {
    PreflightReport r = run();
    ASSERT_TRUE(r.ok()) << all(r);
    std::vector<std::string> names;
    for (const auto& c : r.checks) {
        names.push_back(c.name);
        EXPECT_EQ(c.status, CheckStatus::ok) << c.name << ": " << c.message;
    }
    EXPECT_EQ(names, (std::vector<std::string>{"debugfs", "kho", "kernel", "initrd", "cmdline", "scratch-fit",
                                               "kexec-allowed", "signature"}));
    EXPECT_EQ(r.kho_active, true);
    EXPECT_EQ(r.kho_abi, KhoAbi::stateless);
    ASSERT_EQ(r.scratch.size(), 3u);
    ASSERT_TRUE(r.kernel);
    EXPECT_EQ(r.kernel->release, "7.2.13");
    EXPECT_TRUE(contains(get(r, "kernel").message, "version \"7.2.13 ")) << get(r, "kernel").message;
    EXPECT_EQ(r.initrd_size, 3u * 1024 * 1024 + 5);
    EXPECT_EQ(r.cmdline.text,
              "console=ttyS0 panic=-1 kho=on kho_scratch=16M,64M,32M crashkernel=256M liveupdate=on");
    EXPECT_EQ(r.cmdline_max, 2017u);

    ASSERT_TRUE(r.placement);
    ASSERT_TRUE(r.placement->fits) << r.placement->message;
    for (const auto& s : r.placement->segments) {
        ASSERT_TRUE(s.addr && s.area) << s.request.name;
        const ScratchArea& a = r.scratch[*s.area];
        EXPECT_GE(*s.addr, a.phys) << s.request.name;
        EXPECT_LE(*s.addr + s.memsz, a.phys + a.size) << s.request.name;
        EXPECT_EQ(*s.addr % s.align, 0u) << s.request.name;
    }
    EXPECT_EQ(r.placement->segments[3].request.name, "kernel");
    EXPECT_EQ(r.placement->segments[3].area, 1u) << "35 MiB does not fit the 16 MiB lowmem area";
    EXPECT_EQ(r.placement->segments[4].area, 0u) << "the 3 MiB initrd does";
}

TEST_F(Preflight, JsonCarriesEveryPart) {
    nlohmann::json j = to_json(run());
    EXPECT_EQ(j["schema"], 1);
    EXPECT_EQ(j["ok"], true);
    ASSERT_EQ(j["checks"].size(), 8u);
    EXPECT_EQ(j["checks"][0]["name"], "debugfs");
    EXPECT_EQ(j["checks"][0]["status"], "ok");
    EXPECT_EQ(j["kho"]["active"], true);
    EXPECT_EQ(j["kho"]["scratch"].size(), 3u);
    EXPECT_EQ(j["kernel"]["release"], "7.2.13");
    EXPECT_EQ(j["kernel"]["init_size"], 0x2305000);
    EXPECT_EQ(j["kernel"]["xloadflags_names"], "KERNEL_64|CAN_BE_LOADED_ABOVE_4G|5LEVEL|5LEVEL_ENABLED");
    EXPECT_EQ(j["initrd"]["size"], 3 * 1024 * 1024 + 5);
    EXPECT_EQ(j["cmdline"]["max_length"], 2017);
    EXPECT_EQ(j["placement"]["fits"], true);
    EXPECT_EQ(j["placement"]["failed"], nullptr);
    EXPECT_EQ(j["placement"]["segments"].size(), 5u);
    EXPECT_EQ(j["placement"]["segments"][3]["name"], "kernel");
    EXPECT_EQ(j["placement"]["segments"][3]["area"], 1);
    EXPECT_EQ(j["policy"]["kexec_load_disabled"]["value"], false);
    EXPECT_EQ(j["policy"]["lockdown"]["status"], "unsupported");
    EXPECT_EQ(j["policy"]["kexec_sig_force"], nullptr);
}

TEST_F(Preflight, ScratchTooSmallNamesAreaAndShortfall) {
    tree.write("sys/kernel/debug/kho/out/scratch_len", "0x1000000\n0x2000000\n0x2000000\n");
    PreflightReport r = run();
    EXPECT_FALSE(r.ok());
    const auto& fit = get(r, "scratch-fit");
    EXPECT_EQ(fit.status, CheckStatus::failed);
    EXPECT_TRUE(contains(fit.message, "area 1 (global, 32 MiB at 0x25800000)")) << fit.message;
    EXPECT_TRUE(contains(fit.message, "3.0 MiB short")) << fit.message;
    ASSERT_TRUE(r.placement && r.placement->failed);
    EXPECT_EQ(r.placement->segments[*r.placement->failed].request.name, "kernel");
    EXPECT_EQ(r.placement->shortfall, 0x2305000u - (32u << 20));
    for (const auto& c : r.checks) {
        if (c.name != "scratch-fit") {
            EXPECT_EQ(c.status, CheckStatus::ok) << c.name << ": " << c.message;
        }
    }
}

TEST_F(Preflight, KhoOff) {
    TempTree nokho;
    nokho.copy_from(fixture("vm-7.2-nokho"));
    nokho.copy_from(fixture("vm-7.2-kexec-policy"));
    PreflightReport r = run_preflight(Sysroot(nokho.root()), request);
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(get(r, "kho").status, CheckStatus::failed);
    EXPECT_TRUE(contains(get(r, "kho").message, "kho=on")) << get(r, "kho").message;
    EXPECT_EQ(get(r, "scratch-fit").status, CheckStatus::skipped);
    EXPECT_EQ(get(r, "kernel").status, CheckStatus::ok) << "the other checks still run";
    EXPECT_FALSE(r.placement);
}

// /dev/liveupdate says KHO is on: what debugfs would show is a warning, the
// kernel checks the placement at the load.
TEST_F(Preflight, DebugfsUnreachableWithLiveupdate) {
    tree.write("proc/self/mounts", "proc /proc proc rw 0 0\nsysfs /sys sysfs rw 0 0\n");
    PreflightReport r = run();
    EXPECT_TRUE(r.ok());
    EXPECT_EQ(get(r, "debugfs").status, CheckStatus::warning);
    EXPECT_EQ(get(r, "kho").status, CheckStatus::ok);
    EXPECT_TRUE(contains(get(r, "kho").message, "/dev/liveupdate exists")) << get(r, "kho").message;
    EXPECT_EQ(get(r, "scratch-fit").status, CheckStatus::warning);
    EXPECT_TRUE(contains(get(r, "scratch-fit").message, "EADDRNOTAVAIL")) << get(r, "scratch-fit").message;
}

TEST_F(Preflight, DebugfsUnreachable) {
    tree.write("proc/self/mounts", "proc /proc proc rw 0 0\nsysfs /sys sysfs rw 0 0\n");
    tree.remove("dev/liveupdate");
    PreflightReport r = run();
    EXPECT_EQ(get(r, "debugfs").status, CheckStatus::failed);
    EXPECT_EQ(get(r, "kho").status, CheckStatus::failed);
    EXPECT_TRUE(contains(get(r, "kho").message, "cannot tell")) << get(r, "kho").message;
    EXPECT_EQ(get(r, "scratch-fit").status, CheckStatus::skipped);
}

TEST_F(Preflight, MissingKernelNamesPathAndErrno) {
    request.kernel = files.root() / "vmlinuz-nope";
    PreflightReport r = run();
    const auto& k = get(r, "kernel");
    EXPECT_EQ(k.status, CheckStatus::failed);
    ASSERT_TRUE(k.error);
    EXPECT_EQ(k.error->code, ENOENT);
    EXPECT_TRUE(contains(k.message, "vmlinuz-nope")) << k.message;
    EXPECT_EQ(get(r, "cmdline").status, CheckStatus::skipped);
    EXPECT_EQ(get(r, "scratch-fit").status, CheckStatus::skipped);
    EXPECT_EQ(get(r, "signature").status, CheckStatus::skipped);
    nlohmann::json j = to_json(r);
    EXPECT_EQ(j["checks"][2]["errno_name"], "ENOENT");
    EXPECT_EQ(j["kernel"], nullptr);
}

TEST_F(Preflight, KernelWithoutFiveLevelOnAFiveLevelHost) {
    // The shared bzImage with XLF_5LEVEL cleared; the captured cpuinfo has la57.
    std::ifstream in(shared_bzimage(), std::ios::binary);
    std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    bytes[0x236] = static_cast<char>(bytes[0x236] & ~kXlfFiveLevel);
    files.write("bzImage-4level", bytes);
    request.kernel = files.root() / "bzImage-4level";
    PreflightReport r = run();
    EXPECT_EQ(get(r, "kernel").status, CheckStatus::failed);
    EXPECT_TRUE(contains(get(r, "kernel").message, "XLF_5LEVEL")) << get(r, "kernel").message;
    // Without la57 it would load.
    tree.write("proc/cpuinfo", "processor\t: 0\nflags\t\t: fpu lm\n");
    EXPECT_EQ(get(run(), "kernel").status, CheckStatus::ok);
}

TEST_F(Preflight, NotABzImage) {
    files.write("vmlinux", std::string(4096, '\0'));
    request.kernel = files.root() / "vmlinux";
    PreflightReport r = run();
    const auto& k = get(r, "kernel");
    EXPECT_EQ(k.status, CheckStatus::failed);
    EXPECT_TRUE(contains(k.message, "HdrS")) << k.message;
}

TEST_F(Preflight, InitrdProblems) {
    files.write("empty", "");
    request.initrd = files.root() / "empty";
    PreflightReport r = run();
    EXPECT_EQ(get(r, "initrd").status, CheckStatus::failed);
    EXPECT_TRUE(contains(get(r, "initrd").message, "empty")) << get(r, "initrd").message;
    EXPECT_EQ(get(r, "scratch-fit").status, CheckStatus::skipped);

    request.initrd = files.root() / "missing";
    r = run();
    ASSERT_TRUE(get(r, "initrd").error);
    EXPECT_EQ(get(r, "initrd").error->code, ENOENT);

    request.initrd.reset();
    r = run();
    EXPECT_EQ(get(r, "initrd").status, CheckStatus::skipped);
    EXPECT_TRUE(contains(get(r, "initrd").message, "KEXEC_FILE_NO_INITRAMFS"));
    EXPECT_TRUE(r.ok()) << all(r);
    EXPECT_EQ(r.placement->segments.size(), 4u);
}

TEST_F(Preflight, CommandLineTooLong) {
    request.cmdline.append = "x=" + std::string(2000, 'y');
    PreflightReport r = run();
    const auto& c = get(r, "cmdline");
    EXPECT_EQ(c.status, CheckStatus::failed);
    EXPECT_TRUE(contains(c.message, "at most 2016")) << c.message;
}

TEST_F(Preflight, AppendOnlyAddsKhoAndScratch) {
    request.cmdline.reuse = false;
    request.cmdline.append = "console=ttyS0";
    PreflightReport r = run();
    EXPECT_EQ(r.cmdline.text, "console=ttyS0 kho=on kho_scratch=16M,64M,32M");
    request.cmdline.keep_kho = false;
    EXPECT_EQ(run().cmdline.text, "console=ttyS0");
}

TEST_F(Preflight, KexecDisabledOrUsedUp) {
    tree.write("proc/sys/kernel/kexec_load_disabled", "1\n");
    PreflightReport r = run();
    const auto& a = get(r, "kexec-allowed");
    EXPECT_EQ(a.status, CheckStatus::failed);
    EXPECT_TRUE(contains(a.message, "/proc/sys/kernel/kexec_load_disabled is 1")) << a.message;
    EXPECT_TRUE(contains(a.message, "EPERM")) << a.message;

    tree.write("proc/sys/kernel/kexec_load_disabled", "0\n");
    tree.write("proc/sys/kernel/kexec_load_limit_reboot", "0\n");
    EXPECT_TRUE(contains(get(run(), "kexec-allowed").message, "kexec_load_limit_reboot is 0"));
    tree.write("proc/sys/kernel/kexec_load_limit_reboot", "3\n");
    r = run();
    EXPECT_EQ(get(r, "kexec-allowed").status, CheckStatus::ok);
    EXPECT_TRUE(contains(get(r, "kexec-allowed").message, "3 loads/unloads left"));
}

TEST_F(Preflight, LockdownNeedsASignedImage) {
    tree.write("sys/kernel/security/lockdown", "none [integrity] confidentiality\n");
    PreflightReport r = run();
    const auto& s = get(r, "signature");
    EXPECT_EQ(s.status, CheckStatus::failed);
    EXPECT_TRUE(contains(s.message, "lockdown integrity")) << s.message;
    EXPECT_TRUE(contains(s.message, "not a PE file")) << s.message;

    tree.remove("sys/kernel/security/lockdown");
    tree.write("proc/cmdline", "kho=on lockdown=confidentiality\n");
    r = run();
    EXPECT_EQ(get(r, "signature").status, CheckStatus::failed) << "lockdown= on the command line";
    EXPECT_TRUE(contains(get(r, "signature").message, "lockdown confidentiality (from the command line"))
        << get(r, "signature").message;

    tree.write("sys/kernel/security/lockdown", "[none] integrity confidentiality\n");
    tree.write("boot/config-7.2.13", "CONFIG_KEXEC_SIG=y\nCONFIG_KEXEC_SIG_FORCE=y\n");
    r = run();
    EXPECT_EQ(get(r, "signature").status, CheckStatus::failed) << "KEXEC_SIG_FORCE enforces signatures too";
    EXPECT_TRUE(contains(get(r, "signature").message, "KEXEC_SIG_FORCE=y"));
}

TEST_F(Preflight, ExplicitModelIsUsedAsIs) {
    KexecLoaderModel m;
    m.purgatory_size = 0x9000;
    request.model = m;
    PreflightReport r = run();
    ASSERT_TRUE(r.placement);
    EXPECT_EQ(r.placement->segments[1].memsz, 0x9000u);
    EXPECT_TRUE(r.model_notes.empty());
}
