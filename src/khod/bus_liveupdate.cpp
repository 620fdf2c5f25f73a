#include "bus_liveupdate.hpp"

#include <time.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "guard.hpp"
#include "journal_events.hpp"
#include "khod/base/cmdline.hpp"
#include "khod/base/units.hpp"
#include "khod/luo/liveupdate.hpp"
#include "log.hpp"

namespace khod {

namespace {

std::uint64_t clock_usec(clockid_t clock) {
    timespec ts{};
    clock_gettime(clock, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000000u + static_cast<std::uint64_t>(ts.tv_nsec) / 1000u;
}

// This boot's start on the realtime clock: the one clock the manifest's
// phases from the previous kernel can be compared with.
std::uint64_t boot_realtime_usec() {
    const std::uint64_t real = clock_usec(CLOCK_REALTIME), since_boot = clock_usec(CLOCK_BOOTTIME);
    return real > since_boot ? real - since_boot : 0;
}

struct Caller {
    uid_t uid = 0;
    pid_t pid = 0;
    std::string unit;
};

// The bus's word for who called: the uid dbus-daemon saw at connect, not
// one the caller claims. The pid and unit are only for display.
// The uid comes from the bus (not /proc, which a pid reuse could fool); the
// unit is best effort: without cgroupfs (a busybox guest) sd-bus gives
// ENOMEDIUM for it, and a caller with no unit is still a caller.
int caller_of(sd_bus_message* m, Caller& caller) {
    sd_bus_creds* raw = nullptr;
    int r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_UID | SD_BUS_CREDS_EUID | SD_BUS_CREDS_PID, &raw);
    if (r < 0) return r;
    std::unique_ptr<sd_bus_creds, decltype(&sd_bus_creds_unref)> creds(raw, &sd_bus_creds_unref);
    if ((r = sd_bus_creds_get_euid(creds.get(), &caller.uid)) < 0 &&
        (r = sd_bus_creds_get_uid(creds.get(), &caller.uid)) < 0)
        return r;
    (void)sd_bus_creds_get_pid(creds.get(), &caller.pid);
    sd_bus_creds* with_unit = nullptr;
    if (sd_bus_query_sender_creds(m, SD_BUS_CREDS_UNIT | SD_BUS_CREDS_AUGMENT, &with_unit) >= 0) {
        std::unique_ptr<sd_bus_creds, decltype(&sd_bus_creds_unref)> unit_creds(with_unit,
                                                                                &sd_bus_creds_unref);
        const char* unit = nullptr;
        if (sd_bus_creds_get_unit(unit_creds.get(), &unit) >= 0 && unit) caller.unit = unit;
    }
    return 0;
}

int append_files(sd_bus_message* m, const std::vector<LuoFileEntry>& files, bool incoming) {
    int r = sd_bus_message_open_container(m, 'a', incoming ? "(ttub)" : "(ttu)");
    for (std::size_t i = 0; r >= 0 && i < files.size(); ++i) {
        const LuoFileEntry& f = files[i];
        r = incoming
                ? sd_bus_message_append(m, "(ttub)", f.token, f.size, f.seals, static_cast<int>(f.retrieved))
                : sd_bus_message_append(m, "(ttu)", f.token, f.size, f.seals);
    }
    return r < 0 ? r : sd_bus_message_close_container(m);
}

int append_sessions(sd_bus_message* m, const std::vector<LuoSession>& sessions, bool incoming) {
    const char* entry = incoming ? "susa(ttub)" : "susa(ttu)";
    int r = sd_bus_message_open_container(m, 'a', incoming ? "(susa(ttub))" : "(susa(ttu))");
    for (std::size_t i = 0; r >= 0 && i < sessions.size(); ++i) {
        const LuoSession& s = sessions[i];
        if ((r = sd_bus_message_open_container(m, 'r', entry)) < 0) break;
        if ((r = sd_bus_message_append(m, "sus", s.name.c_str(), static_cast<std::uint32_t>(s.owner.uid),
                                       bus_string(s.owner.unit).c_str())) < 0)
            break;
        if ((r = append_files(m, s.files, incoming)) < 0) break;
        r = sd_bus_message_close_container(m);
    }
    return r < 0 ? r : sd_bus_message_close_container(m);
}

std::string held_summary(const LuoSessions& sessions) {
    return std::to_string(sessions.outgoing().size()) + " session(s), " +
           human_size(sessions.outgoing_bytes());
}

}  // namespace

struct LiveUpdateObject::Properties {
    template <auto Append>
    static constexpr sd_bus_property_get_t get = property_getter<LiveUpdateObject, Append>;

