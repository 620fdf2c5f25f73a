// A flattened device tree read from a file, parsed into a plain tree without
// ever trusting the blob: libfdt's fdt_check_full() must accept it (bounded by
// the bytes actually read) before libfdt walks it. A blob whose header claims
// more bytes than were read (7.2's debugfs kho/out/fdt) is not valid, so a
// bounded salvage walk shows what the bytes that were read still hold.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "khod/base/result.hpp"

namespace khod {

inline constexpr std::uint32_t fdt_magic_value = 0xd00dfeed;
// Older trees are salvaged, not handed to libfdt (kho_fdt_blob.cpp).
inline constexpr std::uint32_t fdt_oldest_checked_version = 16;
// Node nesting shown; deeper children are counted, not listed (no KHO tree is
// deeper than 2, and the limit keeps recursion on hostile blobs bounded).
inline constexpr int fdt_max_depth = 32;
// How many levels of "a property value that is itself an FDT" are followed.
inline constexpr int fdt_max_nested = 2;

struct FdtHeader {
    std::uint32_t magic = 0;
    std::uint32_t totalsize = 0;
    std::uint32_t off_dt_struct = 0;
    std::uint32_t off_dt_strings = 0;
    std::uint32_t off_mem_rsvmap = 0;
    std::uint32_t version = 0;
    std::uint32_t last_comp_version = 0;
    std::uint32_t boot_cpuid_phys = 0;  // version 2+
    std::uint32_t size_dt_strings = 0;  // version 3+
    std::uint32_t size_dt_struct = 0;   // version 17+
};

struct FdtBlob;

struct FdtProperty {
    // nullopt: the name lies in a part of the strings block that was not read.
    std::optional<std::string> name;
    std::uint32_t name_offset = 0;
    std::uint32_t length = 0;  // as the property's header says
    std::string value;         // the bytes that were read (all of them unless !complete)
    bool complete = true;
    // Set when the value starts with the FDT magic: it was parsed as an FDT too.
    std::shared_ptr<const FdtBlob> nested;
};

struct FdtNode {
    std::string name;      // raw bytes; "" for the root
    bool complete = true;  // false: cut short (its name, a property or its end are missing)
    std::vector<FdtProperty> properties;
    std::vector<FdtNode> children;
    std::size_t elided_children = 0;  // children below fdt_max_depth, not listed

    const FdtProperty* property(std::string_view name) const;
    const FdtNode* child(std::string_view name) const;
};

struct FdtBlob {
    std::size_t bytes = 0;            // bytes read
    bool has_magic = false;           // the first 4 bytes are the FDT magic
    std::optional<FdtHeader> header;  // when the magic and a whole header were read
    bool truncated = false;           // header.totalsize > bytes
    bool valid = false;               // fdt_check_full() accepted it
    std::optional<Error> error;       // why it is not a valid FDT
    // The whole tree when valid; when truncated, what the bytes read still hold.
    std::optional<FdtNode> root;
    bool salvaged = false;  // root comes from the bounded salvage walk
    // Problems met by the salvage walk (it stops at the first one).
    std::vector<std::string> salvage_notes;
};

// Parses `bytes` as an FDT; `what` names it in errors (a path). Never reads
// outside `bytes`, never trusts a length, offset or size from the blob.
FdtBlob parse_fdt(std::string_view bytes, const std::string& what, int nested_levels = fdt_max_nested);

// The property as a single NUL-terminated printable string, else nullopt.
std::optional<std::string> fdt_string(const FdtProperty& prop);
// The property's first string of a string list (NUL-terminated), escaped.
std::optional<std::string> fdt_first_string(const FdtProperty& prop);
// A libfdt error code as text ("FDT_ERR_TRUNCATED: ...").
std::string fdt_error_text(int err);

}  // namespace khod
