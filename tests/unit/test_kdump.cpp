// kdump under hotplug: the coalescer over a fake clock, the kernel's
// capability on fixture trees captured from the 7.2 kernel, and the state
// machine with the fake backend (in-place, coalesced reloads, events missed
// during a load, rollback on an injected failure, window accounting). No sleeps:
// time is a number the tests move.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "backends/fake_kdump.hpp"
#include "khod/kdump/kdump.hpp"
#include "khod/kdump/kdump_coalescer.hpp"
#include "khod/kdump/kdump_state.hpp"
#include "tree.hpp"

using namespace khod;
using khod::test::fixture;
using khod::test::TempTree;

namespace {

constexpr Usec ms = usec_per_msec;
constexpr Usec sec = usec_per_sec;

struct FakeClock : Clock {
    Usec t = 1000 * sec;
    Usec now() const override { return t; }
    Usec wall() const override { return t + wall_offset; }
    Usec wall_offset = 1'790'000'000 * sec;
};

// A bzImage the loader's checks accept, and a file that is none.
void write_kernel(const TempTree& tree, const std::string& rel, bool valid) {
    tree.write(rel, valid ? khod::test::minimal_bzimage() : std::string(0x400, '\0'));
}

struct Bench {
    explicit Bench(const char* name, KdumpSettings settings = {}) {
        tree.copy_from(fixture(name));
        write_kernel(tree, "boot/vmlinuz", true);
        write_kernel(tree, "boot/vmlinuz-new", true);
        write_kernel(tree, "boot/broken", false);
        tree.write("boot/initrd", "initrd");
        kdump = std::make_unique<Kdump>(root, backend, clock, settings, tree.root() / "run");
        kdump->on_reloaded([this](const ReloadReport& r) { reports.push_back(r); });
        // A load takes 300 ms of (fake) time.
        backend.during_load = [this] { clock.t += 300 * ms; };
    }
    CrashRecipe recipe(const char* kernel = "boot/vmlinuz") const {
        return {(tree.root() / kernel).string(), (tree.root() / "boot/initrd").string(),
                "console=ttyS0 nr_cpus=1", "test"};
    }
    std::string read(const std::string& rel) const {
        std::ifstream in(tree.root() / rel);
        std::string s;
        std::getline(in, s);
        return s;
    }
    void set(const std::string& rel, const std::string& v) const { tree.write(rel, v + "\n"); }
    HotplugEvent event(HotplugSubsystem sub = HotplugSubsystem::memory,
                       std::optional<std::uint64_t> seq = {}) const {
        return {sub, "online", "/devices/system/memory/memory9", seq, false};
    }
    // Runs the timer whenever it is due, up to `until`.
    void run_until(Usec until) {
        while (auto d = kdump->deadline()) {
            if (*d > until) break;
            clock.t = std::max(clock.t, *d);
            kdump->on_timer();
        }
        clock.t = std::max(clock.t, until);
    }
    TempTree tree;
    Sysroot root{tree.root()};
    FakeKdumpBackend backend{root};
    FakeClock clock;
    std::unique_ptr<Kdump> kdump;
    std::vector<ReloadReport> reports;
};

}  // namespace

// --- the coalescer

TEST(Coalescer, SettlesAfterTheLastEvent) {
    Coalescer c(1 * sec, 10 * sec);
    EXPECT_FALSE(c.deadline());
    c.add(100 * sec);
    EXPECT_EQ(*c.deadline(), 101 * sec);
    c.add(100 * sec + 400 * ms);
    EXPECT_EQ(*c.deadline(), 101 * sec + 400 * ms) << "each event pushes the action back";
    EXPECT_FALSE(c.due(101 * sec));
    EXPECT_TRUE(c.due(101 * sec + 400 * ms));
    EXPECT_EQ(c.take(), 2u);
    EXPECT_FALSE(c.pending());
    EXPECT_FALSE(c.deadline());
}

TEST(Coalescer, AStormOf3840EventsIsOneActionBoundedByTheMaximumDelay) {
    Coalescer c(1 * sec, 10 * sec);
    // 3840 events 2 ms apart: 7.7 s, never a 1 s pause.
    Usec t = 0;
    for (int i = 0; i < 3840; ++i, t += 2 * ms) {
        ASSERT_FALSE(c.due(t)) << "due mid-storm at event " << i;
        c.add(t);
    }
    EXPECT_EQ(*c.deadline(), t - 2 * ms + 1 * sec);
    EXPECT_EQ(c.take(), 3840u);

    // A storm that never pauses is handled at first + max_delay.
    Coalescer d(1 * sec, 10 * sec);
    std::uint64_t n = 0;
    for (t = 0; !d.due(t); t += 500 * ms, ++n) d.add(t);
    EXPECT_EQ(t, 10 * sec);
    EXPECT_EQ(d.take(), n);
}

TEST(Coalescer, MaxDelayBelowSettleIsRaisedAndOutOfOrderTimesDoNotMoveTheBatchBack) {
    Coalescer c(2 * sec, 1 * sec);
    EXPECT_EQ(c.max_delay(), 2 * sec);
    c.add(10 * sec);
    c.add(9 * sec);
    EXPECT_EQ(*c.deadline(), 12 * sec);
}

