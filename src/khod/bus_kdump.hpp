// org.kexec.khod1.Kdump on /org/kexec/khod1: a thin sd-bus shell over
// khod::Kdump. The members are defined in dbus/org.kexec.khod1.Kdump.xml.
#pragma once

#include <systemd/sd-bus.h>

#include <functional>
#include <string>

#include "job_queue.hpp"
#include "khod/kdump/kdump.hpp"
#include "polkit.hpp"
#include "sd_ptr.hpp"

namespace khod {

class KdumpObject {
public:
    // kdump may be null only for --bus-introspect, where no member is called.
    // after_call runs after every method (khod re-arms its timer there).
    // jobs runs Load, Unload and Reload in turn, off the loop.
    // default_loader: what Load uses when its flags name no loader (khod.conf Loader=).
    KdumpObject(sd_bus* bus, Kdump* kdump, std::string event_source, CrashLoader default_loader,
                std::function<void()> after_call, PolkitAuthorizer* authorizer, JobQueue* jobs);
    KdumpObject(const KdumpObject&) = delete;
    KdumpObject& operator=(const KdumpObject&) = delete;

    int attach();
    // Sends the Reloaded signal.
    void emit_reloaded(const ReloadReport& report);
    void emit_changed(const std::vector<std::string>& properties);
    bool serving() const { return kdump_ != nullptr; }

private:
    struct Properties;  // one getter per property (bus_kdump.cpp)
    static const sd_bus_vtable vtable_[];

    static int method_load(sd_bus_message* m, void* userdata, sd_bus_error* error);
    static int method_unload(sd_bus_message* m, void* userdata, sd_bus_error* error);
    static int method_reload(sd_bus_message* m, void* userdata, sd_bus_error* error);
    int reply(sd_bus_message* m, sd_bus_error* error, const Result<void, Failure>& result);
    // Runs op as a job and answers m with its outcome.
    int run(sd_bus_message* m, sd_bus_error* error, std::function<Result<void, Failure>()> op);
    // A monotonic clock time as CLOCK_REALTIME microseconds.
    Usec to_realtime(Usec monotonic) const;

    sd_bus* bus_;
    Kdump* kdump_;
    std::string event_source_;
    CrashLoader default_loader_;
    std::function<void()> after_call_;
    PolkitAuthorizer* authorizer_;
    JobQueue* jobs_;
    SdBusSlotPtr slot_;
};

}  // namespace khod