    static int enabled(const LiveUpdateObject& o, sd_bus_message* m) {
        return sd_bus_message_append(m, "b", static_cast<int>(exists(o.root_->dev("liveupdate"))));
    }
    static int liveupdate_number(const LiveUpdateObject& o, sd_bus_message* m) {
        return sd_bus_message_append(m, "t", incoming_liveupdate_number(*o.root_).value_or(0));
    }
    static int outgoing(const LiveUpdateObject& o, sd_bus_message* m) {
        return append_sessions(m, o.sessions_->outgoing(), false);
    }
    static int incoming(const LiveUpdateObject& o, sd_bus_message* m) {
        return append_sessions(m, o.sessions_->incoming(), true);
    }
    static int inhibitors(const LiveUpdateObject& o, sd_bus_message* m) {
        int r = sd_bus_message_open_container(m, 'a', "(ssuu)");
        for (const Inhibitor& i : o.barrier_->held()) {
            if (r < 0) break;
            r = sd_bus_message_append(m, "(ssuu)", i.who.c_str(), i.why.c_str(),
                                      static_cast<std::uint32_t>(i.uid), static_cast<std::uint32_t>(i.pid));
        }
        return r < 0 ? r : sd_bus_message_close_container(m);
    }
    static int previous_release(const LiveUpdateObject& o, sd_bus_message* m) {
        return sd_bus_message_append(m, "s", bus_string(o.sessions_->previous_release()).c_str());
    }
    static int last_update_phases(const LiveUpdateObject& o, sd_bus_message* m);
};

int LiveUpdateObject::Properties::last_update_phases(const LiveUpdateObject& o, sd_bus_message* m) {
    int r = sd_bus_message_open_container(m, 'a', "(st)");
    for (const PhaseMark& p : o.last_update_phases())
        if (r >= 0) r = sd_bus_message_append(m, "(st)", p.name.c_str(), p.usec);
    return r < 0 ? r : sd_bus_message_close_container(m);
}

std::vector<PhaseMark> LiveUpdateObject::last_update_phases() const {
    if (sessions_->previous_release().empty()) return {};
    const LuoPhases& p = sessions_->previous_phases();
    return {
        {"exec-requested", p.exec_requested}, {"inhibitors-released", p.inhibitors_released},
        {"reboot-syscall", p.reboot_syscall}, {"kernel-start", kernel_start_usec_},
        {"khod-ready", ready_usec_},          {"first-retrieve", first_retrieve_usec_},
    };
}

struct LiveUpdateObject::Methods {
    static LiveUpdateObject& self(void* userdata) { return *static_cast<LiveUpdateObject*>(userdata); }

    static int reply(sd_bus_message* m, sd_bus_error* error, const Result<void, Failure>& result) {
        if (!result) return reply_failure(m, error, result.error());
        return sd_bus_reply_method_return(m, "");
    }

    static int create_session(sd_bus_message* m, void* userdata, sd_bus_error* error) {
        if (auto done = self(userdata).authorize(m, error)) return *done;
        if (auto late = self(userdata).refuse_after_manifest()) return reply_failure(m, error, *late);
        const char* name = nullptr;
        Caller caller;
        int r = sd_bus_message_read(m, "s", &name);
        if (r < 0 || (r = caller_of(m, caller)) < 0) return r;
        auto created = self(userdata).sessions_->create(name, LuoOwner{caller.uid, caller.unit});
        if (created)
            log(LOG_INFO, "session %s created for uid %u%s%s", name, static_cast<unsigned>(caller.uid),
                caller.unit.empty() ? "" : ", unit ", caller.unit.c_str());
        return reply(m, error, created);
    }

