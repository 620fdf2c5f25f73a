#include "journal_events.hpp"

#include "message_ids.hpp"

namespace khod {

namespace {

std::string or_unknown(const std::string& s) {
    return s.empty() ? "unknown" : s;
}

}  // namespace

JournalEvent live_update_staged_event(const HandoverTarget& target, const std::string& release, KhoAbi abi) {
    return JournalEvent{message_id::live_update_staged,
                        LOG_NOTICE,
                        "live update staged: " + target.kernel + " (" + or_unknown(release) +
                            ") is loaded for the next kexec",
                        {{"KHOD_KERNEL", target.kernel},
                         {"KHOD_INITRD", target.initrd},
                         {"KHOD_CMDLINE", target.cmdline},
                         {"KHOD_RELEASE", or_unknown(release)},
                         {"KHOD_KHO_ABI", to_string(abi)}}};
}

JournalEvent live_update_exec_event(const HandoverTarget& target, const std::string& release,
                                    std::size_t sessions, std::uint64_t bytes) {
    return JournalEvent{message_id::live_update_exec,
                        LOG_NOTICE,
                        "live update: rebooting into " + target.kernel + " (" + or_unknown(release) + "), " +
                            std::to_string(sessions) + " LUO session(s) carried",
                        {{"KHOD_KERNEL", target.kernel},
                         {"KHOD_RELEASE", or_unknown(release)},
                         {"KHOD_SESSIONS", std::to_string(sessions)},
                         {"KHOD_SESSION_BYTES", std::to_string(bytes)}}};
}

JournalEvent live_update_restored_event(const std::string& release, bool kho_incoming,
                                        const LuoRecovery& found) {
    std::string message = "live update restored: booted " + or_unknown(release);
    if (found.manifest_found)
        message += " from " + or_unknown(found.previous_release) + "; " + std::to_string(found.held.size()) +
                   " LUO session(s) held for their owners" +
                   (found.missing.empty() ? "" : ", " + std::to_string(found.missing.size()) + " lost");
    else
        message += " through a KHO kexec from " + or_unknown(found.previous_release) +
                   "; no khod manifest came (no LUO sessions were carried)";
    return JournalEvent{message_id::live_update_restored,
                        LOG_NOTICE,
                        std::move(message),
                        {{"KHOD_RELEASE", or_unknown(release)},
                         {"KHOD_PREVIOUS_RELEASE", or_unknown(found.previous_release)},
                         {"KHOD_KHO_INCOMING", kho_incoming ? "yes" : "no"},
                         {"KHOD_SESSIONS", std::to_string(found.held.size())},
                         {"KHOD_SESSIONS_LOST", std::to_string(found.missing.size())}}};
}

std::optional<JournalEvent> crash_kernel_event(const ReloadReport& rep) {
    const std::string unloaded = std::to_string(rep.unloaded);
    if (rep.ok)
        return JournalEvent{message_id::crash_kernel_reloaded,
                            LOG_NOTICE,
                            "kdump: reloaded the crash kernel (" + rep.cause + ") in " +
                                std::to_string(rep.duration) + " us, " + unloaded + " us without one",
                            {{"KHOD_KERNEL", rep.kernel},
                             {"KHOD_RELOAD_REASON", rep.cause},
                             {"KHOD_EVENTS", std::to_string(rep.events)},
                             {"KHOD_DURATION_USEC", std::to_string(rep.duration)},
                             {"KHOD_UNLOADED_USEC", unloaded}}};
    if (rep.rolled_back)
        return JournalEvent{message_id::crash_kernel_rolled_back,
                            LOG_WARNING,
                            "kdump: reload (" + rep.cause + ") failed: " + rep.error,
                            {{"KHOD_KERNEL", rep.kernel},
                             {"KHOD_ROLLBACK_KERNEL", rep.rollback_kernel},
                             {"KHOD_RELOAD_REASON", rep.cause},
                             {"KHOD_ERROR", rep.error},
                             {"KHOD_UNLOADED_USEC", unloaded}}};
    if (!rep.loaded_after)
        return JournalEvent{message_id::crash_kernel_unloaded,
                            LOG_ERR,
                            "kdump: reload (" + rep.cause + ") failed: " + rep.error,
                            {{"KHOD_KERNEL", rep.kernel},
                             {"KHOD_RELOAD_REASON", rep.cause},
                             {"KHOD_ERROR", rep.error},
                             {"KHOD_UNLOADED_USEC", unloaded}}};
    return std::nullopt;
}

JournalEvent luo_session_released_event(const LuoSessionEntry& s) {
    std::size_t unretrieved = 0;
    for (const LuoFileEntry& f : s.files) unretrieved += f.retrieved ? 0 : 1;
    return JournalEvent{message_id::luo_session_released,
                        LOG_WARNING,
                        "incoming session " + s.name +
                            " released: its owner did not finish it within RetrieveTimeoutSec= (uid " +
                            std::to_string(s.owner.uid) + ", " + std::to_string(unretrieved) + " of " +
                            std::to_string(s.files.size()) + " file(s) never retrieved)",
                        {{"KHOD_SESSION", s.name},
                         {"KHOD_UID", std::to_string(s.owner.uid)},
                         {"KHOD_UNIT", s.owner.unit},
                         {"KHOD_FILES", std::to_string(s.files.size())},
                         {"KHOD_FILES_UNRETRIEVED", std::to_string(unretrieved)}}};
}

JournalEvent luo_session_lost_event(const LuoSessionEntry& s, const std::string& previous_release) {
    return JournalEvent{message_id::luo_session_lost,
                        LOG_WARNING,
                        "session " + s.name + " is in the manifest but the kernel did not carry it (uid " +
                            std::to_string(s.owner.uid) + ")",
                        {{"KHOD_SESSION", s.name},
                         {"KHOD_UID", std::to_string(s.owner.uid)},
                         {"KHOD_UNIT", s.owner.unit},
                         {"KHOD_FILES", std::to_string(s.files.size())},
                         {"KHOD_PREVIOUS_RELEASE", or_unknown(previous_release)}}};
}

}  // namespace khod
