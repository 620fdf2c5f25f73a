#include "tree.hpp"

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <stdexcept>

#include "khod/kexec/bzimage.hpp"

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

namespace {

void put_le(std::string& b, std::size_t off, std::uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) b[off + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

}  // namespace

std::string minimal_bzimage() {
    std::string b(5 * 512 + 8192, '\0');
    b[0x1f1] = 0;  // setup_sects: 0 means 4
    put_le(b, 0x1fe, 0xAA55, 2);
    b[0x200] = static_cast<char>(0xeb);
    b[0x201] = 0x6a;  // jump: header ends at 0x26c
    b.replace(0x202, 4, "HdrS");
    put_le(b, 0x206, 0x020f, 2);
    put_le(b, 0x20e, 0x0400, 2);  // version string at 0x600
    b[0x211] = static_cast<char>(kLoadedHigh);
    put_le(b, 0x230, 0x200000, 4);
    b[0x234] = 1;
    b[0x235] = 21;
    put_le(b, 0x236, kXlfKernel64 | kXlfCanBeLoadedAbove4G, 2);
    put_le(b, 0x238, 2047, 4);
    put_le(b, 0x258, 0x1000000, 8);
    put_le(b, 0x260, 0x100000, 4);
    const std::string version = "9.9.9-test (me@here) #1";
    b.replace(0x600, version.size() + 1, version.c_str(), version.size() + 1);
    return b;
}

}  // namespace khod::test