    static int preserve(sd_bus_message* m, void* userdata, sd_bus_error* error) {
        if (auto done = self(userdata).authorize(m, error)) return *done;
        if (auto late = self(userdata).refuse_after_manifest()) return reply_failure(m, error, *late);
        const char* session = nullptr;
        std::uint64_t token = 0;
        int fd = -1;
        Caller caller;
        int r = sd_bus_message_read(m, "sth", &session, &token, &fd);
        if (r < 0 || (r = caller_of(m, caller)) < 0) return r;
        auto preserved = self(userdata).sessions_->preserve(session, token, fd, caller.uid);
        if (preserved)
            log(LOG_INFO, "session %s: token %llu preserved", session,
                static_cast<unsigned long long>(token));
        return reply(m, error, preserved);
    }

    static int destroy_session(sd_bus_message* m, void* userdata, sd_bus_error* error) {
        if (auto done = self(userdata).authorize(m, error)) return *done;
        if (auto late = self(userdata).refuse_after_manifest()) return reply_failure(m, error, *late);
        const char* name = nullptr;
        Caller caller;
        int r = sd_bus_message_read(m, "s", &name);
        if (r < 0 || (r = caller_of(m, caller)) < 0) return r;
        auto destroyed = self(userdata).sessions_->destroy(name, caller.uid);
        if (destroyed) log(LOG_INFO, "session %s destroyed: its files are no longer preserved", name);
        return reply(m, error, destroyed);
    }

    static int retrieve(sd_bus_message* m, void* userdata, sd_bus_error* error) {
        if (auto done = self(userdata).authorize(m, error)) return *done;
        const char* session = nullptr;
        std::uint64_t token = 0;
        Caller caller;
        int r = sd_bus_message_read(m, "st", &session, &token);
        if (r < 0 || (r = caller_of(m, caller)) < 0) return r;
        LiveUpdateObject& o = self(userdata);
        auto fd = o.sessions_->retrieve(session, token, caller.uid);
        if (!fd) return reply_failure(m, error, fd.error());
        if (!o.first_retrieve_usec_) {
            o.first_retrieve_usec_ = clock_usec(CLOCK_REALTIME);
            o.emit_changed({"LastUpdatePhases"});
        }
        log(LOG_INFO, "session %s: token %llu retrieved by uid %u", session,
            static_cast<unsigned long long>(token), static_cast<unsigned>(caller.uid));
        return sd_bus_reply_method_return(m, "h", fd->get());
    }

    static int finish_session(sd_bus_message* m, void* userdata, sd_bus_error* error) {
        if (auto done = self(userdata).authorize(m, error)) return *done;
        const char* name = nullptr;
        Caller caller;
        int r = sd_bus_message_read(m, "s", &name);
        if (r < 0 || (r = caller_of(m, caller)) < 0) return r;
        auto finished = self(userdata).sessions_->finish(name, caller.uid);
        if (finished) log(LOG_INFO, "incoming session %s finished", name);
        return reply(m, error, finished);
    }

