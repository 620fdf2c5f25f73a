#include "bus_job.hpp"

#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <string>

#include "bus_object.hpp"
#include "guard.hpp"
#include "log.hpp"
#include "sd_ptr.hpp"

namespace khod {

namespace {

// "Kdump.Load", for the log.
std::string call_name(sd_bus_message* call) {
    const char* interface = sd_bus_message_get_interface(call);
    const char* member = sd_bus_message_get_member(call);
    std::string name = interface ? interface : "";
    name.erase(0, name.rfind('.') + 1);
    return name + "." + (member ? member : "?");
}

// A reference std::function can copy: the loop alone makes and drops it.
std::shared_ptr<sd_bus_message> hold(sd_bus_message* call) {
    return {sd_bus_message_ref(call), sd_bus_message_unref};
}

void send_answer(sd_bus_message* call, const CallAnswer& answer) {
    SdBusError error;
    int r = 0;
    try {
        r = answer(call, error.get());
    } catch (const std::exception& e) {
        r = reply_exception(call, error.get(), e.what());
    } catch (...) {
        r = reply_exception(call, error.get(), "unknown exception");
    }
    if (r >= 0) return;
    const int sent = sd_bus_error_is_set(error.get()) ? sd_bus_reply_method_error(call, error.get())
                                                      : sd_bus_reply_method_errno(call, r, nullptr);
    if (sent < 0) log(LOG_WARNING, "cannot answer %s: %s", call_name(call).c_str(), std::strerror(-sent));
}

int refuse_busy(sd_bus_message* call, sd_bus_error* error) {
    return reply_failure(call, error,
                         {Errc::busy, plain_error({}, std::to_string(JobQueue::max_waiting) +
                                                          " calls wait for khod already; try again when "
                                                          "they are answered")});
}

}  // namespace

int answer_in_turn(JobQueue& jobs, sd_bus_message* call, sd_bus_error* error, CallAnswer answer) {
    auto held = hold(call);
    const bool queued = jobs.submit(
        {call_name(call), {}, [held, answer = std::move(answer)] { send_answer(held.get(), answer); }});
    return queued ? 1 : refuse_busy(call, error);
}

int answer_with_job(JobQueue& jobs, sd_bus_message* call, sd_bus_error* error,
                    std::function<CallOutcome()> op,
                    std::function<int(sd_bus_message*, sd_bus_error*, const CallOutcome&)> reply) {
    auto outcome = std::make_shared<std::optional<CallOutcome>>();
    auto held = hold(call);
    const std::string name = call_name(call);
    auto work = [outcome, op = std::move(op)] { outcome->emplace(op()); };
    auto done = [held, outcome, name, reply = std::move(reply)] {
        send_answer(held.get(), [&](sd_bus_message* m, sd_bus_error* e) {
            if (*outcome) return reply(m, e, **outcome);
            // op threw; JobQueue logged what.
            return reply(m, e, Failure{Errc::io_error, plain_error({}, name + " ended with an exception")});
        });
    };
    return jobs.submit({name, std::move(work), std::move(done)}) ? 1 : refuse_busy(call, error);
}

}  // namespace khod
