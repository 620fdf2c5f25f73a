// The KHO sub-tree blobs that are not FDTs: the kexec-metadata record and the
// Live Update Orchestrator's root record. Both are packed C structs the kernel
// writes in the CPU's byte order; khoctl runs on the same CPU, so native order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "khod/base/result.hpp"

namespace khod {

// include/linux/kho/abi/kexec_metadata.h: packed {u32 version;
// char previous_release[__NEW_UTS_LEN + 1]; u32 kexec_count}.
inline constexpr std::uint32_t kexec_metadata_known_version = 1;
inline constexpr std::size_t kexec_metadata_release_size = 65;
inline constexpr std::size_t kexec_metadata_v1_size = 4 + kexec_metadata_release_size + 4;  // 73

struct KexecMetadata {
    std::uint32_t version = 0;
    std::string previous_release;   // the kernel release that did the kexec
    std::uint32_t kexec_count = 0;  // kexecs since the last cold boot, this one included
    std::size_t trailing = 0;       // bytes after the v1 record, which the kernel ignores
};

// Fails, naming `what`, on a blob shorter than the version word, a version
// other than 1, a v1 blob shorter than 73 bytes, or a release string without
// its terminating NUL. Non-printable bytes of the release come back escaped.
Result<KexecMetadata> decode_kexec_metadata(std::string_view blob, const std::string& what);
// The record's version word; nullopt when the blob is too short to hold one.
std::optional<std::uint32_t> kexec_metadata_version(std::string_view blob);

// include/linux/kho/abi/luo.h: packed {char compatible[8]; u64 liveupdate_num;
// u64 sessions_pa; u64 flbs_pa}.
inline constexpr std::string_view luo_known_compatible = "luo-v5";
inline constexpr std::size_t luo_record_size = 32;

struct LuoRecord {
    std::string compatible;  // up to the first NUL of the 8 bytes, escaped
    bool known = false;      // compatible is luo-v5: the numbers below are meaningful
    std::uint64_t liveupdate_num = 0;
    std::uint64_t sessions_pa = 0;  // first session block; physical memory, not readable here
    std::uint64_t flbs_pa = 0;      // FLB header; physical memory, not readable here
};

// Fails on a blob shorter than 32 bytes. An unknown compatible is not an
// error: the record comes back with known = false and only the compatible set.
Result<LuoRecord> decode_luo_record(std::string_view blob, const std::string& what);

// Bytes as text safe for JSON and terminals: printable ASCII kept, backslash
// and everything else as \xNN.
std::string escape_bytes(std::string_view bytes);
// Text composed from kernel bytes (paths, messages) made safe for JSON and
// terminals: bytes outside printable ASCII as \xNN, the rest (backslash too)
// kept, so applying it to already escaped text changes nothing.
std::string printable(std::string_view text);
// Lower-case hex of up to `limit` bytes.
std::string hex_bytes(std::string_view bytes, std::size_t limit = std::string_view::npos);

}  // namespace khod
