// The handover state machine over fixture sysroots, with the fake kexec
// backend: transitions, rollback on every failure, recovery from the kernel.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>

#include "backends/fake_kexec.hpp"
#include "khod/base/debugfs.hpp"
#include "khod/kho/handover.hpp"
#include "khod/kho/handover_checks.hpp"
#include "khod/kho/kho.hpp"
#include "tree.hpp"

using namespace khod;
using khod::test::fixture;
using khod::test::TempTree;

namespace {

struct Bench {
    explicit Bench(const char* name, HandoverHooks hooks = {}) {
        tree.copy_from(fixture(name));
        handover = std::make_unique<Handover>(root, backend, tree.root() / "run", std::move(hooks));
        handover->on_change([this](const std::vector<std::string>& c) { changes.push_back(c); });
        handover->recover();
    }
    std::string read(const std::string& rel) {
        std::ifstream in(tree.root() / rel);
        std::string s;
        std::getline(in, s);
        return s;
    }
    TempTree tree;
    Sysroot root{tree.root()};
    FakeKexecBackend backend{root};
    std::unique_ptr<Handover> handover;
    std::vector<std::vector<std::string>> changes;
};

HandoverTarget target() {
    HandoverTarget t;
    t.kernel = "/boot/vmlinuz-next";
    t.initrd = "/boot/initrd-next";
    t.cmdline = "console=ttyS0 kho=on";
    return t;
}

}  // namespace

TEST(Handover, StartsIdleWithTheKernelsAbiAndScratch) {
    Bench b("vm-7.2-kho");
    EXPECT_EQ(b.handover->state(), HandoverState::idle);
    EXPECT_EQ(b.handover->abi(), KhoAbi::stateless);
    EXPECT_EQ(b.handover->scratch_areas().size(), 3u);
}

TEST(Handover, UnknownFlagBitsAreRefusedNotIgnored) {
    Bench b("vm-7.2-kho");
    HandoverTarget t = target();
    t.flags = 1u << 7;
    auto r = b.handover->prepare(t);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, Errc::invalid_argument);
    EXPECT_NE(r.error().describe().find("unknown flag bits 0x80"), std::string::npos) << r.error().describe();
    EXPECT_EQ(b.handover->state(), HandoverState::idle);
    ASSERT_TRUE(b.handover->prepare(target()));
    ASSERT_TRUE(b.handover->finalize());
    auto e = b.handover->begin_exec(1u << 9);
    ASSERT_FALSE(e);
    EXPECT_EQ(e.error().kind, Errc::invalid_argument);
    EXPECT_EQ(b.handover->state(), HandoverState::loaded);
}

TEST(Handover, StatelessLifecycle) {
    Bench b("vm-7.2-kho");
    ASSERT_TRUE(b.handover->prepare(target()));
    EXPECT_EQ(b.handover->state(), HandoverState::prepared);
    EXPECT_TRUE(std::filesystem::exists(b.handover->record_path()));
    ASSERT_TRUE(b.handover->finalize());
    EXPECT_EQ(b.handover->state(), HandoverState::loaded);
    ASSERT_EQ(b.backend.loads.size(), 1u);
    EXPECT_EQ(b.backend.loads[0].kernel, "/boot/vmlinuz-next");
    EXPECT_EQ(b.read("sys/kernel/kexec/loaded"), "1");
    ASSERT_TRUE(b.handover->begin_exec(0));
    EXPECT_EQ(b.handover->state(), HandoverState::executing);
    ASSERT_TRUE(b.handover->complete_exec());
    ASSERT_EQ(b.backend.reboots.size(), 1u);
    EXPECT_FALSE(b.backend.reboots[0]) << "no systemd as PID 1: reboot(2) directly";
}

