#include "backends.hpp"

#include <cerrno>

#include "system_kdump.hpp"
#include "system_kexec.hpp"

#ifdef KHOD_TEST_BACKENDS
#include "backends/fake_kdump.hpp"
#include "backends/fake_kexec.hpp"
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
    return Backends{std::make_unique<FakeKexecBackend>(root), std::make_unique<FakeKdumpBackend>(root)};
#else
    return plain_error(
        {}, "--fake-kexec: this build of khod has no test backends (built with -Dtest_backends=false)");
#endif
}

}  // namespace

Result<Backends> make_backends(const Sysroot& root, bool fake) {
    if (fake) return make_fake_backends(root);
    return Backends{std::make_unique<SystemKexecBackend>(root), std::make_unique<SystemKdumpBackend>(root)};
}

}  // namespace khod
