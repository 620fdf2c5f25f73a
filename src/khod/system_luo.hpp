// The LuoKernel that makes the real ioctls on /dev/liveupdate and on session fds.
#pragma once

#include "khod/base/sysroot.hpp"
#include "khod/luo/luo_kernel.hpp"

namespace khod {

class SystemLuo : public LuoKernel {
public:
    explicit SystemLuo(const Sysroot& root) : root_(root) {}

    Result<UniqueFd> create_session(const std::string& name) override;
    Result<UniqueFd> retrieve_session(const std::string& name) override;
    Result<void> preserve_fd(int session_fd, std::uint64_t token, int fd) override;
    Result<UniqueFd> retrieve_fd(int session_fd, std::uint64_t token) override;
    Result<void> finish(int session_fd) override;
    Result<std::string> session_name(int session_fd) override;

private:
    // Opens the device for one ioctl; it is exclusive, so never held longer.
    Result<UniqueFd> open_device() const;
    Result<UniqueFd> session_ioctl(unsigned long request, const std::string& name, const char* what);
    const Sysroot& root_;
};

}  // namespace khod