TEST(Handover, ExecGoesThroughSystemdUnlessForced) {
    Bench b("vm-7.2-kho");
    b.backend.systemd_pid1 = true;
    ASSERT_TRUE(b.handover->prepare(target()));
    ASSERT_TRUE(b.handover->finalize());
    ASSERT_TRUE(b.handover->begin_exec(0));
    ASSERT_TRUE(b.handover->complete_exec());
    EXPECT_TRUE(b.backend.reboots.back());

    Bench forced("vm-7.2-kho");
    forced.backend.systemd_pid1 = true;
    ASSERT_TRUE(forced.handover->prepare(target()));
    ASSERT_TRUE(forced.handover->finalize());
    ASSERT_TRUE(forced.handover->begin_exec(exec_force));
    ASSERT_TRUE(forced.handover->complete_exec());
    EXPECT_FALSE(forced.backend.reboots.back());
}

TEST(Handover, FailedRebootFallsBackToLoaded) {
    Bench b("vm-7.2-kho");
    ASSERT_TRUE(b.handover->prepare(target()));
    ASSERT_TRUE(b.handover->finalize());
    b.backend.fail_reboot = EBUSY;
    ASSERT_TRUE(b.handover->begin_exec(0));
    auto r = b.handover->complete_exec();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, Errc::kernel_refused);
    EXPECT_EQ(b.handover->state(), HandoverState::loaded);
    EXPECT_NE(b.handover->last_error().find("EBUSY"), std::string::npos) << b.handover->last_error();
}

TEST(Handover, LoadFailureLeavesNothingLoaded) {
    Bench b("vm-7.2-kho");
    ASSERT_TRUE(b.handover->prepare(target()));
    b.backend.fail_load = EADDRNOTAVAIL;
    auto r = b.handover->finalize();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, Errc::kernel_refused);
    EXPECT_EQ(r.error().error.code, EADDRNOTAVAIL);
    EXPECT_EQ(b.handover->state(), HandoverState::prepared);
    EXPECT_EQ(b.read("sys/kernel/kexec/loaded"), "0");
}

TEST(Handover, ValidationFailureAfterLoadUnloads) {
    HandoverHooks hooks;
    hooks.validate_out = [](const Sysroot&) -> Result<void, Failure> {
        return Failure{Errc::kernel_refused, plain_error("kho/out/fdt", "bad magic")};
    };
    Bench b("vm-7.2-kho", hooks);
    ASSERT_TRUE(b.handover->prepare(target()));
    ASSERT_FALSE(b.handover->finalize());
    EXPECT_EQ(b.backend.unloads, 1);
    EXPECT_EQ(b.handover->state(), HandoverState::prepared);
    EXPECT_EQ(b.read("sys/kernel/kexec/loaded"), "0");
}

TEST(Handover, PreflightCompletesTheTargetOrRefusesIt) {
    HandoverHooks hooks;
    hooks.preflight = [](const Sysroot&, HandoverTarget& t) -> Result<void, Failure> {
        if (t.kernel == "/bad") return Failure{Errc::preflight_failed, plain_error("/bad", "no HdrS")};
        t.cmdline += " kho_scratch=16M,64M,32M";
        return {};
    };
    Bench b("vm-7.2-kho", hooks);
    auto bad = target();
    bad.kernel = "/bad";
    auto r = b.handover->prepare(bad);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, Errc::preflight_failed);
    EXPECT_EQ(b.handover->state(), HandoverState::idle);
    EXPECT_FALSE(std::filesystem::exists(b.handover->record_path()));
    ASSERT_TRUE(b.handover->prepare(target()));
    EXPECT_EQ(b.handover->target().cmdline, "console=ttyS0 kho=on kho_scratch=16M,64M,32M");
}

// A preflight that holds the files as khod's does, checking nothing else.
HandoverHooks holding_hooks(std::function<void()> during_check = {}) {
    HandoverHooks hooks;
    hooks.preflight = [during_check](const Sysroot&, HandoverTarget& t) -> Result<void, Failure> {
        auto kernel = HeldFile::open(t.kernel, "the kernel");
        if (!kernel) return Failure{Errc::preflight_failed, kernel.error()};
        t.kernel_file = std::move(*kernel);
        if (during_check) during_check();
        return {};
    };
    return hooks;
}

