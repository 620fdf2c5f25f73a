// The Live Update Orchestrator (7.x): /dev/liveupdate.
#pragma once

#include <optional>
#include <string>

#include "khod/base/cmdline.hpp"
#include "khod/base/sysroot.hpp"

namespace khod {

struct LiveupdateStatus {
    std::string device;                        // kernel path of the device node
    bool present = false;                      // the node exists (needs liveupdate=on and KHO)
    std::optional<std::string> cmdline_value;  // text after "liveupdate="
};

LiveupdateStatus probe_liveupdate(const Sysroot& root, const Cmdline& cmdline);

}  // namespace khod
