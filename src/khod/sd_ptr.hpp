// RAII for libsystemd objects: each holds one reference, dropped on scope exit.
#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include <memory>

namespace khod {

struct SdEventUnref {
    void operator()(sd_event* e) const { sd_event_unref(e); }
};
struct SdEventSourceUnref {
    void operator()(sd_event_source* s) const { sd_event_source_unref(s); }
};
struct SdBusUnref {
    // Flush so replies queued before shutdown still go out.
    void operator()(sd_bus* b) const { sd_bus_flush_close_unref(b); }
};
struct SdBusSlotUnref {
    void operator()(sd_bus_slot* s) const { sd_bus_slot_unref(s); }
};
struct SdBusMessageUnref {
    void operator()(sd_bus_message* m) const { sd_bus_message_unref(m); }
};

using SdEventPtr = std::unique_ptr<sd_event, SdEventUnref>;
using SdEventSourcePtr = std::unique_ptr<sd_event_source, SdEventSourceUnref>;
using SdBusPtr = std::unique_ptr<sd_bus, SdBusUnref>;
using SdBusSlotPtr = std::unique_ptr<sd_bus_slot, SdBusSlotUnref>;
using SdBusMessagePtr = std::unique_ptr<sd_bus_message, SdBusMessageUnref>;

// An sd_bus_error that frees itself.
class SdBusError {
public:
    SdBusError() = default;
    SdBusError(const SdBusError&) = delete;
    SdBusError& operator=(const SdBusError&) = delete;
    ~SdBusError() { sd_bus_error_free(&error_); }
    sd_bus_error* get() { return &error_; }
    const char* name() const { return error_.name; }
    const char* message() const { return error_.message; }

private:
    sd_bus_error error_{};  // SD_BUS_ERROR_NULL, without its C compound literal
};

}  // namespace khod