TEST(Handover, FinalizeLoadsTheKernelPrepareCheckedThoughThePathMoved) {
    TempTree files;
    files.write("vmlinuz-checked", "checked kernel");
    files.write("vmlinuz-other", "other kernel");
    files.symlink("vmlinuz-checked", "vmlinuz");
    Bench b("vm-7.2-kho", holding_hooks());
    HandoverTarget t = target();
    t.kernel = (files.root() / "vmlinuz").string();
    t.initrd.clear();
    ASSERT_TRUE(b.handover->prepare(t));
    files.remove("vmlinuz");
    files.symlink("vmlinuz-other", "vmlinuz");
    ASSERT_TRUE(b.handover->finalize());
    ASSERT_EQ(b.backend.held_kernel_heads.size(), 1u);
    EXPECT_EQ(b.backend.held_kernel_heads[0], "checked kernel");
}

// After a khod restart the staged target comes from the record (paths only):
// Finalize checks it again and loads the files that check held.
TEST(Handover, FinalizeAfterARestartChecksTheStagedFilesAgain) {
    TempTree files;
    files.write("vmlinuz-checked", "checked kernel");
    files.write("vmlinuz-other", "other kernel");
    files.symlink("vmlinuz-checked", "vmlinuz");
    int checks = 0;
    Bench b("vm-7.2-kho", holding_hooks([&checks] { ++checks; }));
    HandoverTarget t = target();
    t.kernel = (files.root() / "vmlinuz").string();
    t.initrd.clear();
    ASSERT_TRUE(b.handover->prepare(t));
    EXPECT_EQ(checks, 1);

    // khod restarts; meanwhile the path is re-pointed.
    b.handover = std::make_unique<Handover>(b.root, b.backend, b.tree.root() / "run",
                                            holding_hooks([&checks] { ++checks; }));
    b.handover->recover();
    ASSERT_EQ(b.handover->state(), HandoverState::prepared);
    files.remove("vmlinuz");
    files.symlink("vmlinuz-other", "vmlinuz");
    ASSERT_TRUE(b.handover->finalize()) << b.handover->last_error();
    EXPECT_EQ(checks, 2) << "checked again before the load";
    ASSERT_EQ(b.backend.held_kernel_heads.size(), 1u);
    EXPECT_EQ(b.backend.held_kernel_heads[0], "other kernel") << "the file that second check held";
}

TEST(Handover, AKernelReplacedWhileItIsCheckedIsRefused) {
    TempTree files;
    files.write("vmlinuz-checked", "checked kernel");
    files.write("vmlinuz-other", "other kernel");
    files.symlink("vmlinuz-checked", "vmlinuz");
    Bench b("vm-7.2-kho", holding_hooks([&] {
                files.remove("vmlinuz");
                files.symlink("vmlinuz-other", "vmlinuz");
            }));
    HandoverTarget t = target();
    t.kernel = (files.root() / "vmlinuz").string();
    auto r = b.handover->prepare(t);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, Errc::preflight_failed);
    EXPECT_NE(r.error().describe().find("names another file than the one checked"), std::string::npos)
        << r.error().describe();
    EXPECT_EQ(b.handover->state(), HandoverState::idle);
}

// KHO without its debugfs (KEXEC_HANDOVER_DEBUGFS off, debugfs=off, or not
// mounted where khod may not mount it): the 7.2 tree less <debugfs>/kho.
// /dev/liveupdate says KHO is on; the live update goes ahead, with nothing in
// kho/out to validate (VM: kho-nodebugfs proves it on the real kernel).
TEST(Handover, WithoutKhoDebugfsLiveupdateSaysKhoIsOnAndTheUpdateRuns) {
    HandoverHooks hooks;
    hooks.validate_out = validate_kho_out;
    Bench b("vm-7.2-kho", std::move(hooks));
    b.tree.remove("sys/kernel/debug/kho");
    b.handover->recover();
    EXPECT_EQ(b.handover->abi(), KhoAbi::stateless);
    EXPECT_TRUE(b.handover->scratch_areas().empty());
    ASSERT_TRUE(b.handover->prepare(target())) << b.handover->last_error();
    ASSERT_TRUE(b.handover->finalize()) << b.handover->last_error();
    EXPECT_EQ(b.handover->state(), HandoverState::loaded);

    Sysroot root = b.root;
    KhoStatus kho = probe_kho(root, Cmdline::parse("kho=on"), ensure_debugfs(root, false));
    EXPECT_EQ(kho.active, true);
    EXPECT_TRUE(kho.without_debugfs);
    EXPECT_NE(kho.active_reason.find("/dev/liveupdate exists"), std::string::npos) << kho.active_reason;

    ASSERT_TRUE(b.handover->abort());
    b.tree.remove("dev/liveupdate");  // liveupdate=off: nothing says KHO is on
    b.handover->recover();
    auto r = b.handover->prepare(target());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, Errc::not_supported);
}

