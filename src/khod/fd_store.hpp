// The service manager's fd store as the LUO broker's LuoFdStore: session
// fds sent with FDSTORE=1 survive a khod restart and come back at start
// through sd_listen_fds_with_names(). Without NOTIFY_SOCKET there is no
// store, and a restart would drop every session khod holds.
#pragma once

#include <systemd/sd-bus.h>

#include <string>
#include <utility>
#include <vector>

#include "khod/base/fd.hpp"
#include "khod/base/result.hpp"
#include "khod/luo/luo_sessions.hpp"

namespace khod {

class SystemdFdStore : public LuoFdStore {
public:
    bool store(const std::string& fdname, int fd) override;
    void remove(const std::string& fdname) override;
    bool available() const override;
};

// The fds systemd (or a stand-in) passed at start, with their FDNAME=s; unsets
// the LISTEN_* variables so no child inherits them.
std::vector<std::pair<std::string, UniqueFd>> take_stored_fds();

// The fd named `name` among them, taken out (invalid when there is none):
// khod.service's OpenFile= fds are passed the same way as the fd store's.
UniqueFd take_named_fd(std::vector<std::pair<std::string, UniqueFd>>& fds, const std::string& name);

// Whether systemd keeps khod's fd store, and the LUO sessions in it, open
// through a kexec it drives (kexec.target): systemd 261 or later as PID 1 and
// FileDescriptorStorePreserve=yes (or on-success) on khod's own unit; PID 1
// serializes only such stores (src/core/luo.c). The value says so in words,
// the error why not.
Result<std::string> systemd_carries_fd_store(sd_bus* bus);

}  // namespace khod
