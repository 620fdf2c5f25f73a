#include "khod/kdump/kdump_recipe.hpp"

#include <cctype>
#include <sstream>

namespace khod {

namespace {

bool is_name_start(char c) {
    return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
}
bool is_name_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
}
bool is_blank(char c) {
    return c == ' ' || c == '\t';
}

std::vector<std::string> words(std::string_view text) {
    std::vector<std::string> out;
    std::istringstream in{std::string(text)};
    std::string w;
    while (in >> w) out.push_back(w);
    return out;
}

std::string value_or(const std::map<std::string, std::string>& vars, const std::string& key,
                     const std::string& fallback) {
    auto it = vars.find(key);
    // The tools use ${VAR:=default}: an empty value counts as unset.
    return it == vars.end() || it->second.empty() ? fallback : it->second;
}

Result<std::map<std::string, std::string>> read_assignments(const KernelPath& path) {
    auto text = read_file(path);
    if (!text) return text.error();
    return parse_shell_assignments(*text, path.kernel);
}

Result<Cmdline> running_cmdline(const Sysroot& root) {
    auto text = read_trimmed(root.proc("cmdline"));
    if (!text) return text.error();
    return Cmdline::parse(*text);
}

}  // namespace

Result<std::map<std::string, std::string>> parse_shell_assignments(std::string_view text,
                                                                   const std::string& path) {
    std::map<std::string, std::string> vars;
    int lineno = 0;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        std::size_t nl = text.find('\n', pos);
        std::string_view line = text.substr(pos, nl == std::string_view::npos ? text.npos : nl - pos);
        pos = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
        ++lineno;
        auto fail = [&](const std::string& why) {
            return plain_error(path, "line " + std::to_string(lineno) + ": " + why);
        };
        std::size_t i = 0;
        while (i < line.size() && is_blank(line[i])) ++i;
        if (i == line.size() || line[i] == '#' || line[i] == '\r') continue;
        if (line.substr(i, 7) == "export " || line.substr(i, 7) == "export\t") {
            i += 7;
            while (i < line.size() && is_blank(line[i])) ++i;
        }
        if (i == line.size() || !is_name_start(line[i])) return fail("not a VAR=value assignment");
        std::size_t name_start = i;
        while (i < line.size() && is_name_char(line[i])) ++i;
        std::string name(line.substr(name_start, i - name_start));
        if (i == line.size() || line[i] != '=') return fail("not a VAR=value assignment");
        ++i;
        std::string value;
        while (i < line.size() && !is_blank(line[i]) && line[i] != '\r') {
            char c = line[i];
            if (c == '\'') {
                std::size_t end = line.find('\'', i + 1);
                if (end == std::string_view::npos) return fail("unterminated '...' in " + name);
                value += line.substr(i + 1, end - i - 1);
                i = end + 1;
            } else if (c == '"') {
                ++i;
                bool closed = false;
                while (i < line.size()) {
                    char d = line[i];
                    if (d == '"') {
                        closed = true;
                        ++i;
                        break;
                    }
                    if (d == '\\' && i + 1 < line.size() &&
                        (line[i + 1] == '"' || line[i + 1] == '\\' || line[i + 1] == '$' ||
                         line[i + 1] == '`')) {
                        value += line[i + 1];
                        i += 2;
                        continue;
                    }
                    if (d == '$' || d == '`')
                        return fail(name +
                                    " needs the shell to expand it ($ or `); give the value literally");
                    value += d;
                    ++i;
                }
                if (!closed)
                    return fail("unterminated \"...\" in " + name + " (multi-line values are not read)");
            } else if (c == '\\' && i + 1 < line.size()) {
                value += line[i + 1];
                i += 2;
            } else if (c == '$' || c == '`') {
                return fail(name + " needs the shell to expand it ($ or `); give the value literally");
            } else if (c == ';' || c == '&' || c == '|' || c == '(' || c == ')' || c == '<' || c == '>') {
                return fail("shell syntax after " + name + "= is not read");
            } else {
                value += c;
                ++i;
            }
        }
        while (i < line.size() && (is_blank(line[i]) || line[i] == '\r')) ++i;
        if (i < line.size() && line[i] != '#') return fail("more than one word after " + name + "=");
        vars[name] = value;
    }
    return vars;
}

