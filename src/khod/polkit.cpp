#include "polkit.hpp"

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "log.hpp"

namespace khod {

namespace {

constexpr const char* polkit_service = "org.freedesktop.PolicyKit1";
constexpr const char* polkit_path = "/org/freedesktop/PolicyKit1/Authority";
constexpr const char* polkit_interface = "org.freedesktop.PolicyKit1.Authority";

using SdBusCredsPtr = std::unique_ptr<sd_bus_creds, decltype(&sd_bus_creds_unref)>;

// CheckAuthorization(subject, action_id, details, flags, cancellation_id) for
// the caller's bus name: polkit itself resolves it to a process and session.
int new_check_authorization(sd_bus* bus, sd_bus_message* call, const char* action, SdBusMessagePtr& out) {
    const char* sender = sd_bus_message_get_sender(call);
    if (!sender) return -EBADMSG;
    sd_bus_message* raw = nullptr;
    int r = sd_bus_message_new_method_call(bus, &raw, polkit_service, polkit_path, polkit_interface,
                                           "CheckAuthorization");
    if (r < 0) return r;
    out.reset(raw);
    const std::uint32_t flags = sd_bus_message_get_allow_interactive_authorization(call) ? 1u : 0u;
    return sd_bus_message_append(raw, "(sa{sv})sa{ss}us", "system-bus-name", 1, "name", "s", sender, action,
                                 0, flags, "");
}

}  // namespace

int bus_caller_uid(sd_bus_message* call, uid_t* uid) {
    sd_bus_creds* raw = nullptr;
    int r = sd_bus_query_sender_creds(call, SD_BUS_CREDS_UID | SD_BUS_CREDS_EUID, &raw);
    if (r < 0) return r;
    SdBusCredsPtr creds(raw, &sd_bus_creds_unref);
    if ((r = sd_bus_creds_get_euid(creds.get(), uid)) < 0) r = sd_bus_creds_get_uid(creds.get(), uid);
    return r < 0 ? r : 0;
}

std::optional<int> PolkitAuthorizer::check(sd_bus_message* call, const char* action, sd_bus_error* error) {
    uid_t uid = 0;
    if (int r = bus_caller_uid(call, &uid); r < 0)
        return sd_bus_error_set_errnof(error, -r, "Cannot tell which user is calling: %s", std::strerror(-r));
    if (uid == 0) return std::nullopt;  // root never needs polkit
    auto it = queries_.find(call);
    if (it == queries_.end()) return ask(call, action, error);
    if (it->second.verdict == Verdict::pending) return 1;
    return answer(call, action, uid, error);
}

int PolkitAuthorizer::ask(sd_bus_message* call, const char* action, sd_bus_error* error) {
    if (queries_.size() >= max_pending)
        return sd_bus_error_set(error, SD_BUS_ERROR_LIMITS_EXCEEDED,
                                "Too many calls are waiting for polkit's answer; try again later");
    SdBusMessagePtr request;
    int r = new_check_authorization(bus_, call, action, request);
    if (r < 0)
        return sd_bus_error_set_errnof(error, -r, "Cannot build the polkit query: %s", std::strerror(-r));
    Query& query = queries_[call];
    query.owner = this;
    query.call.reset(sd_bus_message_ref(call));
    query.action = action;
    sd_bus_slot* slot = nullptr;
    if ((r = sd_bus_call_async(bus_, &slot, request.get(), on_answer, &query, 0)) < 0) {
        queries_.erase(call);
        return sd_bus_error_set_errnof(error, -r, "Cannot ask polkit: %s", std::strerror(-r));
    }
    query.slot.reset(slot);
    return 1;  // answered once polkit has answered
}

int PolkitAuthorizer::on_answer(sd_bus_message* reply, void* userdata, sd_bus_error* /*error*/) {
    auto& query = *static_cast<Query*>(userdata);
    PolkitAuthorizer& self = *query.owner;
    self.settle(query, reply);
    query.slot.reset();  // sd-bus holds its own reference while this runs
    // The parked call goes back into the read queue: its handler runs again
    // and finds the verdict.
    sd_bus_message* call = query.call.get();
    if (int r = sd_bus_enqueue_for_read(self.bus_, call); r < 0) {
        log(LOG_ERR, "cannot dispatch a call again after polkit answered: %s", std::strerror(-r));
        (void)sd_bus_reply_method_errnof(call, -r, "Cannot dispatch the call after polkit answered: %s",
                                         std::strerror(-r));
        self.queries_.erase(call);
    }
    return 0;
}

void PolkitAuthorizer::settle(Query& query, sd_bus_message* reply) {
    if (const sd_bus_error* e = sd_bus_message_get_error(reply)) {
        query.verdict = Verdict::unavailable;
        query.detail = std::string(e->name ? e->name : "?") + ": " + (e->message ? e->message : "");
        return;
    }
    int authorized = 0, challenge = 0;
    int r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
    if (r >= 0) r = sd_bus_message_read(reply, "bb", &authorized, &challenge);
    if (r < 0) {
        query.verdict = Verdict::unavailable;
        query.detail = std::string("polkit's answer does not read as (bba{ss}): ") + std::strerror(-r);
        return;
    }
    query.verdict = authorized ? Verdict::granted : challenge ? Verdict::challenge : Verdict::denied;
}

std::optional<int> PolkitAuthorizer::answer(sd_bus_message* call, const char* action, uid_t uid,
                                            sd_bus_error* error) {
    auto node = queries_.extract(call);
    const Query& query = node.mapped();
    const auto user = static_cast<unsigned>(uid);
    if (query.action != action)  // cannot happen unless one message reaches two methods
        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                 "Access denied: polkit was asked about %s, not %s", query.action.c_str(),
                                 action);
    switch (query.verdict) {
        case Verdict::granted: return std::nullopt;
        case Verdict::challenge:
            return sd_bus_error_setf(error, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
                                     "Authentication is required for %s: call again allowing interactive "
                                     "authorization, with a polkit agent running",
                                     action);
        case Verdict::denied:
            log(LOG_NOTICE, "polkit denied %s to uid %u", action, user);
            return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                     "Access denied: polkit does not grant %s to uid %u", action, user);
        case Verdict::unavailable:
        case Verdict::pending: break;
    }
    log(LOG_NOTICE, "uid %u refused %s: polkit could not be asked (%s)", user, action, query.detail.c_str());
    return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                             "Access denied: without polkit only root may do this (%s needs it; %s)", action,
                             query.detail.c_str());
}

}  // namespace khod
