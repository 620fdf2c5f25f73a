#include "bus_kdump.hpp"

#include <cstring>
#include <string_view>

#include "bus_object.hpp"
#include "khod/base/hex.hpp"
#include "log.hpp"
#include "system_kdump.hpp"

namespace khod {

// The members, in the order of dbus/org.kexec.khod1.Kdump.xml.
const sd_bus_vtable KdumpObject::vtable_[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("Loaded", "b", get_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Managed", "b", get_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("InPlaceUpdate", "(ss)", get_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("EventSource", "s", get_property, 0, SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("EventsSeen", "t", get_property, 0, 0),
    SD_BUS_PROPERTY("LastEventUsec", "t", get_property, 0, 0),
    SD_BUS_PROPERTY("Pending", "b", get_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Reloads", "t", get_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("LastReloadUsec", "t", get_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("UnloadedWindowUsecTotal", "t", get_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("UnloadedWindows", "a(ttbs)", get_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Recipe", "(ssss)", get_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("LastError", "s", get_property, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_METHOD_WITH_ARGS("Load", SD_BUS_ARGS("s", kernel, "s", initrd, "s", cmdline, "t", flags),
                            SD_BUS_NO_RESULT, method_load, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Unload", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_unload,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Reload", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_reload,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_SIGNAL_WITH_ARGS(
        "Reloaded",
        SD_BUS_ARGS("s", cause, "t", events, "t", duration_usec, "t", unloaded_usec, "b", ok, "s", error), 0),
    SD_BUS_VTABLE_END,
};

KdumpObject::KdumpObject(sd_bus* bus, Kdump* kdump, std::string event_source,
                         std::function<void()> after_call)
    : bus_(bus), kdump_(kdump), event_source_(std::move(event_source)), after_call_(std::move(after_call)) {}

int KdumpObject::attach() {
    return add_interface(bus_, slot_, khod1::kdump_interface, vtable_, this);
}

void KdumpObject::emit_changed(const std::vector<std::string>& properties) {
    emit_properties_changed(bus_, khod1::kdump_interface, properties);
}

void KdumpObject::emit_reloaded(const ReloadReport& rep) {
    int r = sd_bus_emit_signal(bus_, khod1::object_path, khod1::kdump_interface, "Reloaded", "stttbs",
                               rep.cause.c_str(), static_cast<std::uint64_t>(rep.events),
                               static_cast<std::uint64_t>(rep.duration),
                               static_cast<std::uint64_t>(rep.unloaded), rep.ok ? 1 : 0, rep.error.c_str());
    if (r < 0) log(LOG_WARNING, "cannot emit Reloaded: %s", std::strerror(-r));
}

Usec KdumpObject::to_realtime(Usec monotonic) const {
    const Usec mono_now = kdump_->now();
    const Usec real_now = realtime_usec();
    const Usec ago = mono_now > monotonic ? mono_now - monotonic : 0;
    return real_now > ago ? real_now - ago : 0;
}

int KdumpObject::get_property(sd_bus* /*bus*/, const char* /*path*/, const char* /*interface*/,
                              const char* property, sd_bus_message* reply, void* userdata,
                              sd_bus_error* error) {
    auto* self = static_cast<KdumpObject*>(userdata);
    if (!self->kdump_) return sd_bus_error_set(error, SD_BUS_ERROR_FAILED, "not serving");
    const Kdump& k = *self->kdump_;
    std::string_view p = property;
    if (p == "Loaded") return sd_bus_message_append(reply, "b", k.loaded() ? 1 : 0);
    if (p == "Managed") return sd_bus_message_append(reply, "b", k.managed() ? 1 : 0);
    if (p == "InPlaceUpdate")
        return sd_bus_message_append(reply, "(ss)", to_string(k.capability().cpu),
                                     to_string(k.capability().memory));
    if (p == "EventSource") return sd_bus_message_append(reply, "s", self->event_source_.c_str());
    if (p == "EventsSeen")
        return sd_bus_message_append(reply, "t", static_cast<std::uint64_t>(k.events_seen()));
    if (p == "LastEventUsec")
        return sd_bus_message_append(reply, "t",
                                     k.last_event() ? self->to_realtime(*k.last_event()) : Usec{0});
    if (p == "Pending") return sd_bus_message_append(reply, "b", k.pending() ? 1 : 0);
    if (p == "Reloads") return sd_bus_message_append(reply, "t", static_cast<std::uint64_t>(k.reloads()));
    if (p == "LastReloadUsec")
        return sd_bus_message_append(reply, "t",
                                     k.last_reload() ? self->to_realtime(*k.last_reload()) : Usec{0});
    if (p == "UnloadedWindowUsecTotal") return sd_bus_message_append(reply, "t", k.unloaded_total());
    if (p == "UnloadedWindows") {
        int r = sd_bus_message_open_container(reply, 'a', "(ttbs)");
        if (r < 0) return r;
        const Usec now = k.now();
        for (const auto& w : k.windows()) {
            r = sd_bus_message_append(reply, "(ttbs)", self->to_realtime(w.start), w.duration(now),
                                      w.open ? 1 : 0, w.cause.c_str());
            if (r < 0) return r;
        }
        return sd_bus_message_close_container(reply);
    }
    if (p == "Recipe") {
        const auto& r = k.recipe();
        return sd_bus_message_append(reply, "(ssss)", r ? r->kernel.c_str() : "", r ? r->initrd.c_str() : "",
                                     r ? r->cmdline.c_str() : "", r ? r->source.c_str() : "");
    }
    if (p == "LastError") return sd_bus_message_append(reply, "s", k.last_error().c_str());
    return sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_PROPERTY, "no property %s", property);
}

int KdumpObject::reply(sd_bus_message* m, sd_bus_error* error, const Result<void, Failure>& result) {
    if (after_call_) after_call_();
    if (!result) return reply_failure(m, error, result.error());
    log(LOG_INFO, "Kdump.%s done: crash kernel %s", sd_bus_message_get_member(m),
        kdump_->loaded() ? "loaded" : "not loaded");
    return sd_bus_reply_method_return(m, "");
}

int KdumpObject::method_load(sd_bus_message* m, void* userdata, sd_bus_error* error) {
    auto* self = static_cast<KdumpObject*>(userdata);
    const char* kernel = nullptr;
    const char* initrd = nullptr;
    const char* cmdline = nullptr;
    std::uint64_t flags = 0;
    int r = sd_bus_message_read(m, "ssst", &kernel, &initrd, &cmdline, &flags);
    if (r < 0) return r;
    if (flags != 0)
        return reply_failure(m, error,
                             {Errc::invalid_argument, plain_error("", "Load: unknown flags " + hex(flags) +
                                                                          " (none are defined; pass 0)")});
    CrashRecipe recipe{kernel, initrd, cmdline, "khoctl kdump load"};
    return self->reply(m, error, self->kdump_->load(std::move(recipe)));
}

int KdumpObject::method_unload(sd_bus_message* m, void* userdata, sd_bus_error* error) {
    auto* self = static_cast<KdumpObject*>(userdata);
    return self->reply(m, error, self->kdump_->unload());
}

int KdumpObject::method_reload(sd_bus_message* m, void* userdata, sd_bus_error* error) {
    auto* self = static_cast<KdumpObject*>(userdata);
    return self->reply(m, error, self->kdump_->reload());
}

}  // namespace khod
