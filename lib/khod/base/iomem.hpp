// Physical address ranges and /proc/iomem, as the scratch planner and the
// crash loader read them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "khod/base/result.hpp"

namespace khod {

// [start, end): physical addresses.
struct PhysRange {
    std::uint64_t start = 0;
    std::uint64_t end = 0;
    std::uint64_t size() const { return end - start; }
    bool operator==(const PhysRange&) const = default;
};

// One line of /proc/iomem: "  start-end : name", two spaces per level.
struct IomemEntry {
    unsigned depth = 0;
    PhysRange range;
    std::string name;
};
// Lines as the kernel prints them (inclusive ends, made exclusive); a line
// that is not "start-end : name" is an Error naming path and line.
Result<std::vector<IomemEntry>> parse_iomem(const std::string& text, const std::string& path);

}  // namespace khod
