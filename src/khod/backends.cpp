#include "backends.hpp"

#include <cerrno>

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

Result<Backends> make_backends(const Sysroot& root, bool fake) {
    if (fake) return make_fake_backends(root);
    return Backends{std::make_unique<SystemKexecBackend>(root), std::make_unique<SystemKdumpBackend>(root),
                    std::make_unique<SystemLuo>(root)};
}

}  // namespace khod
