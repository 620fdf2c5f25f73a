#include "khod/kdump/kdump_coalescer.hpp"

#include <algorithm>

namespace khod {

Coalescer::Coalescer(Usec settle, Usec max_delay)
    : settle_(settle), max_delay_(std::max(settle, max_delay)) {}

void Coalescer::add(Usec now) {
    if (count_ == 0) first_ = now;
    // A clock read out of order (events queued, then handled) must not move the batch back.
    last_ = last_ && count_ > 0 ? std::max(*last_, now) : now;
    ++count_;
}

std::optional<Usec> Coalescer::deadline() const {
    if (count_ == 0) return std::nullopt;
    return std::min(*last_ + settle_, *first_ + max_delay_);
}

bool Coalescer::due(Usec now) const {
    auto d = deadline();
    return d && now >= *d;
}

std::uint64_t Coalescer::take() {
    std::uint64_t n = count_;
    count_ = 0;
    first_.reset();
    last_.reset();
    return n;
}

}  // namespace khod
