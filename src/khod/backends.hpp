// The one place that picks khod's kernel backends: the real syscalls, or the
// fixture-tree fakes (`--fake-kexec`) in builds configured with
// -Dtest_backends=true. Packaged builds have no fakes to pick.
#pragma once

#include <memory>

#include "khod/base/result.hpp"
#include "khod/base/sysroot.hpp"
#include "khod/kdump/kdump.hpp"
#include "khod/kho/handover.hpp"
#include "khod/khod_config.hpp"
#include "khod/luo/luo_kernel.hpp"

namespace khod {

struct Backends {
    std::unique_ptr<KexecBackend> kexec;
    std::unique_ptr<KdumpBackend> kdump;
    std::unique_ptr<LuoKernel> luo;
};

// Whether this build carries the test backends.
bool have_test_backends();

// fake: the fixture-tree backends; refused on the live system and in builds
// without them. native: how the real kdump backend runs khod's kexec_load loader. Loads and unloads release
// the state lock (job_queue.hpp). kcore_fd: /proc/kcore opened for khod, or -1 (kept open by the caller).
Result<Backends> make_backends(const Sysroot& root, bool fake, const NativeLoaderConfig& native,
                               int kcore_fd);

}  // namespace khod
