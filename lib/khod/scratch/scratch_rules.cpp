// The kernel's rules per release, and kho_scratch= as its early_param handler reads it.
#include <algorithm>
#include <cctype>
#include <climits>

#include "khod/base/units.hpp"
#include "khod/scratch/scratch_plan.hpp"

namespace khod {

namespace {

std::optional<std::pair<unsigned, unsigned>> major_minor(const std::string& release) {
    unsigned a = 0;
    unsigned b = 0;
    std::size_t i = 0;
    auto digits = [&](unsigned& out) {
        std::size_t start = i;
        while (i < release.size() && std::isdigit(static_cast<unsigned char>(release[i])) && i - start < 6)
            out = out * 10 + static_cast<unsigned>(release[i++] - '0');
        return i > start;
    };
    if (!digits(a) || i >= release.size() || release[i] != '.') return std::nullopt;
    ++i;
    if (!digits(b)) return std::nullopt;
    return std::make_pair(a, b);
}

// kstrtouint(s, 10): optional '+', decimal digits, one optional trailing newline.
Result<unsigned> kstrtouint(std::string_view s, const std::string& what) {
    if (!s.empty() && s[0] == '+') s.remove_prefix(1);
    if (!s.empty() && s.back() == '\n') s.remove_suffix(1);
    if (s.empty()) return plain_error(what, "no number before the %");
    std::uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9')
            return plain_error(what, "\"" + std::string(s) + "\" is not a decimal number");
        v = v * 10 + static_cast<unsigned>(c - '0');
        if (v > UINT_MAX) return plain_error(what, "scale larger than 4294967295 (ERANGE)");
    }
    return static_cast<unsigned>(v);
}

}  // namespace

ScratchRules scratch_rules_for(const std::optional<std::string>& release, std::string* why) {
    ScratchRules r;
    r.id = "7.0-7.3";
    r.verified =
        "7.2.13 source (kernel/liveupdate/kexec_handover.c, mm/memblock.c); 7.0 and 7.1 assumed the same";
    r.param = "kho_scratch";
    r.align = 4 * kMiB;
    std::string reason;
    auto mm = release ? major_minor(*release) : std::nullopt;
    if (!mm) {
        reason = release ? "release \"" + *release + "\" not understood; using the 7.0-7.3 rules"
                         : "kernel release unknown; using the 7.0-7.3 rules";
    } else if (mm->first > 7 || (mm->first == 7 && mm->second >= 4)) {
        r.id = "7.4+";
        r.verified =
            "7.2.13 rules with the 7.4 renames (kho_bootmem=, bootmem_phys/bootmem_len), not checked "
            "against 7.4 source";
        r.param = "kho_bootmem";
        reason = "release " + *release + " is 7.4 or later";
    } else if (mm->first == 7) {
        reason = "release " + *release + " is 7.0-7.3";
    } else if (mm->first == 6 && mm->second >= 16) {
        r.align = 2 * kMiB;  // CMA_MIN_ALIGNMENT_BYTES: a 2 MiB pageblock on x86_64
        r.round_lowmem_before_subtract = true;
        r.round_fixed_lowmem_global = false;
        r.online_nodes = true;
        if (mm->second >= 18) {
            r.id = "6.18-6.19";
            r.verified = "v6.18 kernel/kexec_handover.c and a 6.19-era kernel/liveupdate/kexec_handover.c";
        } else {
            r.id = "6.16-6.17";
            r.verified = "6.16 and 6.17-era kernel/kexec_handover.c";
            r.zero_size_allowed = false;
            r.trailing_text_ignored = true;
        }
        reason = "release " + *release + " is " + r.id;
    } else {
        reason =
            "release " + *release + " predates KHO (6.16); using the 7.0-7.3 rules for the arithmetic only";
    }
    if (why) *why = reason;
    return r;
}

// ---------------------------------------------------------------------------
// kho_scratch=

std::string ScratchParam::describe() const {
    if (!fixed()) return (accepted.empty() ? "default scale " : "scale ") + std::to_string(scale) + "%";
    return "fixed " + human_size(lowmem) + ", " + human_size(global) + ", " + human_size(pernode) +
           " per node";
}

Result<void> apply_scratch_value(ScratchParam& param, const std::optional<std::string>& value,
                                 const ScratchRules& rules) {
    const std::string what = rules.param + "=" + value.value_or("");
    if (!value) return plain_error(rules.param, "given without a value");
    const std::string& p = *value;
    if (p.empty()) return plain_error(what, "empty value");
    if (p.back() == '%') {
        // s_scale[11]: the whole value, '%' included, may be at most 11 characters.
        if (p.size() > 11) return plain_error(what, "longer than 11 characters");
        auto scale = kstrtouint(std::string_view(p).substr(0, p.size() - 1), what);
        if (!scale) return scale.error();
        param.scale = *scale;
        return {};
    }
    std::uint64_t sizes[3] = {0, 0, 0};
    std::uint64_t total = 0;
    std::size_t pos = 0;
    for (int i = 0; i < 3; ++i) {
        if (i > 0) {
            if (pos >= p.size() || p[pos] != ',')
                return plain_error(what, "expected three sizes separated by commas (lowmem,global,per-node)");
            ++pos;
        }
        auto m = memparse(std::string_view(p).substr(pos));
        if (!m) return plain_error(what, "size " + std::to_string(i + 1) + ": " + m.error().message);
        if (!rules.zero_size_allowed && m->value == 0)
            return plain_error(what, "size " + std::to_string(i + 1) + " is zero (refused before 6.18)");
        sizes[i] = m->value;
        pos += m->consumed;
        if (total > UINT64_MAX - m->value) return plain_error(what, "sizes add up to more than 2^64");
        total += m->value;
    }
    if (!rules.zero_size_allowed && total == 0) return plain_error(what, "all sizes are zero");
    if (rules.zero_size_allowed && total == 0) return plain_error(what, "all three sizes are zero");
    if (pos != p.size() && !rules.trailing_text_ignored)
        return plain_error(what, "text after the third size: \"" + p.substr(pos) + "\"");
    param.lowmem = sizes[0];
    param.global = sizes[1];
    param.pernode = sizes[2];
    param.scale = 0;
    return {};
}

ScratchParam parse_scratch_param(const Cmdline& cmdline, const ScratchRules& rules) {
    ScratchParam param;
    // early_param handlers run for every occurrence, in order.
    for (const auto& p : cmdline.params()) {
        std::string key = p.key;
        std::replace(key.begin(), key.end(), '-', '_');
        if (key != rules.param) continue;
        auto r = apply_scratch_value(param, p.value, rules);
        const std::string shown = p.value.value_or("(no value)");
        if (r)
            param.accepted.push_back(shown);
        else
            param.rejected.push_back(shown + ": " + r.error().message + "; the kernel keeps what it had");
    }
    return param;
}

}  // namespace khod
