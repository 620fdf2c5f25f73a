// The journal entries operators search for, built from khod's state: each
// with its MESSAGE_ID (message_ids.hpp) and the KHOD_* fields khod.catalog
// and khod(8), JOURNAL, describe. Pure functions, so the unit tests see
// exactly what khod logs; the callers pass them to log_event().
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "khod/kdump/kdump.hpp"
#include "khod/kho/handover.hpp"
#include "khod/luo/luo_sessions.hpp"
#include "log.hpp"

namespace khod {

// Finalize loaded target. release: the target's, from its bzImage header (empty: unknown).
JournalEvent live_update_staged_event(const HandoverTarget& target, const std::string& release, KhoAbi abi);

// Exec is about to reboot into target, carrying `sessions` LUO sessions of `bytes`.
JournalEvent live_update_exec_event(const HandoverTarget& target, const std::string& release,
                                    std::size_t sessions, std::uint64_t bytes);

// The first khod of a boot that came through a live update: KHO handed
// state over (kho_incoming) and/or the previous khod's manifest came.
JournalEvent live_update_restored_event(const std::string& release, bool kho_incoming,
                                        const LuoRecovery& found);

// A finished crash kernel load attempt: reloaded, rolled back, or left
// without a crash kernel. nullopt for a refusal that left the old image
// loaded (nothing an operator must look for; khod logs it plainly).
std::optional<JournalEvent> crash_kernel_event(const ReloadReport& report);

// An incoming session khod finished because its owner did not (RetrieveTimeoutSec=).
JournalEvent luo_session_released_event(const LuoSessionEntry& session);

// A session the previous kernel's manifest names that the kernel did not hand over.
JournalEvent luo_session_lost_event(const LuoSessionEntry& session, const std::string& previous_release);

}  // namespace khod
