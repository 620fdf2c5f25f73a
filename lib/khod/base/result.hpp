// Errors as values at the library edge. libstdc++ 12 (Debian 12) has no
// std::expected, so this is the small subset of it that khod uses.
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace khod {

struct Error {
    int code = 0;         // errno value, or 0 when the failure is not a syscall's
    std::string path;     // the file or object concerned, if any
    std::string message;  // what went wrong, for a person

    // "<path>: <message>: <strerror> (<ERRNAME>)", leaving out empty parts.
    std::string describe() const;
};

// Error for a failed syscall on a path, taking errno now.
Error errno_error(int code, std::string path, std::string message = {});
// Error that is not a syscall's (bad format, wrong state, ...).
Error plain_error(std::string path, std::string message);

// Symbolic name of an errno value ("ENOENT"), or the number as text.
std::string errno_name(int code);

// E is Error unless a module needs a richer failure (Failure, errc.hpp).
template <class T, class E = Error>
class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
    Result(E error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

    bool has_value() const { return v_.index() == 0; }
    explicit operator bool() const { return has_value(); }

    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    const E& error() const { return std::get<1>(v_); }

private:
    std::variant<T, E> v_;
};

template <class E>
class [[nodiscard]] Result<void, E> {
public:
    Result() = default;
    Result(E error) : error_(std::move(error)), ok_(false) {}  // NOLINT(google-explicit-constructor)

    bool has_value() const { return ok_; }
    explicit operator bool() const { return ok_; }
    const E& error() const { return error_; }

private:
    E error_{};
    bool ok_ = true;
};

}  // namespace khod
