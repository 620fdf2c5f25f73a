#include "bus_handover.hpp"

#include <systemd/sd-journal.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "bus_job.hpp"
#include "guard.hpp"
#include "journal_events.hpp"
#include "khod/kexec/bzimage.hpp"
#include "log.hpp"

namespace khod {

namespace {

// The release the target's bzImage header names, for the journal; empty when it names none.
std::string release_of(const HandoverTarget& target) {
    auto image = read_bzimage(std::filesystem::path(target.kernel));
    return image && image->release ? *image->release : std::string();
}

}  // namespace

// Handover takes the flags as they come over the bus (and keeps them in its
// record), so the wire's bits must be the library's.
static_assert(khod1::prepare_reuse_cmdline == prepare_reuse_cmdline);
static_assert(khod1::prepare_keep_cmdline == prepare_keep_cmdline);
static_assert(khod1::exec_force == exec_force);
static_assert(khod1::exec_drop_sessions == exec_drop_sessions);

// Each appends one property of the object; the vtable pairs them with their
// names and signatures.
struct HandoverObject::Properties {
    template <auto Append>
    static constexpr sd_bus_property_get_t get = property_getter<HandoverObject, Append>;

    static int state(const HandoverObject& o, sd_bus_message* m) {
        return sd_bus_message_append(m, "s", to_string(o.handover_->state()));
    }
    static int abi(const HandoverObject& o, sd_bus_message* m) {
        return sd_bus_message_append(m, "s", to_string(o.handover_->abi()));
    }
    static int target_kernel(const HandoverObject& o, sd_bus_message* m) {
        return sd_bus_message_append(m, "s", bus_string(o.handover_->target().kernel).c_str());
    }
    static int target_initrd(const HandoverObject& o, sd_bus_message* m) {
        return sd_bus_message_append(m, "s", bus_string(o.handover_->target().initrd).c_str());
    }
    static int target_cmdline(const HandoverObject& o, sd_bus_message* m) {
        return sd_bus_message_append(m, "s", bus_string(o.handover_->target().cmdline).c_str());
    }
    static int last_error(const HandoverObject& o, sd_bus_message* m) {
        return sd_bus_message_append(m, "s", bus_string(o.handover_->last_error()).c_str());
    }
    static int scratch_areas(const HandoverObject& o, sd_bus_message* m) {
        int r = sd_bus_message_open_container(m, 'a', "(usttt)");
        if (r < 0) return r;
        for (const ScratchArea& a : o.handover_->scratch_areas()) {
            // No node: 2^64-1, as the XML says.
            const std::uint64_t node = a.node ? static_cast<std::uint64_t>(*a.node) : UINT64_MAX;
            r = sd_bus_message_append(m, "(usttt)", a.index, to_string(a.kind), node, a.phys, a.size);
            if (r < 0) return r;
        }
        return sd_bus_message_close_container(m);
    }
};

// The members, in the order of dbus/org.kexec.khod1.Handover.xml.
const sd_bus_vtable HandoverObject::vtable_[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_PROPERTY("State", "s", Properties::get<Properties::state>, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("Abi", "s", Properties::get<Properties::abi>, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("TargetKernel", "s", Properties::get<Properties::target_kernel>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("TargetInitrd", "s", Properties::get<Properties::target_initrd>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("TargetCmdline", "s", Properties::get<Properties::target_cmdline>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("LastError", "s", Properties::get<Properties::last_error>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_PROPERTY("ScratchAreas", "a(usttt)", Properties::get<Properties::scratch_areas>, 0,
                    SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
    SD_BUS_METHOD_WITH_ARGS("Prepare", SD_BUS_ARGS("s", kernel, "s", initrd, "s", cmdline, "t", flags),
                            SD_BUS_NO_RESULT, guarded_method<method_prepare>, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Finalize", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, guarded_method<method_finalize>,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Abort", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, guarded_method<method_abort>,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_METHOD_WITH_ARGS("Exec", SD_BUS_ARGS("t", flags), SD_BUS_NO_RESULT, guarded_method<method_exec>,
                            SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_VTABLE_END,
};

HandoverObject::HandoverObject(sd_bus* bus, sd_event* event, Handover* handover, PolkitAuthorizer* authorizer,
                               JobQueue* jobs)
    : bus_(bus), event_(event), handover_(handover), authorizer_(authorizer), jobs_(jobs) {
    if (handover_)
        handover_->on_change([this](const std::vector<std::string>& changed) {
            jobs_->on_loop([this, changed] { emit_changed(changed); });
        });
}

int HandoverObject::attach() {
    return add_interface(bus_, slot_, khod1::handover_interface, vtable_, this);
}

void HandoverObject::emit_changed(const std::vector<std::string>& properties) {
    emit_properties_changed(bus_, khod1::handover_interface, properties);
}

int HandoverObject::reply(sd_bus_message* m, sd_bus_error* error, const Result<void, Failure>& result) {
    if (!result) return reply_failure(m, error, result.error());
    log(LOG_INFO, "%s done, state %s", sd_bus_message_get_member(m), to_string(handover_->state()));
    if (std::strcmp(sd_bus_message_get_member(m), "Finalize") == 0 &&
        handover_->state() == HandoverState::loaded)
        log_event(live_update_staged_event(handover_->target(), target_release(true), handover_->abi()));
    return sd_bus_reply_method_return(m, "");
}

const std::string& HandoverObject::target_release(bool reread) {
    const HandoverTarget& target = handover_->target();
    if (reread || release_kernel_ != target.kernel) {
        release_ = release_of(target);
        release_kernel_ = target.kernel;
    }
    return release_;
}

int HandoverObject::method_prepare(sd_bus_message* m, void* userdata, sd_bus_error* error) {
    auto* self = static_cast<HandoverObject*>(userdata);
    if (auto done = self->authorizer_->check(m, khod1::action::live_update, error)) return *done;
    const char* kernel = nullptr;
    const char* initrd = nullptr;
    const char* cmdline = nullptr;
    std::uint64_t flags = 0;
    int r = sd_bus_message_read(m, "ssst", &kernel, &initrd, &cmdline, &flags);
    if (r < 0) return r;
    HandoverTarget target;
    target.kernel = kernel;
    target.initrd = initrd;
    target.cmdline = cmdline;
    target.flags = flags;
    return answer_with_job(
        *self->jobs_, m, error, [self, target] { return self->handover_->prepare(target); },
        [self](sd_bus_message* call, sd_bus_error* e, const CallOutcome& done) {
            return self->reply(call, e, done);
        });
}

int HandoverObject::method_finalize(sd_bus_message* m, void* userdata, sd_bus_error* error) {
    auto* self = static_cast<HandoverObject*>(userdata);
    if (auto done = self->authorizer_->check(m, khod1::action::live_update, error)) return *done;
    return answer_with_job(
        *self->jobs_, m, error, [self] { return self->handover_->finalize(); },
        [self](sd_bus_message* call, sd_bus_error* e, const CallOutcome& done) {
            return self->reply(call, e, done);
        });
}

int HandoverObject::method_abort(sd_bus_message* m, void* userdata, sd_bus_error* error) {
    auto* self = static_cast<HandoverObject*>(userdata);
    if (auto done = self->authorizer_->check(m, khod1::action::live_update, error)) return *done;
    return answer_with_job(
        *self->jobs_, m, error, [self] { return self->handover_->abort(); },
        [self](sd_bus_message* call, sd_bus_error* e, const CallOutcome& done) {
            return self->reply(call, e, done);
        });
}

int HandoverObject::method_exec(sd_bus_message* m, void* userdata, sd_bus_error* error) {
    auto* self = static_cast<HandoverObject*>(userdata);
    if (auto done = self->authorizer_->check(m, khod1::action::live_update, error)) return *done;
    std::uint64_t flags = 0;
    int r = sd_bus_message_read(m, "t", &flags);
    if (r < 0) return r;
    // After a Finalize still loading, not beside it.
    return answer_in_turn(*self->jobs_, m, error, [self, flags](sd_bus_message* call, sd_bus_error* e) {
        return self->start_exec(call, e, flags);
    });
}

int HandoverObject::start_exec(sd_bus_message* m, sd_bus_error* error, std::uint64_t flags) {
    // A wrong state is WrongState, not a refusal about sessions.
    if (gate_ && handover_->state() == HandoverState::loaded) {
        auto checked = gate_->check_exec(flags, handover_->target());
        if (!checked) return reply_failure(m, error, checked.error());
        flags = *checked;
    }
    exec_request_flags_ = flags;
    auto begun = handover_->begin_exec(flags);
    if (!begun) return reply(m, error, begun);
    // Until the reboot, no load may take the kernel's kexec_lock: reboot(KEXEC)
    // would fail with EBUSY after the caller was told the exec is on.
    jobs_->hold();
    // Answer first: once the reboot syscall runs, nothing will be sent.
    int r = sd_bus_reply_method_return(m, "");
    if (r < 0) {
        handover_->cancel_exec(Failure{Errc::io_error, errno_error(-r, "", "answering Exec")});
        jobs_->release();
        return r;
    }
    sd_event_source* source = nullptr;
    r = sd_event_add_defer(event_, &source, &HandoverObject::on_exec_deferred, this);
    if (r < 0) {
        handover_->cancel_exec(Failure{Errc::io_error, errno_error(-r, "", "scheduling the reboot")});
        jobs_->release();
        return 1;
    }
    exec_source_.reset(source);
    return 1;
}

int HandoverObject::on_exec_deferred(sd_event_source* /*source*/, void* userdata) {
    auto* self = static_cast<HandoverObject*>(userdata);
    return guarded_event("Exec", [self] {
        sd_event_source_set_enabled(self->exec_source_.get(), SD_EVENT_OFF);
        sd_bus_flush(self->bus_);
        if (!self->gate_) {
            self->reboot_now({});
            return 0;
        }
        self->gate_->before_reboot([self](const Result<void, Failure>& ready) {
            if (!ready) return self->reboot_now(ready);
            // Clients preserve in the barrier's window: look at the sessions again.
            auto checked = self->gate_->check_exec(self->exec_request_flags_, self->handover_->target());
            if (!checked) return self->reboot_now(checked.error());
            self->handover_->add_exec_flags(*checked);
            self->reboot_now({});
        });
        return 0;
    });
}

void HandoverObject::reboot_now(const Result<void, Failure>& ready) {
    if (!ready) {
        log(LOG_ERR, "Exec abandoned: %s", ready.error().describe().c_str());
        handover_->cancel_exec(ready.error());
        if (gate_) gate_->abandoned();
        jobs_->release();
        return;
    }
    sd_bus_flush(bus_);
    const LuoSessions* sessions = gate_ ? gate_->sessions() : nullptr;
    log_event(live_update_exec_event(handover_->target(), target_release(false),
                                     sessions ? sessions->outgoing().size() : 0,
                                     sessions ? sessions->outgoing_bytes() : 0));
    auto r = handover_->complete_exec();
    if (r) return;
    log(LOG_ERR, "Exec failed: %s", r.error().describe().c_str());
    if (gate_) gate_->abandoned();
    jobs_->release();
}

}  // namespace khod
