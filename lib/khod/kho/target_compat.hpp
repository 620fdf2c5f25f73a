// Whether the next kernel can take what this one hands over: the compatible
// strings this kernel writes into kho/out (the KHO root, LUO, each producer,
// the memfd handler when memfds are carried) must each be in the target's
// vmlinux, found as NUL-terminated strings in its decompressed payload. A
// kernel that lacks one drops that state (or, for an unknown luo-vN, panics).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "khod/base/errc.hpp"
#include "khod/base/sysroot.hpp"
#include "khod/kexec/kernel_payload.hpp"

namespace khod {

// What this kernel carries across the kexec, as the caller (the LUO broker)
// knows it; only used to say what a refused target would drop.
struct CarriedState {
    std::size_t sessions = 0;
    std::uint64_t bytes = 0;
    bool memfds = false;  // memfds are preserved: the target needs the memfd handler
};

enum class CompatRole { kho_root, luo, file_handler, producer };
const char* to_string(CompatRole role);  // "kho-root", "luo", "file-handler", "producer"

// One string the target must contain.
struct CompatNeed {
    CompatRole role = CompatRole::producer;
    std::string compatible;  // "kho-v4", "luo-v5", "memfd-v2", "kho-test-v1"
    std::string producer;    // the kho/out sub-tree name ("kho_test"), "" for the root and handlers
};

struct HandoverNeeds {
    std::vector<CompatNeed> needs;
    std::vector<std::string> notes;  // what could not be told (a root not readable, an unknown blob)
};

// Reads kho/out through root (debugfs must be mounted in it): the root FDT's
// compatible (or, on a KHO-booted kernel that has no kho/out/fdt, kho/in's:
// the kernel revives only its own root version), each sub-tree's compatible
// (LUO's from its record; kexec-metadata has none), and memfd-v2 when
// carried.memfds. Fails when kho/out cannot be read at all.
Result<HandoverNeeds> read_handover_needs(const Sysroot& root, const CarriedState& carried);

struct CompatFinding {
    CompatNeed need;
    bool found = false;
};

struct TargetCompatReport {
    std::string kernel;                  // the path given
    std::optional<std::string> release;  // from the bzImage's kernel_version
    PayloadStats payload;
    double seconds = 0;  // time spent decompressing and searching
    std::vector<CompatFinding> findings;
    std::vector<std::string> notes;
    // Errc::target_incompatible naming each missing string and what booting
    // the target would drop; or the kind of error that kept the check from
    // running (an unreadable or unsupported image: Errc::preflight_failed).
    std::optional<Failure> failure;
    bool ok() const { return !failure; }
};

// Searches the target's decompressed payload for each need as a NUL-terminated
// string; stops decompressing once every one is found.
TargetCompatReport check_target_compat(const std::filesystem::path& kernel,
                                       const std::vector<CompatNeed>& needs, const CarriedState& carried,
                                       const PayloadLimits& limits = {});

// read_handover_needs() then check_target_compat(); the notes of the first
// are kept in the report.
TargetCompatReport check_target_for_handover(const Sysroot& root, const std::filesystem::path& kernel,
                                             const CarriedState& carried);

// Searches a stream of chunks for NUL-terminated strings, across chunk
// boundaries. Public for the tests.
class StringScanner {
public:
    explicit StringScanner(std::vector<std::string> needles);
    void feed(std::span<const unsigned char> chunk);
    bool all_found() const { return remaining_ == 0; }
    bool found(std::size_t index) const { return found_[index]; }

private:
    std::vector<std::string> needles_;  // each with its NUL
    std::vector<bool> found_;
    std::size_t remaining_ = 0;
    std::size_t overlap_ = 0;  // longest needle - 1
    std::vector<unsigned char> buf_;
};

nlohmann::json to_json(const TargetCompatReport& report);
std::string format_target_compat(const TargetCompatReport& report);

}  // namespace khod
