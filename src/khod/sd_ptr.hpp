// RAII for libsystemd objects: each holds one reference, dropped on scope exit.
#pragma once

#include <systemd/sd-event.h>

#include <memory>

namespace khod {

struct SdEventUnref {
    void operator()(sd_event* e) const { sd_event_unref(e); }
};
struct SdEventSourceUnref {
    void operator()(sd_event_source* s) const { sd_event_source_unref(s); }
};

using SdEventPtr = std::unique_ptr<sd_event, SdEventUnref>;
using SdEventSourcePtr = std::unique_ptr<sd_event_source, SdEventSourceUnref>;

}  // namespace khod
