#include "khod/kdump/kdump_record.hpp"

#include <cerrno>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <system_error>

namespace khod {

namespace {

constexpr std::uint64_t record_version = 1;

nlohmann::json recipe_json(const CrashRecipe& r) {
    return {{"kernel", r.kernel},
            {"initrd", r.initrd},
            {"cmdline", r.cmdline},
            {"source", r.source},
            {"loader", to_string(r.loader)}};
}

// A damaged or hand-edited record is discarded: each field is checked for
// its type here. A bad record is an expected input, so nothing throws.
const nlohmann::json* field(const nlohmann::json& j, const char* key) {
    auto it = j.find(key);  // end() for anything but an object
    return it == j.end() ? nullptr : &*it;
}

std::optional<std::string> string_field(const nlohmann::json& j, const char* key) {
    const nlohmann::json* v = field(j, key);
    if (!v || !v->is_string()) return std::nullopt;
    return v->get_ref<const std::string&>();
}

// nlohmann converts a float or a negative number to an unsigned by a cast,
// undefined out of range (fuzz-records found 1e34 as "version"): only an
// unsigned integer is taken.
std::optional<std::uint64_t> unsigned_field(const nlohmann::json& j, const char* key) {
    const nlohmann::json* v = field(j, key);
    if (!v || !v->is_number_unsigned()) return std::nullopt;
    return v->get<std::uint64_t>();
}

std::optional<bool> bool_field(const nlohmann::json& j, const char* key) {
    const nlohmann::json* v = field(j, key);
    if (!v || !v->is_boolean()) return std::nullopt;
    return v->get<bool>();
}

// A record written before loaders existed has no "loader": those were file loads.
std::optional<CrashRecipe> recipe_from(const nlohmann::json& j) {
    auto kernel = string_field(j, "kernel"), initrd = string_field(j, "initrd");
    auto cmdline = string_field(j, "cmdline"), source = string_field(j, "source");
    if (!kernel || !initrd || !cmdline || !source) return std::nullopt;
    CrashRecipe r{std::move(*kernel), std::move(*initrd), std::move(*cmdline), std::move(*source)};
    if (field(j, "loader")) {
        const auto name = string_field(j, "loader");
        const auto loader = name ? parse_crash_loader(*name) : std::nullopt;
        if (!loader) return std::nullopt;
        r.loader = *loader;
    }
    return r;
}

// Absent or null: no recipe. Anything else must be a whole recipe, or the
// record is discarded (false).
bool read_optional_recipe(const nlohmann::json& j, const char* key, std::optional<CrashRecipe>& out) {
    const nlohmann::json* v = field(j, key);
    if (!v || v->is_null()) return true;
    out = recipe_from(*v);
    return out.has_value();
}

std::optional<KdumpIntent> intent_from(const nlohmann::json& j) {
    KdumpIntent intent;
    const auto step = string_field(j, "step");
    if (step == "load")
        intent.step = KdumpIntent::Step::load;
    else if (step == "unload")
        intent.step = KdumpIntent::Step::unload;
    else
        return std::nullopt;
    const auto since = unsigned_field(j, "since_usec");
    if (!since || !read_optional_recipe(j, "recipe", intent.recipe)) return std::nullopt;
    intent.since = *since;
    return intent;
}

}  // namespace

const char* to_string(KdumpIntent::Step step) {
    return step == KdumpIntent::Step::load ? "load" : "unload";
}

std::string format_kdump_record(const KdumpRecord& record, const std::string& boot_id) {
    nlohmann::json j = {{"version", record_version}, {"boot_id", boot_id}, {"managed", record.managed}};
    if (record.recipe) j["recipe"] = recipe_json(*record.recipe);
    if (record.last_good) j["last_good"] = recipe_json(*record.last_good);
    if (record.intent) {
        nlohmann::json intent = {{"step", to_string(record.intent->step)},
                                 {"since_usec", record.intent->since}};
        if (record.intent->recipe) intent["recipe"] = recipe_json(*record.intent->recipe);
        j["intent"] = std::move(intent);
    }
    // Paths that are not UTF-8 must not make the dump throw.
    return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + '\n';
}

std::optional<KdumpRecord> parse_kdump_record(std::string_view text, const std::string& boot_id) {
    const auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return std::nullopt;
    const auto version = unsigned_field(j, "version");
    const auto written_in = string_field(j, "boot_id");
    const auto managed = bool_field(j, "managed");
    if (version != record_version || written_in != boot_id || !managed) return std::nullopt;
    KdumpRecord record;
    record.managed = *managed;
    if (!read_optional_recipe(j, "recipe", record.recipe) ||
        !read_optional_recipe(j, "last_good", record.last_good))
        return std::nullopt;
    if (const nlohmann::json* intent = field(j, "intent")) {
        record.intent = intent_from(*intent);
        if (!record.intent) return std::nullopt;
    }
    return record;
}

Result<void> write_kdump_record(const std::filesystem::path& path, const KdumpRecord& record,
                                const std::string& boot_id) {
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) return errno_error(ec.value(), path.parent_path().string(), "cannot create the state directory");
    std::filesystem::path tmp = path;
    tmp += ".tmp";
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << format_kdump_record(record, boot_id);
        out.flush();
        if (!out) return errno_error(errno ? errno : EIO, tmp.string(), "cannot write the kdump record");
    }
    std::filesystem::rename(tmp, path, ec);
    if (ec) return errno_error(ec.value(), path.string(), "cannot replace the kdump record");
    return {};
}

std::optional<KdumpRecord> read_kdump_record(const std::filesystem::path& path, const std::string& boot_id) {
    std::ifstream in(path);
    if (!in) return std::nullopt;
    std::ostringstream text;
    text << in.rdbuf();
    return parse_kdump_record(text.str(), boot_id);
}

}  // namespace khod
