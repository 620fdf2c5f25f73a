#include "khod/kho/scratch_area_json.hpp"

#include "khod/base/hex.hpp"
#include "khod/base/units.hpp"

namespace khod {

nlohmann::json to_json(const ScratchArea& area) {
    using nlohmann::json;
    return {{"index", area.index},
            {"kind", to_string(area.kind)},
            {"node", area.node ? json(*area.node) : json(nullptr)},
            {"phys", area.phys},
            {"phys_hex", hex(area.phys)},
            {"size", area.size},
            {"size_human", human_size(area.size)}};
}

}  // namespace khod