// --- capability, on trees the 7.2 kernel printed

TEST(KdumpCapability, NothingLoaded) {
    Sysroot root(fixture("vm-7.2-kho"));
    auto c = probe_kdump_capability(root);
    EXPECT_EQ(c.loaded(), std::optional<bool>(false));
    EXPECT_EQ(c.cpu, InPlace::no);
    EXPECT_EQ(c.memory, InPlace::no);
    EXPECT_TRUE(c.kernel_supports_in_place());
    EXPECT_EQ(*c.kexec.crash_elfcorehdr_size.value, 462448u);
}

TEST(KdumpCapability, KexecFileImageIsUpdatedInPlace) {
    Sysroot root(fixture("kdump-7.2-file"));
    auto c = probe_kdump_capability(root);
    EXPECT_EQ(c.loaded(), std::optional<bool>(true));
    EXPECT_EQ(c.cpu, InPlace::yes);
    EXPECT_EQ(c.memory, InPlace::yes);
    EXPECT_TRUE(c.in_place());
    EXPECT_TRUE(read_uevent_seqnum(root).has_value());
}

TEST(KdumpCapability, KexecLoadImageWithoutTheHotplugFlagIsNot) {
    Sysroot root(fixture("kdump-7.2-load"));
    auto c = probe_kdump_capability(root);
    EXPECT_EQ(c.loaded(), std::optional<bool>(true));
    EXPECT_EQ(c.cpu, InPlace::no);
    EXPECT_EQ(c.memory, InPlace::no);
    EXPECT_FALSE(c.in_place());
}

TEST(KdumpCapability, OlderKernelAndUnreadableFiles) {
    TempTree t;
    t.copy_from(fixture("kdump-7.2-load"));
    // A kernel before 6.6 (or without CRASH_HOTPLUG) has no crash_hotplug files.
    t.remove("sys/devices/system/cpu/crash_hotplug");
    t.remove("sys/devices/system/memory/crash_hotplug");
    Sysroot root(t.root());
    auto c = probe_kdump_capability(root);
    EXPECT_EQ(c.cpu, InPlace::unsupported);
    EXPECT_FALSE(c.kernel_supports_in_place());
    // Unreadable is unknown, never "no".
    t.mkdir("sys/devices/system/memory/crash_hotplug");
    t.write("sys/devices/system/cpu/crash_hotplug", "maybe\n");
    c = probe_kdump_capability(root);
    EXPECT_EQ(c.memory, InPlace::unknown);
    EXPECT_EQ(c.cpu, InPlace::unknown);
    EXPECT_EQ(c.kexec.crash_hotplug_memory.state, ProbeState::error);
    EXPECT_NE(c.kexec.crash_hotplug_memory.error.describe().find("crash_hotplug"), std::string::npos);
}

// --- the state machine

TEST(Kdump, InPlaceImageMeansNoReloadOnlyAConfirmation) {
    Bench b("kdump-7.2-file");
    b.kdump->start(b.recipe());
    ASSERT_TRUE(b.kdump->loaded());
    for (int i = 0; i < 100; ++i) {
        b.kdump->on_event(b.event(i % 2 ? HotplugSubsystem::cpu : HotplugSubsystem::memory));
        b.clock.t += 5 * ms;
    }
    EXPECT_TRUE(b.kdump->pending());
    b.run_until(b.clock.t + 5 * sec);
    EXPECT_EQ(b.kdump->reloads(), 0u);
    EXPECT_TRUE(b.backend.loads.empty());
    EXPECT_EQ(b.kdump->confirmations(), 1u);
    EXPECT_EQ(b.kdump->events_seen(), 100u);
    EXPECT_FALSE(b.kdump->pending());
    EXPECT_EQ(b.kdump->unloaded_total(), 0u);
}

TEST(Kdump, AStormOnAKexecLoadImageIsOneReloadASettleIntervalAfterTheLastEvent) {
    Bench b("kdump-7.2-load");
    b.kdump->start(b.recipe());
    Usec last = 0;
    for (int i = 0; i < 3840; ++i) {
        b.kdump->on_event(b.event());
        last = b.clock.t;
        b.clock.t += 1 * ms;
    }
    EXPECT_EQ(*b.kdump->deadline(), last + 1 * sec);
    b.run_until(last + 1 * sec - 1);
    EXPECT_TRUE(b.backend.loads.empty()) << "not before the storm settled";
    b.run_until(last + 10 * sec);
    ASSERT_EQ(b.backend.loads.size(), 1u);
    EXPECT_EQ(b.kdump->reloads(), 1u);
    ASSERT_EQ(b.reports.size(), 1u);
    EXPECT_TRUE(b.reports[0].ok);
    EXPECT_EQ(b.reports[0].events, 3840u);
    EXPECT_EQ(b.reports[0].unloaded, 300 * ms);
    EXPECT_EQ(*b.kdump->last_reload(), last + 1 * sec + 300 * ms) << "current 1.3 s after the last event";
    // The new image is a kexec_file one: updated in place from now on.
    EXPECT_EQ(b.read("sys/devices/system/memory/crash_hotplug"), "1");
    EXPECT_EQ(b.kdump->capability().memory, InPlace::yes);
    ASSERT_EQ(b.kdump->windows().size(), 1u);
    EXPECT_EQ(b.kdump->windows()[0].duration(b.clock.t), 300 * ms);
    const Usec wall_start = b.kdump->windows()[0].start + b.clock.wall_offset;
    EXPECT_EQ(b.kdump->windows()[0].wall_start, wall_start);
    b.clock.wall_offset += 3 * sec;  // the wall clock is stepped: what was recorded stays
    EXPECT_EQ(b.kdump->windows()[0].wall_start, wall_start);
    EXPECT_EQ(b.kdump->unloaded_total(), 300 * ms);
    EXPECT_TRUE(b.kdump->managed());

    // The next storm costs nothing.
    b.kdump->on_event(b.event());
    b.run_until(b.clock.t + 5 * sec);
    EXPECT_EQ(b.kdump->reloads(), 1u);
    EXPECT_EQ(b.kdump->confirmations(), 1u);
}

