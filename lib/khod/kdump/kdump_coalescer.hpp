// Turns a storm of hotplug events into one action: due a settle interval after
// the last event, but never later than a maximum delay after the first one
// (a storm that never pauses still gets handled). A pure state machine over
// times the caller passes in (CLOCK_MONOTONIC microseconds in khod, a fake
// clock in tests); it arms nothing itself.
#pragma once

#include <cstdint>
#include <optional>

namespace khod {

using Usec = std::uint64_t;

inline constexpr Usec usec_per_msec = 1000;
inline constexpr Usec usec_per_sec = 1000 * usec_per_msec;

class Coalescer {
public:
    // max_delay below settle is raised to settle.
    Coalescer(Usec settle, Usec max_delay);

    // One more event at `now`.
    void add(Usec now);
    // Events are waiting for the action.
    bool pending() const { return count_ > 0; }
    // When the action is due: min(last + settle, first + max_delay); nullopt when idle.
    std::optional<Usec> deadline() const;
    bool due(Usec now) const;
    // Starts the action: returns how many events it covers and forgets them.
    // Events added afterwards start a new batch.
    std::uint64_t take();

    std::uint64_t count() const { return count_; }
    std::optional<Usec> first() const { return first_; }
    std::optional<Usec> last() const { return last_; }
    Usec settle() const { return settle_; }
    Usec max_delay() const { return max_delay_; }

private:
    Usec settle_;
    Usec max_delay_;
    std::optional<Usec> first_;
    std::optional<Usec> last_;
    std::uint64_t count_ = 0;
};

}  // namespace khod
