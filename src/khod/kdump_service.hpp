// khod's kdump side, wired together: khod.conf and the recipe, the
// khod::Kdump state machine with the backend make_backends() chose, the hotplug event
// source, one sd-event timer armed at the state machine's deadline (never a
// periodic one), and org.kexec.khod1.Kdump on the bus.
#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "bus_kdump.hpp"
#include "job_queue.hpp"
#include "khod/kdump/kdump.hpp"
#include "polkit.hpp"
#include "sd_ptr.hpp"
#include "system_kdump.hpp"  // MonotonicClock
#include "uevent_source.hpp"

namespace khod {

class KdumpService {
public:
    // backend: from make_backends(). test_socket: --uevent-socket; pick: --uevent-source.
    KdumpService(const Sysroot& root, std::unique_ptr<KdumpBackend> backend,
                 std::filesystem::path runtime_dir, std::string test_socket, UeventSource::Pick pick);
    ~KdumpService();
    KdumpService(const KdumpService&) = delete;
    KdumpService& operator=(const KdumpService&) = delete;

    // Reads the config, starts watching, attaches the bus object. Negative
    // errno on failure. Loads, the hotplug ones included, run as jobs.
    // after_live_update: this is the first khod of a boot a live update
    // started; it loads the crash kernel before returning if none is loaded.
    int start(sd_bus* bus, sd_event* event, PolkitAuthorizer* authorizer, JobQueue* jobs,
              bool after_live_update = false);

    // Runs on the loop after the Kdump properties changed (the metrics file follows them).
    void on_change(std::function<void()> listener) { changed_ = std::move(listener); }
    // The state machine, once start() made it.
    const Kdump* kdump() const { return kdump_.get(); }

    // The file the udev drop-ins test: present while khod handles hotplug for kdump.
    std::filesystem::path marker_path() const { return runtime_dir_ / "kdump-hotplug"; }

private:
    void load_after_live_update();
    void rearm();
    void after_timer_or_event();
    // The Reloaded signal and its journal line.
    void announce(const ReloadReport& report);
    // While any job runs, hotplug events wait and the timer is off: the
    // state machine takes one step at a time.
    void hold_hotplug(bool hold);
    static int on_timer(sd_event_source* source, uint64_t usec, void* userdata);

    const Sysroot& root_;
    std::filesystem::path runtime_dir_;
    std::string test_socket_;
    UeventSource::Pick pick_;
    std::unique_ptr<KdumpBackend> backend_;
    MonotonicClock clock_;
    std::unique_ptr<Kdump> kdump_;
    std::unique_ptr<UeventSource> source_;
    std::unique_ptr<KdumpObject> object_;
    JobQueue* jobs_ = nullptr;
    SdEventSourcePtr timer_;
    std::uint64_t logged_confirmations_ = 0;
    std::string logged_error_;
    bool marker_ = false;
    std::function<void()> changed_;
};

}  // namespace khod
