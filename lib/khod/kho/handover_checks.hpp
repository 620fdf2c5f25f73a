// The checks the handover state machine runs around the kernel calls:
// the preflight before Prepare records a target, and the kho/out validation
// after Finalize. Glue between handover, preflight and the FDT decoder.
#pragma once

#include "khod/kho/handover.hpp"

namespace khod {

// Prepare's check: every preflight check must pass (warnings allowed); on
// success target.cmdline becomes the command line Finalize will pass.
Result<void, Failure> preflight_target(const Sysroot& root, HandoverTarget& target);

// After Finalize: kho/out's root and every sub-tree must decode. A root that
// the kernel's debugfs file cuts short (7.x) is expected, not a failure; a
// finalize-ABI root must be complete.
Result<void, Failure> validate_kho_out(const Sysroot& root);

// Prepare's last check: the target must contain every compatible string this
// kernel hands over (target_compat.hpp); Errc::target_incompatible otherwise.
Result<void, Failure> check_target_handover(const Sysroot& root, const HandoverTarget& target,
                                            const CarriedState& carried);

HandoverHooks standard_handover_hooks();

}  // namespace khod
