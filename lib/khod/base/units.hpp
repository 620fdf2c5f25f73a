// Sizes as people and the kernel's command line write them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "khod/base/result.hpp"

namespace khod {

// "16 MiB", "451.6 KiB", "0 B": binary units, at most one decimal, exact when whole.
std::string human_size(std::uint64_t bytes);

// The kernel's memparse(): a number (decimal, 0x hex or 0 octal) with an
// optional K/M/G/T/P/E suffix (either case). Returns the value and how many
// characters were consumed; fails when no digits were found or on overflow.
struct MemparseResult {
    std::uint64_t value;
    std::size_t consumed;
};
Result<MemparseResult> memparse(std::string_view text);

}  // namespace khod
