// No C++ exception may unwind through sd-bus's or sd-event's C frames (that
// is undefined behaviour, in practice std::terminate): every callback khod
// gives them runs its body through one of these. nlohmann::json throws on
// wrong types and bad UTF-8, std::string and std::filesystem on exhaustion.
#pragma once

#include <systemd/sd-bus.h>

#include <exception>

#include "log.hpp"

namespace khod {

// Answers a call whose handler threw: logs it and sets error to
// org.kexec.khod1.Error.IOError with what. Returns the negative errno sd-bus
// expects from the handler.
int reply_exception(sd_bus_message* call, sd_bus_error* error, const char* what) noexcept;

// A vtable method entry: Handler, with any exception answered as IOError.
template <sd_bus_message_handler_t Handler>
int guarded_method(sd_bus_message* m, void* userdata, sd_bus_error* error) noexcept {
    try {
        return Handler(m, userdata, error);
    } catch (const std::exception& e) {
        return reply_exception(m, error, e.what());
    } catch (...) {
        return reply_exception(m, error, "unknown exception");
    }
}

// An sd-event callback's body: an exception is logged and the source stays
// armed (0), so one bad event does not end khod or its event source.
template <class Body>
int guarded_event(const char* where, Body&& body) noexcept {
    try {
        return body();
    } catch (const std::exception& e) {
        log(LOG_ERR, "%s: %s", where, e.what());
    } catch (...) {
        log(LOG_ERR, "%s: unknown exception", where);
    }
    return 0;
}

}  // namespace khod
