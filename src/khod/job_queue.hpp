// Slow work off the event loop. A kexec_file_load of a large image, or the
// decompression of a target kernel, takes seconds under emulation; run on
// the loop, it would stall every property read, Status call and the
// watchdog. Such work runs as a job on a thread of its own while the loop
// keeps answering.
//
// One lock, the state lock, guards everything the loop and a job share (the
// library's state machines, the bus objects' view of them): the loop holds
// it except while it sleeps in sd_event_wait(), a job except inside an
// Unlocked scope, which is put only around a syscall or a computation that
// touches nothing shared. Jobs run one at a time, in the order submitted,
// so two loads never race each other in the kernel (kexec_file_load takes
// kexec_lock and answers EBUSY to the second) and a method call never sees
// a half-done one. sd-bus and sd-event are used from the loop thread only:
// a job hands them what it has to say through on_loop().
#pragma once

#include <systemd/sd-event.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "khod/base/fd.hpp"
#include "sd_ptr.hpp"

namespace khod {

// The process-wide state lock (see above).
std::mutex& state_lock();

// Releases the state lock for its scope when the calling thread is a job's;
// elsewhere (khod's start, before the loop runs; unit tests) it does nothing.
class Unlocked {
public:
    Unlocked();
    ~Unlocked();
    Unlocked(const Unlocked&) = delete;
    Unlocked& operator=(const Unlocked&) = delete;

private:
    bool released_ = false;
};

// sd_event_loop(), but with the state lock released while it waits for events.
int run_event_loop(sd_event* event);

class JobQueue {
public:
    // Jobs waiting behind the running one; more are refused, so callers
    // cannot grow khod's memory without bound.
    static constexpr std::size_t max_waiting = 64;

    struct Job {
        std::string name;            // for the log: "Handover.Finalize"
        std::function<void()> work;  // on the job's thread, state lock held; empty: none
        std::function<void()> done;  // then on the loop thread
    };

    explicit JobQueue(sd_event* event);
    ~JobQueue();
    JobQueue(const JobQueue&) = delete;
    JobQueue& operator=(const JobQueue&) = delete;

    // Negative errno when the loop cannot watch for finished jobs.
    int start();
    // At exit, on the loop thread: lets the running job end (its call goes
    // unanswered) and drops the waiting ones. The destructor does it too, but
    // khod calls it first, while the objects the job uses still exist.
    void stop();

    // Queues job; false when max_waiting jobs wait already. An exception from
    // work is logged and done still runs.
    bool submit(Job job);
    bool busy() const { return running_ || held_ || !waiting_.empty(); }
    // Exec's barrier and reboot: no job may start (a crash load holding the
    // kernel's kexec_lock would fail reboot(KEXEC) with EBUSY) until
    // release(), which an abandoned exec calls.
    void hold();
    void release();
    // Told true when the first job is queued and false once none is left:
    // kdump holds its hotplug timer and events meanwhile.
    void on_busy_changed(std::function<void(bool)> listener) {
        busy_listeners_.push_back(std::move(listener));
    }

    // Runs fn now on the loop thread; from a job's thread, on the loop once
    // the job's work has returned (before its done).
    void on_loop(std::function<void()> fn);

private:
    static int on_finished(sd_event_source* source, int fd, uint32_t revents, void* userdata);
    void start_next();
    void finish();
    void set_busy(bool busy);

    sd_event* event_;
    UniqueFd finished_fd_;  // eventfd the job's thread writes when its work returns
    SdEventSourcePtr finished_source_;
    std::deque<Job> waiting_;
    bool running_ = false;
    bool held_ = false;
    bool busy_reported_ = false;
    Job current_;
    std::thread thread_;
    std::vector<std::function<void()>> deferred_;  // from on_loop() on the job's thread
    std::vector<std::function<void(bool)>> busy_listeners_;
};

}  // namespace khod