std::string crash_cmdline_from(const Cmdline& running, const std::vector<std::string>& remove,
                               std::string_view append) {
    static const char* const always[] = {"BOOT_IMAGE", "initrd", "elfcorehdr", "dmcryptkeys", "crashkernel"};
    std::string out;
    for (const auto& p : running.params()) {
        bool drop = false;
        for (const char* k : always) drop = drop || same_param_key(p.key, k);
        for (const auto& k : remove) drop = drop || same_param_key(p.key, k);
        if (drop) continue;
        if (!out.empty()) out += ' ';
        out += render_param(p);
    }
    for (const auto& w : words(append)) {
        if (!out.empty()) out += ' ';
        out += w;
    }
    return out;
}

Result<std::optional<CrashRecipe>> import_kdump_tools(const Sysroot& root) {
    const KernelPath path = root.etc("default/kdump-tools");
    if (!exists(path)) return std::optional<CrashRecipe>{};
    auto vars = read_assignments(path);
    if (!vars) return vars.error();
    if (value_or(*vars, "USE_KDUMP", "0") == "0")
        return plain_error(path.kernel, "USE_KDUMP is 0 or unset: kdump-tools is switched off there");
    CrashRecipe r;
    r.source = path.kernel;
    r.kernel = value_or(*vars, "KDUMP_KERNEL", "/var/lib/kdump/vmlinuz");
    r.initrd = value_or(*vars, "KDUMP_INITRD", "/var/lib/kdump/initrd.img");
    const std::string append =
        value_or(*vars, "KDUMP_CMDLINE_APPEND",
                 "reset_devices systemd.unit=kdump-tools-dump.service nr_cpus=1 irqpoll usbcore.nousb");
    auto given = vars->find("KDUMP_CMDLINE");
    if (given != vars->end() && !given->second.empty()) {
        // kdump-config uses KDUMP_CMDLINE as given, without stripping anything.
        r.cmdline = given->second;
        for (const auto& w : words(append)) r.cmdline += " " + w;
    } else {
        auto running = running_cmdline(root);
        if (!running) return running.error();
        // What kdump-config's sed expressions strip on x86_64.
        r.cmdline = crash_cmdline_from(
            *running,
            {"abm", "isolcpus", "hugepages", "hugepagesz", "default_hugepagesz", "edac_core.edac_report",
             "edac_report", "processor.max_cstate", "intel_iommu", "iommu", "intel_idle.max_cstate"},
            append);
    }
    return std::optional<CrashRecipe>(r);
}

Result<std::optional<CrashRecipe>> import_kdumpctl(const Sysroot& root) {
    const KernelPath path = root.etc("sysconfig/kdump");
    if (!exists(path)) return std::optional<CrashRecipe>{};
    auto vars = read_assignments(path);
    if (!vars) return vars.error();
    std::string release = value_or(*vars, "KDUMP_KERNELVER", "");
    if (release.empty()) {
        auto r = read_trimmed(root.proc("sys/kernel/osrelease"));
        if (!r) return r.error();
        release = *r;
    }
    const std::string bootdir = value_or(*vars, "KDUMP_BOOTDIR", "/boot");
    CrashRecipe r;
    r.source = path.kernel;
    auto ext = vars->find("KDUMP_IMG_EXT");
    r.kernel = bootdir + "/" + value_or(*vars, "KDUMP_IMG", "vmlinuz") + "-" + release +
               (ext == vars->end() ? "" : ext->second);
    r.initrd = bootdir + "/initramfs-" + release + "kdump.img";
    Cmdline base;
    auto given = vars->find("KDUMP_COMMANDLINE");
    if (given != vars->end() && !given->second.empty()) {
        base = Cmdline::parse(given->second);
    } else {
        auto running = running_cmdline(root);
        if (!running) return running.error();
        base = *running;
    }
    auto remove_it = vars->find("KDUMP_COMMANDLINE_REMOVE");
    r.cmdline = crash_cmdline_from(
        base, remove_it == vars->end() ? std::vector<std::string>{} : words(remove_it->second),
        value_or(*vars, "KDUMP_COMMANDLINE_APPEND", ""));
    return std::optional<CrashRecipe>(r);
}

const char* to_string(CrashLoader loader) {
    switch (loader) {
        case CrashLoader::file: return "file";
        case CrashLoader::native: return "native";
        case CrashLoader::automatic: return "auto";
    }
    return "file";
}

std::optional<CrashLoader> parse_crash_loader(std::string_view text) {
    if (text == "file") return CrashLoader::file;
    if (text == "native") return CrashLoader::native;
    if (text == "auto") return CrashLoader::automatic;
    return std::nullopt;
}

}  // namespace khod
