// What KHO hands (out) or was handed (in) across a kexec, decoded from
// debugfs kho/<out|in>/fdt and kho/<out|in>/sub_fdts/*: the root FDT
// (compatible kho-v1 ... kho-v4), the preserved-memory map's address, every
// sub-tree blob, and the known producers (kexec-metadata, LUO, kho_test,
// memblock). Unknown producers and unknown root versions are shown
// generically, never guessed at.
//
// Kernel facts this relies on (kernel/liveupdate/kexec_handover*.c, 7.2):
// - u64 properties are stored in the CPU's byte order, not as FDT cells;
// - sub-tree blobs need not be FDTs (kexec-metadata, LUO are packed records);
// - kho/out/fdt's size is fixed when it is created, early in boot, and the
//   root grows in place afterwards: the file can end before the FDT does.
//   sub_fdts/* are exact. kho/out/fdt exists only on a cold boot;
// - kho/in/fdt is exact (its own totalsize), kho/in/sub_fdts/<name> are
//   sized by the root's blob-size;
// - the preserved-memory map (a radix tree since kho-v4) is in physical
//   memory that userspace cannot read: only its address is shown.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "khod/base/debugfs.hpp"
#include "khod/base/result.hpp"
#include "khod/base/sysroot.hpp"
#include "khod/kho/kho.hpp"
#include "khod/kho/kho_fdt_blob.hpp"
#include "khod/kho/kho_records.hpp"

namespace khod {

// Bumped only when a field changes meaning or disappears; fields may be added.
inline constexpr int kho_fdt_schema_version = 1;

enum class KhoFdtDirection { out, in };
const char* to_string(KhoFdtDirection dir);  // "out", "in"

// The root compatible strings whose layout khoctl knows.
enum class KhoRootVersion {
    unknown,
    v1,  // 6.16-6.18: sub-tree nodes carry u64 "fdt" (a sub-FDT's address)
    v2,  // sub-tree nodes carry u64 "preserved-data", no size (blobs are FDTs)
    v3,  // "preserved-data" + u64 "blob-size" (blobs need not be FDTs)
    v4,  // 7.x: as v3; the preserved-memory map is a radix tree
};
const char* to_string(KhoRootVersion v);  // "kho-v1" ... "kho-v4", "unknown"

// One child node of the root: where one sub-tree blob is.
struct KhoRootEntry {
    std::string name;
    bool complete = true;                    // false: the node was cut short in the bytes read
    std::optional<std::uint64_t> phys;       // "fdt" (v1) or "preserved-data" (v2+)
    std::optional<std::uint64_t> blob_size;  // "blob-size" (v3+)
    std::vector<std::string> problems;       // missing or wrong-size properties
};

struct KhoRoot {
    std::string path;                          // kernel path of the fdt file
    bool present = false;                      // the file exists
    std::optional<Error> read_error;           // it exists but could not be read
    std::optional<std::string> absent_reason;  // why it does not exist, when known
    FdtBlob fdt;
    std::optional<std::string> compatible;  // first string of the root's compatible
    KhoRootVersion version = KhoRootVersion::unknown;
    std::optional<std::uint64_t> memory_map;  // preserved-memory-map: a physical address
    std::string memory_map_format;            // what lives there, for the known versions
    std::vector<KhoRootEntry> entries;        // known versions only
    std::vector<std::string> problems;
};

// Decodes a root FDT's bytes (possibly cut short); `path` names it in messages.
KhoRoot decode_kho_root(std::string_view bytes, const std::string& path);

// lib/test_kho.c's sub-tree, compatible kho-test-v1.
inline constexpr std::uint32_t kho_test_magic = 0x4b484f21;  // "KHO!"
struct KhoTestTree {
    std::optional<std::uint32_t> magic;
    std::optional<std::uint32_t> nr_folios;
    // struct kho_vmalloc: the page list of the folio table (physical memory).
    struct Vmalloc {
        std::uint64_t first = 0;
        std::uint32_t total_pages = 0;
        std::uint16_t flags = 0;
        std::uint16_t order = 0;
    };
    std::optional<Vmalloc> folios_info;
    std::optional<std::uint32_t> csum;
};

// mm/memblock.c's sub-tree, compatible memblock-v1: the reserve_mem= regions.
struct ReserveMem {
    std::string name;
    std::optional<std::string> compatible;
    std::optional<std::uint64_t> start;
    std::optional<std::uint64_t> size;
};

struct KhoSubtree {
    std::string name;
    std::string path;                 // kernel path of the sub_fdts file ("" when there is none)
    std::optional<std::string> data;  // the bytes read; nullopt when missing or unreadable
    std::optional<Error> read_error;
    std::optional<KhoRootEntry> root_entry;  // what the root FDT says about it
    std::optional<bool> in_root;             // nullopt: the root could not tell
    std::string format;                      // "fdt", "kexec-metadata", "luo", "raw", "missing"
    std::string producer;                    // "kexec-metadata", "LUO", "kho_test", "memblock", "" unknown
    std::optional<std::string> compatible;
    std::optional<FdtBlob> fdt;  // for blobs that start with the FDT magic
    std::optional<KexecMetadata> kexec_metadata;
    std::optional<LuoRecord> luo;
    std::optional<KhoTestTree> kho_test;
    std::optional<std::vector<ReserveMem>> memblock;
    std::vector<Error> errors;       // the blob is malformed for what it claims to be
    std::vector<std::string> notes;  // facts worth knowing that are not errors
    // The blob names a format newer than khod decodes (a LUO compatible
    // other than luo-v5, a kexec-metadata version other than 1): shown as
    // bytes and noted, never an error, so a newer kernel's live update is
    // not refused by khod's decoder.
    bool newer_format = false;
};

// Decodes one sub-tree blob by its name and content. `incoming`: it came
// from kho/in (the previous kernel's), which changes what some blobs mean.
KhoSubtree decode_kho_subtree(const std::string& name, std::string_view bytes, const std::string& path,
                              bool incoming);

struct KhoFdtReport {
    KhoFdtDirection direction = KhoFdtDirection::out;
    std::string path;  // kernel path of kho/<dir>
    DebugfsState debugfs;
    KhoAbi abi = KhoAbi::unknown;
    std::optional<Error> error;  // nothing could be shown (no debugfs, no kho/, no kho/in)
    KhoRoot root;
    std::vector<KhoSubtree> subtrees;  // sorted by name
    std::vector<std::string> notes;

    const KhoSubtree* subtree(std::string_view name) const;
};

// Reads <debugfs>/kho/<dir>. Call ensure_debugfs() first; its state is kept.
KhoFdtReport read_kho_fdt(const Sysroot& root, KhoFdtDirection dir, const DebugfsState& debugfs);

nlohmann::json to_json(const KhoFdtReport& report);
nlohmann::json to_json(const KhoRoot& root);
nlohmann::json to_json(const KhoSubtree& subtree);
nlohmann::json to_json(const FdtBlob& blob);
// The human form: sections of "label  value" rows.
std::string format_kho_fdt(const KhoFdtReport& report);

}  // namespace khod
