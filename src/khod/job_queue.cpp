#include "job_queue.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <exception>
#include <system_error>

#include "guard.hpp"
#include "log.hpp"

namespace khod {

namespace {

thread_local bool on_job_thread = false;

// Runs a callback of the loop's; an exception is logged, never let through sd-event.
template <class Fn>
void run_logged(const char* what, const std::string& name, Fn&& fn) noexcept {
    try {
        fn();
    } catch (const std::exception& e) {
        log(LOG_ERR, "%s %s: %s", name.c_str(), what, e.what());
    } catch (...) {
        log(LOG_ERR, "%s %s: unknown exception", name.c_str(), what);
    }
}

}  // namespace

std::mutex& state_lock() {
    static std::mutex lock;
    return lock;
}

namespace {

// std::mutex is not fair: a loop woken again and again (a flood of property
// reads) could retake the state lock before a job waiting for it ever runs.
// Whoever waits for the lock holds the turnstile meanwhile, so the other
// side queues behind it instead of overtaking.
std::mutex& turnstile() {
    static std::mutex lock;
    return lock;
}

void take_state_lock() {
    std::lock_guard<std::mutex> in_turn(turnstile());
    state_lock().lock();
}

}  // namespace

Unlocked::Unlocked() {
    if (!on_job_thread) return;
    state_lock().unlock();
    released_ = true;
}

Unlocked::~Unlocked() {
    if (released_) take_state_lock();
}

int run_event_loop(sd_event* event) {
    // sd_event_loop(), taken apart only to let go of the lock in the wait.
    while (sd_event_get_state(event) != SD_EVENT_FINISHED) {
        int r = sd_event_prepare(event);
        if (r == 0) {
            state_lock().unlock();
            r = sd_event_wait(event, UINT64_MAX);
            take_state_lock();
        }
        if (r > 0) r = sd_event_dispatch(event);
        if (r < 0) return r;
    }
    int code = 0;
    const int r = sd_event_get_exit_code(event, &code);
    return r < 0 ? r : code;
}

JobQueue::JobQueue(sd_event* event) : event_(event) {}

JobQueue::~JobQueue() {
    stop();
}

void JobQueue::stop() {
    // The loop thread holds the state lock here; the job needs it to end.
    if (thread_.joinable()) {
        state_lock().unlock();
        thread_.join();
        state_lock().lock();
    }
    running_ = false;
    current_ = Job{};
    waiting_.clear();
    deferred_.clear();
}

int JobQueue::start() {
    finished_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!finished_fd_.valid()) return -errno;
    sd_event_source* source = nullptr;
    const int r = sd_event_add_io(event_, &source, finished_fd_.get(), EPOLLIN, &JobQueue::on_finished, this);
    if (r < 0) return r;
    finished_source_.reset(source);
    return 0;
}

bool JobQueue::submit(Job job) {
    if (waiting_.size() >= max_waiting) return false;
    waiting_.push_back(std::move(job));
    set_busy(true);
    start_next();
    return true;
}

void JobQueue::hold() {
    held_ = true;
    set_busy(true);
}

void JobQueue::release() {
    held_ = false;
    start_next();
}

void JobQueue::on_loop(std::function<void()> fn) {
    if (on_job_thread)
        deferred_.push_back(std::move(fn));  // the state lock orders this with finish()
    else
        fn();
}

void JobQueue::start_next() {
    if (running_ || held_ || waiting_.empty()) {
        if (!busy()) set_busy(false);
        return;
    }
    current_ = std::move(waiting_.front());
    waiting_.pop_front();
    running_ = true;
    if (!current_.work || !finished_fd_.valid()) {
        // Nothing to do off the loop (or no way to hear back): run it here.
        if (current_.work) run_logged("failed", current_.name, current_.work);
        finish();
        return;
    }
    try {
        thread_ = std::thread([this] {
            on_job_thread = true;
            take_state_lock();
            run_logged("failed", current_.name, current_.work);
            state_lock().unlock();
            const std::uint64_t one = 1;
            // An eventfd write of 8 bytes fails only on counter overflow, not reachable here.
            [[maybe_unused]] const ssize_t n = ::write(finished_fd_.get(), &one, sizeof one);
        });
    } catch (const std::system_error& e) {
        // No thread to be had (TasksMax, memory): the work runs here, late but not lost.
        log(LOG_WARNING, "%s: cannot start a thread (%s); running it on the event loop",
            current_.name.c_str(), e.what());
        run_logged("failed", current_.name, current_.work);
        finish();
    }
}

int JobQueue::on_finished(sd_event_source* /*source*/, int fd, uint32_t /*revents*/, void* userdata) {
    auto* self = static_cast<JobQueue*>(userdata);
    return guarded_event("job queue", [self, fd] {
        std::uint64_t count = 0;
        if (::read(fd, &count, sizeof count) < 0 || !self->running_ || !self->thread_.joinable()) return 0;
        self->thread_.join();
        self->finish();
        return 0;
    });
}

void JobQueue::finish() {
    auto deferred = std::move(deferred_);
    deferred_.clear();
    Job job = std::move(current_);
    current_ = Job{};
    running_ = false;
    for (auto& fn : deferred) run_logged("notification failed", job.name, fn);
    if (job.done) run_logged("reply failed", job.name, job.done);
    start_next();
}

void JobQueue::set_busy(bool busy) {
    if (busy == busy_reported_) return;
    busy_reported_ = busy;
    for (auto& listener : busy_listeners_)
        run_logged("listener failed", "job queue", [&] { listener(busy); });
}

}  // namespace khod
