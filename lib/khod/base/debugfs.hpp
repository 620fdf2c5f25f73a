// Finding debugfs, and mounting it when it is not mounted yet. KHO's state
// lives only in debugfs (kho/out, kho/in).
#pragma once

#include <optional>
#include <string>

#include "khod/base/result.hpp"
#include "khod/base/sysroot.hpp"

namespace khod {

struct DebugfsState {
    bool mounted = false;        // debugfs is reachable at mountpoint
    bool mounted_now = false;    // and it was this call that mounted it
    std::string mountpoint;      // kernel path
    std::optional<Error> error;  // why debugfs is not reachable
};

// Looks for debugfs in /proc/self/mounts and points the sysroot at it. When it
// is not mounted and may_mount is set on a live sysroot, mounts it at the
// default mountpoint. Never mounts into a fixture tree.
DebugfsState ensure_debugfs(Sysroot& root, bool may_mount);

// The mountpoint of the first debugfs in a /proc/self/mounts text, unescaped.
std::optional<std::string> find_debugfs_mount(const std::string& mounts);

}  // namespace khod