TEST(Kdump, EventsSentDuringALoadMakeTheImageCurrentAgain) {
    Bench b("kdump-7.2-file");
    b.set("sys/kernel/uevent_seqnum", "1000");
    b.kdump->start(b.recipe());
    // While the load holds the kexec lock, the kernel sends events 1001-1003
    // and skips their in-place update.
    b.backend.during_load = [&b] {
        b.clock.t += 300 * ms;
        b.set("sys/kernel/uevent_seqnum", "1003");
    };
    ASSERT_TRUE(b.kdump->reload());
    EXPECT_EQ(b.kdump->reloads(), 1u);
    b.backend.during_load = [&b] { b.clock.t += 300 * ms; };
    // They reach khod after the syscall returned.
    for (std::uint64_t s : {1001, 1002, 1003}) b.kdump->on_event(b.event(HotplugSubsystem::memory, s));
    b.run_until(b.clock.t + 5 * sec);
    EXPECT_EQ(b.kdump->reloads(), 2u) << "the image was reloaded once more";
    EXPECT_EQ(b.reports.back().events, 3u);
}

// khod runs loads off its loop: a status call in the middle must not report
// a settled state while the kernel has freed the old image.
TEST(Kdump, PendingWhileALoadIsInTheKernel) {
    Bench b("kdump-7.2-file");
    b.kdump->start(b.recipe());
    EXPECT_FALSE(b.kdump->pending());
    std::optional<bool> pending_mid_load;
    b.backend.during_load = [&b, &pending_mid_load] { pending_mid_load = b.kdump->pending(); };
    ASSERT_TRUE(b.kdump->reload());
    EXPECT_EQ(pending_mid_load, true);
    b.run_until(b.clock.t + 5 * sec);  // past the check after the load
    EXPECT_FALSE(b.kdump->pending());
}

TEST(Kdump, CpuEventsDuringALoadDoNotMatterForAKexecFileImage) {
    Bench b("kdump-7.2-file");
    b.set("sys/kernel/uevent_seqnum", "1000");
    b.kdump->start(b.recipe());
    b.backend.during_load = [&b] {
        b.clock.t += 300 * ms;
        b.set("sys/kernel/uevent_seqnum", "1002");
    };
    ASSERT_TRUE(b.kdump->reload());
    for (std::uint64_t s : {1001, 1002}) b.kdump->on_event(b.event(HotplugSubsystem::cpu, s));
    b.run_until(b.clock.t + 5 * sec);
    EXPECT_EQ(b.kdump->reloads(), 1u) << "its elfcorehdr describes every possible CPU";
}

TEST(Kdump, AMemoryEventAppliedAfterTheLoadRebuildsWhatTheLoadMissed) {
    Bench b("kdump-7.2-file");
    b.set("sys/kernel/uevent_seqnum", "1000");
    b.kdump->start(b.recipe());
    b.backend.during_load = [&b] {
        b.clock.t += 300 * ms;
        b.set("sys/kernel/uevent_seqnum", "1001");
    };
    ASSERT_TRUE(b.kdump->reload());
    b.kdump->on_event(b.event(HotplugSubsystem::memory, 1001));  // skipped by the kernel
    // The storm goes on past the grace period: the kernel updates in place again,
    // rebuilding the whole elfcorehdr.
    b.clock.t += 300 * ms;
    b.kdump->on_timer();
    b.set("sys/kernel/uevent_seqnum", "1002");
    b.kdump->on_event(b.event(HotplugSubsystem::memory, 1002));
    b.run_until(b.clock.t + 5 * sec);
    EXPECT_EQ(b.kdump->reloads(), 1u);
    EXPECT_EQ(b.kdump->confirmations(), 1u);
}

TEST(Kdump, EventsFromBeforeTheLoadOrAfterItsGraceDoNotReload) {
    Bench b("kdump-7.2-file");
    b.set("sys/kernel/uevent_seqnum", "1000");
    b.kdump->start(b.recipe());
    ASSERT_TRUE(b.kdump->reload());
    // Queued before the load began: its elfcorehdr already covers them.
    b.kdump->on_event(b.event(HotplugSubsystem::memory, 999));
    b.run_until(b.clock.t + 5 * sec);
    EXPECT_EQ(b.kdump->reloads(), 1u);
    // Long after the load (a late udev delivery of a later event): in place.
    b.set("sys/kernel/uevent_seqnum", "1010");
    b.kdump->on_event(b.event(HotplugSubsystem::memory, 1010));
    b.run_until(b.clock.t + 5 * sec);
    EXPECT_EQ(b.kdump->reloads(), 1u);
    EXPECT_EQ(b.kdump->confirmations(), 2u);
}

