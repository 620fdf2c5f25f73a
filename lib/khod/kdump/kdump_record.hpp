// khod's record of the crash kernel it manages, in $RUNTIME_DIRECTORY/kdump.json
// (kept across khod restarts, gone at reboot; a record of another boot counts
// for nothing). Before each step that can leave no crash kernel loaded khod
// writes what it is about to do (the intent), and after the step what came of
// it, so a khod killed in between knows at its next start what to put back.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "khod/base/result.hpp"
#include "khod/kdump/kdump_coalescer.hpp"  // Usec
#include "khod/kdump/kdump_recipe.hpp"

namespace khod {

struct KdumpIntent {
    enum class Step { load, unload };
    Step step = Step::load;
    std::optional<CrashRecipe> recipe;  // what a load was loading
    Usec since = 0;                     // CLOCK_MONOTONIC when the step began
};
const char* to_string(KdumpIntent::Step step);

struct KdumpRecord {
    bool managed = false;                  // khod keeps a crash kernel loaded
    std::optional<CrashRecipe> recipe;     // the one reloads use
    std::optional<CrashRecipe> last_good;  // the last one the kernel took
    std::optional<KdumpIntent> intent;     // a step begun and not recorded as ended
};

// The record as JSON text (format version 1), for this boot_id.
std::string format_kdump_record(const KdumpRecord& record, const std::string& boot_id);
// nullopt when text is not a version 1 record of boot_id; fields of the
// wrong type make the whole record count for nothing. Never throws.
std::optional<KdumpRecord> parse_kdump_record(std::string_view text, const std::string& boot_id);

// Replaces path atomically (a temporary file beside it, then rename(2)).
Result<void> write_kdump_record(const std::filesystem::path& path, const KdumpRecord& record,
                                const std::string& boot_id);
// A missing or unreadable file reads as nullopt, like a record of another boot.
std::optional<KdumpRecord> read_kdump_record(const std::filesystem::path& path, const std::string& boot_id);

}  // namespace khod
