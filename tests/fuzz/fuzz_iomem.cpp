// libFuzzer target for the /proc/iomem parser the scratch planner and the
// crash region lookup read. A crash, a sanitizer report, an exception or a
// range that wraps is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "khod/scratch/memory_topology.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string text(reinterpret_cast<const char*>(data), size);
    auto entries = khod::parse_iomem(text, "/proc/iomem");
    if (!entries) return 0;
    for (const auto& e : *entries)
        if (e.name.size() > size || e.range.end < e.range.start) std::abort();
    return 0;
}
