#include "khod/base/cmdline.hpp"

#include <cctype>

namespace khod {

bool same_param_key(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i] == '-' ? '_' : a[i];
        char y = b[i] == '-' ? '_' : b[i];
        if (x != y) return false;
    }
    return true;
}

std::string render_param(const CmdlineParam& p) {
    if (!p.value) return p.key;
    for (char c : *p.value)
        if (std::isspace(static_cast<unsigned char>(c))) return p.key + "=\"" + *p.value + "\"";
    return p.key + "=" + *p.value;
}

Cmdline Cmdline::parse(std::string_view text) {
    Cmdline out;
    std::size_t i = 0;
    while (i < text.size()) {
        while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
        if (i >= text.size()) break;
        // A word runs to the next space outside double quotes; quotes are dropped.
        std::string word;
        std::size_t equals = std::string::npos;
        bool quoted = false;
        for (; i < text.size(); ++i) {
            char c = text[i];
            if (c == '"') {
                quoted = !quoted;
                continue;
            }
            if (!quoted && std::isspace(static_cast<unsigned char>(c))) break;
            if (c == '=' && equals == std::string::npos) equals = word.size();
            word += c;
        }
        CmdlineParam param;
        if (equals == std::string::npos) {
            param.key = word;
        } else {
            param.key = word.substr(0, equals);
            param.value = word.substr(equals + 1);
        }
        out.params_.push_back(std::move(param));
    }
    return out;
}

const CmdlineParam* Cmdline::find(std::string_view key) const {
    const CmdlineParam* found = nullptr;
    for (const auto& p : params_)
        if (same_param_key(p.key, key)) found = &p;
    return found;
}

std::optional<std::string> Cmdline::value(std::string_view key) const {
    const CmdlineParam* p = find(key);
    if (!p) return std::nullopt;
    return p->value;
}

std::string Cmdline::with(std::string_view key, std::string_view value) const {
    std::string out;
    for (const auto& p : params_) {
        if (same_param_key(p.key, key)) continue;
        if (!out.empty()) out += ' ';
        out += render_param(p);
    }
    if (!out.empty()) out += ' ';
    out += render_param(CmdlineParam{std::string(key), std::string(value)});
    return out;
}

std::string Cmdline::str() const {
    std::string out;
    for (const auto& p : params_) {
        if (!out.empty()) out += ' ';
        out += render_param(p);
    }
    return out;
}

std::optional<bool> kstrtobool(std::string_view text) {
    if (text.empty()) return std::nullopt;
    switch (text[0]) {
        case 'y':
        case 'Y':
        case 't':
        case 'T':
        case '1':
        case 'e':
        case 'E': return true;
        case 'n':
        case 'N':
        case 'f':
        case 'F':
        case '0':
        case 'd':
        case 'D': return false;
        case 'o':
        case 'O':
            if (text.size() < 2) return std::nullopt;
            if (text[1] == 'n' || text[1] == 'N') return true;
            if (text[1] == 'f' || text[1] == 'F') return false;
            return std::nullopt;
        default: return std::nullopt;
    }
}

}  // namespace khod
