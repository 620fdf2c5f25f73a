// One scratch area as JSON, the same in `khoctl status`, `khoctl scratch
// show` and the handover preflight.
#pragma once

#include <nlohmann/json.hpp>

#include "khod/kho/kho.hpp"

namespace khod {

// {index, kind, node, phys, phys_hex, size, size_human}; node is null when unnamed.
nlohmann::json to_json(const ScratchArea& area);

}  // namespace khod
