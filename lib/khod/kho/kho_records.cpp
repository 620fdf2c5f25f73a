#include "khod/kho/kho_records.hpp"

#include <cstring>

namespace khod {

namespace {

template <class T>
T load(std::string_view blob, std::size_t offset) {
    T v{};
    std::memcpy(&v, blob.data() + offset, sizeof v);
    return v;
}

// Printable ASCII as is, every other byte as \xNN; backslash too when the
// result must read back unambiguously.
std::string escape_nonprintable(std::string_view bytes, bool escape_backslash) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size());
    for (char ch : bytes) {
        auto c = static_cast<unsigned char>(ch);
        if (c >= 0x20 && c < 0x7f && !(escape_backslash && c == '\\')) {
            out += ch;
        } else {
            out += "\\x";
            out += digits[c >> 4];
            out += digits[c & 0xf];
        }
    }
    return out;
}

}  // namespace

std::string escape_bytes(std::string_view bytes) {
    return escape_nonprintable(bytes, true);
}

std::string printable(std::string_view text) {
    return escape_nonprintable(text, false);
}

std::string hex_bytes(std::string_view bytes, std::size_t limit) {
    static const char digits[] = "0123456789abcdef";
    std::size_t n = bytes.size() < limit ? bytes.size() : limit;
    std::string out;
    out.reserve(n * 2);
    for (std::size_t i = 0; i < n; ++i) {
        auto c = static_cast<unsigned char>(bytes[i]);
        out += digits[c >> 4];
        out += digits[c & 0xf];
    }
    return out;
}

std::optional<std::uint32_t> kexec_metadata_version(std::string_view blob) {
    if (blob.size() < 4) return std::nullopt;
    return load<std::uint32_t>(blob, 0);
}

Result<KexecMetadata> decode_kexec_metadata(std::string_view blob, const std::string& what) {
    if (blob.size() < 4)
        return plain_error(what, "kexec-metadata: " + std::to_string(blob.size()) +
                                     " bytes is too short for the version word (4 bytes)");
    KexecMetadata m;
    m.version = load<std::uint32_t>(blob, 0);
    if (m.version != kexec_metadata_known_version)
        return plain_error(what, "kexec-metadata: version " + std::to_string(m.version) +
                                     " is not known (khoctl decodes version 1)");
    if (blob.size() < kexec_metadata_v1_size)
        return plain_error(what, "kexec-metadata: " + std::to_string(blob.size()) +
                                     " bytes is too short for a version 1 record (73 bytes)");
    std::string_view release = blob.substr(4, kexec_metadata_release_size);
    std::size_t nul = release.find('\0');
    if (nul == std::string_view::npos)
        return plain_error(what,
                           "kexec-metadata: previous_release is not NUL-terminated within its 65 bytes");
    m.previous_release = escape_bytes(release.substr(0, nul));
    m.kexec_count = load<std::uint32_t>(blob, 4 + kexec_metadata_release_size);
    m.trailing = blob.size() - kexec_metadata_v1_size;
    return m;
}

Result<LuoRecord> decode_luo_record(std::string_view blob, const std::string& what) {
    if (blob.size() < luo_record_size)
        return plain_error(what, "LUO: " + std::to_string(blob.size()) +
                                     " bytes is too short for the LUO record (32 bytes)");
    LuoRecord r;
    std::string_view compat = blob.substr(0, 8);
    std::size_t nul = compat.find('\0');
    r.compatible = escape_bytes(compat.substr(0, nul));
    // As the kernel's strncmp over the 8-byte field: equal up to and including the NUL.
    r.known = nul != std::string_view::npos && compat.substr(0, nul) == luo_known_compatible;
    if (!r.known) return r;
    r.liveupdate_num = load<std::uint64_t>(blob, 8);
    r.sessions_pa = load<std::uint64_t>(blob, 16);
    r.flbs_pa = load<std::uint64_t>(blob, 24);
    return r;
}

}  // namespace khod
