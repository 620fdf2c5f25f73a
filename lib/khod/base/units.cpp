#include "khod/base/units.hpp"

#include <array>
#include <cctype>
#include <cstdio>

namespace khod {

std::string human_size(std::uint64_t bytes) {
    static constexpr std::array<const char*, 7> names = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    unsigned unit = 0;
    std::uint64_t scale = 1;
    while (unit + 1 < names.size() && bytes / scale >= 1024) {
        scale *= 1024;
        ++unit;
    }
    char buf[48];
    if (bytes % scale == 0) {
        std::snprintf(buf, sizeof buf, "%llu %s", static_cast<unsigned long long>(bytes / scale),
                      names[unit]);
    } else {
        std::snprintf(buf, sizeof buf, "%.1f %s", static_cast<double>(bytes) / static_cast<double>(scale),
                      names[unit]);
    }
    return buf;
}

Result<MemparseResult> memparse(std::string_view text) {
    // simple_strtoull with base 0: 0x -> hex, leading 0 -> octal, else decimal.
    std::size_t i = 0;
    unsigned base = 10;
    if (text.size() >= 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X') && text.size() > 2 &&
        std::isxdigit(static_cast<unsigned char>(text[2]))) {
        base = 16;
        i = 2;
    } else if (!text.empty() && text[0] == '0') {
        base = 8;
    }
    std::uint64_t value = 0;
    std::size_t digits_start = i;
    for (; i < text.size(); ++i) {
        int c = std::tolower(static_cast<unsigned char>(text[i]));
        unsigned digit;
        if (c >= '0' && c <= '9')
            digit = static_cast<unsigned>(c - '0');
        else if (c >= 'a' && c <= 'f')
            digit = static_cast<unsigned>(c - 'a' + 10);
        else
            break;
        if (digit >= base) break;
        if (value > (UINT64_MAX - digit) / base) return plain_error(std::string(text), "number too large");
        value = value * base + digit;
    }
    if (i == digits_start) return plain_error(std::string(text), "expected a size");
    unsigned shift = 0;
    if (i < text.size()) {
        switch (std::tolower(static_cast<unsigned char>(text[i]))) {
            case 'e': shift = 60; break;
            case 'p': shift = 50; break;
            case 't': shift = 40; break;
            case 'g': shift = 30; break;
            case 'm': shift = 20; break;
            case 'k': shift = 10; break;
            default: break;
        }
        if (shift) ++i;
    }
    if (shift && value > (UINT64_MAX >> shift)) return plain_error(std::string(text), "size too large");
    return MemparseResult{value << shift, i};
}

}  // namespace khod