TEST(Kdump, WithoutSequenceNumbersArrivalDuringTheGracePeriodCounts) {
    Bench b("kdump-7.2-file");  // events without SEQNUM
    b.kdump->start(b.recipe());
    ASSERT_TRUE(b.kdump->reload());
    b.clock.t += 50 * ms;  // inside the 200 ms grace
    b.kdump->on_event(b.event());
    b.run_until(b.clock.t + 5 * sec);
    EXPECT_EQ(b.kdump->reloads(), 2u);
}

TEST(Kdump, AFailedReloadPutsTheLastGoodImageBack) {
    Bench b("kdump-7.2-file");
    b.kdump->start(std::nullopt);
    ASSERT_TRUE(b.kdump->load(b.recipe()));  // replaces the captured image: a reload
    EXPECT_EQ(b.kdump->reloads(), 1u);
    // The kernel frees the old image, then fails to load the new one.
    bool first = true;  // only the new image fails, not the rollback
    b.backend.during_load = [&] {
        b.clock.t += 300 * ms;
        if (first)
            b.backend.fail_after_free = ENOEXEC;
        else
            b.backend.fail_after_free.reset();
        first = false;
    };
    auto r = b.kdump->load(b.recipe("boot/vmlinuz-new"));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, Errc::kernel_refused);
    EXPECT_EQ(r.error().error.code, ENOEXEC);
    EXPECT_NE(r.error().describe().find("rolled back"), std::string::npos) << r.error().describe();
    ASSERT_EQ(b.backend.loads.size(), 3u);
    EXPECT_EQ(b.backend.loads[2].kernel, b.recipe().kernel) << "the rollback loads the last good recipe";
    EXPECT_EQ(b.read("sys/kernel/kexec/crash_loaded"), "1");
    EXPECT_TRUE(b.kdump->loaded());
    EXPECT_EQ(b.kdump->recipe()->kernel, b.recipe().kernel) << "the failed recipe is not kept";
    EXPECT_NE(b.kdump->last_error().find("KernelRefused"), std::string::npos);
    // Both windows were measured and closed.
    ASSERT_EQ(b.kdump->windows().size(), 2u);
    EXPECT_FALSE(b.kdump->windows()[1].open);
    EXPECT_EQ(b.kdump->windows()[1].duration(b.clock.t), 600 * ms) << "failed load + rollback";
    b.run_until(b.clock.t + 1 * sec);  // the rollback's own verification
    EXPECT_FALSE(b.kdump->deadline()) << "nothing left to retry";
    // What the journal tells: the first load replaced an image, the second rolled back.
    ASSERT_EQ(b.reports.size(), 2u);
    EXPECT_TRUE(b.reports[0].ok);
    EXPECT_EQ(b.reports[0].kernel, b.recipe().kernel);
    EXPECT_FALSE(b.reports[0].rolled_back);
    EXPECT_TRUE(b.reports[0].loaded_after);
    EXPECT_FALSE(b.reports[1].ok);
    EXPECT_EQ(b.reports[1].kernel, b.recipe("boot/vmlinuz-new").kernel);
    EXPECT_TRUE(b.reports[1].rolled_back);
    EXPECT_EQ(b.reports[1].rollback_kernel, b.recipe().kernel);
    EXPECT_NE(b.reports[1].error.find("rolled back"), std::string::npos) << b.reports[1].error;
    EXPECT_TRUE(b.reports[1].loaded_after);
    EXPECT_EQ(b.kdump->window_count(), 2u);
}

TEST(Kdump, AFailedNativeLoadRollsBackWithTheLoaderThatLoadedTheGoodImage) {
    Bench b("kdump-7.2-file");
    b.kdump->start(std::nullopt);
    ASSERT_TRUE(b.kdump->load(b.recipe()));  // loaded with kexec_file_load
    CrashRecipe native = b.recipe("boot/vmlinuz-new");
    native.loader = CrashLoader::native;
    bool first = true;
    b.backend.during_load = [&] {
        if (first)
            b.backend.fail_after_free = EADDRNOTAVAIL;
        else
            b.backend.fail_after_free.reset();
        first = false;
    };
    auto r = b.kdump->load(native);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().describe().find("rolled back"), std::string::npos) << r.error().describe();
    ASSERT_EQ(b.backend.loads.size(), 3u);
    EXPECT_EQ(b.backend.loads[1].loader, CrashLoader::native);
    EXPECT_EQ(b.backend.loads[2].loader, CrashLoader::file)
        << "the good image comes back the way it was loaded";
    EXPECT_EQ(b.kdump->recipe()->loader, CrashLoader::file);
    EXPECT_TRUE(b.kdump->loaded());

    // And the other way round: a native recipe is what reloads use from then on.
    b.backend.during_load = nullptr;
    native.kernel = b.recipe().kernel;
    ASSERT_TRUE(b.kdump->load(native));
    ASSERT_TRUE(b.kdump->reload());
    EXPECT_EQ(b.backend.loads.back().loader, CrashLoader::native);
}

