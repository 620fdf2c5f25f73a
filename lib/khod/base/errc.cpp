#include "khod/base/errc.hpp"

namespace khod {

const char* to_string(Errc kind) {
    switch (kind) {
        case Errc::wrong_state: return "WrongState";
        case Errc::not_supported: return "NotSupported";
        case Errc::preflight_failed: return "PreflightFailed";
        case Errc::invalid_argument: return "InvalidArgument";
        case Errc::no_recipe: return "NoRecipe";
        case Errc::kernel_refused: return "KernelRefused";
        case Errc::target_incompatible: return "TargetIncompatible";
        case Errc::not_owner: return "NotOwner";
        case Errc::session_exists: return "SessionExists";
        case Errc::no_such_session: return "NoSuchSession";
        case Errc::busy: return "Busy";
        case Errc::incoming_lost: return "IncomingDataLost";
        case Errc::io_error: break;
    }
    return "IOError";
}

}  // namespace khod
