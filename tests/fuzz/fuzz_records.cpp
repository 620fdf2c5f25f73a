// libFuzzer target for khod's own JSON records, which outlive the process
// that wrote them and may be damaged or hand-edited: the kdump record
// ($RUNTIME_DIRECTORY/kdump.json) and the LUO manifest that crosses the kexec.
// Whatever parses must round-trip. Each input goes to one of the two, as a
// hash of its bytes picks, so an execution costs one JSON parse, not two.
// A crash, a sanitizer report, an exception (nlohmann's on a wrong type or
// bad UTF-8) or a broken invariant is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string_view>

#include "khod/kdump/kdump_record.hpp"
#include "khod/luo/luo_manifest.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    if (std::hash<std::string_view>{}(text) % 2) {
        if (auto manifest = khod::decode_manifest(text)) {
            if (!khod::decode_manifest(khod::encode_manifest(*manifest))) std::abort();
        }
        return 0;
    }
    if (auto record = khod::parse_kdump_record(text, "fuzz-boot")) {
        auto again = khod::parse_kdump_record(khod::format_kdump_record(*record, "fuzz-boot"), "fuzz-boot");
        if (!again || again->managed != record->managed ||
            again->intent.has_value() != record->intent.has_value())
            std::abort();
    }
    return 0;
}