TEST(Handover, WrongStatesAreRefusedWithAHint) {
    Bench b("vm-7.2-kho");
    auto f = b.handover->finalize();
    ASSERT_FALSE(f);
    EXPECT_EQ(f.error().kind, Errc::wrong_state);
    EXPECT_NE(f.error().describe().find("Prepare first"), std::string::npos);
    EXPECT_EQ(b.handover->abort().error().kind, Errc::wrong_state);
    EXPECT_EQ(b.handover->begin_exec(0).error().kind, Errc::wrong_state);
    EXPECT_EQ(b.handover->complete_exec().error().kind, Errc::wrong_state);
    HandoverTarget empty;
    EXPECT_EQ(b.handover->prepare(empty).error().kind, Errc::invalid_argument);
}

TEST(Handover, NoKhoMeansNotSupported) {
    Bench b("vm-7.2-nokho");
    auto r = b.handover->prepare(target());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, Errc::not_supported);
}

TEST(Handover, FinalizeAbiWritesTheFinalizeFileAndUndoesIt) {
    Bench b("kho-6.16-finalize");
    EXPECT_EQ(b.handover->abi(), KhoAbi::finalize);
    ASSERT_TRUE(b.handover->prepare(target()));
    ASSERT_TRUE(b.handover->finalize());
    EXPECT_EQ(b.read("sys/kernel/debug/kho/out/finalize"), "1");
    EXPECT_EQ(b.read("sys/kernel/kexec_loaded"), "1");
    ASSERT_TRUE(b.handover->abort());
    EXPECT_EQ(b.read("sys/kernel/debug/kho/out/finalize"), "0");
    EXPECT_EQ(b.read("sys/kernel/kexec_loaded"), "0");
    EXPECT_EQ(b.handover->state(), HandoverState::idle);
}

TEST(Handover, FinalizeAbiLoadFailureUnfinalizes) {
    Bench b("kho-6.16-finalize");
    ASSERT_TRUE(b.handover->prepare(target()));
    b.backend.fail_load = ENOMEM;
    ASSERT_FALSE(b.handover->finalize());
    EXPECT_EQ(b.read("sys/kernel/debug/kho/out/finalize"), "0");
    EXPECT_EQ(b.handover->state(), HandoverState::prepared);
}

TEST(Handover, FinalizeFileErrorsAreExplained) {
    Bench b("kho-6.16-finalize");
    ASSERT_TRUE(b.handover->prepare(target()));
    // A directory where the file should be: the write fails with EISDIR.
    b.tree.remove("sys/kernel/debug/kho/out/finalize");
    b.tree.mkdir("sys/kernel/debug/kho/out/finalize");
    auto r = b.handover->finalize();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, Errc::kernel_refused);
    EXPECT_EQ(r.error().error.code, EISDIR);
    EXPECT_EQ(b.handover->state(), HandoverState::prepared);
    EXPECT_TRUE(b.backend.loads.empty());
    EXPECT_EQ(explain_finalize_errno(EEXIST, true), "the kernel says KHO is already finalized");
    EXPECT_NE(explain_finalize_errno(EBUSY, true).find("refused to serialize"), std::string::npos);
    EXPECT_NE(explain_finalize_errno(ENOENT, false).find("nothing to abort"), std::string::npos);
}

