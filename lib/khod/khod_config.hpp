// khod's configuration: /etc/khod/khod.conf, then every
// /etc/khod/khod.conf.d/*.conf in lexical order, each overriding what came
// before (INI, parsed with inih; documented in khod.conf(5)).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "khod-config.h"
#include "khod/base/result.hpp"
#include "khod/base/sysroot.hpp"
#include "khod/kdump/kdump_coalescer.hpp"
#include "khod/kdump/kdump_recipe.hpp"

namespace khod {

// Where the crash kernel recipe comes from when khod.conf names no Kernel=.
enum class RecipeImport { automatic, kdump_tools, kdumpctl, none };
const char* to_string(RecipeImport v);

// khod's own kexec_load loader (lib/khod/crash/native_loader.hpp).
struct NativeLoaderConfig {
    std::string purgatory = KHOD_PURGATORY_PATH;  // [Kdump] Purgatory=
    // The elfcorehdr's room where the kernel gives no crash_elfcorehdr_size.
    unsigned max_cpus = 8192;    // [Kdump] ElfcorehdrMaxCpus=
    unsigned max_ranges = 8192;  // [Kdump] ElfcorehdrMaxRanges=
};

struct KdumpConfig {
    bool watch_hotplug = true;                      // [Kdump] WatchHotplug=
    Usec settle = 1 * usec_per_sec;                 // [Kdump] SettleSec=
    Usec max_delay = 10 * usec_per_sec;             // [Kdump] MaxDelaySec=
    Usec load_grace = 200 * usec_per_msec;          // [Kdump] LoadGraceSec=
    RecipeImport import = RecipeImport::automatic;  // [Kdump] Import=
    // [Kdump] Kernel=, Initrd=, CommandLine=, and the file that set Kernel=.
    std::string kernel, initrd, cmdline, recipe_file;
    CrashLoader loader = CrashLoader::file;  // [Kdump] Loader=, for every recipe
    NativeLoaderConfig native;

    // The recipe these give; nullopt without Kernel=.
    std::optional<CrashRecipe> recipe() const;
};

// "never" for a duration that does not run out.
inline constexpr Usec usec_never = UINT64_MAX;

struct LiveUpdateConfig {
    Usec inhibit_delay_max = 10 * usec_per_sec;  // [LiveUpdate] InhibitDelayMaxSec=
    Usec retrieve_timeout = usec_never;          // [LiveUpdate] RetrieveTimeoutSec= (default: never)
};

struct MetricsConfig {
    // [Metrics] MetricsFile=: where khod keeps its numbers in Prometheus's
    // text format (node_exporter's textfile collector); empty: nowhere.
    std::string file;
};

struct KhodConfig {
    KdumpConfig kdump;
    LiveUpdateConfig liveupdate;
    MetricsConfig metrics;
    std::vector<std::string> files;     // read, in order
    std::vector<std::string> warnings;  // unknown sections and keys: reported, not fatal
};

// Reads khod.conf and its drop-ins through root.etc(). A missing file is not
// an error (the defaults hold); an unreadable or malformed one is, naming the
// file and line.
Result<KhodConfig> load_khod_config(const Sysroot& root);

// Applies one file's text on top of `config`. `name` is used in errors.
Result<void> apply_khod_config(std::string_view text, const std::string& name, KhodConfig& config);

// "1", "1s", "1.5s", "500ms", "250000us", "2min": microseconds. Bare numbers are seconds.
Result<Usec> parse_duration(std::string_view text, const std::string& what);

// Where the recipe comes from, in order: the config's Kernel=, then (Import=auto)
// /etc/default/kdump-tools, then /etc/sysconfig/kdump. nullopt when none gives one.
Result<std::optional<CrashRecipe>> resolve_recipe(const Sysroot& root, const KdumpConfig& config);

}  // namespace khod
