// The outcome of reading one kernel attribute: a value, "this kernel does not
// have it" (the file is missing), or a read error naming the path and errno.
// Status output must never turn a missing or unreadable file into a zero.
#pragma once

#include <cerrno>
#include <optional>
#include <string>

#include "khod/base/result.hpp"
#include "khod/base/sysroot.hpp"

namespace khod {

enum class ProbeState { ok, unsupported, error };

template <class T>
struct Probe {
    ProbeState state = ProbeState::unsupported;
    std::optional<T> value;
    std::string path;  // as the kernel names it
    Error error;       // set when state == error

    bool ok() const { return state == ProbeState::ok; }
};

// ENOENT/ENOTDIR mean the kernel has no such file: not supported, not an error.
inline bool is_missing(const Error& e) {
    return e.code == ENOENT || e.code == ENOTDIR;
}

template <class T>
Probe<T> make_probe(const KernelPath& path, Result<T> result) {
    Probe<T> p;
    p.path = path.kernel;
    if (result) {
        p.state = ProbeState::ok;
        p.value = std::move(result).value();
    } else if (is_missing(result.error())) {
        p.state = ProbeState::unsupported;
    } else {
        p.state = ProbeState::error;
        p.error = result.error();
    }
    return p;
}

// Tries the paths in order (current name first, then older names) and keeps the
// first one that exists; reports the first path when none does.
template <class T, class Reader>
Probe<T> probe_first(std::initializer_list<KernelPath> paths, Reader read) {
    std::optional<Probe<T>> first;
    for (const KernelPath& path : paths) {
        Probe<T> p = make_probe<T>(path, read(path));
        if (p.state != ProbeState::unsupported) return p;
        if (!first) first = p;
    }
    return first ? *first : Probe<T>{};
}

const char* to_string(ProbeState state);

}  // namespace khod
