// The human form of `khoctl show fdt`: a section for the root FDT and one per
// sub-tree, "label  value" rows, generic trees indented.
#include <cstdio>
#include <cstring>
#include <sstream>

#include "khod/base/hex.hpp"
#include "khod/base/text_table.hpp"
#include "khod/kho/kho_fdt.hpp"

namespace khod {

namespace {

constexpr std::size_t text_hex_limit = 32;

std::string spaced_hex(std::string_view bytes, std::size_t limit) {
    std::string h = hex_bytes(bytes, limit);
    std::string out;
    for (std::size_t i = 0; i < h.size(); i += 2) {
        if (i) out += ' ';
        out += h.substr(i, 2);
    }
    if (bytes.size() > limit) out += " ...";
    return out;
}

std::string value_text(const FdtProperty& p) {
    if (auto s = fdt_string(p)) return "\"" + *s + "\"";
    std::string out = "[" + std::to_string(p.length) + " bytes] " + spaced_hex(p.value, text_hex_limit);
    if (p.complete && p.value.size() == 4) {
        std::uint32_t v = 0;
        std::memcpy(&v, p.value.data(), 4);
        out += " (u32 " + hex(v) + ")";
    } else if (p.complete && p.value.size() == 8) {
        std::uint64_t v = 0;
        std::memcpy(&v, p.value.data(), 8);
        out += " (u64 " + hex(v) + ")";
    }
    if (!p.complete) out += " (cut short)";
    return out;
}

void tree_text(TextTable& o, const FdtNode& n, int depth) {
    std::string pad(static_cast<std::size_t>(4 + depth * 2), ' ');
    std::string name = n.name.empty() && depth == 0 ? "/" : escape_bytes(n.name);
    o.raw(pad + name + (n.complete ? " {" : " {   (cut short)"));
    for (const FdtProperty& p : n.properties) {
        std::string pname =
            p.name ? escape_bytes(*p.name) : "<name at strings offset " + std::to_string(p.name_offset) + ">";
        o.raw(pad + "  " + pname + " = " + value_text(p));
        if (p.nested && p.nested->root) {
            o.raw(pad + "  (" + pname + " holds an FDT:)");
            tree_text(o, *p.nested->root, depth + 2);
        }
    }
    for (const FdtNode& c : n.children) tree_text(o, c, depth + 1);
    if (n.elided_children)
        o.raw(pad + "  (" + std::to_string(n.elided_children) + " deeper nodes not shown)");
    o.raw(pad + "}");
}

void root_section(TextTable& o, const KhoFdtReport& r) {
    const KhoRoot& root = r.root;
    o.section("Root FDT");
    o.row("file", printable(root.path));
    if (!root.present) {
        o.row("status", "missing" + (root.absent_reason ? ": " + *root.absent_reason : std::string()));
        return;
    }
    if (root.read_error) {
        o.row("status", "error: " + printable(root.read_error->describe()));
        return;
    }
    const FdtBlob& f = root.fdt;
    if (f.valid)
        o.row("status", "ok, " + std::to_string(f.bytes) + " bytes");
    else if (f.truncated)
        o.row("status", "truncated: " + std::to_string(f.bytes) +
                            " bytes read, the FDT header's totalsize is " +
                            std::to_string(f.header->totalsize));
    else
        o.row("status", "error: " + printable(f.error ? f.error->describe() : std::string("invalid")));
    if (!f.root) return;
    o.row("compatible", root.compatible ? *root.compatible : "unknown");
    if (root.version == KhoRootVersion::unknown)
        o.row("version", root.compatible ? "unknown to khoctl (it knows kho-v1 to kho-v4): shown generically"
                                         : "unknown");
    else
        o.row("version", to_string(root.version));
    if (root.memory_map) o.row("preserved-memory map", hex(*root.memory_map) + ", " + root.memory_map_format);
    if (root.version == KhoRootVersion::unknown && !root.entries.empty()) {
        // Without a known layout the nodes are only names; the tree below has the rest.
        std::string names;
        for (const KhoRootEntry& e : root.entries)
            names += (names.empty() ? "" : ", ") + escape_bytes(e.name) + (e.complete ? "" : " (cut short)");
        o.row("nodes", names);
    }
    for (const KhoRootEntry& e : root.entries) {
        if (root.version == KhoRootVersion::unknown) break;
        std::string v;
        if (e.phys) v += (root.version == KhoRootVersion::v1 ? "fdt " : "preserved-data ") + hex(*e.phys);
        if (e.blob_size)
            v += (v.empty() ? "" : ", ") + std::string("blob-size ") + std::to_string(*e.blob_size);
        if (!e.complete) v += (v.empty() ? "" : ", ") + std::string("cut short");
        o.row("node " + escape_bytes(e.name), v.empty() ? "-" : v);
        for (const std::string& p : e.problems) o.row("  problem", printable(p));
    }
    for (const std::string& p : root.problems) o.row("problem", printable(p));
    for (const std::string& n : f.salvage_notes) o.row("salvage", n);
    if (f.salvaged || root.version == KhoRootVersion::unknown) {
        o.raw("  tree" + std::string(f.salvaged ? " (what the bytes read hold)" : "") + ":");
        tree_text(o, *f.root, 0);
    }
}

void subtree_section(TextTable& o, const KhoSubtree& s, bool root_cut) {
    o.section("Sub-tree " + escape_bytes(s.name));
    if (!s.path.empty())
        o.row("file", printable(s.path) + (s.data ? " (" + std::to_string(s.data->size()) + " bytes)" : ""));
    if (s.read_error) o.row("error", printable(s.read_error->describe()));
    if (s.root_entry) {
        std::string v;
        if (s.root_entry->phys) v += "at " + hex(*s.root_entry->phys);
        if (s.root_entry->blob_size)
            v += (v.empty() ? "" : ", ") + std::to_string(*s.root_entry->blob_size) + " bytes";
        o.row("root entry", v.empty() ? "listed in the root FDT" : v);
    } else if (s.in_root == false) {
        o.row("root entry", "not listed in the root FDT");
    } else if (root_cut) {
        o.row("root entry", "unknown: the root FDT as read is cut short");
    }

    std::string format;
    if (s.format == "kexec-metadata")
        format = "packed record (kexec-metadata)";
    else if (s.format == "luo" && s.luo && !s.luo->known)
        format = "not a LUO record (see the error)";
    else if (s.format == "luo")
        format = "LUO record" + (s.compatible ? ", compatible \"" + *s.compatible + "\"" : std::string());
    else if (s.format == "fdt")
        format = "FDT" + (s.compatible ? ", compatible \"" + *s.compatible + "\"" : std::string()) +
                 (s.producer.empty() ? ", unknown producer: shown generically" : "");
    else if (s.format == "raw")
        format = "raw bytes, unknown producer";
    else
        format = s.format;
    o.row("format", format);

    if (const auto& m = s.kexec_metadata) {
        o.row("version", std::to_string(m->version));
        o.row("previous release", m->previous_release);
        o.row("kexec count", std::to_string(m->kexec_count));
    }
    if (const auto& l = s.luo; l && l->known) {
        o.row("live update number", std::to_string(l->liveupdate_num));
        o.row("sessions at", hex(l->sessions_pa) + (l->sessions_pa ? "" : " (none)"));
        o.row("FLBs at", hex(l->flbs_pa) + (l->flbs_pa ? "" : " (none)"));
    }
    if (const auto& t = s.kho_test) {
        if (t->magic) o.row("magic", hex(*t->magic) + (*t->magic == kho_test_magic ? " (KHO!)" : " (wrong)"));
        if (t->nr_folios) o.row("nr_folios", std::to_string(*t->nr_folios));
        if (t->folios_info)
            o.row("folios_info", "first " + hex(t->folios_info->first) + ", " +
                                     std::to_string(t->folios_info->total_pages) + " page(s), flags " +
                                     hex(t->folios_info->flags) + ", order " +
                                     std::to_string(t->folios_info->order));
        if (t->csum) o.row("csum", hex(*t->csum));
    }
    if (const auto& mb = s.memblock) {
        if (mb->empty()) o.row("reserve_mem", "none");
        for (const ReserveMem& m : *mb)
            o.row("reserve_mem " + m.name, (m.start ? hex(*m.start) : "?") + ", " +
                                               (m.size ? std::to_string(*m.size) + " bytes" : "?"));
    }
    if (s.fdt && s.fdt->root && s.producer.empty()) {
        o.raw("  tree" + std::string(s.fdt->salvaged ? " (what the bytes read hold)" : "") + ":");
        tree_text(o, *s.fdt->root, 0);
    }
    if (s.data && s.format == "raw" && !s.data->empty()) o.row("bytes", spaced_hex(*s.data, text_hex_limit));
    if (s.luo && !s.luo->known && s.data) o.row("bytes", spaced_hex(*s.data, text_hex_limit));
    for (const Error& e : s.errors) o.row("error", printable(e.describe()));
    for (const std::string& n : s.notes) o.row("note", printable(n));
}

}  // namespace

std::string format_kho_fdt(const KhoFdtReport& r) {
    TextTable o(22);
    const bool in = r.direction == KhoFdtDirection::in;
    o.section(std::string("KHO ") + (in ? "incoming (kho/in: what the previous kernel handed over)"
                                        : "outgoing (kho/out: what this kernel will hand over)"));
    o.row("directory", printable(r.path));
    if (r.debugfs.mounted_now)
        o.row("debugfs", "mounted at " + printable(r.debugfs.mountpoint) + " by khoctl");
    if (r.error) {
        o.row("error", printable(r.error->describe()));
        return o.str();
    }
    if (const KhoSubtree* meta = r.subtree("kexec-metadata"); meta && meta->kexec_metadata) {
        if (in)
            o.row("came from", meta->kexec_metadata->previous_release + ", kexec count " +
                                   std::to_string(meta->kexec_metadata->kexec_count));
        else
            o.row("hands over", "release " + meta->kexec_metadata->previous_release + ", kexec count " +
                                    std::to_string(meta->kexec_metadata->kexec_count) +
                                    " for the next kernel");
    }
    std::string names;
    for (const KhoSubtree& s : r.subtrees) names += (names.empty() ? "" : ", ") + escape_bytes(s.name);
    o.row("sub-trees", names.empty() ? "none" : names);
    for (const std::string& n : r.notes) o.row("note", n);
    root_section(o, r);
    const bool root_cut = r.root.present && !r.root.fdt.valid && r.root.fdt.root;
    for (const KhoSubtree& s : r.subtrees) subtree_section(o, s, root_cut);
    return o.str();
}

}  // namespace khod
