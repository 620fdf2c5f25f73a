#include "khod/base/debugfs.hpp"

#include <sys/mount.h>

#include <sstream>

namespace khod {

namespace {

// /proc/self/mounts escapes space, tab, newline and backslash as \ooo.
std::string unescape_mount_field(const std::string& s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 3 < s.size()) {
            int v = 0;
            bool octal = true;
            for (std::size_t j = 1; j <= 3; ++j) {
                char c = s[i + j];
                if (c < '0' || c > '7') octal = false;
                v = v * 8 + (c - '0');
            }
            if (octal) {
                out += static_cast<char>(v);
                i += 3;
                continue;
            }
        }
        out += s[i];
    }
    return out;
}

}  // namespace

std::optional<std::string> find_debugfs_mount(const std::string& mounts) {
    std::istringstream in(mounts);
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream fields(line);
        std::string source, target, type;
        if (!(fields >> source >> target >> type)) continue;
        if (type == "debugfs") return unescape_mount_field(target);
    }
    return std::nullopt;
}

DebugfsState ensure_debugfs(Sysroot& root, bool may_mount) {
    DebugfsState state;
    KernelPath mounts_path = root.proc("self/mounts");
    auto mounts = read_file(mounts_path);
    if (mounts) {
        if (auto target = find_debugfs_mount(*mounts)) {
            root.set_debugfs_mountpoint(*target);
            state.mounted = true;
            state.mountpoint = *target;
            return state;
        }
    }
    root.set_debugfs_mountpoint(std::string(Sysroot::default_debugfs_mountpoint));
    state.mountpoint = root.debugfs_mountpoint();
    if (!mounts) {
        state.error = mounts.error();
        return state;
    }
    if (!root.is_live()) {
        state.error =
            plain_error(mounts_path.host.string(),
                        "debugfs is not mounted in this sysroot (khod mounts only on the live system)");
        return state;
    }
    if (!may_mount) {
        state.error = plain_error(state.mountpoint, "debugfs is not mounted");
        return state;
    }
    KernelPath target = root.debugfs("");
    if (::mount("debugfs", target.host.c_str(), "debugfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
        state.error = errno_error(errno, target.host.string(), "cannot mount debugfs");
        return state;
    }
    state.mounted = true;
    state.mounted_now = true;
    return state;
}

}  // namespace khod
