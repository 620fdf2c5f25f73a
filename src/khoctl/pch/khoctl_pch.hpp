// Precompiled for every file of khoctl (meson's cpp_pch): CLI11 and
// nlohmann/json, which every command file includes and which take most of
// its compile. Each file still includes what it uses; clang-tidy reads them
// without this.
#include <CLI/CLI.hpp>
#include <functional>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>
