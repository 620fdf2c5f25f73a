#include "bus_handover.hpp"

#include <systemd/sd-journal.h>

#include <cstring>
#include <string>
#include <vector>

#include "log.hpp"

namespace khod {

// Handover takes the flags as they come over the bus (and keeps them in its
// record), so the wire's bits must be the library's.
static_assert(khod1::prepare_reuse_cmdline == prepare_reuse_cmdline);
static_assert(khod1::prepare_keep_cmdline == prepare_keep_cmdline);
static_assert(khod1::exec_force == exec_force);

// The members, in the order of dbus/org.kexec.khod1.Handover.xml.
const sd_bus_vtable HandoverObject::vtable_[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("State", "s", get_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Abi", "s", get_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("TargetKernel", "s", get_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("TargetInitrd", "s", get_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("TargetCmdline", "s", get_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("LastError", "s", get_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("ScratchAreas", "a(usttt)", get_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_METHOD_WITH_ARGS("Prepare", SD_BUS_ARGS("s", kernel, "s", initrd, "s", cmdline, "t", flags),
                            SD_BUS_NO_RESULT, method_prepare, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Finalize", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_finalize,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Abort", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_abort,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Exec", SD_BUS_ARGS("t", flags), SD_BUS_NO_RESULT, method_exec,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_VTABLE_END,
};

HandoverObject::HandoverObject(sd_bus* bus, sd_event* event, Handover* handover)
    : bus_(bus), event_(event), handover_(handover) {
    if (handover_)
        handover_->on_change([this](const std::vector<std::string>& changed) { emit_changed(changed); });
}

int HandoverObject::attach() {
    return add_interface(bus_, slot_, khod1::handover_interface, vtable_, this);
}

void HandoverObject::emit_changed(const std::vector<std::string>& properties) {
    emit_properties_changed(bus_, khod1::handover_interface, properties);
}

int HandoverObject::get_property(sd_bus* /*bus*/, const char* /*path*/, const char* /*interface*/,
                                 const char* property, sd_bus_message* reply, void* userdata,
                                 sd_bus_error* error) {
    auto* self = static_cast<HandoverObject*>(userdata);
    if (!self->handover_) return sd_bus_error_set(error, SD_BUS_ERROR_FAILED, "not serving");
    const Handover& h = *self->handover_;
    std::string_view p = property;
    if (p == "State") return sd_bus_message_append(reply, "s", to_string(h.state()));
    if (p == "Abi") return sd_bus_message_append(reply, "s", to_string(h.abi()));
    if (p == "TargetKernel") return sd_bus_message_append(reply, "s", h.target().kernel.c_str());
    if (p == "TargetInitrd") return sd_bus_message_append(reply, "s", h.target().initrd.c_str());
    if (p == "TargetCmdline") return sd_bus_message_append(reply, "s", h.target().cmdline.c_str());
    if (p == "LastError") return sd_bus_message_append(reply, "s", h.last_error().c_str());
    if (p == "ScratchAreas") {
        int r = sd_bus_message_open_container(reply, 'a', "(usttt)");
        if (r < 0) return r;
        for (const ScratchArea& a : h.scratch_areas()) {
            r = sd_bus_message_append(reply, "(usttt)", a.index, to_string(a.kind),
                                      a.node ? static_cast<std::uint64_t>(*a.node) : UINT64_MAX, a.phys,
                                      a.size);
            if (r < 0) return r;
        }
        return sd_bus_message_close_container(reply);
    }
    return sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_PROPERTY, "no property %s", property);
}

int HandoverObject::reply(sd_bus_message* m, sd_bus_error* error, const Result<void, Failure>& result) {
    if (!result) return reply_failure(m, error, result.error());
    log(LOG_INFO, "%s done, state %s", sd_bus_message_get_member(m), to_string(handover_->state()));
    return sd_bus_reply_method_return(m, "");
}

int HandoverObject::method_prepare(sd_bus_message* m, void* userdata, sd_bus_error* error) {
    auto* self = static_cast<HandoverObject*>(userdata);
    const char* kernel = nullptr;
    const char* initrd = nullptr;
    const char* cmdline = nullptr;
    std::uint64_t flags = 0;
    int r = sd_bus_message_read(m, "ssst", &kernel, &initrd, &cmdline, &flags);
    if (r < 0) return r;
    HandoverTarget target{kernel, initrd, cmdline, flags};
    return self->reply(m, error, self->handover_->prepare(std::move(target)));
}

int HandoverObject::method_finalize(sd_bus_message* m, void* userdata, sd_bus_error* error) {
    auto* self = static_cast<HandoverObject*>(userdata);
    return self->reply(m, error, self->handover_->finalize());
}

int HandoverObject::method_abort(sd_bus_message* m, void* userdata, sd_bus_error* error) {
    auto* self = static_cast<HandoverObject*>(userdata);
    return self->reply(m, error, self->handover_->abort());
}

int HandoverObject::method_exec(sd_bus_message* m, void* userdata, sd_bus_error* error) {
    auto* self = static_cast<HandoverObject*>(userdata);
    std::uint64_t flags = 0;
    int r = sd_bus_message_read(m, "t", &flags);
    if (r < 0) return r;
    auto begun = self->handover_->begin_exec(flags);
    if (!begun) return self->reply(m, error, begun);
    // Answer first: once the reboot syscall runs, nothing will be sent.
    r = sd_bus_reply_method_return(m, "");
    if (r < 0) return r;
    sd_event_source* source = nullptr;
    r = sd_event_add_defer(self->event_, &source, &HandoverObject::on_exec_deferred, self);
    if (r < 0) {
        (void)self->handover_->complete_exec();
        return 1;
    }
    self->exec_source_.reset(source);
    return 1;
}

int HandoverObject::on_exec_deferred(sd_event_source* /*source*/, void* userdata) {
    auto* self = static_cast<HandoverObject*>(userdata);
    sd_event_source_set_enabled(self->exec_source_.get(), SD_EVENT_OFF);
    sd_bus_flush(self->bus_);
    log(LOG_NOTICE, "rebooting into %s", self->handover_->target().kernel.c_str());
    auto r = self->handover_->complete_exec();
    if (!r) log(LOG_ERR, "Exec failed: %s", r.error().describe().c_str());
    return 0;
}

}  // namespace khod
