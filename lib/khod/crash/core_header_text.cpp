// The JSON and the human text of `khoctl elfcorehdr build|show`.
#include <elf.h>

#include <sstream>

#include "khod/base/hex.hpp"
#include "khod/base/text_table.hpp"
#include "khod/base/units.hpp"
#include "khod/crash/core_header.hpp"
#include "khod/crash/core_layout.hpp"

namespace khod {

namespace {

using nlohmann::json;

json range_json(const PhysRange& r) {
    return {{"start", r.start}, {"end", r.end}, {"size", r.size()}};
}

json note_json(const CoreNote& n) {
    return {{"paddr", n.paddr}, {"size", n.size}};
}

json text_json(const std::optional<KernelText>& t) {
    if (!t) return nullptr;
    return {{"vaddr", t->vaddr}, {"paddr", t->paddr}, {"size", t->size}};
}

std::string flags_text(std::uint32_t flags) {
    std::string s;
    s += (flags & PF_R) ? 'R' : '-';
    s += (flags & PF_W) ? 'W' : '-';
    s += (flags & PF_X) ? 'X' : '-';
    return s;
}

std::uint64_t total(const std::vector<PhysRange>& ranges) {
    std::uint64_t n = 0;
    for (const auto& r : ranges) n += r.size();
    return n;
}

std::string span_text(const PhysRange& r) {
    return hex_padded(r.start) + "-" + hex_padded(r.end - 1) + "  " + human_size(r.size());
}

}  // namespace

json to_json(const CoreHeaderInfo& info) {
    json phdrs = json::array();
    for (std::size_t i = 0; i < info.elf.phdrs.size(); ++i) {
        const auto& p = info.elf.phdrs[i];
        phdrs.push_back({{"index", i},
                         {"type", phdr_type_name(p.type)},
                         {"type_value", p.type},
                         {"flags", p.flags},
                         {"offset", p.offset},
                         {"vaddr", p.vaddr},
                         {"paddr", p.paddr},
                         {"filesz", p.filesz},
                         {"memsz", p.memsz},
                         {"align", p.align}});
    }
    json ranges = json::array();
    for (const auto& r : info.ram) {
        json j = range_json(r);
        j["vaddr"] = info.page_offset ? json(*info.page_offset + r.start) : json(nullptr);
        ranges.push_back(j);
    }
    json cpus = json::array();
    if (info.form == CoreForm::elfcorehdr) {
        for (std::size_t i = 0; i < info.cpu_notes.size(); ++i) {
            json j = note_json(info.cpu_notes[i]);
            j["index"] = i;
            cpus.push_back(j);
        }
    } else {
        for (std::size_t i = 0; i < info.prstatus.size(); ++i) {
            const auto& st = info.prstatus[i];
            cpus.push_back({{"index", i},
                            {"note", "NT_PRSTATUS"},
                            {"offset", info.notes[st.note].offset},
                            {"pid", st.pid},
                            {"rip", st.rip ? json(*st.rip) : json(nullptr)},
                            {"rsp", st.rsp ? json(*st.rsp) : json(nullptr)}});
        }
    }
    json notes = json::array();
    for (const auto& n : info.notes)
        notes.push_back({{"name", n.name},
                         {"type", note_type_name(n.name, n.type)},
                         {"type_value", n.type},
                         {"offset", n.offset},
                         {"descsz", n.descsz}});
    json fields = json::object();
    for (const auto& [k, v] : info.vmcoreinfo) fields[k] = v;  // a repeated key keeps its last value
    json vmcoreinfo = {{"note", info.vmcoreinfo_note ? note_json(*info.vmcoreinfo_note) : json(nullptr)},
                       {"fields", fields}};
    return {{"ok", true},
            {"path", info.path},
            {"file_size", info.file_size},
            {"form", to_string(info.form)},
            {"elf",
             {{"class", "ELF64"},
              {"data", "little-endian"},
              {"type", info.elf.type == ET_CORE ? "CORE" : std::to_string(info.elf.type)},
              {"machine", machine_name(info.elf.machine)},
              {"osabi", info.elf.osabi},
              {"phoff", info.elf.phoff},
              {"phnum", info.elf.phdrs.size()}}},
            {"program_headers", phdrs},
            {"cpus", cpus},
            {"kernel_text", text_json(info.kernel_text)},
            {"page_offset", info.page_offset ? json(*info.page_offset) : json(nullptr)},
            {"ranges", ranges},
            {"ram_bytes", total(info.ram)},
            {"notes", notes},
            {"vmcoreinfo", vmcoreinfo}};
}

json to_json(const CoreLayout& layout) {
    json cpus = json::array();
    for (const auto& [cpu, note] : layout.cpu_notes) {
        json j = note_json(note);
        j["cpu"] = cpu;
        cpus.push_back(j);
    }
    json ranges = json::array();
    for (const auto& r : layout.ram) {
        json j = range_json(r);
        j["vaddr"] = layout.page_offset + r.start;
        ranges.push_back(j);
    }
    json excluded = json::array();
    for (const auto& r : layout.excluded) excluded.push_back(range_json(r));
    return {{"cpus", cpus},
            {"cpus_without_notes", layout.cpus_without_notes},
            {"vmcoreinfo", note_json(layout.vmcoreinfo)},
            {"kernel_text", text_json(layout.kernel_text)},
            {"page_offset", layout.page_offset},
            {"ranges", ranges},
            {"ram_bytes", total(layout.ram)},
            {"excluded", excluded}};
}

std::string format_core_header(const CoreHeaderInfo& info) {
    TextTable t(12);
    t.section(info.path + ": ELF64 core, " + machine_name(info.elf.machine) + ", " +
              (info.form == CoreForm::elfcorehdr
                   ? "an elfcorehdr (notes and memory in the crashed kernel's RAM)"
                   : "a dump (notes and memory in the file)") +
              ", " + std::to_string(info.file_size) + " bytes");
    std::ostringstream head;
    head << "  #    type     flags offset             vaddr              paddr              memsz";
    t.raw(head.str());
    for (std::size_t i = 0; i < info.elf.phdrs.size(); ++i) {
        const auto& p = info.elf.phdrs[i];
        std::string type = phdr_type_name(p.type);
        if (type.rfind("PT_", 0) == 0) type = type.substr(3);
        std::ostringstream row;
        row << "  " << i;
        for (std::size_t pad = std::to_string(i).size(); pad < 5; ++pad) row << ' ';
        row << type;
        for (std::size_t pad = type.size(); pad < 9; ++pad) row << ' ';
        row << flags_text(p.flags) << "   " << hex_padded(p.offset) << " " << hex_padded(p.vaddr) << " "
            << hex_padded(p.paddr) << " " << hex(p.memsz);
        t.raw(row.str());
    }
    t.section("Contents");
    if (info.form == CoreForm::elfcorehdr) {
        t.row("cpu notes", std::to_string(info.cpu_notes.size()) + " PT_NOTE");
        if (info.vmcoreinfo_note)
            t.row("vmcoreinfo", "note at " + hex(info.vmcoreinfo_note->paddr) + ", " +
                                    std::to_string(info.vmcoreinfo_note->size) + " bytes");
    } else {
        std::string cpus = std::to_string(info.prstatus.size()) + " NT_PRSTATUS";
        for (const auto& st : info.prstatus)
            cpus += st.rip ? "; pid " + std::to_string(st.pid) + " rip " + hex(*st.rip) : "";
        t.row("cpus", cpus);
        t.row("notes", std::to_string(info.notes.size()));
    }
    if (info.kernel_text)
        t.row("kernel text", hex(info.kernel_text->vaddr) + " at " + hex(info.kernel_text->paddr) + ", " +
                                 human_size(info.kernel_text->size));
    else
        t.row("kernel text", "none");
    t.row("page_offset", info.page_offset ? hex(*info.page_offset) : std::string("unknown"));
    t.row("RAM", std::to_string(info.ram.size()) + " ranges, " + human_size(total(info.ram)));
    for (const auto& r : info.ram) t.raw("    " + span_text(r));
    if (!info.vmcoreinfo.empty()) {
        t.section("VMCOREINFO");
        for (const char* key : {"OSRELEASE", "BUILD-ID", "PAGESIZE", "KERNELOFFSET", "CRASHTIME"})
            if (auto v = info.vmcoreinfo_value(key)) t.row(key, *v);
        t.row("fields", std::to_string(info.vmcoreinfo.size()));
    }
    return t.str();
}

std::string format_core_layout(const CoreLayout& layout) {
    TextTable t(12);
    t.section("What the elfcorehdr describes");
    std::string cpus;
    for (const auto& [cpu, note] : layout.cpu_notes)
        cpus += (cpus.empty() ? "" : ", ") + std::to_string(cpu) + " at " + hex(note.paddr);
    t.row("cpu notes", std::to_string(layout.cpu_notes.size()) + (cpus.empty() ? "" : " (" + cpus + ")"));
    if (!layout.cpus_without_notes.empty()) {
        std::string absent;
        for (unsigned c : layout.cpus_without_notes)
            absent += (absent.empty() ? "" : ",") + std::to_string(c);
        t.row("no notes", "possible but not present: " + absent);
    }
    t.row("vmcoreinfo",
          hex(layout.vmcoreinfo.paddr) + ", " + std::to_string(layout.vmcoreinfo.size) + " bytes");
    if (layout.kernel_text)
        t.row("kernel text", hex(layout.kernel_text->vaddr) + " at " + hex(layout.kernel_text->paddr) + ", " +
                                 human_size(layout.kernel_text->size));
    else
        t.row("kernel text", "none (/proc/kcore has no kernel text PT_LOAD)");
    t.row("page_offset", hex(layout.page_offset));
    t.row("RAM", std::to_string(layout.ram.size()) + " ranges, " + human_size(total(layout.ram)));
    for (const auto& r : layout.ram) t.raw("    " + span_text(r));
    t.row("cut out", std::to_string(layout.excluded.size()) + " ranges");
    for (const auto& r : layout.excluded) t.raw("    " + span_text(r));
    return t.str();
}

}  // namespace khod
