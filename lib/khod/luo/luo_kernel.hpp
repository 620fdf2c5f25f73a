// The Live Update Orchestrator's ioctls (include/uapi/linux/liveupdate.h) as
// an interface, so the session broker runs against the kernel in khod and
// against a simulation in tests. /dev/liveupdate is exclusive and systemd
// opens it too (in systemd-shutdown): an implementation opens the device for
// one ioctl and closes it again, never holding it.
#pragma once

#include <cstdint>
#include <string>

#include "khod/base/fd.hpp"
#include "khod/base/result.hpp"

namespace khod {

// The longest session name the kernel takes (u8 name[64], NUL included).
inline constexpr std::size_t luo_max_session_name = 63;

class LuoKernel {
public:
    virtual ~LuoKernel() = default;
    // LIVEUPDATE_IOCTL_CREATE_SESSION: a new outgoing session; it lives as
    // long as the returned fd does. Errors carry the kernel's errno.
    virtual Result<UniqueFd> create_session(const std::string& name) = 0;
    // LIVEUPDATE_IOCTL_RETRIEVE_SESSION: an incoming session, once per boot.
    virtual Result<UniqueFd> retrieve_session(const std::string& name) = 0;
    // On a session fd: LIVEUPDATE_SESSION_PRESERVE_FD / RETRIEVE_FD / FINISH / GET_NAME.
    virtual Result<void> preserve_fd(int session_fd, std::uint64_t token, int fd) = 0;
    virtual Result<UniqueFd> retrieve_fd(int session_fd, std::uint64_t token) = 0;
    virtual Result<void> finish(int session_fd) = 0;
    virtual Result<std::string> session_name(int session_fd) = 0;
};

}  // namespace khod
