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

// liveupdate_num of the incoming LUO record (debugfs kho/in/sub_fdts/LUO,
// decoded by decode_luo_record): how many live updates led to this boot.
// Nothing when debugfs is not mounted, there is no incoming record (a cold
// boot), or the bytes are no longer a luo-v5 record: the kernel frees the
// record once it has parsed it, so later reads may see reused memory.
std::optional<std::uint64_t> incoming_liveupdate_number(const Sysroot& root);

}  // namespace khod