    static int inhibit(sd_bus_message* m, void* userdata, sd_bus_error* error) {
        if (auto done = self(userdata).authorize(m, error)) return *done;
        const char* who = nullptr;
        const char* why = nullptr;
        Caller caller;
        int r = sd_bus_message_read(m, "ss", &who, &why);
        if (r < 0 || (r = caller_of(m, caller)) < 0) return r;
        auto fd = self(userdata).barrier_->inhibit(Inhibitor{who, why, caller.uid, caller.pid});
        if (!fd) return reply_failure(m, error, fd.error());
        return sd_bus_reply_method_return(m, "h", fd->get());
    }
};

// The members, in the order of dbus/org.kexec.khod1.LiveUpdate.xml.
const sd_bus_vtable LiveUpdateObject::vtable_[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("Enabled", "b", Properties::get<Properties::enabled>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("LiveUpdateNumber", "t", Properties::get<Properties::liveupdate_number>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Outgoing", "a(susa(ttu))", Properties::get<Properties::outgoing>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Incoming", "a(susa(ttub))", Properties::get<Properties::incoming>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Inhibitors", "a(ssuu)", Properties::get<Properties::inhibitors>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("PreviousRelease", "s", Properties::get<Properties::previous_release>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("LastUpdatePhases", "a(st)", Properties::get<Properties::last_update_phases>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_METHOD_WITH_ARGS("CreateSession", SD_BUS_ARGS("s", name), SD_BUS_NO_RESULT,
                            guarded_method<Methods::create_session>, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Preserve", SD_BUS_ARGS("s", session, "t", token, "h", fd), SD_BUS_NO_RESULT,
                            guarded_method<Methods::preserve>, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("DestroySession", SD_BUS_ARGS("s", name), SD_BUS_NO_RESULT,
                            guarded_method<Methods::destroy_session>, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Retrieve", SD_BUS_ARGS("s", session, "t", token), SD_BUS_RESULT("h", fd),
                            guarded_method<Methods::retrieve>, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("FinishSession", SD_BUS_ARGS("s", name), SD_BUS_NO_RESULT,
                            guarded_method<Methods::finish_session>, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Inhibit", SD_BUS_ARGS("s", who, "s", why), SD_BUS_RESULT("h", fd),
                            guarded_method<Methods::inhibit>, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_SIGNAL_WITH_ARGS("PrepareForKexec", SD_BUS_ARGS("b", start), 0),
    SD_BUS_VTABLE_END,
};

LiveUpdateObject::LiveUpdateObject(sd_bus* bus, sd_event* event, const Sysroot* root, LuoSessions* sessions,
                                   ExecBarrier* barrier, LiveUpdateConfig config,
                                   PolkitAuthorizer* authorizer)
    : bus_(bus),
      event_(event),
      root_(root),
      sessions_(sessions),
      barrier_(barrier),
      config_(config),
      authorizer_(authorizer),
      kernel_start_usec_(boot_realtime_usec()) {
    if (sessions_)
        sessions_->on_change([this](const std::vector<std::string>& changed) { emit_changed(changed); });
    if (barrier_) barrier_->on_change([this] { emit_changed({"Inhibitors"}); });
}

int LiveUpdateObject::attach() {
    return add_interface(bus_, slot_, khod1::liveupdate_interface, vtable_, this);
}

void LiveUpdateObject::emit_changed(const std::vector<std::string>& properties) {
    emit_properties_changed(bus_, khod1::liveupdate_interface, properties);
    if (changed_) changed_();
}

void LiveUpdateObject::emit_prepare_for_kexec(bool start) {
    int r = sd_bus_emit_signal(bus_, khod1::object_path, khod1::liveupdate_interface, "PrepareForKexec", "b",
                               static_cast<int>(start));
    if (r < 0)
        log(LOG_WARNING, "Failed to emit PrepareForKexec(%s): %s", start ? "true" : "false",
            std::strerror(-r));
    sd_bus_flush(bus_);
}

void LiveUpdateObject::mark_ready() {
    ready_usec_ = clock_usec(CLOCK_REALTIME);
    for (const LuoSession& s : sessions_->incoming())
        log(LOG_NOTICE,
            "holding incoming session %s for uid %u%s%s (%zu file(s)) until it is retrieved and finished",
            s.name.c_str(), static_cast<unsigned>(s.owner.uid), s.owner.unit.empty() ? "" : ", unit ",
            s.owner.unit.c_str(), s.files.size());
    arm_retrieve_timeout();
}

void LiveUpdateObject::arm_retrieve_timeout() {
    if (sessions_->incoming().empty() || config_.retrieve_timeout == usec_never) return;
    std::uint64_t now = 0;
    sd_event_now(event_, CLOCK_MONOTONIC, &now);
    sd_event_source* raw = nullptr;
    int r = sd_event_add_time(event_, &raw, CLOCK_MONOTONIC, now + config_.retrieve_timeout, 0,
                              &LiveUpdateObject::on_retrieve_timeout, this);
    if (r < 0) {
        log(LOG_WARNING, "Failed to arm RetrieveTimeoutSec=: %s", std::strerror(-r));
        return;
    }
    retrieve_timer_.reset(raw);
}

int LiveUpdateObject::on_retrieve_timeout(sd_event_source* /*source*/, uint64_t /*usec*/, void* userdata) {
    auto* self = static_cast<LiveUpdateObject*>(userdata);
    return guarded_event("RetrieveTimeoutSec", [self] {
        for (const LuoSessionEntry& released : self->sessions_->finish_all_incoming())
            log_event(luo_session_released_event(released));
        return 0;
    });
}

Result<std::uint64_t, Failure> LiveUpdateObject::check_exec(std::uint64_t flags,
                                                            const HandoverTarget& target) const {
    if (!sessions_ || sessions_->outgoing().empty() || (flags & exec_drop_sessions)) return flags;
    const std::string held = held_summary(*sessions_);
    auto refuse = [&](const std::string& why) {
        return Failure{
            Errc::preflight_failed,
            plain_error("", held + " are held but " + why +
                                ": the reboot would drop them (khoctl exec --force goes on anyway)")};
    };
    if (!exists(root_->dev("liveupdate")))
        return refuse("this kernel has no /dev/liveupdate (liveupdate= is off)");
    const auto value = Cmdline::parse(target.cmdline).value("liveupdate");
    if (!value || !kstrtobool(*value).value_or(false))
        return refuse(
            "the staged command line has no liveupdate=on, so the next kernel would not restore them");
    if (flags & exec_force) return flags;
    // systemd-shutdown holds the fd store's session fds open until its
    // reboot(2) and PID 1 hands them back in the next boot (luo_carried.hpp).
    auto carries = systemd_carries_ ? systemd_carries_() : Result<std::string>(plain_error("", "not asked"));
    if (carries) {
        log(LOG_NOTICE, "%s are held: going through kexec.target, since %s", held.c_str(), carries->c_str());
        return flags;
    }
    log(LOG_NOTICE, "%s are held: rebooting directly, since kexec.target would stop khod and close them (%s)",
        held.c_str(), carries.error().describe().c_str());
    return flags | exec_force;
}

std::optional<Failure> LiveUpdateObject::refuse_after_manifest() const {
    if (!manifest_written_) return std::nullopt;
    return Failure{
        Errc::wrong_state,
        plain_error("",
                    "a live update is under way: khod's manifest is written and the reboot follows; "
                    "sessions can change again in the next kernel")};
}

void LiveUpdateObject::before_reboot(std::function<void(const Result<void, Failure>&)> then) {
    exec_phases_ = LuoPhases{};
    exec_phases_.exec_requested = clock_usec(CLOCK_REALTIME);
    emit_prepare_for_kexec(true);
    auto waited =
        barrier_->wait(config_.inhibit_delay_max, [this, then](const std::vector<Inhibitor>& /*late*/) {
            // then() must run whatever happens, or Handover stays `executing`.
            Result<void, Failure> written;
            try {
                written = write_manifest_now();
            } catch (const std::exception& e) {
                written = Failure{Errc::io_error,
                                  plain_error("", std::string("writing the manifest: ") + e.what())};
            }
            then(written);
        });
    if (!waited) then(waited);
}

Result<void, Failure> LiveUpdateObject::write_manifest_now() {
    exec_phases_.inhibitors_released = clock_usec(CLOCK_REALTIME);
    if (sessions_->outgoing().empty()) return {};
    // Data first: the reboot syscall follows at once, so its phase is stamped here.
    ::sync();
    exec_phases_.reboot_syscall = clock_usec(CLOCK_REALTIME);
    auto written = sessions_->write_manifest(exec_phases_);
    if (written) {
        manifest_written_ = true;
        log(LOG_NOTICE, "manifest written to LUO session khod: %s", held_summary(*sessions_).c_str());
    }
    return written;
}

void LiveUpdateObject::abandoned() {
    manifest_written_ = false;
    if (sessions_) sessions_->drop_manifest();
    if (carried_) carried_->forget_manifest();
    emit_prepare_for_kexec(false);
}

}  // namespace khod
