#include "bus_scratch.hpp"

#include <string>

#include "bus_object.hpp"
#include "guard.hpp"
#include "khod/scratch/scratch_plan.hpp"
#include "log.hpp"

namespace khod {

const sd_bus_vtable ScratchObject::vtable_[] = {
    SD_BUS_VTABLE_START(0),
    SD_BUS_METHOD_WITH_ARGS("Plan",
                            SD_BUS_ARGS("s", kernel, "s", initrd, "s", next_cmdline, "u", headroom_percent),
                            SD_BUS_RESULT("s", parameter, "b", fits, "s", verdict, "s", plan_json),
                            guarded_method<method_plan>, SD_BUS_VTABLE_UNPRIVILEGED),
    SD_BUS_VTABLE_END,
};

int ScratchObject::attach() {
    return add_interface(bus_, slot_, khod1::scratch_interface, vtable_, this);
}

int ScratchObject::method_plan(sd_bus_message* m, void* userdata, sd_bus_error* error) {
    auto* self = static_cast<ScratchObject*>(userdata);
    const char* kernel = nullptr;
    const char* initrd = nullptr;
    const char* next_cmdline = nullptr;
    std::uint32_t headroom = 0;
    int r = sd_bus_message_read(m, "sssu", &kernel, &initrd, &next_cmdline, &headroom);
    if (r < 0) return r;
    if (headroom > 1000)
        return reply_failure(m, error,
                             {Errc::invalid_argument, plain_error("", "headroom_percent is at most 1000")});
    ScratchPlanRequest request;
    if (*kernel) request.kernel = kernel;
    if (*initrd) request.initrd = initrd;
    if (*next_cmdline) request.next_cmdline = next_cmdline;
    request.headroom_percent = headroom;
    auto plan = plan_scratch_for(*self->root_, request);
    // The planner fails only when it cannot read its inputs (the kernel, the
    // initrd, /proc and /sys through the sysroot).
    if (!plan) return reply_failure(m, error, {Errc::io_error, plan.error()});
    return sd_bus_reply_method_return(
        m, "sbss", plan->recommendation.word.c_str(), static_cast<int>(plan->fits_ok),
        to_string(plan->verdict),
        to_json(*plan).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
}

}  // namespace khod
