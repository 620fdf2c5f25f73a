#include "fd_store.hpp"

#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "log.hpp"
#include "sd_ptr.hpp"

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

namespace {

// The first systemd whose PID 1 hands preserved fd stores, LUO session fds
// among them, to systemd-shutdown and gives them back after the kexec (NEWS).
constexpr int systemd_luo_version = 261;

constexpr const char* systemd1 = "org.freedesktop.systemd1";

Result<std::string> string_property(sd_bus* bus, const char* path, const char* interface, const char* name) {
    SdBusError error;
    char* raw = nullptr;
    int r = sd_bus_get_property_string(bus, systemd1, path, interface, name, error.get(), &raw);
    if (r < 0)
        return errno_error(-r, std::string(interface) + "." + name,
                           error.message() ? error.message() : "reading systemd's property");
    std::string value(raw);
    std::free(raw);
    return value;
}

}  // namespace

Result<std::string> systemd_carries_fd_store(sd_bus* bus) {
    if (sd_booted() <= 0) return plain_error("", "systemd is not PID 1");
    SystemdFdStore store;
    if (!store.available()) return plain_error("", "khod has no fd store (NOTIFY_SOCKET unset)");
    auto version =
        string_property(bus, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "Version");
    if (!version) return version.error();
    // "262", "262.1-1", "v262-rc1": the major number leads.
    const std::size_t digits = version->find_first_of("0123456789");
    const int major = digits == std::string::npos ? 0 : std::atoi(version->c_str() + digits);
    if (major < systemd_luo_version)
        return plain_error("", "systemd " + *version + " does not carry fd stores through a kexec (" +
                                   std::to_string(systemd_luo_version) + " does)");
    SdBusError error;
    sd_bus_message* raw = nullptr;
    int r =
        sd_bus_call_method(bus, systemd1, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager",
                           "GetUnitByPID", error.get(), &raw, "u", static_cast<std::uint32_t>(::getpid()));
    if (r < 0)
        return errno_error(-r, "GetUnitByPID",
                           error.message() ? error.message() : "asking systemd for khod's unit");
    SdBusMessagePtr reply(raw);
    const char* unit = nullptr;
    if ((r = sd_bus_message_read(reply.get(), "o", &unit)) < 0)
        return errno_error(-r, "GetUnitByPID", "reply");
    auto preserve =
        string_property(bus, unit, "org.freedesktop.systemd1.Service", "FileDescriptorStorePreserve");
    if (!preserve) return preserve.error();
    if (*preserve != "yes" && *preserve != "on-success")
        return plain_error("", "khod's unit has FileDescriptorStorePreserve=" + *preserve +
                                   ", so systemd releases its fd store when khod stops");
    return "systemd " + *version +
           " keeps khod's fd store through kexec.target (FileDescriptorStorePreserve=" + *preserve + ")";
}

}  // namespace khod
