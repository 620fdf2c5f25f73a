// Addresses and sizes in hex, as /proc/iomem and the kernel's messages print them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace khod {

// "0x1f000000"
std::string hex(std::uint64_t v);
// "0x000000001f000000": fixed width, for columns of addresses.
std::string hex_padded(std::uint64_t v);
// 1 to 16 hex digits, as /proc/iomem and sysfs print addresses ("%llx");
// nullopt for anything else (no sign, no spaces, no 0x).
std::optional<std::uint64_t> parse_hex_digits(std::string_view s);

}  // namespace khod
