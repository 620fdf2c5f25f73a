#include "khod/kho/target_compat.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>
#include <sstream>

#include "khod/base/caller_file.hpp"
#include "khod/base/debugfs.hpp"
#include "khod/base/units.hpp"
#include "khod/kexec/bzimage.hpp"
#include "khod/kho/kho.hpp"
#include "khod/kho/kho_fdt.hpp"

namespace khod {

namespace {

// mm/memfd_luo.c's file handler for luo-v5 (7.2 and 7.3 alike).
constexpr const char* kMemfdCompatible = "memfd-v2";

bool is_kho_root_compatible(const std::string& s) {
    if (s.size() < 6 || s.compare(0, 5, "kho-v") != 0) return false;
    return std::all_of(s.begin() + 5, s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// 7.x's kho/out/fdt ends before the strings block, so no property has a
// name; the root's only string property, and its first, is the compatible.
std::optional<std::string> salvaged_root_compatible(const KhoRoot& r) {
    if (!r.fdt.root) return std::nullopt;
    for (const FdtProperty& p : r.fdt.root->properties) {
        if (p.name) continue;
        auto s = fdt_first_string(p);
        if (s && is_kho_root_compatible(*s)) return s;
    }
    return std::nullopt;
}

// The root compatible this kernel writes: its kho/out/fdt's, or on a
// KHO-booted kernel (no kho/out/fdt) the incoming root's, since the kernel
// revives KHO only from a root of its own version.
std::optional<std::string> own_root_compatible(const Sysroot& root, const DebugfsState& debugfs,
                                               const KhoFdtReport& out, std::vector<std::string>& notes) {
    if (out.root.compatible) return out.root.compatible;
    if (auto c = salvaged_root_compatible(out.root)) {
        notes.push_back("the root's compatible " + *c +
                        " is read from a kho/out/fdt cut short before its property names");
        return c;
    }
    KhoFdtReport in = read_kho_fdt(root, KhoFdtDirection::in, debugfs);
    if (!in.error && in.root.compatible) {
        notes.push_back("kho/out/fdt is missing (a KHO-booted kernel); the root version is kho/in's " +
                        *in.root.compatible + ", which this kernel accepted");
        return in.root.compatible;
    }
    notes.emplace_back("the KHO root's compatible could not be read: the root version is not checked");
    return std::nullopt;
}

std::string consequence(const CarriedState& carried, const std::vector<std::string>& dropped) {
    if (carried.sessions > 0)
        return "booting it would drop " + std::to_string(carried.sessions) +
               (carried.sessions == 1 ? " session, " : " sessions, ") + human_size(carried.bytes);
    std::string list;
    for (const std::string& d : dropped) list += (list.empty() ? "" : ", ") + d;
    return "booting it would drop the handover of " + list;
}

std::string missing_text(const CompatNeed& n) {
    const std::string quoted = "\"" + n.compatible + "\" not found";
    switch (n.role) {
        case CompatRole::kho_root: return "has no KHO: " + quoted;
        case CompatRole::luo: return "has no LUO: " + quoted;
        case CompatRole::file_handler: return "cannot restore memfds: " + quoted;
        case CompatRole::producer: break;
    }
    return "has no " + n.producer + ": " + quoted;
}

std::string dropped_name(const CompatNeed& n) {
    switch (n.role) {
        case CompatRole::kho_root: return "KHO";
        case CompatRole::luo: return "LUO";
        case CompatRole::file_handler: return "memfds";
        case CompatRole::producer: break;
    }
    return n.producer;
}

Failure incompatible(const TargetCompatReport& r, const CarriedState& carried) {
    std::string reasons;
    std::vector<std::string> dropped;
    for (const CompatFinding& f : r.findings) {
        if (f.found) continue;
        reasons += (reasons.empty() ? "" : ", ") + missing_text(f.need);
        dropped.push_back(dropped_name(f.need));
    }
    const std::string who = "target " + r.release.value_or(r.kernel);
    return Failure{Errc::target_incompatible,
                   plain_error("", who + " " + reasons + "; " + consequence(carried, dropped))};
}

}  // namespace

const char* to_string(CompatRole role) {
    switch (role) {
        case CompatRole::kho_root: return "kho-root";
        case CompatRole::luo: return "luo";
        case CompatRole::file_handler: return "file-handler";
        case CompatRole::producer: break;
    }
    return "producer";
}

Result<HandoverNeeds> read_handover_needs(const Sysroot& root, const CarriedState& carried) {
    Sysroot view = root;
    DebugfsState debugfs = ensure_debugfs(view, true);
    HandoverNeeds r;
    if (kho_without_debugfs(view, debugfs)) {
        // KHO without its debugfs (kho.cpp): what this kernel hands over is
        // not visible; the memfd handler, the one carried data needs, is known.
        r.notes.emplace_back(
            "kho/out is not visible without KHO's debugfs: only the memfd handler is checked, "
            "when memfds are carried");
        if (carried.memfds) r.needs.push_back({CompatRole::file_handler, kMemfdCompatible, ""});
        return r;
    }
    KhoFdtReport out = read_kho_fdt(view, KhoFdtDirection::out, debugfs);
    if (out.error) return *out.error;
    if (auto c = own_root_compatible(view, debugfs, out, r.notes))
        r.needs.push_back({CompatRole::kho_root, *c, ""});
    bool luo_v5 = false;
    for (const KhoSubtree& s : out.subtrees) {
        if (s.name == "kexec-metadata") continue;  // a record without a compatible
        if (!s.compatible) {
            r.notes.push_back("sub-tree " + s.name + " has no compatible string: not checked");
            continue;
        }
        const bool luo = s.producer == "LUO";
        luo_v5 = luo_v5 || (luo && s.luo && s.luo->known);
        r.needs.push_back({luo ? CompatRole::luo : CompatRole::producer, *s.compatible, s.name});
    }
    if (carried.memfds) {
        if (!luo_v5)
            r.notes.emplace_back("memfds are carried but kho/out has no luo-v5 record: assuming memfd-v2");
        r.needs.push_back({CompatRole::file_handler, kMemfdCompatible, ""});
    }
    return r;
}

StringScanner::StringScanner(std::vector<std::string> needles) : found_(needles.size(), false) {
    for (std::string& n : needles) {
        n.push_back('\0');
        overlap_ = std::max(overlap_, n.size() - 1);
        needles_.push_back(std::move(n));
    }
    remaining_ = needles_.size();
}

// Keeps the last overlap_ bytes of the previous chunk in front of the next, so
// a string split across chunks is still seen whole.
void StringScanner::feed(std::span<const unsigned char> chunk) {
    if (remaining_ == 0) return;
    buf_.insert(buf_.end(), chunk.begin(), chunk.end());
    for (std::size_t i = 0; i < needles_.size(); ++i) {
        if (found_[i]) continue;
        if (::memmem(buf_.data(), buf_.size(), needles_[i].data(), needles_[i].size()) != nullptr) {
            found_[i] = true;
            --remaining_;
        }
    }
    if (buf_.size() > overlap_) buf_.erase(buf_.begin(), buf_.end() - static_cast<std::ptrdiff_t>(overlap_));
}

TargetCompatReport check_target_compat(const std::filesystem::path& kernel,
                                       const std::vector<CompatNeed>& needs, const CarriedState& carried,
                                       const PayloadLimits& limits) {
    TargetCompatReport r;
    r.kernel = kernel.string();
    const auto start = std::chrono::steady_clock::now();
    auto fail = [&](Error e) {
        r.failure = Failure{Errc::preflight_failed, std::move(e)};
        return r;
    };
    auto file = open_regular_file(kernel, "the kernel");
    if (!file) return fail(file.error());
    auto image = read_bzimage(file->fd.get(), r.kernel);
    if (!image) return fail(image.error());
    r.release = image->release;
    std::vector<std::string> strings;
    for (const CompatNeed& n : needs) strings.push_back(n.compatible);
    StringScanner scan(strings);
    auto stats = decompress_payload(
        file->fd.get(), *image,
        [&](std::span<const unsigned char> chunk) {
            scan.feed(chunk);
            return !scan.all_found();
        },
        limits);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (!stats) return fail(stats.error());
    r.payload = *stats;
    for (std::size_t i = 0; i < needs.size(); ++i) r.findings.push_back({needs[i], scan.found(i)});
    if (!scan.all_found()) r.failure = incompatible(r, carried);
    return r;
}

TargetCompatReport check_target_for_handover(const Sysroot& root, const std::filesystem::path& kernel,
                                             const CarriedState& carried) {
    auto needs = read_handover_needs(root, carried);
    if (!needs) {
        TargetCompatReport r;
        r.kernel = kernel.string();
        r.failure = Failure{Errc::preflight_failed, needs.error()};
        return r;
    }
    TargetCompatReport r = check_target_compat(kernel, needs->needs, carried);
    r.notes.insert(r.notes.begin(), needs->notes.begin(), needs->notes.end());
    return r;
}

nlohmann::json to_json(const TargetCompatReport& r) {
    nlohmann::json j;
    j["kernel"] = r.kernel;
    j["release"] = r.release ? nlohmann::json(*r.release) : nlohmann::json(nullptr);
    j["payload"] = {{"format", to_string(r.payload.format)},
                    {"compressed", r.payload.compressed},
                    {"decompressed", r.payload.decompressed},
                    {"complete", r.payload.complete}};
    j["seconds"] = r.seconds;
    j["strings"] = nlohmann::json::array();
    for (const CompatFinding& f : r.findings)
        j["strings"].push_back({{"compatible", f.need.compatible},
                                {"role", to_string(f.need.role)},
                                {"producer", f.need.producer},
                                {"found", f.found}});
    j["notes"] = r.notes;
    j["ok"] = r.ok();
    j["error"] = r.failure ? nlohmann::json(r.failure->describe()) : nlohmann::json(nullptr);
    j["error_kind"] = r.failure ? nlohmann::json(to_string(r.failure->kind)) : nlohmann::json(nullptr);
    return j;
}

std::string format_target_compat(const TargetCompatReport& r) {
    std::ostringstream o;
    // The columns of format_preflight(), which it follows in khoctl check.
    o << "target-compat " << (r.ok() ? "ok       " : "failed   ") << r.release.value_or(r.kernel) << ": "
      << to_string(r.payload.format) << " payload, " << human_size(r.payload.decompressed) << " searched";
    if (!r.payload.complete && r.ok()) o << " (stopped once every string was found)";
    o << '\n';
    for (const CompatFinding& f : r.findings)
        o << "  " << (f.found ? "found    " : "MISSING  ") << f.need.compatible << "  ("
          << to_string(f.need.role) << (f.need.producer.empty() ? "" : " " + f.need.producer) << ")\n";
    for (const std::string& n : r.notes) o << "  note: " << n << '\n';
    if (r.failure) o << "  error: " << r.failure->describe() << '\n';
    return o.str();
}

}  // namespace khod
