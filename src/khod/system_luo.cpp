#include "system_luo.hpp"

#include <fcntl.h>
#include <linux/ioctl.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

namespace khod {

namespace {

// include/uapi/linux/liveupdate.h (Linux 7.2), which Debian 12's headers lack.
constexpr unsigned luo_ioctl_type = 0xBA;
constexpr unsigned long ioctl_create_session = _IO(luo_ioctl_type, 0x00);
constexpr unsigned long ioctl_retrieve_session = _IO(luo_ioctl_type, 0x01);
constexpr unsigned long ioctl_preserve_fd = _IO(luo_ioctl_type, 0x40);
constexpr unsigned long ioctl_retrieve_fd = _IO(luo_ioctl_type, 0x41);
constexpr unsigned long ioctl_finish = _IO(luo_ioctl_type, 0x42);
constexpr unsigned long ioctl_get_name = _IO(luo_ioctl_type, 0x43);
static_assert(ioctl_create_session == 0xBA00 && ioctl_get_name == 0xBA43);

constexpr std::size_t name_size = 64;  // LIVEUPDATE_SESSION_NAME_LENGTH

// struct liveupdate_ioctl_create_session and _retrieve_session.
struct SessionArg {
    std::uint32_t size;
    std::int32_t fd;
    char name[name_size];
};
static_assert(sizeof(SessionArg) == 72);

// struct liveupdate_session_preserve_fd and _retrieve_fd.
struct FdArg {
    std::uint32_t size;
    std::int32_t fd;
    alignas(8) std::uint64_t token;
};
static_assert(sizeof(FdArg) == 16);

// struct liveupdate_session_finish.
struct FinishArg {
    std::uint32_t size;
    std::uint32_t reserved;
};
static_assert(sizeof(FinishArg) == 8);

// struct liveupdate_session_get_name.
struct GetNameArg {
    std::uint32_t size;
    std::uint32_t reserved;
    char name[name_size];
};
static_assert(sizeof(GetNameArg) == 72);

int ioctl_retry(int fd, unsigned long request, void* arg) {
    int r = 0;
    do r = ::ioctl(fd, request, arg);
    while (r < 0 && errno == EINTR);
    return r;
}

}  // namespace

Result<UniqueFd> SystemLuo::open_device() const {
    KernelPath dev = root_.dev("liveupdate");
    UniqueFd fd(::open(dev.host.c_str(), O_RDWR | O_CLOEXEC));
    if (fd.valid()) return fd;
    int err = errno;
    if (err == ENOENT)
        // Reported as ENODEV: ENOENT from an ioctl means "no such session".
        return errno_error(ENODEV, dev.kernel,
                           "no such device node: the kernel has no LUO or was booted without liveupdate=on");
    if (err == EBUSY)
        return errno_error(
            err, dev.kernel,
            "open in another process: systemd holds it while it keeps LUO sessions, or another "
            "LUO client does (fuser " +
                dev.kernel + ")");
    if (err == EIO)
        return errno_error(err, dev.kernel, "the kernel failed to restore the previous kernel's LUO data");
    return errno_error(err, dev.kernel, "open");
}

Result<UniqueFd> SystemLuo::session_ioctl(unsigned long request, const std::string& name, const char* what) {
    if (name.empty() || name.size() >= name_size)
        return errno_error(EINVAL, name, "a LUO session name is 1 to 63 bytes");
    auto dev = open_device();
    if (!dev) return dev.error();
    SessionArg arg{};
    arg.size = sizeof(arg);
    arg.fd = -1;
    std::memcpy(arg.name, name.data(), name.size());
    if (ioctl_retry(dev->get(), request, &arg) < 0) return errno_error(errno, name, what);
    return UniqueFd(arg.fd);
}

Result<UniqueFd> SystemLuo::create_session(const std::string& name) {
    return session_ioctl(ioctl_create_session, name, "LIVEUPDATE_IOCTL_CREATE_SESSION");
}

Result<UniqueFd> SystemLuo::retrieve_session(const std::string& name) {
    return session_ioctl(ioctl_retrieve_session, name, "LIVEUPDATE_IOCTL_RETRIEVE_SESSION");
}

Result<void> SystemLuo::preserve_fd(int session_fd, std::uint64_t token, int fd) {
    FdArg arg{};
    arg.size = sizeof(arg);
    arg.fd = fd;
    arg.token = token;
    if (ioctl_retry(session_fd, ioctl_preserve_fd, &arg) < 0)
        return errno_error(errno, "token " + std::to_string(token), "LIVEUPDATE_SESSION_PRESERVE_FD");
    return {};
}

Result<UniqueFd> SystemLuo::retrieve_fd(int session_fd, std::uint64_t token) {
    FdArg arg{};
    arg.size = sizeof(arg);
    arg.fd = -1;
    arg.token = token;
    if (ioctl_retry(session_fd, ioctl_retrieve_fd, &arg) < 0)
        return errno_error(errno, "token " + std::to_string(token), "LIVEUPDATE_SESSION_RETRIEVE_FD");
    return UniqueFd(arg.fd);
}

Result<void> SystemLuo::finish(int session_fd) {
    FinishArg arg{};
    arg.size = sizeof(arg);
    if (ioctl_retry(session_fd, ioctl_finish, &arg) < 0)
        return errno_error(errno, "", "LIVEUPDATE_SESSION_FINISH");
    return {};
}

Result<std::string> SystemLuo::session_name(int session_fd) {
    GetNameArg arg{};
    arg.size = sizeof(arg);
    if (ioctl_retry(session_fd, ioctl_get_name, &arg) < 0)
        return errno_error(errno, "", "LIVEUPDATE_SESSION_GET_NAME");
    return std::string(arg.name, ::strnlen(arg.name, name_size));
}

}  // namespace khod
