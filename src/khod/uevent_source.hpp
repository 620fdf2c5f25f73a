// Where khod hears about CPU and memory hotplug: udev's monitor (libudev)
// when udevd runs (/run/udev/control exists), else the kernel's own uevents
// on a NETLINK_KOBJECT_UEVENT socket (the VM's initramfs, containers without
// udevd). Tests use a third, explicit source: a unix datagram socket that
// takes datagrams in the kernel's uevent format (`khod --uevent-socket`).
// Each is one sd-event io source; nothing polls.
#pragma once

#include <systemd/sd-event.h>

#include <functional>
#include <memory>
#include <string>

#include "khod/base/fd.hpp"
#include "khod/base/result.hpp"
#include "khod/base/sysroot.hpp"
#include "khod/kdump/uevent.hpp"
#include "sd_ptr.hpp"

struct udev;
struct udev_monitor;

namespace khod {

class UeventSource {
public:
    enum class Kind { none, udev, kernel, test_socket };
    // Which source a live system uses (khod --uevent-source): udev's monitor
    // hears nothing outside the host's network namespace, the kernel's own
    // uevents reach every namespace the initial user namespace owns, so
    // khod.service (PrivateNetwork=yes) says kernel.
    enum class Pick { automatic, kernel, udev };
    using Handler = std::function<void(const HotplugEvent&)>;
    using LostHandler = std::function<void()>;  // the socket overflowed: events were dropped
    using BatchDone = std::function<void()>;    // after each wakeup's events

    // test_socket non-empty: that source. Else, on the live system, what
    // pick says, automatic being udev while udevd runs, else kernel; none
    // for a fixture sysroot (its events would not be its tree's).
    static Result<std::unique_ptr<UeventSource>> open(const Sysroot& root, sd_event* event,
                                                      const std::string& test_socket, Pick pick,
                                                      Handler handler, LostHandler lost, BatchDone done);
    ~UeventSource();
    UeventSource(const UeventSource&) = delete;
    UeventSource& operator=(const UeventSource&) = delete;

    Kind kind() const { return kind_; }
    // "udev", "kernel", "test-socket" or "none": the EventSource property.
    const char* name() const;
    // Off: events wait in the socket (sized for storms; an overflow still
    // reaches the lost handler) until turned on again.
    void set_enabled(bool on);

private:
    UeventSource() = default;
    static int on_readable(sd_event_source* source, int fd, uint32_t revents, void* userdata);
    void drain_datagrams();
    void drain_udev();

    Kind kind_ = Kind::none;
    UniqueFd fd_;
    std::string socket_path_;
    ::udev* udev_ = nullptr;
    udev_monitor* monitor_ = nullptr;
    SdEventSourcePtr io_;
    Handler handler_;
    LostHandler lost_;
    BatchDone done_;
};

}  // namespace khod
