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

}  // namespace khod::test
