#include "fd_store.hpp"

#include <systemd/sd-daemon.h>

#include <cstdlib>
#include <cstring>

#include "log.hpp"

namespace khod {

bool SystemdFdStore::store(const std::string& fdname, int fd) {
    const std::string message = "FDSTORE=1\nFDNAME=" + fdname;
    int r = sd_pid_notify_with_fds(0, 0, message.c_str(), &fd, 1);
    if (r < 0) log(LOG_WARNING, "Failed to put %s in the fd store: %s", fdname.c_str(), std::strerror(-r));
    return r > 0;
}

void SystemdFdStore::remove(const std::string& fdname) {
    const std::string message = "FDSTOREREMOVE=1\nFDNAME=" + fdname;
    int r = sd_notify(0, message.c_str());
    if (r < 0)
        log(LOG_WARNING, "Failed to remove %s from the fd store: %s", fdname.c_str(), std::strerror(-r));
}

bool SystemdFdStore::available() const {
    const char* socket = std::getenv("NOTIFY_SOCKET");
    return socket && *socket;
}

std::vector<std::pair<std::string, UniqueFd>> take_stored_fds() {
    char** names = nullptr;
    const int n = sd_listen_fds_with_names(1, &names);
    std::vector<std::pair<std::string, UniqueFd>> fds;
    if (n < 0) {
        log(LOG_WARNING, "Failed to read the fds passed at start: %s", std::strerror(-n));
        return fds;
    }
    for (int i = 0; i < n; ++i) {
        const char* name = names && names[i] ? names[i] : "unknown";
        fds.emplace_back(name, UniqueFd(SD_LISTEN_FDS_START + i));
    }
    if (names) {
        for (int i = 0; i < n; ++i) std::free(names[i]);
        std::free(static_cast<void*>(names));
    }
    return fds;
}

UniqueFd take_named_fd(std::vector<std::pair<std::string, UniqueFd>>& fds, const std::string& name) {
    for (auto it = fds.begin(); it != fds.end(); ++it) {
        if (it->first != name) continue;
        UniqueFd fd = std::move(it->second);
        fds.erase(it);
        return fd;
    }
    return UniqueFd();
}

}  // namespace khod
