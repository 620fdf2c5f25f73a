// A throwaway sysroot tree for tests: files written on demand, removed at the end.
#pragma once

#include <filesystem>
#include <string>

namespace khod::test {

class TempTree {
public:
    TempTree();
    ~TempTree();
    TempTree(const TempTree&) = delete;
    TempTree& operator=(const TempTree&) = delete;

    const std::filesystem::path& root() const { return root_; }
    // Writes <root>/<rel>, creating parent directories.
    void write(const std::string& rel, const std::string& content) const;
    void mkdir(const std::string& rel) const;
    void symlink(const std::string& target, const std::string& rel) const;
    // Copies a whole fixture tree into this one (to then break parts of it).
    void copy_from(const std::filesystem::path& fixture) const;
    void remove(const std::string& rel) const;

private:
    std::filesystem::path root_;
};

std::filesystem::path fixture(const std::string& name);

// A minimal image the kernel's bzImage64 probe accepts: 4 setup sectors
// (written as 0, which means 4), protocol 2.15, 64-bit, loadable above 4 GiB,
// cmdline_size 2047, init_size 1 MiB, a version string ("9.9.9-test") in the
// setup code and 8 KiB of "kernel" after it.
std::string minimal_bzimage();

}  // namespace khod::test
