// org.kexec.khod1.Handover on /org/kexec/khod1: a thin sd-bus shell over
// khod::Handover. The members are defined in dbus/org.kexec.khod1.Handover.xml.
#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "bus_liveupdate.hpp"
#include "bus_object.hpp"
#include "job_queue.hpp"
#include "khod/kho/handover.hpp"
#include "polkit.hpp"
#include "sd_ptr.hpp"

namespace khod {

class HandoverObject {
public:
    // handover may be null only for --bus-introspect, where no member is called.
    // jobs runs the methods that change the kernel's kexec state, in turn.
    HandoverObject(sd_bus* bus, sd_event* event, Handover* handover, PolkitAuthorizer* authorizer,
                   JobQueue* jobs);
    HandoverObject(const HandoverObject&) = delete;
    HandoverObject& operator=(const HandoverObject&) = delete;

    // Adds the vtable to the bus; negative errno on failure.
    int attach();
    bool serving() const { return handover_ != nullptr; }
    // Exec passes through LiveUpdate's checks, barrier and manifest.
    void set_exec_gate(LiveUpdateObject* gate) { gate_ = gate; }

private:
    struct Properties;  // one getter per property (bus_handover.cpp)
    static const sd_bus_vtable vtable_[];

    static int method_prepare(sd_bus_message* m, void* userdata, sd_bus_error* error);
    static int method_finalize(sd_bus_message* m, void* userdata, sd_bus_error* error);
    static int method_abort(sd_bus_message* m, void* userdata, sd_bus_error* error);
    static int method_exec(sd_bus_message* m, void* userdata, sd_bus_error* error);
    // Exec once the calls before it are answered: the gate, then the reply, then the reboot.
    int start_exec(sd_bus_message* m, sd_bus_error* error, std::uint64_t flags);
    static int on_exec_deferred(sd_event_source* source, void* userdata);
    void reboot_now(const Result<void, Failure>& ready);

    int reply(sd_bus_message* m, sd_bus_error* error, const Result<void, Failure>& result);
    // The target's release for the journal: read at Finalize and kept, so the
    // exec does not read the bzImage again on its way to the reboot.
    const std::string& target_release(bool reread);
    void emit_changed(const std::vector<std::string>& properties);

    sd_bus* bus_;
    sd_event* event_;
    Handover* handover_;
    PolkitAuthorizer* authorizer_;
    JobQueue* jobs_;
    LiveUpdateObject* gate_ = nullptr;
    std::uint64_t exec_request_flags_ = 0;  // as the caller sent them, for the gate's second look
    SdBusSlotPtr slot_;
    SdEventSourcePtr exec_source_;
    std::string release_kernel_, release_;  // target_release()'s cache: the bzImage path, its release
};

}  // namespace khod
