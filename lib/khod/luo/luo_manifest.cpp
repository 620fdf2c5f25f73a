#include "khod/luo/luo_manifest.hpp"

#include <exception>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <utility>

#include "khod/luo/luo_kernel.hpp"

namespace khod {

namespace {

using nlohmann::json;

constexpr std::size_t max_unit_bytes = 256;
constexpr std::size_t max_release_bytes = 64;  // __NEW_UTS_LEN
// The manifest nests five brackets deep (root, sessions, a session, files, a
// file); deeper input is refused before it is built.
constexpr int max_depth = 6;

// Counts brackets outside strings, a pass over the bytes before nlohmann
// builds anything: its callback parser, which could stop at a depth, costs a
// std::function call and a temporary value per token.
bool nests_deeper_than(std::string_view text, int limit) {
    int depth = 0;
    bool in_string = false;
    bool escaped = false;
    for (char c : text) {
        if (in_string) {
            if (escaped)
                escaped = false;
            else if (c == '\\')
                escaped = true;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > limit) return true;
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
    return false;
}

json encode_session(const LuoSessionEntry& s) {
    json files = json::array();
    for (const LuoFileEntry& f : s.files)
        files.push_back(
            {{"token", f.token}, {"size", f.size}, {"seals", f.seals}, {"retrieved", f.retrieved}});
    return {{"name", s.name},
            {"incoming", s.incoming},
            {"owner", {{"uid", s.owner.uid}, {"unit", s.owner.unit}}},
            {"files", std::move(files)}};
}

// Each field decoder names the field it refuses, as "sessions[2].files[0].token".
Result<const json*> field(const json& obj, const char* key, const std::string& at) {
    auto it = obj.find(key);
    if (it == obj.end()) return plain_error("manifest", "missing field " + at + key);
    return &*it;
}

Result<std::uint64_t> get_u64(const json& obj, const char* key, const std::string& at,
                              std::uint64_t max = std::numeric_limits<std::uint64_t>::max()) {
    auto v = field(obj, key, at);
    if (!v) return v.error();
    if (!(*v)->is_number_unsigned()) return plain_error("manifest", at + key + " is not an unsigned integer");
    auto n = (*v)->get<std::uint64_t>();
    if (n > max) return plain_error("manifest", at + key + " is out of range");
    return n;
}

Result<bool> get_bool(const json& obj, const char* key, const std::string& at) {
    auto v = field(obj, key, at);
    if (!v) return v.error();
    if (!(*v)->is_boolean()) return plain_error("manifest", at + key + " is not a boolean");
    return (*v)->get<bool>();
}

Result<std::string> get_string(const json& obj, const char* key, const std::string& at, std::size_t max) {
    auto v = field(obj, key, at);
    if (!v) return v.error();
    if (!(*v)->is_string()) return plain_error("manifest", at + key + " is not a string");
    auto s = (*v)->get<std::string>();
    if (s.size() > max)
        return plain_error("manifest", at + key + " is longer than " + std::to_string(max) + " bytes");
    return s;
}

Result<const json*> get_array(const json& obj, const char* key, const std::string& at, std::size_t max) {
    auto v = field(obj, key, at);
    if (!v) return v.error();
    if (!(*v)->is_array()) return plain_error("manifest", at + key + " is not an array");
    if ((*v)->size() > max)
        return plain_error("manifest", at + key + " has more than " + std::to_string(max) + " entries");
    return *v;
}

Result<LuoFileEntry> decode_file(const json& j, const std::string& at) {
    if (!j.is_object()) return plain_error("manifest", at + " is not an object");
    LuoFileEntry f;
    auto token = get_u64(j, "token", at + ".");
    if (!token) return token.error();
    auto size = get_u64(j, "size", at + ".");
    if (!size) return size.error();
    auto seals = get_u64(j, "seals", at + ".", std::numeric_limits<std::uint32_t>::max());
    if (!seals) return seals.error();
    auto retrieved = get_bool(j, "retrieved", at + ".");
    if (!retrieved) return retrieved.error();
    f.token = *token;
    f.size = *size;
    f.seals = static_cast<std::uint32_t>(*seals);
    f.retrieved = *retrieved;
    return f;
}

Result<LuoOwner> decode_owner(const json& j, const std::string& at) {
    auto o = field(j, "owner", at + ".");
    if (!o) return o.error();
    if (!(*o)->is_object()) return plain_error("manifest", at + ".owner is not an object");
    // uid_t is 32 bits; (uid_t)-1 is "no user" and owns nothing.
    auto uid = get_u64(**o, "uid", at + ".owner.", std::numeric_limits<std::uint32_t>::max() - 1);
    if (!uid) return uid.error();
    auto unit = get_string(**o, "unit", at + ".owner.", max_unit_bytes);
    if (!unit) return unit.error();
    return LuoOwner{static_cast<uid_t>(*uid), std::move(*unit)};
}

Result<void> decode_files(const json& j, const std::string& at, LuoSessionEntry& s) {
    auto files = get_array(j, "files", at + ".", luo_manifest_max_files);
    if (!files) return files.error();
    std::set<std::uint64_t> tokens;
    for (std::size_t i = 0; i < (*files)->size(); ++i) {
        auto f = decode_file((**files)[i], at + ".files[" + std::to_string(i) + "]");
        if (!f) return f.error();
        if (!tokens.insert(f->token).second)
            return plain_error("manifest", at + ": token " + std::to_string(f->token) + " twice");
        s.files.push_back(*f);
    }
    return {};
}

Result<LuoSessionEntry> decode_session(const json& j, const std::string& at) {
    if (!j.is_object()) return plain_error("manifest", at + " is not an object");
    LuoSessionEntry s;
    auto name = get_string(j, "name", at + ".", luo_max_session_name);
    if (!name) return name.error();
    if (name->empty()) return plain_error("manifest", at + ".name is empty");
    auto incoming = get_bool(j, "incoming", at + ".");
    if (!incoming) return incoming.error();
    auto owner = decode_owner(j, at);
    if (!owner) return owner.error();
    s.name = std::move(*name);
    s.incoming = *incoming;
    s.owner = std::move(*owner);
    if (auto f = decode_files(j, at, s); !f) return f.error();
    return s;
}

Result<LuoPhases> decode_phases(const json& j) {
    auto p = field(j, "phases", "");
    if (!p) return p.error();
    if (!(*p)->is_object()) return plain_error("manifest", "phases is not an object");
    auto exec = get_u64(**p, "exec_requested", "phases.");
    if (!exec) return exec.error();
    auto released = get_u64(**p, "inhibitors_released", "phases.");
    if (!released) return released.error();
    auto reboot = get_u64(**p, "reboot_syscall", "phases.");
    if (!reboot) return reboot.error();
    return LuoPhases{*exec, *released, *reboot};
}

Result<void> decode_sessions(const json& j, LuoManifest& m) {
    auto sessions = get_array(j, "sessions", "", luo_manifest_max_sessions);
    if (!sessions) return sessions.error();
    std::set<std::pair<bool, std::string>> seen;
    for (std::size_t i = 0; i < (*sessions)->size(); ++i) {
        auto s = decode_session((**sessions)[i], "sessions[" + std::to_string(i) + "]");
        if (!s) return s.error();
        // Outgoing and incoming names are separate namespaces in the kernel.
        if (!seen.emplace(s->incoming, s->name).second)
            return plain_error("manifest", "session \"" + s->name + "\" twice");
        m.sessions.push_back(std::move(*s));
    }
    return {};
}

Result<LuoManifest> decode_root(const json& j) {
    if (!j.is_object()) return plain_error("manifest", "not a JSON object");
    LuoManifest m;
    auto format = get_u64(j, "format", "");
    if (!format) return format.error();
    if (*format != static_cast<std::uint64_t>(luo_manifest_format))
        return plain_error("manifest", "format " + std::to_string(*format) +
                                           " is not known (this khod reads " +
                                           std::to_string(luo_manifest_format) + ")");
    auto release = get_string(j, "release", "", max_release_bytes);
    if (!release) return release.error();
    auto phases = decode_phases(j);
    if (!phases) return phases.error();
    m.release = std::move(*release);
    m.phases = *phases;
    if (auto s = decode_sessions(j, m); !s) return s.error();
    return m;
}

}  // namespace

std::string encode_manifest(const LuoManifest& manifest) {
    json sessions = json::array();
    for (const LuoSessionEntry& s : manifest.sessions) sessions.push_back(encode_session(s));
    json j = {{"format", manifest.format},
              {"release", manifest.release},
              {"phases",
               {{"exec_requested", manifest.phases.exec_requested},
                {"inhibitors_released", manifest.phases.inhibitors_released},
                {"reboot_syscall", manifest.phases.reboot_syscall}}},
              {"sessions", std::move(sessions)}};
    // Units and releases come from outside: invalid UTF-8 is replaced, never thrown.
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<LuoManifest> decode_manifest(std::string_view text) {
    if (text.size() > luo_manifest_max_bytes)
        return plain_error("manifest", std::to_string(text.size()) + " bytes is more than the " +
                                           std::to_string(luo_manifest_max_bytes) + " khod reads");
    if (nests_deeper_than(text, max_depth))
        return plain_error("manifest", "nested deeper than a manifest is");
    try {
        json j = json::parse(text.begin(), text.end(), nullptr, false);
        if (j.is_discarded()) return plain_error("manifest", "not valid JSON");
        return decode_root(j);
    } catch (const std::exception& e) {
        // parse() with allow_exceptions=false still allocates; nothing leaves the library.
        return plain_error("manifest", std::string("cannot decode: ") + e.what());
    }
}

}  // namespace khod
