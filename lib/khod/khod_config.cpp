#include "khod/khod_config.hpp"

#include <ini.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <set>
#include <string>

#include "khod/base/probe.hpp"

namespace khod {

namespace {

// libinih reads at most INI_MAX_LINE (200) bytes per line, newline included,
// and silently cuts longer ones; refuse them instead.
constexpr std::size_t kMaxLine = 198;

struct ParseState {
    KhodConfig* config;
    std::string name;
    std::string error;  // first failure, with its key
    bool cmdline_seen = false;
    std::set<std::string, std::less<>> unknown_sections;  // each warned about once
};

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::optional<bool> parse_bool(std::string_view v) {
    const std::string l = lower(v);
    if (l == "1" || l == "yes" || l == "true" || l == "on") return true;
    if (l == "0" || l == "no" || l == "false" || l == "off") return false;
    return std::nullopt;
}

int on_liveupdate_entry(ParseState* st, const std::string& name, const std::string& val) {
    LiveUpdateConfig& l = st->config->liveupdate;
    if (name != "InhibitDelayMaxSec" && name != "RetrieveTimeoutSec") {
        st->config->warnings.push_back(st->name + ": unknown key " + name + "= in [LiveUpdate], ignored");
        return 1;
    }
    Usec& field = name == "InhibitDelayMaxSec" ? l.inhibit_delay_max : l.retrieve_timeout;
    const std::string v = lower(val);
    if (name == "RetrieveTimeoutSec" && (v == "never" || v == "infinity")) {
        field = usec_never;
        return 1;
    }
    auto d = parse_duration(val, name);
    if (!d) {
        if (st->error.empty()) st->error = "[LiveUpdate] " + name + "=" + val + ": " + d.error().message;
        return 0;
    }
    field = *d;
    return 1;
}

int on_metrics_entry(ParseState* st, const std::string& name, const std::string& val) {
    if (name != "MetricsFile") {
        st->config->warnings.push_back(st->name + ": unknown key " + name + "= in [Metrics], ignored");
        return 1;
    }
    // A host path, not one under --sysroot: khod writes it for a collector on this host.
    if (!val.empty() && (val.front() != '/' || val.back() == '/')) {
        if (st->error.empty())
            st->error = "[Metrics] MetricsFile=" + val + ": needs an absolute path to a file";
        return 0;
    }
    // node_exporter's textfile collector reads *.prom only: say so rather than write unread.
    if (!val.empty() && (val.size() < 5 || val.compare(val.size() - 5, 5, ".prom") != 0))
        st->config->warnings.push_back(st->name + ": MetricsFile=" + val +
                                       " does not end in .prom; node_exporter's textfile collector skips it");
    st->config->metrics.file = val;
    return 1;
}

int on_entry(void* user, const char* section, const char* key, const char* value) {
    auto* st = static_cast<ParseState*>(user);
    KdumpConfig& k = st->config->kdump;
    const std::string sec = section, name = key, val = value;
    auto bad = [&](const std::string& why) {
        if (st->error.empty()) st->error = "[" + sec + "] " + name + "=" + val + ": " + why;
        return 0;
    };
    if (sec == "LiveUpdate") return on_liveupdate_entry(st, name, val);
    if (sec == "Metrics") return on_metrics_entry(st, name, val);
    if (sec != "Kdump") {
        if (st->unknown_sections.insert(sec).second)
            st->config->warnings.push_back(st->name + ": unknown section [" + sec + "], ignored");
        return 1;
    }
    if (name == "WatchHotplug") {
        auto b = parse_bool(val);
        if (!b) return bad("expected yes or no");
        k.watch_hotplug = *b;
    } else if (name == "SettleSec" || name == "MaxDelaySec" || name == "LoadGraceSec") {
        auto d = parse_duration(val, name);
        if (!d) return bad(d.error().message);
        (name == "SettleSec" ? k.settle : name == "MaxDelaySec" ? k.max_delay : k.load_grace) = *d;
    } else if (name == "Import") {
        const std::string l = lower(val);
        if (l == "auto")
            k.import = RecipeImport::automatic;
        else if (l == "kdump-tools")
            k.import = RecipeImport::kdump_tools;
        else if (l == "kdumpctl")
            k.import = RecipeImport::kdumpctl;
        else if (l == "no")
            k.import = RecipeImport::none;
        else
            return bad("expected auto, kdump-tools, kdumpctl or no");
    } else if (name == "Loader") {
        const auto loader = parse_crash_loader(lower(val));
        if (!loader) return bad("expected file, native or auto");
        k.loader = *loader;
    } else if (name == "Purgatory") {
        if (val.empty() || val.front() != '/') return bad("needs an absolute path");
        k.native.purgatory = val;
    } else if (name == "ElfcorehdrMaxCpus" || name == "ElfcorehdrMaxRanges") {
        auto n = parse_u64(val, name);
        if (!n || *n == 0 || *n > 65536) return bad("expected a number from 1 to 65536");
        (name == "ElfcorehdrMaxCpus" ? k.native.max_cpus : k.native.max_ranges) = static_cast<unsigned>(*n);
    } else if (name == "Kernel") {
        if (!val.empty() && val.front() != '/') return bad("needs an absolute path");
        k.kernel = val;
        k.recipe_file = st->name;
    } else if (name == "Initrd") {
        if (!val.empty() && val.front() != '/') return bad("needs an absolute path");
        k.initrd = val;
    } else if (name == "CommandLine") {
        // inih hands indented continuation lines over as the same key again:
        // within one file they add words; a later file starts afresh.
        if (st->cmdline_seen && !val.empty())
            k.cmdline += (k.cmdline.empty() ? "" : " ") + val;
        else
            k.cmdline = val;
        st->cmdline_seen = true;
    } else {
        st->config->warnings.push_back(st->name + ": unknown key " + name + "= in [Kdump], ignored");
    }
    return 1;
}

}  // namespace

const char* to_string(RecipeImport v) {
    switch (v) {
        case RecipeImport::kdump_tools: return "kdump-tools";
        case RecipeImport::kdumpctl: return "kdumpctl";
        case RecipeImport::none: return "no";
        case RecipeImport::automatic: break;
    }
    return "auto";
}

std::optional<CrashRecipe> KdumpConfig::recipe() const {
    if (kernel.empty()) return std::nullopt;
    return CrashRecipe{kernel, initrd, cmdline, recipe_file, loader};
}

Result<Usec> parse_duration(std::string_view text, const std::string& what) {
    std::string_view t = text;
    while (!t.empty() && std::isspace(static_cast<unsigned char>(t.front()))) t.remove_prefix(1);
    while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.remove_suffix(1);
    std::size_t digits = 0;
    while (digits < t.size() && (std::isdigit(static_cast<unsigned char>(t[digits])) || t[digits] == '.'))
        ++digits;
    const std::string_view number = t.substr(0, digits), unit = t.substr(digits);
    Usec scale = 0;
    if (unit.empty() || unit == "s" || unit == "sec")
        scale = usec_per_sec;
    else if (unit == "ms" || unit == "msec")
        scale = usec_per_msec;
    else if (unit == "us" || unit == "usec")
        scale = 1;
    else if (unit == "min")
        scale = 60 * usec_per_sec;
    const std::size_t dot = number.find('.');
    const std::string_view whole = number.substr(0, dot);
    const std::string_view frac = dot == std::string_view::npos ? std::string_view{} : number.substr(dot + 1);
    Usec w = 0;
    auto [p, ec] = std::from_chars(whole.data(), whole.data() + whole.size(), w);
    const bool whole_ok =
        whole.empty() ? !frac.empty() : ec == std::errc() && p == whole.data() + whole.size();
    const bool frac_ok = frac.find('.') == std::string_view::npos && frac.size() <= 6;
    if (scale == 0 || number.empty() || !whole_ok || !frac_ok || w > UINT64_MAX / scale / 2)
        return plain_error(
            what, "expected a duration such as 1, 1.5s, 500ms or 2min, found \"" + std::string(text) + "\"");
    // The fraction in exact integer steps: "1.25" with unit s is 1250000 us.
    Usec f = 0, denom = 1;
    for (char c : frac) {
        f = f * 10 + static_cast<Usec>(c - '0');
        denom *= 10;
    }
    return w * scale + f * scale / denom;
}

Result<void> apply_khod_config(std::string_view text, const std::string& name, KhodConfig& config) {
    std::size_t start = 0;
    int lineno = 1;
    while (start <= text.size()) {
        std::size_t nl = text.find('\n', start);
        std::size_t len = (nl == std::string_view::npos ? text.size() : nl) - start;
        if (len > kMaxLine)
            return plain_error(name, "line " + std::to_string(lineno) + " is longer than " +
                                         std::to_string(kMaxLine) +
                                         " characters: continue a long CommandLine= on indented lines");
        if (nl == std::string_view::npos) break;
        start = nl + 1;
        ++lineno;
    }
    ParseState st{&config, name, {}, false, {}};
    const std::string copy(text);  // ini_parse_string needs a NUL-terminated string
    const int r = ini_parse_string(copy.c_str(), on_entry, &st);
    if (r < 0) return plain_error(name, "cannot parse (inih error " + std::to_string(r) + ")");
    if (r > 0)
        return plain_error(
            name, "line " + std::to_string(r) + ": " +
                      (st.error.empty() ? "syntax error (expected [Section] or Key=Value)" : st.error));
    return {};
}

Result<KhodConfig> load_khod_config(const Sysroot& root) {
    KhodConfig config;
    std::vector<KernelPath> files{root.etc("khod/khod.conf")};
    const KernelPath dropins = root.etc("khod/khod.conf.d");
    if (exists(dropins)) {
        auto names = list_dir(dropins);
        if (!names) return names.error();
        for (const auto& n : *names)  // list_dir sorts
            if (n.size() > 5 && n.compare(n.size() - 5, 5, ".conf") == 0)
                files.push_back(root.etc("khod/khod.conf.d/" + n));
    }
    for (const auto& f : files) {
        auto text = read_file(f);
        if (!text) {
            if (is_missing(text.error()) && f.kernel == "/etc/khod/khod.conf") continue;
            return text.error();
        }
        if (auto r = apply_khod_config(*text, f.kernel, config); !r) return r.error();
        config.files.push_back(f.kernel);
    }
    return config;
}

namespace {

Result<std::optional<CrashRecipe>> imported_recipe(const Sysroot& root, RecipeImport how) {
    if (how == RecipeImport::automatic || how == RecipeImport::kdump_tools) {
        auto r = import_kdump_tools(root);
        if (!r || *r || how == RecipeImport::kdump_tools) return r;
    }
    if (how == RecipeImport::automatic || how == RecipeImport::kdumpctl) return import_kdumpctl(root);
    return std::optional<CrashRecipe>{};
}

}  // namespace

Result<std::optional<CrashRecipe>> resolve_recipe(const Sysroot& root, const KdumpConfig& config) {
    if (auto r = config.recipe()) return r;
    auto r = imported_recipe(root, config.import);
    // Loader= is khod's choice, whatever file named the kernel.
    if (r && *r) (*r)->loader = config.loader;
    return r;
}

}  // namespace khod
