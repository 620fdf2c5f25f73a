// The MESSAGE_IDs of the journal entries an operator searches for
// (`journalctl MESSAGE_ID=<id>`). khod.catalog beside this file explains each
// one to `journalctl -x`; tests/unit/check_catalog.py keeps the two in step.
// An id is a promise to the people who search for it: never change or reuse one.
#pragma once

namespace khod::message_id {

// Finalize loaded the next kernel: a live update is staged.
inline constexpr const char* live_update_staged = "2f157184e7fa428f9dde14eed001c949";
// Exec: khod is rebooting into the staged kernel.
inline constexpr const char* live_update_exec = "347a8cd146c64b9ea154f181e87ce3df";
// The first khod after a live update found the previous kernel's KHO or LUO state.
inline constexpr const char* live_update_restored = "6ee3bb4281e94fc5b995fb50b7a4403c";
// khod loaded a crash kernel again (a hotplug storm, Reload, Load over one, a restart).
inline constexpr const char* crash_kernel_reloaded = "268d8271cba3467e89970473332c6a27";
// A crash kernel load failed after the kernel freed the old image; the last good one is back.
inline constexpr const char* crash_kernel_rolled_back = "aa7aacb066284a1f97175b9eae8a211b";
// A crash kernel load failed and no crash kernel is loaded; khod retries.
inline constexpr const char* crash_kernel_unloaded = "1873f029e0b848c08aa7ab87e263a91c";
// An incoming LUO session was released unfinished: RetrieveTimeoutSec= ran out.
inline constexpr const char* luo_session_released = "f8c5a692603446a1bd78a355a6c3ed22";
// A session named in the previous kernel's manifest did not come through the kexec.
inline constexpr const char* luo_session_lost = "7f9395d3fcf448feb445695d16b6b496";

}  // namespace khod::message_id
