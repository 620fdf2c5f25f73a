#include "khod/kho/kho_fdt.hpp"

#include <algorithm>
#include <cstring>
#include <map>

#include "khod/base/probe.hpp"

namespace khod {

namespace {

constexpr std::size_t json_hex_limit = 256;

bool has_unnamed_property(const FdtNode& n) {
    return std::any_of(n.properties.begin(), n.properties.end(),
                       [](const FdtProperty& p) { return !p.name; });
}

// A fixed-size native-endian property: KHO stores u64s in the CPU's byte
// order, not as big-endian FDT cells. Complains into `problems` and returns
// nullopt when the property is missing, cut short or of the wrong size.
template <class T>
std::optional<T> native_prop(const FdtNode& node, std::string_view name, const std::string& where,
                             std::vector<std::string>& problems) {
    const FdtProperty* p = node.property(name);
    std::string label = where.empty() ? std::string(name) : where + "/" + std::string(name);
    if (!p) {
        if (!node.complete || has_unnamed_property(node))
            problems.push_back(label + ": not in the bytes read");
        else
            problems.push_back(label + ": missing");
        return std::nullopt;
    }
    if (!p->complete) {
        problems.push_back(label + ": cut short");
        return std::nullopt;
    }
    if (p->value.size() != sizeof(T)) {
        problems.push_back(label + ": " + std::to_string(p->value.size()) + " bytes, expected " +
                           std::to_string(sizeof(T)) + " (a u" + std::to_string(sizeof(T) * 8) +
                           " in CPU byte order)");
        return std::nullopt;
    }
    T v{};
    std::memcpy(&v, p->value.data(), sizeof v);
    return v;
}

std::uint32_t be32_at(std::string_view b) {
    auto byte = [&](std::size_t i) { return static_cast<std::uint32_t>(static_cast<unsigned char>(b[i])); };
    return byte(0) << 24 | byte(1) << 16 | byte(2) << 8 | byte(3);
}

KhoRootVersion root_version(const std::string& compatible) {
    if (compatible == "kho-v1") return KhoRootVersion::v1;
    if (compatible == "kho-v2") return KhoRootVersion::v2;
    if (compatible == "kho-v3") return KhoRootVersion::v3;
    if (compatible == "kho-v4") return KhoRootVersion::v4;
    return KhoRootVersion::unknown;
}

const char* memory_map_format(KhoRootVersion v) {
    switch (v) {
        case KhoRootVersion::v1: return "linked list of bitmap chunks (struct khoser_mem_chunk)";
        case KhoRootVersion::v4: return "radix tree of page-sized nodes (struct kho_radix_node)";
        case KhoRootVersion::v2:
        case KhoRootVersion::v3:
            return "a structure in physical memory (its layout for this version is not described here)";
        case KhoRootVersion::unknown: break;
    }
    return "";
}

std::optional<std::string> compatible_of(const FdtNode& node) {
    const FdtProperty* p = node.property("compatible");
    if (!p) return std::nullopt;
    return fdt_first_string(*p);
}

void decode_kho_test(const FdtNode& root, KhoSubtree& s) {
    KhoTestTree t;
    std::vector<std::string> problems;
    t.magic = native_prop<std::uint32_t>(root, "magic", "", problems);
    if (t.magic && *t.magic != kho_test_magic) {
        char buf[96];
        std::snprintf(buf, sizeof buf, "magic: 0x%08x, expected 0x%08x (\"KHO!\")", *t.magic, kho_test_magic);
        problems.emplace_back(buf);
    }
    if (const FdtNode* data = root.child("data")) {
        t.nr_folios = native_prop<std::uint32_t>(*data, "nr_folios", "data", problems);
        t.csum = native_prop<std::uint32_t>(*data, "csum", "data", problems);
        const FdtProperty* info = data->property("folios_info");
        if (!info) {
            problems.emplace_back(data->complete ? "data/folios_info: missing"
                                                 : "data/folios_info: not in the bytes read");
        } else if (!info->complete || info->value.size() != 16) {
            problems.push_back("data/folios_info: " + std::to_string(info->value.size()) +
                               " bytes, expected 16 (struct kho_vmalloc)");
        } else {
            KhoTestTree::Vmalloc v;
            std::memcpy(&v.first, info->value.data(), 8);
            std::memcpy(&v.total_pages, info->value.data() + 8, 4);
            std::memcpy(&v.flags, info->value.data() + 12, 2);
            std::memcpy(&v.order, info->value.data() + 14, 2);
            t.folios_info = v;
        }
    } else {
        problems.emplace_back(root.complete ? "no data node" : "data node: not in the bytes read");
    }
    for (auto& p : problems) s.errors.push_back(plain_error(s.path, "kho_test: " + p));
    s.kho_test = t;
    s.notes.emplace_back(
        "the folios themselves and their table (folios_info) are in physical memory, not readable here");
}

void decode_memblock(const FdtNode& root, KhoSubtree& s) {
    std::vector<ReserveMem> regions;
    std::vector<std::string> problems;
    for (const FdtNode& c : root.children) {
        ReserveMem r;
        r.name = escape_bytes(c.name);
        r.compatible = compatible_of(c);
        if (r.compatible != "reserve-mem-v1")
            problems.push_back(r.name + ": compatible is " +
                               (r.compatible ? "\"" + *r.compatible + "\"" : "missing") +
                               ", expected \"reserve-mem-v1\"");
        r.start = native_prop<std::uint64_t>(c, "start", r.name, problems);
        r.size = native_prop<std::uint64_t>(c, "size", r.name, problems);
        regions.push_back(std::move(r));
    }
    for (auto& p : problems) s.errors.push_back(plain_error(s.path, "memblock: " + p));
    s.memblock = std::move(regions);
}

}  // namespace

const char* to_string(KhoFdtDirection dir) {
    return dir == KhoFdtDirection::in ? "in" : "out";
}

const char* to_string(KhoRootVersion v) {
    switch (v) {
        case KhoRootVersion::v1: return "kho-v1";
        case KhoRootVersion::v2: return "kho-v2";
        case KhoRootVersion::v3: return "kho-v3";
        case KhoRootVersion::v4: return "kho-v4";
        case KhoRootVersion::unknown: break;
    }
    return "unknown";
}

KhoRoot decode_kho_root(std::string_view bytes, const std::string& path) {
    KhoRoot r;
    r.path = path;
    r.present = true;
    r.fdt = parse_fdt(bytes, path);
    if (!r.fdt.root) return r;
    const FdtNode& root = *r.fdt.root;

    if (const FdtProperty* compat = root.property("compatible")) {
        r.compatible = fdt_first_string(*compat);
        if (!r.compatible) r.problems.emplace_back("compatible: not a NUL-terminated string");
    } else if (!root.complete || has_unnamed_property(root)) {
        r.problems.emplace_back("compatible: not in the bytes read");
    } else {
        r.problems.emplace_back("compatible: missing");
    }
    if (r.compatible) r.version = root_version(*r.compatible);

    const bool known = r.version != KhoRootVersion::unknown;
    if (known) {
        r.memory_map = native_prop<std::uint64_t>(root, "preserved-memory-map", "", r.problems);
        r.memory_map_format = memory_map_format(r.version);
    }
    for (const FdtNode& child : root.children) {
        KhoRootEntry e;
        e.name = child.name;
        e.complete = child.complete;
        if (known) {
            std::string where = escape_bytes(child.name);
            if (r.version == KhoRootVersion::v1) {
                e.phys = native_prop<std::uint64_t>(child, "fdt", where, e.problems);
            } else {
                e.phys = native_prop<std::uint64_t>(child, "preserved-data", where, e.problems);
                if (r.version != KhoRootVersion::v2)
                    e.blob_size = native_prop<std::uint64_t>(child, "blob-size", where, e.problems);
            }
        }
        r.entries.push_back(std::move(e));
    }
    return r;
}

KhoSubtree decode_kho_subtree(const std::string& name, std::string_view bytes, const std::string& path,
                              bool incoming) {
    KhoSubtree s;
    s.name = name;
    s.path = path;
    s.data = std::string(bytes);
    const bool magic = bytes.size() >= 4 && be32_at(bytes) == fdt_magic_value;

    if (name == "kexec-metadata") {
        s.producer = "kexec-metadata";
        s.format = "kexec-metadata";
        const auto version = kexec_metadata_version(bytes);
        auto m = decode_kexec_metadata(bytes, path);
        if (!m && version && *version != kexec_metadata_known_version) {
            s.newer_format = true;
            s.notes.push_back("kexec-metadata version " + std::to_string(*version) +
                              " is newer than khod decodes (version 1): shown as bytes, not checked");
        } else if (m) {
            s.kexec_metadata = *m;
            if (m->trailing)
                s.notes.push_back(std::to_string(m->trailing) +
                                  " bytes after the version 1 record (the kernel ignores them)");
        } else {
            s.errors.push_back(m.error());
        }
    } else if (name == "LUO") {
        s.producer = "LUO";
        s.format = "luo";
        auto r = decode_luo_record(bytes, path);
        if (!r) {
            s.errors.push_back(r.error());
        } else {
            s.luo = *r;
            s.compatible = r->compatible;
            if (!r->known && incoming) {
                // luo_core.c: luo_early_startup() parses the record and then
                // frees it (kho_restore_free), while debugfs keeps pointing there.
                s.errors.push_back(plain_error(
                    path, "LUO: not a luo-v5 record (compatible \"" + r->compatible +
                              "\"): the kernel frees the incoming LUO record once it has parsed it at boot, "
                              "so kho/in/sub_fdts/LUO shows whatever reused that memory; the live update "
                              "number is in the boot log (\"luo: Retrieved live update data\")"));
            } else if (!r->known) {
                s.newer_format = true;
                s.notes.push_back("LUO: compatible \"" + r->compatible +
                                  "\" is not the format khod decodes (luo-v5): shown as bytes, not checked");
            } else {
                if (incoming)
                    s.notes.emplace_back(
                        "the kernel frees the incoming LUO record once it has parsed it at boot: these bytes "
                        "were intact when read, nothing keeps them so");
                s.notes.emplace_back(
                    "the sessions (and the memfds preserved in them) and the FLBs are in physical memory, "
                    "not readable here: only their addresses are shown");
            }
            if (bytes.size() > luo_record_size)
                s.notes.push_back(std::to_string(bytes.size() - luo_record_size) +
                                  " bytes after the 32-byte LUO record");
        }
    } else if (magic) {
        s.format = "fdt";
        s.fdt = parse_fdt(bytes, path);
        if (s.fdt->error) s.errors.push_back(*s.fdt->error);
        if (s.fdt->root) {
            s.compatible = compatible_of(*s.fdt->root);
            if (s.fdt->valid && s.compatible == "kho-test-v1") {
                s.producer = "kho_test";
                decode_kho_test(*s.fdt->root, s);
            } else if (s.fdt->valid && s.compatible == "memblock-v1") {
                s.producer = "memblock";
                decode_memblock(*s.fdt->root, s);
            } else if (name == "kho_test" || name == "memblock") {
                s.notes.push_back("named " + name + " but its compatible is " +
                                  (s.compatible ? "\"" + *s.compatible + "\"" : "missing") +
                                  ": shown generically");
            }
        }
        if (s.fdt->valid && s.fdt->header && bytes.size() > s.fdt->header->totalsize)
            s.notes.push_back(std::to_string(bytes.size() - s.fdt->header->totalsize) +
                              " bytes after the FDT (its totalsize is " +
                              std::to_string(s.fdt->header->totalsize) + ")");
    } else {
        s.format = "raw";
        if (bytes.empty())
            s.errors.push_back(plain_error(path, "empty: 0 bytes read"));
        else if (name == "kho_test" || name == "memblock")
            s.errors.push_back(plain_error(path, name + ": expected an FDT, found no 0xd00dfeed magic"));
    }
    return s;
}

const KhoSubtree* KhoFdtReport::subtree(std::string_view name) const {
    for (const KhoSubtree& s : subtrees)
        if (s.name == name) return &s;
    return nullptr;
}

namespace {

// Why KHO's debugfs cannot be read, if it cannot: no debugfs, or no KHO.
std::optional<Error> kho_debugfs_missing(const Sysroot& root, const DebugfsState& debugfs) {
    if (!debugfs.mounted)
        return debugfs.error ? *debugfs.error : plain_error(debugfs.mountpoint, "debugfs is not mounted");
    KernelPath kho = root.debugfs("kho");
    if (!exists(kho))
        return plain_error(kho.kernel,
                           "does not exist: KHO is not active on this kernel (booted without "
                           "kho=on, or built without KEXEC_HANDOVER_DEBUGFS)");
    return std::nullopt;
}

// No kho/in on a cold boot.
std::optional<Error> kho_dir_missing(KhoFdtDirection dir, const KernelPath& dirpath) {
    if (exists(dirpath)) return std::nullopt;
    return plain_error(dirpath.kernel, dir == KhoFdtDirection::in
                                           ? "does not exist: this boot did not come through a KHO kexec"
                                           : "does not exist");
}

// Why there is no root FDT file, as the kernel of each ABI decides.
std::string root_absent_reason(const Sysroot& root, const KhoFdtReport& r) {
    if (r.direction == KhoFdtDirection::in) return "the kernel did not expose the incoming root FDT";
    if (r.abi == KhoAbi::finalize)
        return "6.16-6.18 create kho/out/fdt and the sub_fdts entries only when KHO is finalized "
               "(echo 1 > kho/out/finalize)";
    if (exists(root.debugfs("kho/in")))
        return "7.x creates kho/out/fdt only on a cold boot, and this boot came through a KHO kexec "
               "(kho/in exists); the outgoing sub-trees are still listed";
    return "the kernel did not create it";
}

void read_root(const Sysroot& root, const std::string& base, KhoFdtReport& r) {
    KernelPath fdt_path = root.debugfs(base + "/fdt");
    auto fdt_bytes = read_file(fdt_path);
    if (fdt_bytes) {
        r.root = decode_kho_root(*fdt_bytes, fdt_path.kernel);
        return;
    }
    r.root.path = fdt_path.kernel;
    if (!is_missing(fdt_bytes.error())) {
        r.root.present = true;
        r.root.read_error = fdt_bytes.error();
    } else {
        r.root.absent_reason = root_absent_reason(root, r);
    }
}

// Every file in sub_fdts, decoded, by name.
std::map<std::string, KhoSubtree> read_subtree_files(const Sysroot& root, const std::string& base, bool in,
                                                     KhoFdtReport& r) {
    std::map<std::string, KhoSubtree> found;
    KernelPath sub_dir = root.debugfs(base + "/sub_fdts");
    auto names = list_dir(sub_dir);
    if (!names && !is_missing(names.error()))
        r.notes.push_back("cannot list the sub-trees: " + names.error().describe());
    for (const std::string& name : names ? *names : std::vector<std::string>{}) {
        KernelPath p = root.debugfs(base + "/sub_fdts/" + name);
        auto bytes = read_file(p);
        if (bytes) {
            found[name] = decode_kho_subtree(name, *bytes, p.kernel, in);
        } else {
            KhoSubtree s;
            s.name = name;
            s.path = p.kernel;
            s.format = "unreadable";
            s.read_error = bytes.error();
            found[name] = std::move(s);
        }
    }
    return found;
}

// Joins the root's entries with the files: an entry without a file is reported
// missing, a file the (whole) root does not list is noted.
void match_root_entries(const KhoFdtReport& r, const std::string& dir_kernel_path,
                        std::map<std::string, KhoSubtree>& found) {
    for (const KhoRootEntry& e : r.root.entries) {
        if (!e.complete && !found.count(e.name)) continue;  // a name cut short matches no file
        auto it = found.find(e.name);
        if (it == found.end()) {
            KhoSubtree s;
            s.name = e.name;
            s.format = "missing";
            s.notes.push_back(
                "listed in the root FDT, but " + dir_kernel_path + "/sub_fdts has no such file" +
                (e.problems.empty() ? std::string() : " (the kernel skips nodes it cannot use)"));
            it = found.emplace(e.name, std::move(s)).first;
        }
        it->second.root_entry = e;
        it->second.in_root = true;
        if (e.blob_size && it->second.data && *e.blob_size != it->second.data->size())
            it->second.errors.push_back(plain_error(
                it->second.path, "the root FDT says blob-size " + std::to_string(*e.blob_size) + " but " +
                                     std::to_string(it->second.data->size()) + " bytes were read"));
    }
    if (!r.root.fdt.valid) return;
    for (auto& [name, s] : found) {
        if (s.in_root) continue;
        s.in_root = false;
        s.notes.emplace_back("not listed in the root FDT");
    }
}

void add_reading_notes(KhoFdtReport& r) {
    if (r.root.fdt.truncated && r.direction == KhoFdtDirection::out)
        r.notes.emplace_back(
            "kho/out/fdt is cut short: its debugfs size was fixed when it was created early in boot, and "
            "sub-trees added later grew the root in place; the sub-trees are read from kho/out/sub_fdts, "
            "which are exact");
    if (r.root.memory_map)
        r.notes.emplace_back(
            "the preserved-memory map lives in physical memory, which userspace cannot read: only its "
            "address is shown");
}

}  // namespace

KhoFdtReport read_kho_fdt(const Sysroot& root, KhoFdtDirection dir, const DebugfsState& debugfs) {
    KhoFdtReport r;
    r.direction = dir;
    r.debugfs = debugfs;
    const std::string base = std::string("kho/") + to_string(dir);
    KernelPath dirpath = root.debugfs(base);
    r.path = dirpath.kernel;
    if (auto missing = kho_debugfs_missing(root, debugfs)) {
        r.error = *missing;
        return r;
    }
    r.abi = detect_kho_abi(root);
    if (auto missing = kho_dir_missing(dir, dirpath)) {
        r.error = *missing;
        return r;
    }
    const bool in = dir == KhoFdtDirection::in;
    read_root(root, base, r);
    auto found = read_subtree_files(root, base, in, r);
    match_root_entries(r, dirpath.kernel, found);
    for (auto& [name, s] : found) r.subtrees.push_back(std::move(s));
    add_reading_notes(r);
    return r;
}

// JSON ----------------------------------------------------------------------

namespace {

using nlohmann::json;

// Paths and names come from the kernel and may hold any byte; JSON must stay UTF-8.
json error_json(const std::optional<Error>& e) {
    return e ? json(printable(e->describe())) : json(nullptr);
}

template <class T>
json opt(const std::optional<T>& v) {
    return v ? json(*v) : json(nullptr);
}

json node_json(const FdtNode& n) {
    json props = json::array();
    for (const FdtProperty& p : n.properties) {
        json j;
        j["name"] = p.name ? json(escape_bytes(*p.name)) : json(nullptr);
        if (!p.name) j["name_offset"] = p.name_offset;
        j["length"] = p.length;
        j["complete"] = p.complete;
        j["hex"] = hex_bytes(p.value, json_hex_limit);
        if (p.value.size() > json_hex_limit) j["hex_truncated"] = true;
        if (auto s = fdt_string(p)) j["string"] = *s;
        if (p.complete && p.value.size() == 4) {
            std::uint32_t v = 0;
            std::memcpy(&v, p.value.data(), 4);
            j["u32"] = v;
        } else if (p.complete && p.value.size() == 8) {
            std::uint64_t v = 0;
            std::memcpy(&v, p.value.data(), 8);
            j["u64"] = v;
        }
        if (p.nested) j["nested_fdt"] = to_json(*p.nested);
        props.push_back(std::move(j));
    }
    json children = json::array();
    for (const FdtNode& c : n.children) children.push_back(node_json(c));
    json j{{"name", escape_bytes(n.name)},
           {"complete", n.complete},
           {"properties", std::move(props)},
           {"children", std::move(children)}};
    if (n.elided_children) j["elided_children"] = n.elided_children;
    return j;
}

json strings_json(const std::vector<std::string>& v) {
    json a = json::array();
    for (const std::string& s : v) a.push_back(printable(s));
    return a;
}

json entry_json(const KhoRootEntry& e) {
    return json{{"name", escape_bytes(e.name)},
                {"complete", e.complete},
                {"phys", opt(e.phys)},
                {"blob_size", opt(e.blob_size)},
                {"problems", strings_json(e.problems)}};
}

}  // namespace

json to_json(const FdtBlob& b) {
    json j;
    j["bytes"] = b.bytes;
    j["magic"] = b.has_magic;
    j["valid"] = b.valid;
    j["truncated"] = b.truncated;
    j["error"] = error_json(b.error);
    if (b.header) {
        const FdtHeader& h = *b.header;
        j["header"] = {{"totalsize", h.totalsize},
                       {"version", h.version},
                       {"last_comp_version", h.last_comp_version},
                       {"off_dt_struct", h.off_dt_struct},
                       {"off_dt_strings", h.off_dt_strings},
                       {"off_mem_rsvmap", h.off_mem_rsvmap},
                       {"size_dt_struct", h.size_dt_struct},
                       {"size_dt_strings", h.size_dt_strings},
                       {"boot_cpuid_phys", h.boot_cpuid_phys}};
    } else {
        j["header"] = nullptr;
    }
    j["salvaged"] = b.salvaged;
    j["salvage_notes"] = strings_json(b.salvage_notes);
    j["tree"] = b.root ? node_json(*b.root) : json(nullptr);
    return j;
}

json to_json(const KhoRoot& r) {
    std::string status;
    if (!r.present)
        status = "missing";
    else if (r.read_error)
        status = "error";
    else if (r.fdt.valid)
        status = "ok";
    else if (r.fdt.truncated)
        status = "truncated";
    else
        status = "invalid";
    json j;
    j["path"] = printable(r.path);
    j["status"] = status;
    j["absent_reason"] = opt(r.absent_reason);
    j["error"] = r.read_error ? error_json(r.read_error) : error_json(r.fdt.error);
    j["bytes_read"] = r.present && !r.read_error ? json(r.fdt.bytes) : json(nullptr);
    j["totalsize"] = r.fdt.header ? json(r.fdt.header->totalsize) : json(nullptr);
    j["compatible"] = opt(r.compatible);
    j["version"] = to_string(r.version);
    j["known_version"] = r.version != KhoRootVersion::unknown;
    if (r.memory_map)
        j["preserved_memory_map"] = {
            {"phys", *r.memory_map}, {"format", r.memory_map_format}, {"readable", false}};
    else
        j["preserved_memory_map"] = nullptr;
    json entries = json::array();
    for (const KhoRootEntry& e : r.entries) entries.push_back(entry_json(e));
    j["entries"] = std::move(entries);
    j["problems"] = strings_json(r.problems);
    j["fdt"] = r.present && !r.read_error ? to_json(r.fdt) : json(nullptr);
    return j;
}

json to_json(const KhoSubtree& s) {
    json j;
    j["name"] = escape_bytes(s.name);
    j["path"] = s.path.empty() ? json(nullptr) : json(printable(s.path));
    j["size"] = s.data ? json(s.data->size()) : json(nullptr);
    j["read_error"] = error_json(s.read_error);
    j["in_root"] = opt(s.in_root);
    j["phys"] = s.root_entry ? opt(s.root_entry->phys) : json(nullptr);
    j["blob_size"] = s.root_entry ? opt(s.root_entry->blob_size) : json(nullptr);
    j["format"] = s.format;
    j["producer"] = s.producer.empty() ? json(nullptr) : json(s.producer);
    j["compatible"] = opt(s.compatible);

    json decoded = nullptr;
    if (s.kexec_metadata) {
        const KexecMetadata& m = *s.kexec_metadata;
        decoded = {
            {"version", m.version}, {"previous_release", m.previous_release}, {"kexec_count", m.kexec_count}};
    } else if (s.luo) {
        const LuoRecord& l = *s.luo;
        decoded = {{"compatible", l.compatible}, {"known", l.known}};
        if (l.known) {
            decoded["liveupdate_num"] = l.liveupdate_num;
            decoded["sessions_pa"] = l.sessions_pa;
            decoded["flbs_pa"] = l.flbs_pa;
        }
    } else if (s.kho_test) {
        const KhoTestTree& t = *s.kho_test;
        decoded = {{"magic", opt(t.magic)},
                   {"magic_ok", t.magic == kho_test_magic},
                   {"nr_folios", opt(t.nr_folios)},
                   {"csum", opt(t.csum)}};
        if (t.folios_info)
            decoded["folios_info"] = {{"first", t.folios_info->first},
                                      {"total_pages", t.folios_info->total_pages},
                                      {"flags", t.folios_info->flags},
                                      {"order", t.folios_info->order}};
        else
            decoded["folios_info"] = nullptr;
    } else if (s.memblock) {
        json regions = json::array();
        for (const ReserveMem& m : *s.memblock)
            regions.push_back({{"name", m.name},
                               {"compatible", opt(m.compatible)},
                               {"start", opt(m.start)},
                               {"size", opt(m.size)}});
        decoded = {{"reserve_mem", std::move(regions)}};
    }
    j["decoded"] = std::move(decoded);
    j["fdt"] = s.fdt ? to_json(*s.fdt) : json(nullptr);
    // Blobs nothing else explains are shown as bytes.
    if (s.data && !s.fdt && !s.kexec_metadata && !(s.luo && s.luo->known)) {
        j["hex"] = hex_bytes(*s.data, json_hex_limit);
        if (s.data->size() > json_hex_limit) j["hex_truncated"] = true;
    }
    json errors = json::array();
    for (const Error& e : s.errors) errors.push_back(printable(e.describe()));
    j["errors"] = std::move(errors);
    j["notes"] = strings_json(s.notes);
    j["newer_format"] = s.newer_format;
    return j;
}

json to_json(const KhoFdtReport& r) {
    json j;
    j["schema"] = kho_fdt_schema_version;
    j["direction"] = to_string(r.direction);
    j["path"] = printable(r.path);
    j["error"] = error_json(r.error);
    j["debugfs"] = {{"mounted", r.debugfs.mounted},
                    {"mounted_now", r.debugfs.mounted_now},
                    {"mountpoint", printable(r.debugfs.mountpoint)},
                    {"error", error_json(r.debugfs.error)}};
    j["kho_abi"] = to_string(r.abi);
    if (r.error) {
        j["root"] = nullptr;
        j["subtrees"] = json::object();
        j["kexec_metadata"] = nullptr;
        j["notes"] = strings_json(r.notes);
        return j;
    }
    j["root"] = to_json(r.root);
    json subtrees = json::object();
    for (const KhoSubtree& s : r.subtrees) subtrees[escape_bytes(s.name)] = to_json(s);
    j["subtrees"] = std::move(subtrees);
    // The record scripts ask for most, lifted to the top.
    const KhoSubtree* meta = r.subtree("kexec-metadata");
    if (meta && meta->kexec_metadata)
        j["kexec_metadata"] = {{"version", meta->kexec_metadata->version},
                               {"previous_release", meta->kexec_metadata->previous_release},
                               {"kexec_count", meta->kexec_metadata->kexec_count}};
    else
        j["kexec_metadata"] = nullptr;
    j["notes"] = strings_json(r.notes);
    return j;
}

}  // namespace khod
