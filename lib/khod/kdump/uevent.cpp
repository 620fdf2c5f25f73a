#include "khod/kdump/uevent.hpp"

#include <charconv>

namespace khod {

Result<Uevent> parse_kernel_uevent(std::string_view data) {
    const std::string what = "uevent";
    if (data.empty()) return plain_error(what, "empty datagram");
    // The header is "action@devpath" up to the first NUL; libudev's monitor
    // messages start with "libudev\0" and carry no '@'.
    const std::size_t header_end = data.find('\0');
    const std::string_view header = data.substr(0, header_end);
    const std::size_t at = header.find('@');
    if (at == std::string_view::npos || at == 0 || at + 1 >= header.size())
        return plain_error(what, "not a kernel uevent (no \"action@devpath\" header)");
    Uevent ev;
    std::string_view rest =
        header_end == std::string_view::npos ? std::string_view{} : data.substr(header_end + 1);
    while (!rest.empty()) {
        const std::size_t end = rest.find('\0');
        const std::string_view kv = rest.substr(0, end);
        rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
        if (kv.empty()) continue;
        const std::size_t eq = kv.find('=');
        if (eq == std::string_view::npos) continue;  // the kernel never sends these; skip, do not guess
        const std::string_view key = kv.substr(0, eq), value = kv.substr(eq + 1);
        if (key == "ACTION") {
            ev.action = value;
        } else if (key == "DEVPATH") {
            ev.devpath = value;
        } else if (key == "SUBSYSTEM") {
            ev.subsystem = value;
        } else if (key == "SEQNUM") {
            std::uint64_t n = 0;
            auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
            if (ec != std::errc() || p != value.data() + value.size() || value.empty())
                return plain_error(what, "malformed SEQNUM \"" + std::string(value) + "\"");
            ev.seqnum = n;
        } else if (key == "SYNTH_UUID") {
            ev.synthetic = true;
        }
    }
    // The header must agree with the variables; a datagram that does not is not the kernel's.
    if (ev.action.empty()) ev.action = header.substr(0, at);
    if (ev.devpath.empty()) ev.devpath = header.substr(at + 1);
    if (ev.action != header.substr(0, at) || ev.devpath != header.substr(at + 1))
        return plain_error(what, "header \"" + std::string(header) + "\" disagrees with ACTION/DEVPATH");
    return ev;
}

const char* to_string(HotplugSubsystem s) {
    return s == HotplugSubsystem::memory ? "memory" : "cpu";
}

std::optional<HotplugEvent> hotplug_event(const Uevent& event) {
    HotplugEvent h;
    if (event.subsystem == "cpu")
        h.subsystem = HotplugSubsystem::cpu;
    else if (event.subsystem == "memory")
        h.subsystem = HotplugSubsystem::memory;
    else
        return std::nullopt;
    if (event.action != "add" && event.action != "remove" && event.action != "online" &&
        event.action != "offline")
        return std::nullopt;
    h.action = event.action;
    h.devpath = event.devpath;
    h.seqnum = event.seqnum;
    h.synthetic = event.synthetic;
    return h;
}

}  // namespace khod
