// libFuzzer target for what khod reads from /etc: khod.conf and its drop-ins
// (INI through inih, durations, sizes) and the shell-assignment files of
// kdump-tools and kdumpctl it imports recipes from. Each input is read as one
// of the two formats, as a hash of its bytes picks, so an execution costs one
// parse. A crash, a sanitizer report or an exception is a finding.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "khod/base/units.hpp"
#include "khod/kdump/kdump_recipe.hpp"
#include "khod/khod_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    if (std::hash<std::string_view>{}(text) % 2) {
        khod::KhodConfig config;
        (void)khod::apply_khod_config(text, "/etc/khod/khod.conf.d/fuzz.conf", config);
        (void)config.kdump.recipe();
    } else {
        (void)khod::parse_shell_assignments(text, "/etc/default/kdump-tools");
    }
    (void)khod::parse_duration(text.substr(0, 64), "SettleSec=");
    (void)khod::memparse(text.substr(0, 64));
    return 0;
}
