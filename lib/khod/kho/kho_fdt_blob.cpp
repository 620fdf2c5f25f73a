#include "khod/kho/kho_fdt_blob.hpp"

#include <libfdt.h>

#include <cstddef>
#include <cstdio>
#include <cstring>

#include "khod/kho/kho_records.hpp"

namespace khod {

namespace {

constexpr std::uint32_t tag_begin_node = 1;
constexpr std::uint32_t tag_end_node = 2;
constexpr std::uint32_t tag_prop = 3;
constexpr std::uint32_t tag_nop = 4;
constexpr std::uint32_t tag_end = 9;
constexpr std::size_t v1_header_size = 28;

std::uint32_t be32(std::string_view b, std::size_t off) {
    auto byte = [&](std::size_t i) {
        return static_cast<std::uint32_t>(static_cast<unsigned char>(b[off + i]));
    };
    return byte(0) << 24 | byte(1) << 16 | byte(2) << 8 | byte(3);
}

std::uint64_t align4(std::uint64_t v) {
    return (v + 3) & ~std::uint64_t{3};
}

// libfdt wants an 8-byte aligned blob (FDT_ERR_ALIGNMENT); file contents in a
// std::string are not guaranteed to be.
class AlignedCopy {
public:
    explicit AlignedCopy(std::string_view bytes) : words_((bytes.size() + 7) / 8 + 1), size_(bytes.size()) {
        if (!bytes.empty()) std::memcpy(words_.data(), bytes.data(), bytes.size());
    }
    const void* data() const { return words_.data(); }
    std::size_t size() const { return size_; }

private:
    std::vector<std::uint64_t> words_;
    std::size_t size_;
};

std::optional<FdtHeader> read_header(std::string_view b) {
    if (b.size() < v1_header_size) return std::nullopt;
    FdtHeader h;
    h.magic = be32(b, 0);
    h.totalsize = be32(b, 4);
    h.off_dt_struct = be32(b, 8);
    h.off_dt_strings = be32(b, 12);
    h.off_mem_rsvmap = be32(b, 16);
    h.version = be32(b, 20);
    h.last_comp_version = be32(b, 24);
    if (b.size() >= 32 && h.version >= 2) h.boot_cpuid_phys = be32(b, 28);
    if (b.size() >= 36 && h.version >= 3) h.size_dt_strings = be32(b, 32);
    if (b.size() >= 40 && h.version >= 17) h.size_dt_struct = be32(b, 36);
    return h;
}

void attach_nested(FdtProperty& prop, const std::string& what, int nested_levels) {
    if (nested_levels <= 0 || prop.value.size() < 4 || be32(prop.value, 0) != fdt_magic_value) return;
    std::string where = what + ":" + (prop.name ? *prop.name : "?");
    prop.nested = std::make_shared<const FdtBlob>(parse_fdt(prop.value, where, nested_levels - 1));
}

// The blob is 8-byte aligned, but fdt_check_full() accepts a structure block
// at any offset, so a property may sit at an odd address: its name offset is
// read byte-wise, never through the struct (tools/fuzz found the misaligned
// load with off_dt_struct = 0x39).
std::uint32_t name_offset(const struct fdt_property* raw) {
    fdt32_t be = 0;
    std::memcpy(&be, reinterpret_cast<const char*>(raw) + offsetof(struct fdt_property, nameoff), sizeof be);
    return fdt32_to_cpu(be);
}

// Walks a blob that fdt_check_full() accepted, through libfdt only.
FdtNode build_node(const void* fdt, int offset, int depth, const std::string& what, int nested_levels) {
    FdtNode node;
    int len = 0;
    if (const char* name = fdt_get_name(fdt, offset, &len); name && len > 0)
        node.name.assign(name, static_cast<std::size_t>(len));
    for (int p = fdt_first_property_offset(fdt, offset); p >= 0; p = fdt_next_property_offset(fdt, p)) {
        const char* pname = nullptr;
        int plen = 0;
        const void* value = fdt_getprop_by_offset(fdt, p, &pname, &plen);
        const struct fdt_property* raw = fdt_get_property_by_offset(fdt, p, nullptr);
        if (!value || plen < 0 || !raw) {
            node.complete = false;
            break;
        }
        FdtProperty prop;
        if (pname) prop.name = pname;
        prop.name_offset = name_offset(raw);
        prop.length = static_cast<std::uint32_t>(plen);
        prop.value.assign(static_cast<const char*>(value), static_cast<std::size_t>(plen));
        attach_nested(prop, what, nested_levels);
        node.properties.push_back(std::move(prop));
    }
    for (int child = fdt_first_subnode(fdt, offset); child >= 0; child = fdt_next_subnode(fdt, child)) {
        if (depth + 1 >= fdt_max_depth) {
            ++node.elided_children;
            continue;
        }
        node.children.push_back(build_node(fdt, child, depth + 1, what, nested_levels));
    }
    return node;
}

// The bounded walk of a blob libfdt refused: every read is checked against
// the bytes read and the header's own block sizes; it stops at the first
// thing it cannot make sense of and marks what is left open as incomplete.
struct Salvage {
    std::string_view b;
    std::size_t pos = 0;
    std::size_t end = 0;  // end of the struct block as far as it was read
    std::size_t strings = 0;
    std::size_t strings_end = 0;
    std::vector<FdtNode> stack;
    std::optional<FdtNode> root;
    std::vector<std::string> notes;