TEST(Kdump, ANativeRecipeTakesOverAnImageTheKernelCannotUpdate) {
    // kdump-7.2-load: loaded by kexec -p, crash_hotplug 0.
    Bench b("kdump-7.2-load");
    CrashRecipe native = b.recipe();
    native.loader = CrashLoader::native;
    b.kdump->start(native);
    ASSERT_TRUE(b.kdump->deadline()) << "the takeover is scheduled at start";
    EXPECT_EQ(*b.kdump->deadline(), b.clock.t);
    b.run_until(b.clock.t + 1 * sec);
    ASSERT_EQ(b.backend.loads.size(), 1u);
    EXPECT_EQ(b.backend.loads[0].loader, CrashLoader::native);
    EXPECT_EQ(b.kdump->reloads(), 1u);
    ASSERT_EQ(b.reports.size(), 1u);
    EXPECT_NE(b.reports[0].cause.find("takeover"), std::string::npos) << b.reports[0].cause;

    // With the file loader khod waits for a storm, as before.
    Bench f("kdump-7.2-load");
    f.kdump->start(f.recipe());
    f.run_until(f.clock.t + 5 * sec);
    EXPECT_TRUE(f.backend.loads.empty());
}

TEST(Kdump, WhenTheRollbackFailsTooKhodRetriesUntilACrashKernelIsBack) {
    Bench b("kdump-7.2-load");
    b.kdump->start(b.recipe());
    b.backend.fail_after_free = ENOMEM;
    b.kdump->on_event(b.event());
    b.run_until(b.clock.t + 2 * sec);
    ASSERT_EQ(b.reports.size(), 1u);
    EXPECT_FALSE(b.reports[0].ok);
    EXPECT_FALSE(b.reports[0].rolled_back) << "no earlier image of khod's to go back to";
    EXPECT_FALSE(b.reports[0].loaded_after) << "left without a crash kernel";
    EXPECT_NE(b.reports[0].error.find("NO crash kernel is loaded"), std::string::npos) << b.reports[0].error;
    EXPECT_FALSE(b.kdump->loaded());
    ASSERT_EQ(b.kdump->windows().size(), 1u);
    EXPECT_TRUE(b.kdump->windows()[0].open);
    EXPECT_NE(b.kdump->last_error().find("NO crash kernel is loaded"), std::string::npos)
        << b.kdump->last_error();
    ASSERT_TRUE(b.kdump->deadline());
    b.backend.fail_after_free.reset();
    b.run_until(b.clock.t + 10 * sec);
    EXPECT_TRUE(b.kdump->loaded());
    EXPECT_FALSE(b.kdump->windows()[0].open);
    EXPECT_GE(b.kdump->windows()[0].duration(b.clock.t), 5 * sec) << "the window lasted until the retry";
}

TEST(Kdump, ARefusalBeforeTheKernelFreedTheImageOpensNoWindow) {
    Bench b("kdump-7.2-load");
    b.kdump->start(b.recipe());
    b.backend.fail_before_free = EBUSY;  // another loader holds the kexec lock
    b.kdump->on_event(b.event());
    b.run_until(b.clock.t + 2 * sec);
    EXPECT_TRUE(b.kdump->loaded());
    EXPECT_TRUE(b.kdump->windows().empty());
    EXPECT_NE(b.kdump->last_error().find("still loaded"), std::string::npos);
    ASSERT_EQ(b.reports.size(), 1u);
    EXPECT_FALSE(b.reports[0].ok);
    EXPECT_FALSE(b.reports[0].rolled_back);
    EXPECT_TRUE(b.reports[0].loaded_after) << "neither rolled back nor unloaded: the old image stayed";
    ASSERT_TRUE(b.kdump->deadline()) << "the stale image is retried";
    b.backend.fail_before_free.reset();
    b.run_until(b.clock.t + 10 * sec);
    EXPECT_EQ(b.kdump->reloads(), 1u);
}

TEST(Kdump, UnreadableFilesAreRefusedBeforeAnythingIsUnloaded) {
    Bench b("kdump-7.2-file");
    b.kdump->start(std::nullopt);
    auto r = b.kdump->load(b.recipe("boot/missing"));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, Errc::invalid_argument);
    EXPECT_EQ(r.error().error.code, ENOENT);
    EXPECT_TRUE(b.backend.loads.empty());
    EXPECT_TRUE(b.kdump->loaded());
}

TEST(Kdump, WhatTheLoaderWouldRefuseIsRefusedBeforeAnythingIsUnloaded) {
    Bench b("kdump-7.2-file");
    b.kdump->start(std::nullopt);
    auto expect_refused = [&](const CrashRecipe& recipe, const std::string& says) {
        auto r = b.kdump->load(recipe);
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().kind, Errc::preflight_failed) << r.error().describe();
        EXPECT_NE(r.error().describe().find(says), std::string::npos) << r.error().describe();
        EXPECT_TRUE(b.backend.loads.empty()) << "the kernel was never asked";
        EXPECT_TRUE(b.kdump->loaded());
        EXPECT_TRUE(b.kdump->windows().empty());
    };
    expect_refused(b.recipe("boot/broken"), "is not a bzImage");
    CrashRecipe long_line = b.recipe();
    long_line.cmdline = std::string(2100, 'x');
    expect_refused(long_line, "2047");
    b.set("sys/kernel/kexec/crash_size", "1048576");  // 1 MiB: kernel (1 MiB) and initrd do not fit
    expect_refused(b.recipe(), "more than the crashkernel= region's 1 MiB");
    b.set("sys/kernel/kexec/crash_size", "0");
    expect_refused(b.recipe(), "no crashkernel= region");
    b.set("sys/kernel/kexec/crash_size", "268435456");
    EXPECT_TRUE(b.kdump->load(b.recipe()));
}

