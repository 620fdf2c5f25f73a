// Precompiled for every file of libkhocore (meson's cpp_pch): the headers
// most of them include, nlohmann/json the heaviest. Each file still includes
// what it uses; clang-tidy reads them without this.

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>