    std::optional<std::string> name_at(std::uint32_t nameoff) const {
        std::uint64_t at = std::uint64_t{strings} + nameoff;
        if (strings >= strings_end || at >= strings_end) return std::nullopt;
        std::string_view rest = b.substr(at, strings_end - at);
        std::size_t nul = rest.find('\0');
        if (nul == std::string_view::npos) return std::nullopt;
        return std::string(rest.substr(0, nul));
    }

    void close_top() {
        FdtNode done = std::move(stack.back());
        stack.pop_back();
        if (stack.empty())
            root = std::move(done);
        else
            stack.back().children.push_back(std::move(done));
    }

    void cut(const std::string& why) {
        notes.push_back(why);
        while (!stack.empty()) {
            stack.back().complete = false;
            close_top();
        }
    }

    void run() {
        for (;;) {
            if (pos + 4 > end)
                return cut("the structure block ends (as read) at offset " + std::to_string(end));
            const std::size_t at = pos;
            std::uint32_t tag = be32(b, pos);
            pos += 4;
            if (tag == tag_begin_node) {
                if (root) return cut("a second root node at offset " + std::to_string(at));
                std::string_view rest = b.substr(pos, end - pos);
                std::size_t nul = rest.find('\0');
                FdtNode node;
                node.name = std::string(rest.substr(0, nul));
                if (nul == std::string_view::npos) {
                    node.complete = false;
                    stack.push_back(std::move(node));
                    return cut("the node name at offset " + std::to_string(pos) + " is cut short");
                }
                if (stack.size() >= static_cast<std::size_t>(fdt_max_depth)) {
                    ++stack.back().elided_children;
                    return cut("nodes nest deeper than " + std::to_string(fdt_max_depth));
                }
                stack.push_back(std::move(node));
                pos = static_cast<std::size_t>(align4(std::uint64_t{pos} + nul + 1));
            } else if (tag == tag_end_node) {
                if (stack.empty()) return cut("an unbalanced end-node tag at offset " + std::to_string(at));
                close_top();
            } else if (tag == tag_prop) {
                if (stack.empty()) return cut("a property outside any node at offset " + std::to_string(at));
                if (pos + 8 > end)
                    return cut("the property header at offset " + std::to_string(at) + " is cut short");
                FdtProperty prop;
                prop.length = be32(b, pos);
                prop.name_offset = be32(b, pos + 4);
                prop.name = name_at(prop.name_offset);
                pos += 8;
                std::uint64_t want = prop.length;
                std::uint64_t have = end - pos;
                prop.complete = want <= have;
                prop.value =
                    std::string(b.substr(pos, static_cast<std::size_t>(prop.complete ? want : have)));
                stack.back().properties.push_back(std::move(prop));
                if (!stack.back().properties.back().complete) {
                    stack.back().complete = false;
                    return cut("the value of the property at offset " + std::to_string(at) + " is cut short");
                }
                std::uint64_t next = align4(std::uint64_t{pos} + want);
                pos = static_cast<std::size_t>(next > end ? end : next);
            } else if (tag == tag_nop) {
                continue;
            } else if (tag == tag_end) {
                if (!stack.empty())
                    return cut("the end tag at offset " + std::to_string(at) + " closes open nodes");
                return;
            } else {
                char buf[64];
                std::snprintf(buf, sizeof buf, "an unknown tag 0x%x at offset %zu", tag, at);
                return cut(buf);
            }
        }
    }
};

void salvage(std::string_view b, const FdtHeader& h, FdtBlob& blob) {
    Salvage s;
    s.b = b;
    if (h.off_dt_struct >= b.size()) {
        blob.salvage_notes.push_back("the structure block (offset " + std::to_string(h.off_dt_struct) +
                                     ") is beyond the bytes read");
        return;
    }
    std::uint64_t struct_end =
        h.version >= 17 ? std::uint64_t{h.off_dt_struct} + h.size_dt_struct : std::uint64_t{h.totalsize};
    s.pos = h.off_dt_struct;
    s.end = static_cast<std::size_t>(struct_end < b.size() ? struct_end : b.size());
    if (s.end < s.pos) s.end = s.pos;
    std::uint64_t strings_end = std::uint64_t{h.off_dt_strings} + h.size_dt_strings;
    s.strings = h.off_dt_strings < b.size() ? h.off_dt_strings : b.size();
    s.strings_end = static_cast<std::size_t>(strings_end < b.size() ? strings_end : b.size());
    if (s.strings_end < s.strings) s.strings_end = s.strings;
    if (s.strings >= s.strings_end)
        blob.salvage_notes.push_back("the strings block (offset " + std::to_string(h.off_dt_strings) +
                                     ") is not in the bytes read: property names are unknown");
    s.run();
    for (auto& n : s.notes) blob.salvage_notes.push_back(std::move(n));
    blob.root = std::move(s.root);
    blob.salvaged = blob.root.has_value();
}

}  // namespace

const FdtProperty* FdtNode::property(std::string_view want) const {
    for (const FdtProperty& p : properties)
        if (p.name && *p.name == want) return &p;
    return nullptr;
}

const FdtNode* FdtNode::child(std::string_view want) const {
    for (const FdtNode& c : children)
        if (c.name == want) return &c;
    return nullptr;
}

std::string fdt_error_text(int err) {
    int e = err < 0 ? -err : err;
    std::string name = fdt_strerror(-e);
    switch (e) {
        case FDT_ERR_TRUNCATED: return name + " (the blob is cut short)";
        case FDT_ERR_BADMAGIC: return name + " (not an FDT)";
        case FDT_ERR_BADVERSION: return name + " (unsupported FDT version)";
        case FDT_ERR_BADSTRUCTURE: return name + " (the structure block is corrupt)";
        case FDT_ERR_BADLAYOUT: return name + " (the blocks overlap or are misplaced)";
        case FDT_ERR_BADOFFSET: return name + " (an offset points outside the blob)";
        default: break;
    }
    return name;
}

FdtBlob parse_fdt(std::string_view bytes, const std::string& what, int nested_levels) {
    FdtBlob blob;
    blob.bytes = bytes.size();
    blob.has_magic = bytes.size() >= 4 && be32(bytes, 0) == fdt_magic_value;
    if (!blob.has_magic) {
        blob.error = plain_error(what, bytes.size() < 4 ? "empty or shorter than the FDT magic"
                                                        : "not an FDT (no 0xd00dfeed magic)");
        return blob;
    }
    blob.header = read_header(bytes);
    if (!blob.header) {
        blob.error =
            plain_error(what, std::to_string(bytes.size()) + " bytes is too short for an FDT header");
        return blob;
    }
    const FdtHeader& h = *blob.header;
    blob.truncated = h.totalsize > bytes.size();

    // Every producer of KHO FDTs writes version 17. libfdt 1.6 accepts
    // versions down to 2 but its full check dereferences a null property
    // name in such old trees (fuzz-kho-fdt found one): they get only the
    // bounded salvage below.
    if (h.version < fdt_oldest_checked_version) {
        blob.error = plain_error(what, "FDT version " + std::to_string(h.version) + " is older than " +
                                           std::to_string(fdt_oldest_checked_version) +
                                           ", the oldest khod decodes (KHO writes 17)");
        salvage(bytes, h, blob);
        return blob;
    }
    AlignedCopy copy(bytes);
    int rc = fdt_check_full(copy.data(), copy.size());
    if (rc == 0) {
        blob.valid = true;
        blob.root = build_node(copy.data(), 0, 0, what, nested_levels);
        return blob;
    }
    if (blob.truncated)
        blob.error = plain_error(what, "truncated: " + std::to_string(bytes.size()) +
                                           " bytes read, the FDT header's totalsize is " +
                                           std::to_string(h.totalsize));
    else
        blob.error = plain_error(what, "invalid FDT: " + fdt_error_text(rc));
    salvage(bytes, h, blob);
    return blob;
}

std::optional<std::string> fdt_string(const FdtProperty& prop) {
    if (!prop.complete || prop.value.empty() || prop.value.back() != '\0') return std::nullopt;
    std::string_view s(prop.value.data(), prop.value.size() - 1);
    for (char ch : s) {
        auto c = static_cast<unsigned char>(ch);
        if (c < 0x20 || c >= 0x7f) return std::nullopt;
    }
    return std::string(s);
}

std::optional<std::string> fdt_first_string(const FdtProperty& prop) {
    std::size_t nul = prop.value.find('\0');
    if (nul == std::string::npos) return std::nullopt;
    return escape_bytes(std::string_view(prop.value).substr(0, nul));
}

}  // namespace khod