TEST(Kdump, TheIntentIsRecordedBeforeTheKernelIsAsked) {
    Bench b("kdump-7.2-file");
    b.kdump->start(std::nullopt);
    std::optional<KdumpRecord> during;
    b.backend.during_load = [&] {
        during = read_kdump_record(b.kdump->record_path(), b.read("proc/sys/kernel/random/boot_id"));
    };
    ASSERT_TRUE(b.kdump->load(b.recipe()));
    ASSERT_TRUE(during && during->intent);
    EXPECT_EQ(during->intent->step, KdumpIntent::Step::load);
    EXPECT_EQ(during->intent->recipe->kernel, b.recipe().kernel);
    auto after = read_kdump_record(b.kdump->record_path(), b.read("proc/sys/kernel/random/boot_id"));
    ASSERT_TRUE(after);
    EXPECT_FALSE(after->intent) << "the step ended and the record says so";
    EXPECT_TRUE(after->managed);
    EXPECT_EQ(after->last_good->kernel, b.recipe().kernel);
}

// What a SIGKILL inside a load leaves: the record as written just before the
// kernel was asked, and the kernel's state at that moment.
struct KilledInside {
    explicit KilledInside(Bench& b) : b(b) {}
    // Runs step, keeping the record and crash_loaded as they were inside the backend call.
    template <class Step>
    void step(Step&& s) {
        std::string record, loaded;
        b.backend.during_load = [&] {
            std::ifstream in(b.kdump->record_path());
            record.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
            loaded = b.read("sys/kernel/kexec/crash_loaded");
        };
        s();
        b.backend.during_load = nullptr;
        b.tree.write("run/kdump.json", record);
        b.set("sys/kernel/kexec/crash_loaded", loaded);
    }
    Bench& b;
};

TEST(Kdump, KilledInsideALoadTheNextStartLoadsTheLastGoodImageBeforeAnythingElse) {
    Bench b("kdump-7.2-file");
    b.kdump->start(std::nullopt);
    ASSERT_TRUE(b.kdump->load(b.recipe()));
    KilledInside(b).step([&] { (void)b.kdump->load(b.recipe("boot/vmlinuz-new")); });
    ASSERT_EQ(b.read("sys/kernel/kexec/crash_loaded"), "0")
        << "the kill came after the kernel freed the image";
    b.backend.loads.clear();
    b.clock.t += 3 * sec;  // khod comes back 3 s later
    Kdump again(b.root, b.backend, b.clock, {}, b.tree.root() / "run");
    again.start(std::nullopt);
    ASSERT_EQ(b.backend.loads.size(), 1u);
    EXPECT_EQ(b.backend.loads[0].kernel, b.recipe().kernel)
        << "the last good image, not the one being loaded";
    EXPECT_EQ(b.read("sys/kernel/kexec/crash_loaded"), "1");
    EXPECT_TRUE(again.managed());
    EXPECT_NE(again.recovery().find("stopped inside a load"), std::string::npos) << again.recovery();
    EXPECT_NE(again.recovery().find("loaded " + b.recipe().kernel + " again"), std::string::npos)
        << again.recovery();
    ASSERT_EQ(again.windows().size(), 1u);
    EXPECT_FALSE(again.windows()[0].open);
    EXPECT_GE(again.windows()[0].duration(b.clock.t), 3 * sec) << "counted from the step's start";
    EXPECT_FALSE(read_kdump_record(again.record_path(), b.read("proc/sys/kernel/random/boot_id"))->intent);
}

TEST(Kdump, KilledAfterTheLoadWentThroughTheNewRecipeIsKept) {
    Bench b("kdump-7.2-file");
    b.kdump->start(std::nullopt);
    ASSERT_TRUE(b.kdump->load(b.recipe()));
    std::string record;
    b.backend.during_load = [&] {
        std::ifstream in(b.kdump->record_path());
        record.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    };
    ASSERT_TRUE(b.kdump->load(b.recipe("boot/vmlinuz-new")));
    b.tree.write("run/kdump.json", record);  // killed before the record said it was done
    b.backend.loads.clear();
    Kdump again(b.root, b.backend, b.clock, {}, b.tree.root() / "run");
    again.start(std::nullopt);
    EXPECT_TRUE(b.backend.loads.empty()) << "a crash kernel is loaded: nothing to put back at once";
    EXPECT_EQ(again.recipe()->kernel, b.recipe("boot/vmlinuz-new").kernel);
    EXPECT_TRUE(again.managed());
    // The killed load may have missed hotplug events: one reload, a settle interval later.
    ASSERT_TRUE(again.deadline());
    b.clock.t = *again.deadline();
    again.on_timer();
    ASSERT_EQ(b.backend.loads.size(), 1u);
    EXPECT_EQ(b.backend.loads[0].kernel, b.recipe("boot/vmlinuz-new").kernel);
}

