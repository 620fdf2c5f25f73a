// Why a library operation failed, in the kinds a caller acts on differently;
// the Error beside the kind says what happened. One set for every module, so
// khod maps each kind to one D-Bus error name (src/khod/bus_object.cpp).
#pragma once

#include <string>

#include "khod/base/result.hpp"

namespace khod {

enum class Errc {
    wrong_state,       // the call does not fit the current state
    not_supported,     // this kernel cannot do it (no KHO, wrong ABI, no kdump)
    preflight_failed,  // the target would not work; the message says why
    invalid_argument,
    no_recipe,            // nothing says which crash kernel to load
    kernel_refused,       // a syscall or a kernel file write failed; errno in error.code
    target_incompatible,  // the next kernel could not take what this one hands over
    not_owner,            // a LUO session belongs to another caller
    session_exists,       // a LUO session or token of that name is already there
    no_such_session,      // no LUO session or token of that name
    busy,                 // the file is preserved already, or a handler refused to let go
    incoming_lost,        // the kernel could not restore the previous kernel's LUO data
    io_error,             // khod's own files
};

// The kind as LastError properties and the D-Bus error names spell it ("WrongState").
const char* to_string(Errc kind);

struct Failure {
    Errc kind = Errc::io_error;
    Error error;
    std::string describe() const { return error.describe(); }
};

}  // namespace khod
