// Precompiled for every file of khod (meson's cpp_pch): the headers most of
// them include. Each file still includes what it uses; clang-tidy reads them
// without this.
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>
