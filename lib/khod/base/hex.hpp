// Addresses and sizes in hex, as /proc/iomem and the kernel's messages print them.
#pragma once

#include <cstdint>
#include <string>

namespace khod {

// "0x1f000000"
std::string hex(std::uint64_t v);
// "0x000000001f000000": fixed width, for columns of addresses.
std::string hex_padded(std::uint64_t v);

}  // namespace khod
