// LUO sessions that systemd carried through a kexec for khod.
//
// With FileDescriptorStorePreserve=yes, systemd (261 and later) keeps
// khod.service's fd store after khod stops for kexec.target, hands every
// LUO session fd in it to systemd-shutdown, which holds them open until
// reboot(LINUX_REBOOT_CMD_KEXEC), and in the next boot PID 1 retrieves each
// of those sessions by name and puts it back in khod's fd store under its
// old FDNAME (systemd's src/core/luo.c, src/shared/luo-util.c). So khod
// finds the previous kernel's sessions, its manifest session among them, as
// "luo-out-<name>" and "luo-manifest" entries that are incoming sessions
// now, and the kernel refuses to retrieve them by name a second time
// (EINVAL). CarriedLuo is the kernel as the broker (LuoSessions) sees it
// then: a retrieve by name is answered with the carried fd first.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "khod/base/fd.hpp"
#include "khod/luo/luo_kernel.hpp"
#include "khod/luo/luo_sessions.hpp"

namespace khod {

class CarriedLuo : public LuoKernel {
public:
    // Where khod keeps its manifest session while systemd takes the system
    // down, so the session outlives khod.
    static constexpr const char* manifest_fdname = "luo-manifest";

    CarriedLuo(LuoKernel& kernel, LuoFdStore& store) : kernel_(kernel), store_(store) {}

    // Takes what systemd carried out of the fds khod got at start (the rest
    // goes to LuoSessions::restore()); drops a manifest session left in the
    // store by an exec that did not happen. Returns what it did, for the log.
    std::vector<std::string> take_carried(std::vector<std::pair<std::string, UniqueFd>>& stored);
    // Carried sessions no manifest named (a kexec khod did not drive, or a
    // session made after the manifest): released, each named for the log.
    std::vector<std::string> release_unclaimed();
    // The exec did not happen: the manifest session leaves the fd store.
    void forget_manifest();

    // The manifest session also goes to the fd store (manifest_fdname).
    Result<UniqueFd> create_session(const std::string& name) override;
    // A carried session first, then the kernel.
    Result<UniqueFd> retrieve_session(const std::string& name) override;
    Result<void> preserve_fd(int session_fd, std::uint64_t token, int fd) override {
        return kernel_.preserve_fd(session_fd, token, fd);
    }
    Result<UniqueFd> retrieve_fd(int session_fd, std::uint64_t token) override {
        return kernel_.retrieve_fd(session_fd, token);
    }
    Result<void> finish(int session_fd) override { return kernel_.finish(session_fd); }
    Result<std::string> session_name(int session_fd) override { return kernel_.session_name(session_fd); }

private:
    struct Carried {
        std::string fdname;  // its entry in the fd store
        UniqueFd fd;
    };
    // Whether a session fd is an incoming (retrieved) one: the kernel takes
    // PRESERVE_FD only on outgoing sessions and says EINVAL on the others
    // before it looks at the fd; an outgoing one says EBADF (or EEXIST) for
    // fd -1 and is left as it was.
    bool is_incoming(int session_fd);

    LuoKernel& kernel_;
    LuoFdStore& store_;
    std::map<std::string, Carried> carried_;  // by session name
};

}  // namespace khod
