// The kernel command line, split the way the kernel's next_arg() splits it.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace khod {

struct CmdlineParam {
    std::string key;
    std::optional<std::string> value;  // nullopt for a bare word ("quiet")
};

class Cmdline {
public:
    static Cmdline parse(std::string_view text);

    const std::vector<CmdlineParam>& params() const { return params_; }
    // The last occurrence of key wins, as for the kernel's early params.
    // Dashes and underscores in keys are equivalent, as in the kernel's parameq().
    const CmdlineParam* find(std::string_view key) const;
    std::optional<std::string> value(std::string_view key) const;
    bool has(std::string_view key) const { return find(key) != nullptr; }

    // The line with every occurrence of key removed, then "key=value" appended.
    std::string with(std::string_view key, std::string_view value) const;
    std::string str() const;

private:
    std::vector<CmdlineParam> params_;
};

// Keys compare as the kernel's parameq(): '-' and '_' are the same.
bool same_param_key(std::string_view a, std::string_view b);
// One word as it goes on a command line: key, key=value, or key="value with spaces".
std::string render_param(const CmdlineParam& param);

// The kernel's kstrtobool(): y/t/1/e/on are true, n/f/0/d/off are false.
std::optional<bool> kstrtobool(std::string_view text);

}  // namespace khod
