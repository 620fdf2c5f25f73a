#include "tree.hpp"

#include <cstdlib>
#include <fstream>
#include <stdexcept>

namespace khod::test {

TempTree::TempTree() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "khod-test-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    root_ = tmpl;
}

TempTree::~TempTree() {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
}

void TempTree::write(const std::string& rel, const std::string& content) const {
    auto path = root_ / rel;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
}

void TempTree::mkdir(const std::string& rel) const {
    std::filesystem::create_directories(root_ / rel);
}

void TempTree::symlink(const std::string& target, const std::string& rel) const {
    auto path = root_ / rel;
    std::filesystem::create_directories(path.parent_path());
    std::filesystem::create_symlink(target, path);
}

void TempTree::copy_from(const std::filesystem::path& fixture) const {
    std::filesystem::copy(fixture, root_,
                          std::filesystem::copy_options::recursive |
                              std::filesystem::copy_options::copy_symlinks |
                              std::filesystem::copy_options::overwrite_existing);
}

void TempTree::remove(const std::string& rel) const {
    std::filesystem::remove_all(root_ / rel);
}

std::filesystem::path fixture(const std::string& name) {
    return std::filesystem::path(KHOD_FIXTURES) / name;
}

}  // namespace khod::test
