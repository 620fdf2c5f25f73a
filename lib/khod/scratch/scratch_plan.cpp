// plan_scratch, the driver over the planner's roles, and its JSON and text.
#include "khod/scratch/scratch_plan.hpp"

#include <cstdio>
#include <sstream>

#include "khod/base/debugfs.hpp"
#include "khod/base/hex.hpp"
#include "khod/base/units.hpp"
#include "khod/kho/scratch_area_json.hpp"
#include "khod/scratch/scratch_internal.hpp"

namespace khod {

using namespace scratch_detail;  // the planner's shared internals

std::string scratch_detail::pm(std::uint64_t bytes, std::uint64_t uncertainty) {
    if (!uncertainty) return human_size(bytes);
    return human_size(bytes) + " +- " + human_size(uncertainty);
}

namespace {

std::string node_name(const std::optional<unsigned>& node) {
    return node ? "node " + std::to_string(*node) : "no node";
}

// The running kernel: its rules, kho_scratch=, R and the nodes that get an area.
ScratchPlan describe_boot(const ScratchInputs& in) {
    ScratchPlan plan;
    plan.sysroot = in.sysroot;
    plan.release = in.release;
    plan.rules = scratch_rules_for(in.release, &plan.rules_reason);
    plan.abi = in.abi;
    plan.kho_active = in.kho_active;
    plan.incoming = in.incoming;
    plan.cmdline = in.cmdline;
    const Cmdline cmdline = Cmdline::parse(in.cmdline);
    plan.param = parse_scratch_param(cmdline, plan.rules);
    plan.reserved = estimate_reserved(in, cmdline);
    for (const auto& n : in.nodes)
        if (plan.rules.online_nodes ? n.online : n.has_memory) plan.area_nodes.push_back(n.id);
    if (plan.rules.online_nodes)
        for (const auto& n : in.nodes)
            if (n.online && !n.has_memory)
                plan.warnings.push_back(
                    "node " + std::to_string(n.id) + " is online without memory: " + plan.rules.id +
                    " kernels try to allocate a scratch area on it, fail and disable KHO");
    return plan;
}

void warn_about_param(ScratchPlan& plan) {
    for (const auto& r : plan.param.rejected)
        plan.warnings.push_back("the kernel refuses " + plan.rules.param + "=" + r);
    if (plan.param.fixed() && plan.param.lowmem == 0 && plan.param.global == 0 && plan.param.pernode == 0)
        plan.warnings.push_back(plan.rules.param +
                                "=0% leaves every area empty: no kexec image can be loaded");
}

}  // namespace

Result<ScratchPlan> plan_scratch(const ScratchInputs& in, const ScratchPlanOptions& options) {
    if (options.headroom_percent > 1000)
        return plain_error("--headroom",
                           std::to_string(options.headroom_percent) + "% is absurd (at most 1000%)");
    if (in.nodes.empty()) return plain_error(in.sysroot, "no NUMA node was found");
    const Layout layout(in);
    ScratchPlan plan = describe_boot(in);
    check_this_boot(plan, in, layout);
    const std::uint64_t images_bytes = fit_next_kexec(plan, in, options);
    recommend(plan, in, options.headroom_percent, images_bytes);
    warn_about_param(plan);
    return plan;
}

// ---------------------------------------------------------------------------
// output

namespace {

nlohmann::json opt_u64(const std::optional<std::uint64_t>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}
nlohmann::json opt_node(const std::optional<unsigned>& v) {
    return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

nlohmann::json reserved_json(const ReservedEstimate& e, const std::vector<unsigned>& nodes) {
    using nlohmann::json;
    json parts = json::array();
    for (const auto& p : e.parts)
        parts.push_back({{"name", to_string(p.kind)},
                         {"source", p.source},
                         {"bytes", p.bytes},
                         {"uncertainty", p.uncertainty},
                         {"node", opt_node(p.node)},
                         {"below_4g", p.below_4g},
                         {"loaded", p.loaded},
                         {"low_only", p.low_only},
                         {"contiguous", p.contiguous}});
    json per_node = json::object();
    for (unsigned n : nodes)
        per_node[std::to_string(n)] = {{"bytes", e.node_total(n)}, {"uncertainty", e.node_uncertainty(n)}};
    return {{"total", e.total()},  {"uncertainty", e.uncertainty()},
            {"low", e.low()},      {"low_uncertainty", e.low_uncertainty()},
            {"node", per_node},    {"parts", parts},
            {"unknown", e.unknown}};
}

nlohmann::json rules_json(const ScratchPlan& plan) {
    return {{"id", plan.rules.id},       {"verified", plan.rules.verified},
            {"why", plan.rules_reason},  {"param", plan.rules.param},
            {"align", plan.rules.align}, {"nodes", plan.rules.online_nodes ? "online" : "N_MEMORY"}};
}

nlohmann::json param_json(const ScratchParam& param) {
    return {{"form", param.fixed() ? "fixed" : "scale"},
            {"scale", param.scale},
            {"lowmem", param.lowmem},
            {"global", param.global},
            {"pernode", param.pernode},
            {"describe", param.describe()},
            {"accepted", param.accepted},
            {"rejected", param.rejected}};
}

nlohmann::json area_check_json(const AreaCheck& a) {
    using nlohmann::json;
    return {{"index", a.index},
            {"kind", to_string(a.kind)},
            {"node", opt_node(a.node)},
            {"predicted", opt_u64(a.predicted)},
            {"predicted_min", a.predicted_min},
            {"predicted_max", a.predicted_max},
            {"actual", opt_u64(a.actual)},
            {"verdict", a.verdict ? json(to_string(*a.verdict)) : json(nullptr)},
            {"reason", a.reason},
            {"formula", a.formula}};
}

nlohmann::json prediction_json(const ScratchPlan& plan) {
    nlohmann::json areas = nlohmann::json::array();
    for (const auto& a : plan.areas) areas.push_back(area_check_json(a));
    return {{"applies", plan.prediction_applies},
            {"note", plan.prediction_note},
            {"verdict", to_string(plan.verdict)},
            {"areas", areas},
            {"allocation_risks", plan.allocation_risks}};
}

nlohmann::json fit_json(const FitCheck& f) {
    return {{"what", f.what}, {"need", f.need},   {"have", f.have},    {"margin", f.margin()},
            {"ok", f.ok},     {"fatal", f.fatal}, {"detail", f.detail}};
}

nlohmann::json images_json(const std::optional<Placement>& images) {
    using nlohmann::json;
    if (!images) return nullptr;
    json segs = json::array();
    for (const auto& s : images->segments)
        segs.push_back({{"name", s.request.name},
                        {"memsz", s.memsz},
                        {"addr", opt_u64(s.addr)},
                        {"area", s.area ? json(*s.area) : json(nullptr)}});
    return {{"fits", images->fits},
            {"message", images->message},
            {"shortfall", images->shortfall},
            {"segments", segs}};
}

nlohmann::json next_json(const ScratchPlan& plan) {
    nlohmann::json fits = nlohmann::json::array();
    for (const auto& f : plan.fits) fits.push_back(fit_json(f));
    return {{"against", to_string(plan.fit_against)},
            {"cmdline", plan.next_cmdline},
            {"images", images_json(plan.images)},
            {"images_note", plan.images_note},
            {"early", reserved_json(plan.next_early, plan.area_nodes)},
            {"fits", fits},
            {"ok", plan.fits_ok}};
}

nlohmann::json recommended_json(const RecommendedArea& a) {
    return {{"need", a.need}, {"size", a.size}, {"why", a.why}};
}

nlohmann::json recommendation_json(const Recommendation& r) {
    return {{"param", r.param},
            {"value", r.value},
            {"word", r.word},
            {"headroom_percent", r.headroom_percent},
            {"lowmem", recommended_json(r.lowmem)},
            {"global", recommended_json(r.global)},
            {"pernode", recommended_json(r.pernode)},
            {"total", r.total},
            {"default_total", r.default_total},
            {"notes", r.notes}};
}

}  // namespace

nlohmann::json to_json(const ScratchPlan& plan) {
    using nlohmann::json;
    json out;
    out["schema"] = scratch_plan_schema_version;
    out["sysroot"] = plan.sysroot;
    out["release"] = plan.release ? json(*plan.release) : json(nullptr);
    out["rules"] = rules_json(plan);
    out["kho"] = {{"abi", to_string(plan.abi)}, {"active", plan.kho_active}, {"incoming", plan.incoming}};
    out["cmdline"] = plan.cmdline;
    out["param"] = param_json(plan.param);
    out["reserved"] = reserved_json(plan.reserved, plan.area_nodes);
    out["area_nodes"] = plan.area_nodes;
    out["prediction"] = prediction_json(plan);
    out["next"] = next_json(plan);
    out["recommendation"] = recommendation_json(plan.recommendation);
    out["warnings"] = plan.warnings;
    return out;
}

namespace {

void format_reserved(std::ostream& o, const ScratchPlan& plan) {
    o << "R, the kernel's own memblock reservations ("
      << pm(plan.reserved.total(), plan.reserved.uncertainty()) << "; below 4 GiB "
      << pm(plan.reserved.low(), plan.reserved.low_uncertainty()) << "):\n";
    for (const auto& p : plan.reserved.parts) {
        char line[160];
        std::snprintf(line, sizeof line, "  %-44s %14s  %-8s ", to_string(p.kind),
                      pm(p.bytes, p.uncertainty).c_str(), node_name(p.node).c_str());
        o << line << p.source << "\n";
    }
    for (const auto& u : plan.reserved.unknown) o << "  unknown: " << u << "\n";
    for (unsigned n : plan.area_nodes)
        o << "  R(node " << n << ") = " << pm(plan.reserved.node_total(n), plan.reserved.node_uncertainty(n))
          << "\n";
}

void format_this_boot(std::ostream& o, const ScratchPlan& plan) {
    o << "\nThis boot's areas";
    if (!plan.prediction_note.empty()) o << " (" << plan.prediction_note << ")";
    o << ":\n";
    for (const auto& a : plan.areas) {
        char line[200];
        std::string name = to_string(a.kind) + (a.node ? " " + std::to_string(*a.node) : "");
        std::snprintf(line, sizeof line, "  [%u] %-8s predicted %-10s debugfs %-10s %s", a.index,
                      name.c_str(), a.predicted ? human_size(*a.predicted).c_str() : "-",
                      a.actual ? human_size(*a.actual).c_str() : "-", a.verdict ? to_string(*a.verdict) : "");
        o << line << "\n      " << a.formula << "\n";
        if (!a.reason.empty()) o << "      " << a.reason << "\n";
    }
    o << "  verdict: " << to_string(plan.verdict) << "\n";
    for (const auto& r : plan.allocation_risks) o << "  risk: " << r << "\n";
}

void format_next_kexec(std::ostream& o, const ScratchPlan& plan) {
    o << "\nNext kexec, against the " << to_string(plan.fit_against) << " areas:\n";
    o << "  images: " << plan.images_note << "\n";
    for (const auto& f : plan.fits) {
        o << "  " << (f.ok ? "ok  " : (f.fatal ? "FAIL" : "warn")) << " " << f.what << ": need "
          << human_size(f.need) << ", have " << human_size(f.have) << ", margin "
          << (f.margin() < 0 ? "-" : "")
          << human_size(static_cast<std::uint64_t>(f.margin() < 0 ? -f.margin() : f.margin())) << "\n";
    }
}

void format_recommendation(std::ostream& o, const Recommendation& r) {
    o << "\nRecommended for the next cold boot: " << r.word << "\n";
    for (const RecommendedArea* a : {&r.lowmem, &r.global, &r.pernode}) {
        o << "  " << param_field(a->kind) << ": " << human_size(a->size) << " (need " << human_size(a->need)
          << ")\n";
        for (const auto& w : a->why) o << "      " << w << "\n";
    }
    o << "  total " << human_size(r.total) << " (the default 200% would reserve "
      << human_size(r.default_total) << ")\n";
    for (const auto& n : r.notes) o << "  note: " << n << "\n";
}

}  // namespace

std::string format_scratch_plan(const ScratchPlan& plan) {
    std::ostringstream o;
    o << "Kernel " << plan.release.value_or("(unknown release)") << ": KHO scratch rules " << plan.rules.id
      << " (" << plan.rules_reason << "; " << plan.rules.verified << ")\n";
    o << plan.rules.param << ": " << plan.param.describe();
    for (const auto& r : plan.param.rejected) o << "\n  refused: " << r;
    o << "\n\n";
    format_reserved(o, plan);
    format_this_boot(o, plan);
    format_next_kexec(o, plan);
    format_recommendation(o, plan.recommendation);
    for (const auto& w : plan.warnings) o << "warning: " << w << "\n";
    return o.str();
}

nlohmann::json scratch_show_json(const KhoStatus& kho) {
    using nlohmann::json;
    json out;
    out["schema"] = scratch_plan_schema_version;
    out["active"] = kho.active ? json(*kho.active) : json(nullptr);
    out["abi"] = to_string(kho.abi);
    out["incoming"] = kho.incoming;
    out["param"] = kho.scratch_param_name;
    out["value"] = kho.scratch_param ? json(*kho.scratch_param) : json(nullptr);
    out["debugfs"] = {{"mounted", kho.debugfs.mounted},
                      {"mounted_now", kho.debugfs.mounted_now},
                      {"mountpoint", kho.debugfs.mountpoint},
                      {"error", kho.debugfs.error ? json(kho.debugfs.error->describe()) : json(nullptr)}};
    out["status"] = to_string(kho.scratch.state);
    out["path"] = kho.scratch.path;
    if (kho.scratch.state == ProbeState::error) out["error"] = kho.scratch.error.describe();
    json areas = json::array();
    std::uint64_t total = 0;
    if (kho.scratch.value)
        for (const auto& a : *kho.scratch.value) {
            total += a.size;
            areas.push_back(to_json(a));
        }
    out["areas"] = kho.scratch.value ? areas : json(nullptr);
    out["total"] = kho.scratch.value ? json(total) : json(nullptr);
    return out;
}

std::string format_scratch_show(const KhoStatus& kho) {
    std::ostringstream o;
    if (!kho.scratch.ok()) {
        o << "No KHO scratch areas: ";
        if (kho.scratch.state == ProbeState::error)
            o << kho.scratch.error.describe();
        else if (kho.debugfs.error)
            o << kho.debugfs.error->describe();
        else
            o << kho.active_reason;
        o << "\n";
        return o.str();
    }
    o << "KHO scratch areas (" << kho.scratch.path << (kho.incoming ? ", inherited through a KHO kexec" : "")
      << "; " << kho.scratch_param_name << "=" << kho.scratch_param.value_or("(not given)") << "):\n";
    std::uint64_t total = 0;
    for (const auto& a : *kho.scratch.value) {
        char line[160];
        std::string name = to_string(a.kind) + (a.node ? " " + std::to_string(*a.node) : "");
        std::snprintf(line, sizeof line, "  [%u] %-8s %18s - %-18s %s\n", a.index, name.c_str(),
                      hex(a.phys).c_str(), hex(a.phys + a.size).c_str(), human_size(a.size).c_str());
        o << line;
        total += a.size;
    }
    o << "  total " << human_size(total) << "\n";
    return o.str();
}

Result<ScratchPlan> plan_scratch_for(Sysroot& root, const ScratchPlanRequest& request) {
    DebugfsState debugfs = ensure_debugfs(root, request.may_mount_debugfs);
    ScratchInputOptions in_opts;
    in_opts.debugfs_mounted = debugfs.mounted;
    if (debugfs.error) in_opts.debugfs_error = debugfs.error->describe();
    in_opts.kernel = request.kernel;
    in_opts.initrd = request.initrd;
    auto inputs = read_scratch_inputs(root, in_opts);
    if (!inputs) return inputs.error();
    ScratchPlanOptions options;
    options.headroom_percent = request.headroom_percent;
    options.next_cmdline = request.next_cmdline;
    return plan_scratch(*inputs, options);
}

}  // namespace khod
