// The names khod and khoctl meet on: org.kexec.khod1 on the system bus, its
// one object, its interfaces, its error names and the bits of the methods'
// flags arguments. The interfaces themselves are defined in
// src/khod/dbus/org.kexec.khod1.*.xml; this is the one place the C++ spells
// their names. Plain constants only: the library knows nothing of D-Bus.
#pragma once

#include <cstdint>
#include <optional>

namespace khod1 {

inline constexpr const char* bus_name = "org.kexec.khod1";
inline constexpr const char* object_path = "/org/kexec/khod1";

inline constexpr const char* handover_interface = "org.kexec.khod1.Handover";
inline constexpr const char* scratch_interface = "org.kexec.khod1.Scratch";
inline constexpr const char* kdump_interface = "org.kexec.khod1.Kdump";
inline constexpr const char* liveupdate_interface = "org.kexec.khod1.LiveUpdate";

// Errors the methods reply with; the XML files name the same ones.
namespace error {
inline constexpr const char* wrong_state = "org.kexec.khod1.Error.WrongState";
inline constexpr const char* not_supported = "org.kexec.khod1.Error.NotSupported";
inline constexpr const char* preflight_failed = "org.kexec.khod1.Error.PreflightFailed";
inline constexpr const char* invalid_argument = "org.kexec.khod1.Error.InvalidArgument";
inline constexpr const char* no_recipe = "org.kexec.khod1.Error.NoRecipe";
inline constexpr const char* kernel_refused = "org.kexec.khod1.Error.KernelRefused";
inline constexpr const char* target_incompatible = "org.kexec.khod1.Error.TargetIncompatible";
inline constexpr const char* not_owner = "org.kexec.khod1.Error.NotOwner";
inline constexpr const char* session_exists = "org.kexec.khod1.Error.SessionExists";
inline constexpr const char* no_such_session = "org.kexec.khod1.Error.NoSuchSession";
inline constexpr const char* busy = "org.kexec.khod1.Error.Busy";
inline constexpr const char* incoming_lost = "org.kexec.khod1.Error.IncomingDataLost";
inline constexpr const char* io_error = "org.kexec.khod1.Error.IOError";
}  // namespace error

// The polkit actions (org.kexec.khod1.policy): one per kind of power. A
// caller other than root needs the action of the method it calls.
namespace action {
inline constexpr const char* live_update = "org.kexec.khod1.live-update";          // Handover.*
inline constexpr const char* manage_kdump = "org.kexec.khod1.manage-kdump";        // Kdump.*
inline constexpr const char* manage_sessions = "org.kexec.khod1.manage-sessions";  // LiveUpdate.*
}  // namespace action

// Handover.Prepare flags.
inline constexpr std::uint64_t prepare_reuse_cmdline = 1u << 0;  // start from the running command line
inline constexpr std::uint64_t prepare_keep_cmdline = 1u << 1;   // no kho=on / scratch parameter added
// Handover.Exec flags.
inline constexpr std::uint64_t exec_force = 1u << 0;  // reboot(2) directly, even when systemd is PID 1
inline constexpr std::uint64_t exec_drop_sessions = 1u
                                                    << 1;  // go on although held LUO sessions would be lost
// Kdump.Load flags: at most one loader; none means khod.conf's Loader=.
inline constexpr std::uint64_t load_loader_file = 1u << 0;    // kexec_file_load
inline constexpr std::uint64_t load_loader_native = 1u << 1;  // khod's own kexec_load image
inline constexpr std::uint64_t load_loader_auto = 1u << 2;    // file, then native where refused
enum class KdumpLoader { configured, file, native, automatic };
// nullopt for unknown bits or more than one loader.
inline std::optional<KdumpLoader> kdump_loader_from_flags(std::uint64_t flags) {
    switch (flags) {
        case 0: return KdumpLoader::configured;
        case load_loader_file: return KdumpLoader::file;
        case load_loader_native: return KdumpLoader::native;
        case load_loader_auto: return KdumpLoader::automatic;
        default: return std::nullopt;
    }
}

}  // namespace khod1