TEST(Kdump, KilledInsideAnUnloadTheUnloadStands) {
    Bench b("kdump-7.2-file");
    b.kdump->start(std::nullopt);
    ASSERT_TRUE(b.kdump->load(b.recipe()));
    const std::string boot = b.read("proc/sys/kernel/random/boot_id");
    auto record = *read_kdump_record(b.kdump->record_path(), boot);
    record.intent = KdumpIntent{KdumpIntent::Step::unload, std::nullopt, b.clock.t};
    ASSERT_TRUE(write_kdump_record(b.kdump->record_path(), record, boot));
    b.set("sys/kernel/kexec/crash_loaded", "0");
    b.backend.loads.clear();
    Kdump again(b.root, b.backend, b.clock, {}, b.tree.root() / "run");
    again.start(std::nullopt);
    EXPECT_TRUE(b.backend.loads.empty());
    EXPECT_FALSE(again.managed());
    EXPECT_NE(again.recovery().find("as asked"), std::string::npos) << again.recovery();
}

TEST(Kdump, AManagedCrashKernelUnloadedWhileKhodWasDownIsLoadedAgain) {
    Bench b("kdump-7.2-file");
    b.kdump->start(std::nullopt);
    ASSERT_TRUE(b.kdump->load(b.recipe()));
    b.set("sys/kernel/kexec/crash_loaded", "0");  // kexec -p -u while khod was stopped
    b.backend.loads.clear();
    Kdump again(b.root, b.backend, b.clock, {}, b.tree.root() / "run");
    again.start(std::nullopt);
    ASSERT_EQ(b.backend.loads.size(), 1u);
    EXPECT_TRUE(again.loaded());
    EXPECT_NE(again.recovery().find("unloaded while khod was not running"), std::string::npos)
        << again.recovery();
}

TEST(KdumpRecord, DamagedOrForeignRecordsCountForNothing) {
    const KdumpRecord r{
        true, CrashRecipe{"/k", "/i", "c", "s"}, CrashRecipe{"/k", "", "c", "s"},
        KdumpIntent{KdumpIntent::Step::load, CrashRecipe{"/n", "", "c", "s", CrashLoader::native}, 42}};
    const std::string text = format_kdump_record(r, "boot-a");
    auto back = parse_kdump_record(text, "boot-a");
    ASSERT_TRUE(back);
    EXPECT_TRUE(back->managed);
    EXPECT_EQ(back->intent->recipe->loader, CrashLoader::native);
    EXPECT_EQ(back->last_good->loader, CrashLoader::file);
    // Records from before loaders existed were file loads; an unknown loader is damage.
    auto old = parse_kdump_record(
        R"({"version":1,"boot_id":"boot-a","managed":true,"recipe":{"kernel":"/k","initrd":"","cmdline":"c","source":"s"}})",
        "boot-a");
    ASSERT_TRUE(old);
    EXPECT_EQ(old->recipe->loader, CrashLoader::file);
    EXPECT_FALSE(parse_kdump_record(
        R"({"version":1,"boot_id":"boot-a","managed":true,"recipe":{"kernel":"/k","initrd":"","cmdline":"c","source":"s","loader":"kexec"}})",
        "boot-a"));
    EXPECT_EQ(back->last_good->initrd, "");
    EXPECT_EQ(back->intent->recipe->kernel, "/n");
    EXPECT_EQ(back->intent->since, 42u);
    EXPECT_FALSE(parse_kdump_record(text, "boot-b")) << "another boot's";
    EXPECT_FALSE(parse_kdump_record(text.substr(0, text.size() / 2), "boot-a")) << "truncated";
    EXPECT_FALSE(parse_kdump_record(R"({"version":1,"boot_id":"boot-a","managed":"yes"})", "boot-a"));
    EXPECT_FALSE(parse_kdump_record(
        R"({"version":1,"boot_id":"boot-a","managed":true,"recipe":{"kernel":7}})", "boot-a"));
    EXPECT_FALSE(parse_kdump_record(
        R"({"version":1,"boot_id":"boot-a","managed":true,"intent":{"step":"dance","since_usec":1}})",
        "boot-a"));
    EXPECT_FALSE(parse_kdump_record("\xff\xfe not json", "boot-a"));
    // Numbers nlohmann would cast out of range (fuzz-records): refused, not converted.
    EXPECT_FALSE(parse_kdump_record(R"({"version":1e34,"boot_id":"boot-a","managed":true})", "boot-a"));
    EXPECT_FALSE(parse_kdump_record(
        R"({"version":1,"boot_id":"boot-a","managed":true,"intent":{"step":"load","since_usec":-5}})",
        "boot-a"));
    EXPECT_FALSE(parse_kdump_record(
        R"({"version":1,"boot_id":"boot-a","managed":true,"intent":{"step":"load","since_usec":1e300}})",
        "boot-a"));
    EXPECT_FALSE(parse_kdump_record(R"([1,2])", "boot-a"));
    // A null recipe is no recipe; a null intent, a loader that is not a
    // string or a recipe that is not an object is damage.
    auto no_recipe =
        parse_kdump_record(R"({"version":1,"boot_id":"boot-a","managed":false,"recipe":null})", "boot-a");
    ASSERT_TRUE(no_recipe);
    EXPECT_FALSE(no_recipe->recipe);
    EXPECT_FALSE(no_recipe->managed);
    EXPECT_FALSE(
        parse_kdump_record(R"({"version":1,"boot_id":"boot-a","managed":true,"intent":null})", "boot-a"));
    EXPECT_FALSE(parse_kdump_record(
        R"({"version":1,"boot_id":"boot-a","managed":true,"recipe":{"kernel":"/k","initrd":"","cmdline":"c","source":"s","loader":1}})",
        "boot-a"));
    EXPECT_FALSE(
        parse_kdump_record(R"({"version":1,"boot_id":"boot-a","managed":true,"recipe":"/k"})", "boot-a"));
    EXPECT_FALSE(parse_kdump_record(R"({"version":1,"boot_id":7,"managed":true})", "boot-a"));
}

