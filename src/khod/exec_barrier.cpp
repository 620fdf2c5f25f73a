#include "exec_barrier.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <ctime>

#include "guard.hpp"
#include "log.hpp"

namespace khod {

namespace {

Failure barrier_failure(Errc kind, std::string message) {
    return Failure{kind, plain_error("", std::move(message))};
}

}  // namespace

Result<UniqueFd, Failure> ExecBarrier::inhibit(Inhibitor who) {
    if (who.who.empty() || who.who.size() > max_text || who.why.size() > max_text)
        return barrier_failure(Errc::invalid_argument, "who must be 1-255 bytes and why at most 255");
    const auto mine =
        std::count_if(held_.begin(), held_.end(), [&](const Held& h) { return h.who.uid == who.uid; });
    if (held_.size() >= max_inhibitors || static_cast<std::size_t>(mine) >= max_per_uid)
        return barrier_failure(Errc::busy, "too many inhibitors held; close some first");
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC | O_NONBLOCK) != 0)
        return Failure{Errc::io_error, errno_error(errno, "", "pipe2 for an inhibitor")};
    UniqueFd read_end(ends[0]), write_end(ends[1]);
    Held& h = held_.emplace_back();
    h.who = std::move(who);
    h.barrier = this;
    sd_event_source* source = nullptr;
    // EPOLLIN too: a pipe's read end reports the last writer's close as readable (EOF).
    int r = sd_event_add_io(event_, &source, read_end.get(), EPOLLIN, &ExecBarrier::on_hangup, &h);
    if (r < 0) {
        held_.pop_back();
        return Failure{Errc::io_error, errno_error(-r, "", "watching an inhibitor")};
    }
    h.read_end = std::move(read_end);
    h.source.reset(source);
    log(LOG_INFO, "inhibitor taken by %s (%s), uid %u, pid %d", h.who.who.c_str(), h.who.why.c_str(),
        static_cast<unsigned>(h.who.uid), static_cast<int>(h.who.pid));
    changed();
    return write_end;
}

int ExecBarrier::on_hangup(sd_event_source* /*source*/, int fd, uint32_t revents, void* userdata) {
    auto* h = static_cast<Held*>(userdata);
    return guarded_event("inhibitor", [&] {
        if (!(revents & (EPOLLHUP | EPOLLERR))) {
            // Whatever a client writes is drained and ignored; only EOF counts.
            std::array<char, 256> sink{};
            const ssize_t n = ::read(fd, sink.data(), sink.size());
            const bool still_open = n > 0 || (n < 0 && errno == EAGAIN);
            if (still_open) return 0;
        }
        h->barrier->release(h);
        return 0;
    });
}

void ExecBarrier::release(Held* held) {
    log(LOG_INFO, "inhibitor of %s released", held->who.who.c_str());
    held_.remove_if([held](const Held& h) { return &h == held; });
    changed();
    if (done_ && held_.empty()) finish({});
}

Result<void, Failure> ExecBarrier::wait(std::uint64_t max_usec, Done done) {
    if (done_) return barrier_failure(Errc::wrong_state, "an exec is already waiting for its inhibitors");
    done_ = std::move(done);
    if (held_.empty()) {
        finish({});
        return {};
    }
    for (const Held& h : held_)
        log(LOG_NOTICE, "waiting for inhibitor %s (%s), uid %u, pid %d", h.who.who.c_str(), h.who.why.c_str(),
            static_cast<unsigned>(h.who.uid), static_cast<int>(h.who.pid));
    std::uint64_t now = 0;
    sd_event_now(event_, CLOCK_MONOTONIC, &now);
    sd_event_source* timer = nullptr;
    int r =
        sd_event_add_time(event_, &timer, CLOCK_MONOTONIC, now + max_usec, 0, &ExecBarrier::on_timeout, this);
    if (r < 0) {
        done_ = nullptr;
        return Failure{Errc::io_error, errno_error(-r, "", "arming InhibitDelayMaxSec=")};
    }
    timer_.reset(timer);
    return {};
}

int ExecBarrier::on_timeout(sd_event_source* /*source*/, uint64_t /*usec*/, void* userdata) {
    auto* self = static_cast<ExecBarrier*>(userdata);
    return guarded_event("InhibitDelayMaxSec", [self] {
        std::vector<Inhibitor> late = self->held();
        for (const Inhibitor& i : late)
            log(LOG_WARNING,
                "inhibitor %s (%s), uid %u, pid %d, not released within InhibitDelayMaxSec=: going on",
                i.who.c_str(), i.why.c_str(), static_cast<unsigned>(i.uid), static_cast<int>(i.pid));
        self->held_.clear();
        self->changed();
        self->finish(late);
        return 0;
    });
}

void ExecBarrier::finish(const std::vector<Inhibitor>& timed_out) {
    timer_.reset();
    Done done = std::move(done_);
    done_ = nullptr;
    if (done) done(timed_out);
}

std::vector<Inhibitor> ExecBarrier::held() const {
    std::vector<Inhibitor> out;
    out.reserve(held_.size());
    for (const Held& h : held_) out.push_back(h.who);
    return out;
}

void ExecBarrier::changed() const {
    if (listener_) listener_();
}

}  // namespace khod
