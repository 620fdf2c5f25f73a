#include "khod/base/result.hpp"

#include <cstring>

namespace khod {

std::string errno_name(int code) {
    // strerrorname_np is glibc 2.32+, which Debian 12 has; it returns null for unknown values.
    if (const char* name = strerrorname_np(code)) return name;
    return std::to_string(code);
}

std::string Error::describe() const {
    std::string out = path;
    auto append = [&out](const std::string& part) {
        if (part.empty()) return;
        if (!out.empty()) out += ": ";
        out += part;
    };
    append(message);
    if (code != 0) append(std::string(strerror(code)) + " (" + errno_name(code) + ")");
    return out;
}

Error errno_error(int code, std::string path, std::string message) {
    return Error{code, std::move(path), std::move(message)};
}

Error plain_error(std::string path, std::string message) {
    return Error{0, std::move(path), std::move(message)};
}

}  // namespace khod