TEST(Kdump, NoRecipeIsReported) {
    Bench b("kdump-7.2-load");
    b.kdump->start(std::nullopt, "no Kernel= in khod.conf");
    EXPECT_NE(b.kdump->last_error().find("NoRecipe"), std::string::npos);
    b.kdump->on_event(b.event());
    b.run_until(b.clock.t + 2 * sec);
    EXPECT_TRUE(b.backend.loads.empty());
    EXPECT_TRUE(b.kdump->loaded()) << "khod never unloads what it cannot replace";
    EXPECT_NE(b.kdump->last_error().find("knows no recipe"), std::string::npos);
    auto r = b.kdump->reload();
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().kind, Errc::no_recipe);
}

TEST(Kdump, UnloadOpensAWindowThatTheNextLoadCloses) {
    Bench b("kdump-7.2-file");
    b.kdump->start(b.recipe());
    ASSERT_TRUE(b.kdump->unload());
    EXPECT_FALSE(b.kdump->loaded());
    EXPECT_FALSE(b.kdump->managed());
    b.clock.t += 2 * sec;
    EXPECT_EQ(b.kdump->unloaded_total(), 2 * sec) << "an open window counts up to now";
    // Events with nothing loaded: nothing to do.
    b.kdump->on_event(b.event());
    b.run_until(b.clock.t + 2 * sec);
    EXPECT_TRUE(b.backend.loads.empty());
    ASSERT_TRUE(b.kdump->load(b.recipe()));
    EXPECT_EQ(b.kdump->reloads(), 0u) << "nothing was loaded: a load, not a reload";
    EXPECT_FALSE(b.kdump->windows()[0].open);
    EXPECT_EQ(b.kdump->windows()[0].cause, "Unload");
}

TEST(Kdump, ARestartedKhodKnowsItsRecipeFromThisBootsRecord) {
    Bench b("kdump-7.2-file");
    b.kdump->start(std::nullopt);
    ASSERT_TRUE(b.kdump->load(b.recipe()));
    Kdump again(b.root, b.backend, b.clock, {}, b.tree.root() / "run");
    again.start(std::nullopt);
    ASSERT_TRUE(again.recipe());
    EXPECT_EQ(again.recipe()->kernel, b.recipe().kernel);
    EXPECT_TRUE(again.managed());
    // A record from another boot is ignored.
    b.set("proc/sys/kernel/random/boot_id", "00000000-0000-0000-0000-000000000000");
    Kdump other(b.root, b.backend, b.clock, {}, b.tree.root() / "run");
    other.start(std::nullopt);
    EXPECT_FALSE(other.recipe());
}

TEST(Kdump, PropertyChangesAreNamed) {
    Bench b("kdump-7.2-load");
    std::vector<std::string> changed;
    b.kdump->on_change(
        [&](const std::vector<std::string>& c) { changed.insert(changed.end(), c.begin(), c.end()); });
    b.kdump->start(b.recipe());
    b.kdump->on_event(b.event());
    b.run_until(b.clock.t + 2 * sec);
    for (const char* p :
         {"Reloads", "LastReloadUsec", "InPlaceUpdate", "UnloadedWindowUsecTotal", "Pending", "Managed"})
        EXPECT_NE(std::find(changed.begin(), changed.end(), p), changed.end()) << p;
}

TEST(Kdump, TheWindowCountGoesOnPastTheWindowsKept) {
    KdumpSettings settings;
    settings.keep_windows = 2;
    Bench b("kdump-7.2-file", settings);
    b.kdump->start(b.recipe());
    std::vector<std::string> changed;
    b.kdump->on_change(
        [&](const std::vector<std::string>& c) { changed.insert(changed.end(), c.begin(), c.end()); });
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(b.kdump->reload());
    EXPECT_EQ(b.kdump->windows().size(), 2u);
    EXPECT_EQ(b.kdump->window_count(), 5u) << "metrics count every window, not the ones kept";
    EXPECT_EQ(b.kdump->unloaded_total(), 5 * 300 * ms);
    EXPECT_EQ(std::count(changed.begin(), changed.end(), "UnloadedWindowCount"), 5);
}
