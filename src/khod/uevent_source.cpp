#include "uevent_source.hpp"

#include <libudev.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "guard.hpp"
#include "log.hpp"

namespace khod {

namespace {

// Big enough for a few thousand events while khod sits in a load syscall
// (udevd asks for 128 MiB); SO_RCVBUFFORCE passes rmem_max as root.
constexpr int kReceiveBuffer = 16 * 1024 * 1024;

}  // namespace

Result<std::unique_ptr<UeventSource>> UeventSource::open(const Sysroot& root, sd_event* event,
                                                         const std::string& test_socket, Pick pick,
                                                         Handler handler, LostHandler lost, BatchDone done) {
    std::unique_ptr<UeventSource> s(new UeventSource());
    s->handler_ = std::move(handler);
    s->lost_ = std::move(lost);
    s->done_ = std::move(done);
    int fd = -1;
    if (!test_socket.empty()) {
        s->kind_ = Kind::test_socket;
        s->fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!s->fd_.valid()) return errno_error(errno, test_socket, "socket(AF_UNIX)");
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        if (test_socket.size() >= sizeof addr.sun_path)
            return plain_error(test_socket, "socket path too long");
        std::memcpy(addr.sun_path, test_socket.c_str(), test_socket.size() + 1);
        ::unlink(test_socket.c_str());
        if (::bind(s->fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
            return errno_error(errno, test_socket, "cannot bind the test uevent socket");
        s->socket_path_ = test_socket;
        fd = s->fd_.get();
    } else if (!root.is_live()) {
        return s;  // kind none: a fixture tree has no hotplug
    } else if (pick == Pick::udev ||
               (pick == Pick::automatic && std::filesystem::exists("/run/udev/control"))) {
        s->kind_ = Kind::udev;
        s->udev_ = udev_new();
        if (!s->udev_) return errno_error(errno, "", "udev_new");
        s->monitor_ = udev_monitor_new_from_netlink(s->udev_, "udev");
        if (!s->monitor_) return errno_error(errno, "", "udev_monitor_new_from_netlink(udev)");
        for (const char* sub : {"cpu", "memory"}) {
            int r = udev_monitor_filter_add_match_subsystem_devtype(s->monitor_, sub, nullptr);
            if (r < 0) return errno_error(-r, sub, "udev_monitor_filter_add_match_subsystem_devtype");
        }
        (void)udev_monitor_set_receive_buffer_size(s->monitor_, kReceiveBuffer);
        int r = udev_monitor_enable_receiving(s->monitor_);
        if (r < 0) return errno_error(-r, "", "udev_monitor_enable_receiving");
        fd = udev_monitor_get_fd(s->monitor_);
    } else {
        s->kind_ = Kind::kernel;
        s->fd_.reset(::socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_KOBJECT_UEVENT));
        if (!s->fd_.valid()) return errno_error(errno, "", "socket(NETLINK_KOBJECT_UEVENT)");
        int size = kReceiveBuffer;
        if (::setsockopt(s->fd_.get(), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
            (void)::setsockopt(s->fd_.get(), SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
        sockaddr_nl addr{};
        addr.nl_family = AF_NETLINK;
        addr.nl_groups = 1;  // the kernel's uevent multicast group
        if (::bind(s->fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
            return errno_error(errno, "", "bind(NETLINK_KOBJECT_UEVENT)");
        fd = s->fd_.get();
    }
    sd_event_source* io = nullptr;
    int r = sd_event_add_io(event, &io, fd, EPOLLIN, &UeventSource::on_readable, s.get());
    if (r < 0) return errno_error(-r, "", "sd_event_add_io");
    s->io_.reset(io);
    return s;
}

UeventSource::~UeventSource() {
    io_.reset();
    if (monitor_) udev_monitor_unref(monitor_);
    if (udev_) udev_unref(udev_);
    if (!socket_path_.empty()) ::unlink(socket_path_.c_str());
}

void UeventSource::set_enabled(bool on) {
    if (io_) sd_event_source_set_enabled(io_.get(), on ? SD_EVENT_ON : SD_EVENT_OFF);
}

const char* UeventSource::name() const {
    switch (kind_) {
        case Kind::udev: return "udev";
        case Kind::kernel: return "kernel";
        case Kind::test_socket: return "test-socket";
        case Kind::none: break;
    }
    return "none";
}

int UeventSource::on_readable(sd_event_source* /*source*/, int /*fd*/, uint32_t /*revents*/, void* userdata) {
    auto* self = static_cast<UeventSource*>(userdata);
    return guarded_event("uevent", [self] {
        if (self->kind_ == Kind::udev)
            self->drain_udev();
        else
            self->drain_datagrams();
        if (self->done_) self->done_();
        return 0;
    });
}

void UeventSource::drain_datagrams() {
    char buf[8192];
    for (;;) {
        sockaddr_nl from{};
        iovec iov{buf, sizeof buf};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        if (kind_ == Kind::kernel) {
            msg.msg_name = &from;
            msg.msg_namelen = sizeof from;
        }
        ssize_t n = ::recvmsg(fd_.get(), &msg, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == ENOBUFS) {
                log(LOG_WARNING,
                    "uevent socket overflowed: hotplug events were lost; treating it as an event");
                if (lost_) lost_();
                continue;
            }
            if (errno != EAGAIN) log(LOG_WARNING, "reading uevents: %s", std::strerror(errno));
            return;
        }
        // Only the kernel (port 0) speaks on the uevent group; anything else is not to be believed.
        if (kind_ == Kind::kernel && from.nl_pid != 0) continue;
        if ((msg.msg_flags & MSG_TRUNC) != 0) continue;
        auto ev = parse_kernel_uevent(std::string_view(buf, static_cast<std::size_t>(n)));
        if (!ev) {
            if (kind_ == Kind::test_socket)
                log(LOG_WARNING, "test uevent: %s", ev.error().describe().c_str());
            continue;
        }
        if (auto h = hotplug_event(*ev)) handler_(*h);
    }
}

void UeventSource::drain_udev() {
    for (;;) {
        errno = 0;
        udev_device* dev = udev_monitor_receive_device(monitor_);
        if (!dev) {
            if (errno == ENOBUFS) {
                log(LOG_WARNING,
                    "udev monitor overflowed: hotplug events were lost; treating it as an event");
                if (lost_) lost_();
                continue;
            }
            return;
        }
        Uevent ev;
        const char* v = udev_device_get_action(dev);
        ev.action = v ? v : "";
        v = udev_device_get_devpath(dev);
        ev.devpath = v ? v : "";
        v = udev_device_get_subsystem(dev);
        ev.subsystem = v ? v : "";
        if (unsigned long long seq = udev_device_get_seqnum(dev); seq != 0) ev.seqnum = seq;
        ev.synthetic = udev_device_get_property_value(dev, "SYNTH_UUID") != nullptr;
        udev_device_unref(dev);
        if (auto h = hotplug_event(ev)) handler_(*h);
    }
}

}  // namespace khod
