// libFuzzer target for the kernel uevent parser (NETLINK_KOBJECT_UEVENT
// datagrams, as khod reads them from the kernel or the test socket) and the
// hotplug filter behind it. A crash, a sanitizer report or an exception is a
// finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "khod/kdump/uevent.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view datagram(reinterpret_cast<const char*>(data), size);
    auto uevent = khod::parse_kernel_uevent(datagram);
    if (!uevent) return 0;
    // Nothing parsed may be longer than the datagram.
    if (uevent->action.size() > size || uevent->devpath.size() > size || uevent->subsystem.size() > size)
        std::abort();
    if (auto event = khod::hotplug_event(*uevent); event && event->devpath != uevent->devpath) std::abort();
    return 0;
}
