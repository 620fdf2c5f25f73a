#include "bus_kdump.hpp"

#include <cstring>

#include "bus_job.hpp"
#include "bus_object.hpp"
#include "guard.hpp"
#include "khod/base/hex.hpp"
#include "log.hpp"
#include "system_kdump.hpp"

namespace khod {

// Each appends one property of the object; the vtable pairs them with their
// names and signatures.
struct KdumpObject::Properties {
    template <auto Append>
    static constexpr sd_bus_property_get_t get = property_getter<KdumpObject, Append>;

    static int loaded(const KdumpObject& o, sd_bus_message* m) {
        return sd_bus_message_append(m, "b", o.kdump_->loaded() ? 1 : 0);
    }
    static int managed(const KdumpObject& o, sd_bus_message* m) {
        return sd_bus_message_append(m, "b", o.kdump_->managed() ? 1 : 0);
    }
    static int in_place_update(const KdumpObject& o, sd_bus_message* m) {
        const KdumpCapability& c = o.kdump_->capability();
        return sd_bus_message_append(m, "(ss)", to_string(c.cpu), to_string(c.memory));
    }
    static int event_source(const KdumpObject& o, sd_bus_message* m) {
        return sd_bus_message_append(m, "s", o.event_source_.c_str());
    }
    static int events_seen(const KdumpObject& o, sd_bus_message* m) {
        return sd_bus_message_append(m, "t", static_cast<std::uint64_t>(o.kdump_->events_seen()));
    }
    static int last_event_usec(const KdumpObject& o, sd_bus_message* m) {
        const auto& t = o.kdump_->last_event();
        return sd_bus_message_append(m, "t", t ? o.to_realtime(*t) : Usec{0});
    }
    static int pending(const KdumpObject& o, sd_bus_message* m) {
        return sd_bus_message_append(m, "b", o.kdump_->pending() ? 1 : 0);
    }
    static int reloads(const KdumpObject& o, sd_bus_message* m) {
        return sd_bus_message_append(m, "t", static_cast<std::uint64_t>(o.kdump_->reloads()));
    }
    static int last_reload_usec(const KdumpObject& o, sd_bus_message* m) {
        const auto& t = o.kdump_->last_reload();
        return sd_bus_message_append(m, "t", t ? o.to_realtime(*t) : Usec{0});
    }
    static int unloaded_window_usec_total(const KdumpObject& o, sd_bus_message* m) {
        return sd_bus_message_append(m, "t", o.kdump_->unloaded_total());
    }
    static int unloaded_window_count(const KdumpObject& o, sd_bus_message* m) {
        return sd_bus_message_append(m, "t", o.kdump_->window_count());
    }
    static int unloaded_windows(const KdumpObject& o, sd_bus_message* m) {
        int r = sd_bus_message_open_container(m, 'a', "(ttbs)");
        if (r < 0) return r;
        const Usec now = o.kdump_->now();
        for (const auto& w : o.kdump_->windows()) {
            r = sd_bus_message_append(m, "(ttbs)", w.wall_start, w.duration(now), w.open ? 1 : 0,
                                      bus_string(w.cause).c_str());
            if (r < 0) return r;
        }
        return sd_bus_message_close_container(m);
    }
    static int recipe(const KdumpObject& o, sd_bus_message* m) {
        const auto& r = o.kdump_->recipe();
        const CrashRecipe shown = r ? *r : CrashRecipe{};
        return sd_bus_message_append(m, "(ssss)", bus_string(shown.kernel).c_str(),
                                     bus_string(shown.initrd).c_str(), bus_string(shown.cmdline).c_str(),
                                     bus_string(shown.source).c_str());
    }
    static int loader(const KdumpObject& o, sd_bus_message* m) {
        const auto& r = o.kdump_->recipe();
        return sd_bus_message_append(m, "s", r ? to_string(r->loader) : "");
    }
    static int last_error(const KdumpObject& o, sd_bus_message* m) {
        return sd_bus_message_append(m, "s", bus_string(o.kdump_->last_error()).c_str());
    }
};

// The members, in the order of dbus/org.kexec.khod1.Kdump.xml.
const sd_bus_vtable KdumpObject::vtable_[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("Loaded", "b", Properties::get<Properties::loaded>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Managed", "b", Properties::get<Properties::managed>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("InPlaceUpdate", "(ss)", Properties::get<Properties::in_place_update>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("EventSource", "s", Properties::get<Properties::event_source>, 0,
                    SD_BUS_VTABLE_PROPERTY_CONST),
    SD_BUS_PROPERTY("EventsSeen", "t", Properties::get<Properties::events_seen>, 0, 0),
    SD_BUS_PROPERTY("LastEventUsec", "t", Properties::get<Properties::last_event_usec>, 0, 0),
    SD_BUS_PROPERTY("Pending", "b", Properties::get<Properties::pending>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Reloads", "t", Properties::get<Properties::reloads>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("LastReloadUsec", "t", Properties::get<Properties::last_reload_usec>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("UnloadedWindowUsecTotal", "t", Properties::get<Properties::unloaded_window_usec_total>,
                    0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("UnloadedWindows", "a(ttbs)", Properties::get<Properties::unloaded_windows>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("UnloadedWindowCount", "t", Properties::get<Properties::unloaded_window_count>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Recipe", "(ssss)", Properties::get<Properties::recipe>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Loader", "s", Properties::get<Properties::loader>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("LastError", "s", Properties::get<Properties::last_error>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_METHOD_WITH_ARGS("Load", SD_BUS_ARGS("s", kernel, "s", initrd, "s", cmdline, "t", flags),
                            SD_BUS_NO_RESULT, guarded_method<method_load>, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Unload", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, guarded_method<method_unload>,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Reload", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, guarded_method<method_reload>,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_SIGNAL_WITH_ARGS(
        "Reloaded",
        SD_BUS_ARGS("s", cause, "t", events, "t", duration_usec, "t", unloaded_usec, "b", ok, "s", error), 0),
    SD_BUS_VTABLE_END,
};

KdumpObject::KdumpObject(sd_bus* bus, Kdump* kdump, std::string event_source, CrashLoader default_loader,
                         std::function<void()> after_call, PolkitAuthorizer* authorizer, JobQueue* jobs)
    : bus_(bus),
      kdump_(kdump),
      event_source_(std::move(event_source)),
      default_loader_(default_loader),
      after_call_(std::move(after_call)),
      authorizer_(authorizer),
      jobs_(jobs) {}

int KdumpObject::attach() {
    return add_interface(bus_, slot_, khod1::kdump_interface, vtable_, this);
}

void KdumpObject::emit_changed(const std::vector<std::string>& properties) {
    emit_properties_changed(bus_, khod1::kdump_interface, properties);
}

void KdumpObject::emit_reloaded(const ReloadReport& rep) {
    int r = sd_bus_emit_signal(
        bus_, khod1::object_path, khod1::kdump_interface, "Reloaded", "stttbs", bus_string(rep.cause).c_str(),
        static_cast<std::uint64_t>(rep.events), static_cast<std::uint64_t>(rep.duration),
        static_cast<std::uint64_t>(rep.unloaded), rep.ok ? 1 : 0, bus_string(rep.error).c_str());
    if (r < 0) log(LOG_WARNING, "cannot emit Reloaded: %s", std::strerror(-r));
}

Usec KdumpObject::to_realtime(Usec monotonic) const {
    const Usec mono_now = kdump_->now();
    const Usec real_now = realtime_usec();
    const Usec ago = mono_now > monotonic ? mono_now - monotonic : 0;
    return real_now > ago ? real_now - ago : 0;
}

int KdumpObject::reply(sd_bus_message* m, sd_bus_error* error, const Result<void, Failure>& result) {
    if (after_call_) after_call_();
    if (!result) return reply_failure(m, error, result.error());
    log(LOG_INFO, "Kdump.%s done: crash kernel %s", sd_bus_message_get_member(m),
        kdump_->loaded() ? "loaded" : "not loaded");
    return sd_bus_reply_method_return(m, "");
}

int KdumpObject::run(sd_bus_message* m, sd_bus_error* error, std::function<Result<void, Failure>()> op) {
    return answer_with_job(*jobs_, m, error, std::move(op),
                           [this](sd_bus_message* call, sd_bus_error* e, const CallOutcome& done) {
                               return reply(call, e, done);
                           });
}

int KdumpObject::method_load(sd_bus_message* m, void* userdata, sd_bus_error* error) {
    auto* self = static_cast<KdumpObject*>(userdata);
    if (auto done = self->authorizer_->check(m, khod1::action::manage_kdump, error)) return *done;
    const char* kernel = nullptr;
    const char* initrd = nullptr;
    const char* cmdline = nullptr;
    std::uint64_t flags = 0;
    int r = sd_bus_message_read(m, "ssst", &kernel, &initrd, &cmdline, &flags);
    if (r < 0) return r;
    auto loader = khod1::kdump_loader_from_flags(flags);
    if (!loader)
        return reply_failure(
            m, error,
            {Errc::invalid_argument,
             plain_error("", "Load: flags " + hex(flags) +
                                 ": pass 0, or exactly one of LOADER_FILE (0x1), LOADER_NATIVE "
                                 "(0x2), LOADER_AUTO (0x4)")});
    CrashRecipe recipe{kernel, initrd, cmdline, "khoctl kdump load",
                       *loader == khod1::KdumpLoader::configured ? self->default_loader_
                       : *loader == khod1::KdumpLoader::file     ? CrashLoader::file
                       : *loader == khod1::KdumpLoader::native   ? CrashLoader::native
                                                                 : CrashLoader::automatic};
    return self->run(m, error, [self, recipe] { return self->kdump_->load(recipe); });
}

int KdumpObject::method_unload(sd_bus_message* m, void* userdata, sd_bus_error* error) {
    auto* self = static_cast<KdumpObject*>(userdata);
    if (auto done = self->authorizer_->check(m, khod1::action::manage_kdump, error)) return *done;
    return self->run(m, error, [self] { return self->kdump_->unload(); });
}

int KdumpObject::method_reload(sd_bus_message* m, void* userdata, sd_bus_error* error) {
    auto* self = static_cast<KdumpObject*>(userdata);
    if (auto done = self->authorizer_->check(m, khod1::action::manage_kdump, error)) return *done;
    return self->run(m, error, [self] { return self->kdump_->reload(); });
}

}  // namespace khod
