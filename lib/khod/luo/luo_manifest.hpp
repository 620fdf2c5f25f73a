// khod's manifest: which sessions khod holds, for whom, with which tokens.
// It travels through the kexec inside LUO itself (session "khod", token 0, a
// sealed memfd) and, in the same format, sits in the service manager's fd
// store beside the session fds so a restarted khod knows their owners.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "khod/base/result.hpp"

namespace khod {

inline constexpr int luo_manifest_format = 1;
inline constexpr const char* luo_manifest_session = "khod";
inline constexpr std::uint64_t luo_manifest_token = 0;
// Bounds decode_manifest() holds a manifest to (beyond LuoSessions' own caps,
// so a manifest khod wrote always decodes): bytes, sessions, files per session.
inline constexpr std::size_t luo_manifest_max_bytes = 32U << 20;
inline constexpr std::size_t luo_manifest_max_sessions = 1024;
inline constexpr std::size_t luo_manifest_max_files = 4096;

struct LuoOwner {
    uid_t uid = 0;
    std::string unit;  // the caller's systemd unit where known, else empty
};

struct LuoFileEntry {
    std::uint64_t token = 0;
    std::uint64_t size = 0;   // bytes, frozen at preserve
    std::uint32_t seals = 0;  // F_GET_SEALS at preserve
    bool retrieved = false;   // incoming: handed to the owner at least once
};

struct LuoSessionEntry {
    std::string name;
    LuoOwner owner;
    std::vector<LuoFileEntry> files;
    bool incoming = false;  // from the previous kernel (luo-state lists both directions)
};

// Times of the live update's phases, microseconds of CLOCK_REALTIME (the one
// clock both kernels share); 0 where not reached.
struct LuoPhases {
    std::uint64_t exec_requested = 0;
    std::uint64_t inhibitors_released = 0;
    std::uint64_t reboot_syscall = 0;
};

struct LuoManifest {
    int format = luo_manifest_format;
    std::string release;  // uname -r of the kernel that wrote it
    LuoPhases phases;
    std::vector<LuoSessionEntry> sessions;
};

std::string encode_manifest(const LuoManifest& manifest);
// Strict: a wrong type, a missing field or a format newer than this khod is
// an error naming the field; never throws.
Result<LuoManifest> decode_manifest(std::string_view json);

}  // namespace khod
