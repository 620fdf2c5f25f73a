#include "backends.hpp"

#include <cerrno>

#include "job_queue.hpp"
#include "system_kdump.hpp"
#include "system_kexec.hpp"
#include "system_luo.hpp"

#ifdef KHOD_TEST_BACKENDS
#include "backends/fake_kdump.hpp"
#include "backends/fake_kexec.hpp"
#include "backends/fake_luo.hpp"
#endif

namespace khod {

bool have_test_backends() {
#ifdef KHOD_TEST_BACKENDS
    return true;
#else
    return false;
#endif
}

namespace {

// A load or unload is the syscall a job waits on: the loop may answer
// meanwhile (job_queue.hpp). The wrapped backend touches nothing the loop does.
class UnlockedKexec : public KexecBackend {
public:
    explicit UnlockedKexec(std::unique_ptr<KexecBackend> inner) : inner_(std::move(inner)) {}
    Result<void> load(const HandoverTarget& target) override {
        Unlocked unlocked;
        return inner_->load(target);
    }
    Result<void> unload() override {
        Unlocked unlocked;
        return inner_->unload();
    }
    Result<void> reboot_into_loaded(bool via_systemd) override {
        return inner_->reboot_into_loaded(via_systemd);
    }
    bool systemd_is_pid1() const override { return inner_->systemd_is_pid1(); }

private:
    std::unique_ptr<KexecBackend> inner_;
};

class UnlockedKdump : public KdumpBackend {
public:
    explicit UnlockedKdump(std::unique_ptr<KdumpBackend> inner) : inner_(std::move(inner)) {}
    Result<void> load_crash(const CrashRecipe& recipe) override {
        Unlocked unlocked;
        return inner_->load_crash(recipe);
    }
    Result<void> unload_crash() override {
        Unlocked unlocked;
        return inner_->unload_crash();
    }

private:
    std::unique_ptr<KdumpBackend> inner_;
};

Backends unlocked(Backends b) {
    return Backends{std::make_unique<UnlockedKexec>(std::move(b.kexec)),
                    std::make_unique<UnlockedKdump>(std::move(b.kdump)), std::move(b.luo)};
}

Result<Backends> make_fake_backends([[maybe_unused]] const Sysroot& root) {
#ifdef KHOD_TEST_BACKENDS
    if (root.is_live())
        return plain_error(root.root().string(), "--fake-kexec is for fixture sysroots only; give --sysroot");
    auto luo = std::make_unique<FakeLuo>(root);
    auto kexec = std::make_unique<FakeKexecBackend>(root);
    // The kernel freezes LUO sessions inside reboot(KEXEC); the fake does it
    // in the fake reboot. Backends owns both, and khod reboots only while they live.
    kexec->before_reboot = [fake = luo.get()] { return fake->freeze(); };
    return Backends{std::move(kexec), std::make_unique<FakeKdumpBackend>(root), std::move(luo)};
#else
    return plain_error(
        {}, "--fake-kexec: this build of khod has no test backends (built with -Dtest_backends=false)");
#endif
}

}  // namespace

Result<Backends> make_backends(const Sysroot& root, bool fake, const NativeLoaderConfig& native,
                               int kcore_fd) {
    if (fake) {
        auto b = make_fake_backends(root);
        if (!b) return b.error();
        return unlocked(std::move(*b));
    }
    return unlocked(Backends{std::make_unique<SystemKexecBackend>(root),
                             std::make_unique<SystemKdumpBackend>(root, native, kcore_fd),
                             std::make_unique<SystemLuo>(root)});
}

}  // namespace khod
