// khod: the daemon. Serves org.kexec.khod1 on the system bus, with state
// rebuilt from the kernel at every start, from an sd-event loop that also
// feeds systemd's watchdog.
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "backends.hpp"
#include "bus_handover.hpp"
#include "bus_liveupdate.hpp"
#include "bus_object.hpp"
#include "bus_scratch.hpp"
#include "exec_barrier.hpp"
#include "fd_store.hpp"
#include "introspect.hpp"
#include "job_queue.hpp"
#include "journal_events.hpp"
#include "kdump_service.hpp"
#include "khod-config.h"
#include "khod/base/sysroot.hpp"
#include "khod/kho/handover_checks.hpp"
#include "khod/kho/kho_records.hpp"
#include "khod/khod_config.hpp"
#include "khod/luo/luo_sessions.hpp"
#include "khod/status.hpp"
#include "khod1-names.hpp"
#include "log.hpp"
#include "luo_carried.hpp"
#include "metrics_file.hpp"
#include "sd_ptr.hpp"
#include "uevent_source.hpp"

namespace {

struct Options {
    std::string sysroot = "/";
    std::string runtime_dir;
    bool fake_kexec = false;
    std::string uevent_socket;  // tests: hotplug uevents from this socket
    khod::UeventSource::Pick uevent_source = khod::UeventSource::Pick::automatic;
};

const char* yes_no_unknown(const std::optional<bool>& v) {
    if (!v) return "unknown";
    return *v ? "yes" : "no";
}

void log_kernel_state(const khod::Status& s) {
    const std::string release = s.release.value.value_or("?");
    const char* abi = khod::to_string(s.kho.abi);
    const std::size_t areas = s.kho.scratch.value ? s.kho.scratch.value->size() : 0;
    if (khod::journal_available())
        sd_journal_send(
            "MESSAGE=kernel %s: KHO active %s (%s), ABI %s, %zu scratch areas, /dev/liveupdate %s",
            release.c_str(), yes_no_unknown(s.kho.active), s.kho.active_reason.c_str(), abi, areas,
            s.liveupdate.present ? "present" : "absent", "PRIORITY=%i", LOG_INFO, "KHOD_KERNEL_RELEASE=%s",
            release.c_str(), "KHOD_KHO_ABI=%s", abi, "KHOD_KHO_ACTIVE=%s", yes_no_unknown(s.kho.active),
            nullptr);
    else
        khod::log(LOG_INFO, "kernel %s: KHO active %s (%s), ABI %s, %zu scratch areas, /dev/liveupdate %s",
                  release.c_str(), yes_no_unknown(s.kho.active), s.kho.active_reason.c_str(), abi, areas,
                  s.liveupdate.present ? "present" : "absent");
    if (s.kho.debugfs.mounted_now)
        khod::log(LOG_NOTICE, "mounted debugfs at %s", s.kho.debugfs.mountpoint.c_str());
    if (s.kho.debugfs.error) khod::log(LOG_WARNING, "%s", s.kho.debugfs.error->describe().c_str());
}

int fail(const std::string& what, int negative_errno) {
    std::cerr << "khod: " << what << ": " << std::strerror(-negative_errno) << '\n';
    sd_notifyf(0, "STATUS=%s failed: %s\nERRNO=%i", what.c_str(), std::strerror(-negative_errno),
               -negative_errno);
    return 1;
}

void log_luo_recovery(const khod::LuoRecovery& found, bool have_fd_store) {
    for (const std::string& name : found.adopted)
        khod::log(LOG_NOTICE, "took back LUO session %s from the fd store", name.c_str());
    if (found.manifest_found)
        khod::log(LOG_NOTICE, "retrieved the khod manifest from %s: %zu session(s) held for their owners",
                  found.previous_release.c_str(), found.held.size());
    for (const khod::LuoSessionEntry& lost : found.missing)
        khod::log_event(khod::luo_session_lost_event(lost, found.previous_release));
    for (const khod::Error& e : found.problems) khod::log(LOG_WARNING, "%s", e.describe().c_str());
    if (!have_fd_store)
        khod::log(LOG_WARNING,
                  "no service manager fd store (NOTIFY_SOCKET unset): restarting khod would drop the LUO "
                  "sessions it holds");
}

// The release a KHO kexec came from, by the kernel's own kexec-metadata record
// in kho/in: what the restored entry names when no khod manifest came.
std::string kho_previous_release(const khod::Sysroot& root) {
    auto blob = khod::read_file(root.debugfs("kho/in/sub_fdts/kexec-metadata"));
    if (!blob) return {};
    auto metadata = khod::decode_kexec_metadata(*blob, "kho/in/sub_fdts/kexec-metadata");
    return metadata ? metadata->previous_release : std::string();
}

// The first khod of a boot that came through a live update says so once:
// a restart in the same boot finds its marker in the runtime directory
// (which systemd keeps across restarts and a reboot empties).
// Returns whether this is that first khod.
bool announce_restored(const khod::Sysroot& root, const std::string& runtime_dir, const khod::Status& status,
                       const khod::LuoRecovery& found) {
    if (!status.kho.incoming && !found.manifest_found) return false;
    const std::filesystem::path marker = std::filesystem::path(runtime_dir) / "live-update-restored";
    std::error_code ec;
    if (std::filesystem::exists(marker, ec)) return false;
    std::filesystem::create_directories(runtime_dir, ec);
    std::ofstream(marker) << "this boot's live update was announced in the journal\n";
    khod::LuoRecovery described = found;
    if (described.previous_release.empty() && status.kho.incoming)
        described.previous_release = kho_previous_release(root);
    khod::log_event(
        khod::live_update_restored_event(status.release.value.value_or(""), status.kho.incoming, described));
    return true;
}

std::string runtime_directory(const Options& options) {
    if (!options.runtime_dir.empty()) return options.runtime_dir;
    const char* env = std::getenv("RUNTIME_DIRECTORY");  // set by systemd's RuntimeDirectory=
    return env && *env ? env : "/run/khod";
}

// MetricsFile=: written now, then after every change of what it shows. No
// path, no file (and no listeners).
void start_metrics_file(std::optional<khod::MetricsFile>& metrics, const std::string& path,
                        khod::KdumpService& kdump, khod::LiveUpdateObject& liveupdate) {
    if (path.empty()) return;
    metrics.emplace(path, [&kdump, &liveupdate] { return khod::gather_metrics(kdump.kdump(), liveupdate); });
    kdump.on_change([&metrics] { metrics->update(); });
    liveupdate.on_change([&metrics] { metrics->update(); });
    metrics->update();
}

// khod.conf for the parts read here ([LiveUpdate], [Metrics], the native
// loader's settings); the kdump side reads and reports it on its own.
khod::KhodConfig khod_config(const khod::Sysroot& root) {
    auto config = khod::load_khod_config(root);
    if (config) return *config;
    khod::log(LOG_WARNING, "%s; [LiveUpdate] and [Metrics] defaults apply",
              config.error().describe().c_str());
    return {};
}

// SIGTERM/SIGINT end the loop cleanly (sd-event needs them blocked first);
// WATCHDOG=1 at half of WatchdogSec= when systemd asks for it.
int add_signals_and_watchdog(sd_event* event) {
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    int r = 0;
    for (int sig : {SIGTERM, SIGINT})
        if ((r = sd_event_add_signal(event, nullptr, sig, nullptr, nullptr)) < 0)
            return fail("sd_event_add_signal", r);
    if ((r = sd_event_set_watchdog(event, 1)) < 0) return fail("sd_event_set_watchdog", r);
    return 0;
}

khod::HandoverHooks daemon_handover_hooks(const khod::LuoSessions& sessions) {
    khod::HandoverHooks hooks = khod::standard_handover_hooks();
    // Decompressing the target is the slow part of Prepare: the loop answers meanwhile.
    hooks.target_compat = [check = std::move(hooks.target_compat)](const khod::Sysroot& shared,
                                                                   const khod::HandoverTarget& target,
                                                                   const khod::CarriedState& carried) {
        // Copied while the lock is held: the loop may look at debugfs again meanwhile.
        const khod::Sysroot view = shared;  // NOLINT(performance-unnecessary-copy-initialization)
        khod::Unlocked unlocked;
        return check(view, target, carried);
    };
    // The target check must know what a wrong kernel would drop.
    hooks.carried = [&sessions] {
        return khod::CarriedState{sessions.outgoing().size(), sessions.outgoing_bytes(),
                                  !sessions.outgoing().empty()};
    };
    return hooks;
}

int run(const Options& options) {
    // The loop thread's, but while it waits for events (job_queue.hpp).
    std::lock_guard<std::mutex> state(khod::state_lock());
    khod::Sysroot root(options.sysroot);
    const khod::KhodConfig config = khod_config(root);
    auto stored = khod::take_stored_fds();
    // /proc/kcore as systemd opened it (OpenFile=): the native crash loader's
    // elfcorehdr needs its program headers, which the sandbox hides.
    khod::UniqueFd kcore = khod::take_named_fd(stored, "kcore");
    auto backends = khod::make_backends(root, options.fake_kexec, config.kdump.native, kcore.get());
    if (!backends) {
        std::cerr << "khod: " << backends.error().describe() << '\n';
        return 1;
    }

    sd_event* raw_event = nullptr;
    int r = sd_event_default(&raw_event);
    if (r < 0) return fail("sd_event_default", r);
    khod::SdEventPtr event(raw_event);
    if ((r = add_signals_and_watchdog(event.get())) < 0) return r;

    khod::Status status = khod::probe_status(root, khod::StatusOptions{});
    log_kernel_state(status);

    const std::string runtime_dir = runtime_directory(options);
    khod::SystemdFdStore fd_store;
    // After a kexec systemd drove, the previous kernel's sessions come back in the fd store.
    khod::CarriedLuo luo(*backends->luo, fd_store);
    for (const std::string& note : luo.take_carried(stored)) khod::log(LOG_NOTICE, "%s", note.c_str());
    khod::LuoSessions sessions(luo, fd_store, status.release.value.value_or(""));
    const khod::LuoRecovery found = sessions.restore(std::move(stored));
    for (const std::string& name : luo.release_unclaimed())
        khod::log(LOG_WARNING,
                  "LUO session %s came through the kexec in khod's fd store, but no khod manifest named it "
                  "(the kexec did not go through khoctl exec, or the session was made after its manifest): "
                  "released, its memory is freed",
                  name.c_str());
    log_luo_recovery(found, fd_store.available());
    const bool first_after_live_update = announce_restored(root, runtime_dir, status, found);
    // Before the objects it reads, so it outlives their listeners.
    std::optional<khod::MetricsFile> metrics;

    khod::Handover handover(root, *backends->kexec, runtime_dir, daemon_handover_hooks(sessions));
    handover.recover();
    khod::log(LOG_INFO, "handover state %s (rebuilt from the kernel and %s)",
              khod::to_string(handover.state()), handover.record_path().c_str());

    if ((r = khod::register_bus_errors()) < 0) return fail("registering the khod1 error names", r);
    sd_bus* raw_bus = nullptr;
    // DBUS_SYSTEM_BUS_ADDRESS points tests at a private bus.
    if ((r = sd_bus_open_system(&raw_bus)) < 0) return fail("connecting to the system bus", r);
    khod::SdBusPtr bus(raw_bus);
    khod::PolkitAuthorizer authorizer(bus.get());
    khod::JobQueue jobs(event.get());
    if ((r = jobs.start()) < 0) return fail("setting up the job queue", r);
    khod::HandoverObject handover_object(bus.get(), event.get(), &handover, &authorizer, &jobs);
    if ((r = handover_object.attach()) < 0)
        return fail(std::string("adding ") + khod1::handover_interface, r);
    khod::ExecBarrier barrier(event.get());
    khod::LiveUpdateObject liveupdate_object(bus.get(), event.get(), &root, &sessions, &barrier,
                                             config.liveupdate, &authorizer);
    if ((r = liveupdate_object.attach()) < 0)
        return fail(std::string("adding ") + khod1::liveupdate_interface, r);
    liveupdate_object.carry_through_systemd([&bus] { return khod::systemd_carries_fd_store(bus.get()); },
                                            &luo);
    handover_object.set_exec_gate(&liveupdate_object);
    khod::ScratchObject scratch_object(bus.get(), &root);
    if ((r = scratch_object.attach()) < 0) return fail(std::string("adding ") + khod1::scratch_interface, r);
    khod::KdumpService kdump(root, std::move(backends->kdump), runtime_dir, options.uevent_socket,
                             options.uevent_source);
    if ((r = kdump.start(bus.get(), event.get(), &authorizer, &jobs, first_after_live_update)) < 0)
        return fail(std::string("adding ") + khod1::kdump_interface, r);
    if ((r = sd_bus_attach_event(bus.get(), event.get(), SD_EVENT_PRIORITY_NORMAL)) < 0)
        return fail("attaching the bus to the event loop", r);
    if ((r = sd_bus_request_name(bus.get(), khod1::bus_name, 0)) < 0)
        return fail(std::string("taking the bus name ") + khod1::bus_name, r);

    // Nothing is answered before the loop runs: ready from here, and the
    // metrics file (with the khod-ready phase) is there once READY=1 is.
    liveupdate_object.mark_ready();
    start_metrics_file(metrics, config.metrics.file, kdump, liveupdate_object);
    sd_notifyf(0, "READY=1\nSTATUS=handover %s, KHO ABI %s", khod::to_string(handover.state()),
               khod::to_string(handover.abi()));
    r = khod::run_event_loop(event.get());
    jobs.stop();
    sd_notify(0, "STOPPING=1");
    if (r < 0) return fail("event loop", r);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"khod - kexec handover and kdump daemon"};
    app.set_version_flag("--version", std::string("khod ") + KHOD_VERSION);
    Options options;
    bool introspect = false;
    app.add_option("--sysroot", options.sysroot, "Read kernel files under DIR instead of /")
        ->type_name("DIR");
    app.add_option("--runtime-dir", options.runtime_dir,
                   "Where the staged target is recorded (default $RUNTIME_DIRECTORY, else /run/khod)")
        ->type_name("DIR");
    app.add_flag("--fake-kexec", options.fake_kexec,
                 khod::have_test_backends()
                     ? "Tests only: simulate kexec loads in the --sysroot tree instead of making syscalls"
                     : "Tests only; this build has no test backends and refuses it");
    std::string uevent_source = "auto";
    app.add_option(
           "--uevent-source", uevent_source,
           "Where hotplug events come from: auto (udev's monitor while udevd runs, else the kernel's), "
           "kernel (the only one heard in a private network namespace) or udev")
        ->check(CLI::IsMember({"auto", "kernel", "udev"}))
        ->type_name("SOURCE");
    app.add_option("--uevent-socket", options.uevent_socket,
                   "Tests only: read hotplug uevents (kernel format) from this datagram socket")
        ->type_name("PATH");
    app.add_flag("--bus-introspect", introspect, "Print the D-Bus interfaces this build exports, then exit");
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    }
    if (uevent_source == "kernel") options.uevent_source = khod::UeventSource::Pick::kernel;
    if (uevent_source == "udev") options.uevent_source = khod::UeventSource::Pick::udev;
    if (introspect) {
        auto xml = khod::introspect_exported_objects();
        if (!xml) {
            std::cerr << "khod: " << xml.error().describe() << '\n';
            return 1;
        }
        std::cout << *xml;
        return 0;
    }
    return run(options);
}
