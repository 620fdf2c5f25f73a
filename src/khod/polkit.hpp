// Who may call a mutating method: root always; anyone else only when polkit
// says so for the method's action (org.kexec.khod1.policy). The question is
// asked asynchronously, so a slow or interactive answer never blocks the
// event loop: the call is parked, and sd-bus dispatches it again once polkit
// has answered (as systemd's daemons do).
#pragma once

#include <systemd/sd-bus.h>

#include <cstddef>
#include <map>
#include <optional>
#include <string>

#include "sd_ptr.hpp"

namespace khod {

class PolkitAuthorizer {
public:
    // At most this many calls wait for polkit at once; more are refused, so
    // callers cannot grow khod's memory without bound.
    static constexpr std::size_t max_pending = 256;

    explicit PolkitAuthorizer(sd_bus* bus) : bus_(bus) {}
    PolkitAuthorizer(const PolkitAuthorizer&) = delete;
    PolkitAuthorizer& operator=(const PolkitAuthorizer&) = delete;

    // The first thing a mutating method does:
    //   if (auto done = authorizer.check(m, action, error)) return *done;
    // nullopt: the caller may go on. Otherwise the value the handler returns:
    // negative with error set when refused, 1 when the call waits for polkit
    // (it will reach the handler again, and then be answered here).
    std::optional<int> check(sd_bus_message* call, const char* action, sd_bus_error* error);

private:
    enum class Verdict { pending, granted, denied, challenge, unavailable };
    struct Query {
        PolkitAuthorizer* owner = nullptr;
        SdBusMessagePtr call;
        std::string action;
        SdBusSlotPtr slot;
        Verdict verdict = Verdict::pending;
        std::string detail;  // polkit's error, when it could not be asked
    };

    int ask(sd_bus_message* call, const char* action, sd_bus_error* error);
    static int on_answer(sd_bus_message* reply, void* userdata, sd_bus_error* error);
    void settle(Query& query, sd_bus_message* reply);
    std::optional<int> answer(sd_bus_message* call, const char* action, uid_t uid, sd_bus_error* error);

    sd_bus* bus_;
    std::map<sd_bus_message*, Query> queries_;  // keyed by the parked call, which holds its place
};

// The caller's effective uid as the bus saw it; negative errno when unknown.
int bus_caller_uid(sd_bus_message* call, uid_t* uid);

}  // namespace khod