TEST(Handover, RecoveryTrustsTheKernelOverTheRecord) {
    Bench b("vm-7.2-kho");
    ASSERT_TRUE(b.handover->prepare(target()));
    ASSERT_TRUE(b.handover->finalize());
    // A new daemon over the same kernel and runtime dir.
    Handover again(b.root, b.backend, b.tree.root() / "run", {});
    again.recover();
    EXPECT_EQ(again.state(), HandoverState::loaded);
    EXPECT_EQ(again.target().kernel, "/boot/vmlinuz-next");
    // Someone unloaded it behind our back.
    b.tree.write("sys/kernel/kexec/loaded", "0\n");
    again.recover();
    EXPECT_EQ(again.state(), HandoverState::prepared);
    EXPECT_NE(again.last_error().find("unloaded outside khod"), std::string::npos);
}

TEST(Handover, ChangesAreReportedByPropertyName) {
    Bench b("vm-7.2-kho");
    b.changes.clear();
    ASSERT_TRUE(b.handover->prepare(target()));
    ASSERT_EQ(b.changes.size(), 1u);
    const auto& c = b.changes[0];
    for (const char* name : {"State", "TargetKernel", "TargetInitrd", "TargetCmdline"})
        EXPECT_NE(std::find(c.begin(), c.end(), name), c.end()) << name;
    EXPECT_EQ(std::find(c.begin(), c.end(), "Abi"), c.end());
}

// A newer kernel's LUO or kexec-metadata format is reported, not refused:
// khod's decoder must not stand between a kernel and its own live update.
TEST(HandoverChecks, NewerSubtreeFormatsDoNotFailTheCheckOfKhoOut) {
    TempTree tree;
    tree.copy_from(fixture("vm-7.2-kho"));
    Sysroot root{tree.root()};
    ASSERT_TRUE(validate_kho_out(root));
    const std::string luo_path = tree.root() / "sys/kernel/debug/kho/out/sub_fdts/LUO";
    std::string luo;
    {
        std::ifstream in(luo_path, std::ios::binary);
        luo.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    ASSERT_EQ(luo.substr(0, 6), "luo-v5");
    luo[5] = '6';
    tree.write("sys/kernel/debug/kho/out/sub_fdts/LUO", luo);
    std::string metadata(80, '\0');
    metadata[0] = 2;  // version 2
    tree.write("sys/kernel/debug/kho/out/sub_fdts/kexec-metadata", metadata);
    auto r = validate_kho_out(root);
    EXPECT_TRUE(r) << r.error().describe();
    // A malformed blob of a known format still is an error.
    tree.write("sys/kernel/debug/kho/out/sub_fdts/kexec-metadata", std::string("\x01\0\0\0short", 9));
    EXPECT_FALSE(validate_kho_out(root));
}

// khoctl prepare --kernel /nonexistent once said "No such file or directory
// (ENOENT)" twice: the joined message of the failed checks, each already its
// error's describe(), kept an errno code, so describe() added the text again.
TEST(HandoverChecks, APreflightFailureSaysEachErrnoOnce) {
    TempTree tree;
    tree.copy_from(fixture("vm-7.2-kho"));
    Sysroot root{tree.root()};
    const std::string enoent = "No such file or directory (ENOENT)";
    auto count = [](const std::string& text, const std::string& what) {
        std::size_t n = 0;
        for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
        return n;
    };

    HandoverTarget kernel_only;
    kernel_only.kernel = "/nonexistent";
    auto r = preflight_target(root, kernel_only);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, Errc::preflight_failed);
    const std::string once = r.error().describe();
    EXPECT_EQ(count(once, enoent), 1u) << once;
    EXPECT_NE(once.find("/nonexistent: cannot open the kernel"), std::string::npos) << once;

    // Two missing files: each named with its errno, neither repeated.
    HandoverTarget both = kernel_only;
    both.initrd = "/nonexistent-initrd";
    r = preflight_target(root, both);
    ASSERT_FALSE(r);
    const std::string twice = r.error().describe();
    EXPECT_EQ(count(twice, enoent), 2u) << twice;
    EXPECT_NE(twice.find("/nonexistent-initrd: cannot open the initrd"), std::string::npos) << twice;
}
