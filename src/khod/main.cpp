// khod: the daemon. For now it detects the kernel's KHO, live update and
// kdump state at start, logs it to the journal, tells systemd it is ready and
// keeps the watchdog fed from its sd-event loop until asked to stop.
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <systemd/sd-journal.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstring>
#include <iostream>
#include <string>

#include "khod-config.h"
#include "khod/status.hpp"
#include "khod/sysroot.hpp"
#include "sd_ptr.hpp"

namespace {

const char* yes_no_unknown(const std::optional<bool>& v) {
    if (!v) return "unknown";
    return *v ? "yes" : "no";
}

void log_kernel_state(const khod::Status& s) {
    const std::string release = s.release.value.value_or("?");
    const char* abi = khod::to_string(s.kho.abi);
    const std::size_t areas = s.kho.scratch.value ? s.kho.scratch.value->size() : 0;
    sd_journal_send("MESSAGE=kernel %s: KHO active %s (%s), ABI %s, %zu scratch areas, /dev/liveupdate %s",
                    release.c_str(), yes_no_unknown(s.kho.active), s.kho.active_reason.c_str(), abi, areas,
                    s.liveupdate.present ? "present" : "absent", "PRIORITY=%i", LOG_INFO,
                    "KHOD_KERNEL_RELEASE=%s", release.c_str(), "KHOD_KHO_ABI=%s", abi, "KHOD_KHO_ACTIVE=%s",
                    yes_no_unknown(s.kho.active), nullptr);
    if (s.kho.debugfs.mounted_now)
        sd_journal_send("MESSAGE=mounted debugfs at %s", s.kho.debugfs.mountpoint.c_str(), "PRIORITY=%i",
                        LOG_NOTICE, nullptr);
    if (s.kho.debugfs.error)
        sd_journal_send("MESSAGE=%s", s.kho.debugfs.error->describe().c_str(), "PRIORITY=%i", LOG_WARNING,
                        nullptr);
}

int run(const std::string& sysroot) {
    sd_event* raw = nullptr;
    int r = sd_event_default(&raw);
    if (r < 0) {
        std::cerr << "khod: sd_event_default: " << std::strerror(-r) << '\n';
        return 1;
    }
    khod::SdEventPtr event(raw);

    // SIGTERM/SIGINT end the loop cleanly; sd-event needs them blocked first.
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    for (int sig : {SIGTERM, SIGINT}) {
        r = sd_event_add_signal(event.get(), nullptr, sig, nullptr, nullptr);
        if (r < 0) {
            std::cerr << "khod: sd_event_add_signal: " << std::strerror(-r) << '\n';
            return 1;
        }
    }
    // Pings WATCHDOG=1 at half of WatchdogSec= when systemd asks for it.
    r = sd_event_set_watchdog(event.get(), 1);
    if (r < 0) std::cerr << "khod: sd_event_set_watchdog: " << std::strerror(-r) << '\n';

    khod::Sysroot root(sysroot);
    khod::Status status = khod::probe_status(root, khod::StatusOptions{});
    log_kernel_state(status);

    std::string ready = "READY=1\nSTATUS=KHO " + std::string(yes_no_unknown(status.kho.active)) + ", ABI " +
                        khod::to_string(status.kho.abi);
    sd_notify(0, ready.c_str());
    r = sd_event_loop(event.get());
    sd_notify(0, "STOPPING=1");
    if (r < 0) {
        std::cerr << "khod: event loop: " << std::strerror(-r) << '\n';
        return 1;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"khod - kexec handover and kdump daemon"};
    app.set_version_flag("--version", std::string("khod ") + KHOD_VERSION);
    std::string sysroot = "/";
    app.add_option("--sysroot", sysroot, "Read kernel files under DIR instead of /")->type_name("DIR");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    return run(sysroot);
}
