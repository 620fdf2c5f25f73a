#include "khod/base/iomem.hpp"

#include <optional>
#include <sstream>
#include <string_view>

#include "khod/base/hex.hpp"

namespace khod {

namespace {

bool blank(const std::string& line) {
    return line.find_first_not_of(" \t\r\n\v\f") == std::string::npos;
}

}  // namespace

Result<std::vector<IomemEntry>> parse_iomem(const std::string& text, const std::string& path) {
    std::vector<IomemEntry> out;
    std::istringstream s(text);
    std::string line;
    unsigned lineno = 0;
    while (std::getline(s, line)) {
        ++lineno;
        if (blank(line)) continue;
        std::size_t indent = 0;
        while (indent < line.size() && line[indent] == ' ') ++indent;
        auto dash = line.find('-', indent);
        auto colon = line.find(" : ", indent);
        auto bad = [&] {
            return plain_error(path + ":" + std::to_string(lineno), "not \"start-end : name\": " + line);
        };
        if (dash == std::string::npos || colon == std::string::npos || dash > colon) return bad();
        auto a = parse_hex_digits(std::string_view(line).substr(indent, dash - indent));
        auto b = parse_hex_digits(std::string_view(line).substr(dash + 1, colon - dash - 1));
        if (!a || !b || *b < *a) return bad();
        IomemEntry e;
        e.depth = static_cast<unsigned>(indent / 2);
        // The end is inclusive; one ending at the top of the address space
        // cannot be made exclusive, so it loses its last byte, not wraps to 0.
        e.range = {*a, *b == UINT64_MAX ? *b : *b + 1};
        e.name = line.substr(colon + 3);
        out.push_back(std::move(e));
    }
    return out;
}

}  // namespace khod
