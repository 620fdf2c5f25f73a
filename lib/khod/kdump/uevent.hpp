// Kernel uevents as khod sees them: the NETLINK_KOBJECT_UEVENT wire format
// ("action@devpath\0KEY=VALUE\0..."), and which of them are CPU or memory
// hotplug that can make a loaded crash kernel's elfcorehdr stale.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "khod/base/result.hpp"

namespace khod {

struct Uevent {
    std::string action;  // ACTION: add, remove, change, online, offline, ...
    std::string devpath;
    std::string subsystem;
    std::optional<std::uint64_t> seqnum;  // SEQNUM, the kernel's running count
    bool synthetic = false;               // SYNTH_UUID: written to a uevent file, no state changed
};

// One datagram as the kernel sends it. Refuses anything else (libudev's own
// "libudev" monitor messages, truncated or malformed data) with an Error that
// says why; never reads past the datagram.
Result<Uevent> parse_kernel_uevent(std::string_view datagram);

enum class HotplugSubsystem { cpu, memory };
const char* to_string(HotplugSubsystem s);

struct HotplugEvent {
    HotplugSubsystem subsystem = HotplugSubsystem::cpu;
    std::string action;
    std::string devpath;
    std::optional<std::uint64_t> seqnum;
    bool synthetic = false;
};

// The events of the cpu and memory subsystems whose action is add, remove,
// online or offline (the ones distributions' kdump udev rules reload on);
// nullopt for every other event.
std::optional<HotplugEvent> hotplug_event(const Uevent& event);

}  // namespace khod
