// The barrier before a live update's reboot, after logind's delay
// inhibitors: a client takes an fd with Inhibit(); when Exec starts, khod
// waits until every such fd is closed or InhibitDelayMaxSec= runs out. A
// VMM uses the window to pause its vCPUs and preserve guest memory. khod
// keeps the read end of a pipe and watches it for the hang-up that closing
// the client's write end (in every process that has it) causes.
#pragma once

#include <sys/types.h>
#include <systemd/sd-event.h>

#include <cstdint>
#include <functional>
#include <list>
#include <string>
#include <vector>

#include "khod/base/errc.hpp"
#include "khod/base/fd.hpp"
#include "khod/base/result.hpp"
#include "sd_ptr.hpp"

namespace khod {

struct Inhibitor {
    std::string who;
    std::string why;
    uid_t uid = 0;
    pid_t pid = 0;
};

class ExecBarrier {
public:
    static constexpr std::size_t max_inhibitors = 256;
    static constexpr std::size_t max_per_uid = 32;
    static constexpr std::size_t max_text = 255;  // bytes of who and why

    explicit ExecBarrier(sd_event* event) : event_(event) {}
    ExecBarrier(const ExecBarrier&) = delete;
    ExecBarrier& operator=(const ExecBarrier&) = delete;

    // A new inhibitor; the returned fd is the caller's end.
    Result<UniqueFd, Failure> inhibit(Inhibitor who);

    // Calls done once every inhibitor is released, or after max_usec with
    // those still held (they are logged as timed out and dropped). At once
    // when none is held.
    using Done = std::function<void(const std::vector<Inhibitor>& timed_out)>;
    Result<void, Failure> wait(std::uint64_t max_usec, Done done);
    bool waiting() const { return static_cast<bool>(done_); }

    std::vector<Inhibitor> held() const;
    void on_change(std::function<void()> listener) { listener_ = std::move(listener); }

private:
    struct Held {
        Inhibitor who;
        UniqueFd read_end;
        SdEventSourcePtr source;
        ExecBarrier* barrier = nullptr;
    };
    static int on_hangup(sd_event_source* source, int fd, uint32_t revents, void* userdata);
    static int on_timeout(sd_event_source* source, uint64_t usec, void* userdata);
    void release(Held* held);
    void finish(const std::vector<Inhibitor>& timed_out);
    void changed() const;

    sd_event* event_;
    std::list<Held> held_;  // stable addresses: each source's userdata points at its entry
    Done done_;
    SdEventSourcePtr timer_;
    std::function<void()> listener_;
};

}  // namespace khod
