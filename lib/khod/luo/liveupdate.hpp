// The Live Update Orchestrator (7.x): /dev/liveupdate.
#pragma once

#include <cstdint>
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

// How many live updates led to this boot: liveupdate_num of the incoming
// LUO record (debugfs kho/in/sub_fdts/LUO, decoded by decode_luo_record).
// The kernel frees that record once it has parsed it at boot, so its bytes
// are usually reused memory by the time khod reads them; then the outgoing
// record's number (kho/out/sub_fdts/LUO, which the kernel sets to this
// boot's plus one: 1 after a cold boot, 2 after one live update) says it.
// Nothing when debugfs is not mounted or neither record reads as luo-v5.
std::optional<std::uint64_t> incoming_liveupdate_number(const Sysroot& root);

}  // namespace khod
