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

// at(): a missing field or one of the wrong type throws, and the caller
// discards the record.
// A record written before loaders existed has no "loader": those were file loads.
CrashRecipe recipe_from(const nlohmann::json& j) {
    CrashRecipe r{j.at("kernel").get<std::string>(), j.at("initrd").get<std::string>(),
                  j.at("cmdline").get<std::string>(), j.at("source").get<std::string>()};
    if (j.contains("loader")) {
        const auto loader = parse_crash_loader(j.at("loader").get<std::string>());
        if (!loader) throw std::invalid_argument("unknown loader");
        r.loader = *loader;
    }
    return r;
}

// nlohmann converts a float or a negative number to an unsigned by a cast,
// undefined out of range (fuzz-records found 1e34 as "version"): only an
// unsigned integer is taken.
std::uint64_t unsigned_from(const nlohmann::json& j, const char* key) {
    const auto& v = j.at(key);
    if (!v.is_number_unsigned())
        throw std::invalid_argument(std::string(key) + " is not an unsigned integer");
    return v.get<std::uint64_t>();
}

std::optional<CrashRecipe> optional_recipe(const nlohmann::json& j, const char* key) {
    if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
    return recipe_from(j.at(key));
}

KdumpIntent intent_from(const nlohmann::json& j) {
    KdumpIntent intent;
    const auto step = j.at("step").get<std::string>();
    if (step == "load")
        intent.step = KdumpIntent::Step::load;
    else if (step == "unload")
        intent.step = KdumpIntent::Step::unload;
    else
        throw std::invalid_argument("unknown step " + step);
    intent.recipe = optional_recipe(j, "recipe");
    intent.since = unsigned_from(j, "since_usec");
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
    try {
        if (unsigned_from(j, "version") != record_version || j.at("boot_id").get<std::string>() != boot_id)
            return std::nullopt;
        KdumpRecord record;
        record.managed = j.at("managed").get<bool>();
        record.recipe = optional_recipe(j, "recipe");
        record.last_good = optional_recipe(j, "last_good");
        if (j.contains("intent")) record.intent = intent_from(j.at("intent"));
        return record;
    } catch (const std::exception&) {
        return std::nullopt;  // a hand-edited or damaged record
    }
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
