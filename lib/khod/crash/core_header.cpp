#include "khod/crash/core_header.hpp"

#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "khod/base/fd.hpp"
#include "khod/base/hex.hpp"

namespace khod {

namespace {

// PN_XNUM: the real count would be in section header 0, which no kernel core has.
constexpr std::uint16_t kPnXnum = 0xffff;
// x86_64 struct elf_prstatus: pr_pid at 32, pr_reg (struct user_regs_struct) at 112,
// rip its 17th and rsp its 20th word; 336 bytes in all.
constexpr std::size_t kPrstatusPid = 32;
constexpr std::size_t kPrstatusRip = 112 + 16 * 8;
constexpr std::size_t kPrstatusRsp = 112 + 19 * 8;
constexpr std::size_t kPrstatusSize = 336;

std::string at(std::uint64_t offset) {
    return "offset " + hex(offset);
}

template <class T>
T load(const std::uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

ElfProgramHeader from_raw(const Elf64_Phdr& p) {
    return {p.p_type, p.p_flags, p.p_offset, p.p_vaddr, p.p_paddr, p.p_filesz, p.p_memsz, p.p_align};
}

void parse_vmcoreinfo(std::span<const std::uint8_t> desc, CoreHeaderInfo& info) {
    std::string_view text(reinterpret_cast<const char*>(desc.data()), desc.size());
    // The kernel's buffer may end in NULs when vmcoreinfo_size was padded.
    while (!text.empty() && text.back() == '\0') text.remove_suffix(1);
    while (!text.empty()) {
        auto nl = text.find('\n');
        std::string_view line = text.substr(0, nl);
        text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        auto eq = line.find('=');
        if (eq == std::string_view::npos || eq == 0) continue;
        info.vmcoreinfo.emplace_back(std::string(line.substr(0, eq)), std::string(line.substr(eq + 1)));
    }
}

void record_prstatus(std::span<const std::uint8_t> desc, std::size_t note, std::uint16_t machine,
                     CoreHeaderInfo& info) {
    CorePrStatus st;
    st.note = note;
    if (desc.size() >= kPrstatusPid + 4) st.pid = load<std::int32_t>(desc.data() + kPrstatusPid);
    if (machine == EM_X86_64 && desc.size() >= kPrstatusSize) {
        st.rip = load<std::uint64_t>(desc.data() + kPrstatusRip);
        st.rsp = load<std::uint64_t>(desc.data() + kPrstatusRsp);
    }
    info.prstatus.push_back(st);
}

// The note segments of a dump, read one by one within kMaxNoteBytes.
Result<void> read_note_segments(const CoreSource& source, CoreHeaderInfo& info) {
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < info.elf.phdrs.size(); ++i) {
        const auto& p = info.elf.phdrs[i];
        if (p.type != PT_NOTE || p.filesz == 0) continue;
        const std::string where = "PT_NOTE " + std::to_string(i);
        if (p.filesz > kMaxNoteBytes - total)
            return plain_error(source.name(),
                               where + " at " + at(p.offset) + " is " + std::to_string(p.filesz) +
                                   " bytes: the notes would pass the " + std::to_string(kMaxNoteBytes >> 20) +
                                   " MiB a kernel core's notes can take");
        if (p.offset > source.size() || p.filesz > source.size() - p.offset)
            return plain_error(source.name(), where + " (" + at(p.offset) + ", " + std::to_string(p.filesz) +
                                                  " bytes) ends past the end of the file (" +
                                                  std::to_string(source.size()) + " bytes): truncated");
        total += p.filesz;
        std::vector<std::uint8_t> bytes(static_cast<std::size_t>(p.filesz));
        if (auto r = source.read(p.offset, bytes.data(), bytes.size(), where); !r) return r.error();
        if (auto r = parse_notes(bytes, p.offset, source.name(), info); !r) return r.error();
    }
    return {};
}

// The elfcorehdr form's notes are in the crashed kernel's memory: the CPUs'
// first, vmcoreinfo last, as the kernel (and kexec-tools) lay them out.
void describe_memory_notes(CoreHeaderInfo& info) {
    std::vector<CoreNote> notes;
    for (const auto& p : info.elf.phdrs)
        if (p.type == PT_NOTE) notes.push_back({p.paddr, p.memsz});
    if (notes.empty()) return;
    info.vmcoreinfo_note = notes.back();
    notes.pop_back();
    info.cpu_notes = std::move(notes);
}

bool offsets_are_physical(const std::vector<ElfProgramHeader>& phdrs) {
    bool any = false;
    for (const auto& p : phdrs) {
        if (p.type != PT_NOTE && p.type != PT_LOAD) continue;
        if (p.offset != p.paddr) return false;
        any = true;
    }
    return any;
}

// A dump's PT_LOADs must lie in the file; an elfcorehdr's point at RAM.
Result<void> check_load_extents(const CoreSource& source, const CoreHeaderInfo& info) {
    for (std::size_t i = 0; i < info.elf.phdrs.size(); ++i) {
        const auto& p = info.elf.phdrs[i];
        if (p.type != PT_LOAD) continue;
        const std::string where = "PT_LOAD " + std::to_string(i);
        if (p.filesz > p.memsz)
            return plain_error(source.name(), where + ": p_filesz " + std::to_string(p.filesz) +
                                                  " is larger than p_memsz " + std::to_string(p.memsz));
        if (p.paddr != UINT64_MAX && p.memsz > UINT64_MAX - p.paddr)
            return plain_error(source.name(), where + ": p_paddr " + hex(p.paddr) + " + p_memsz " +
                                                  hex(p.memsz) + " wraps around");
        if (info.form == CoreForm::elfcorehdr) continue;
        if (p.offset > source.size() || p.filesz > source.size() - p.offset)
            return plain_error(source.name(), where + " (" + at(p.offset) + ", " + std::to_string(p.filesz) +
                                                  " bytes) ends past the end of the file (" +
                                                  std::to_string(source.size()) + " bytes): truncated");
    }
    return {};
}

}  // namespace

CoreSource::CoreSource(int fd, std::uint64_t size, std::string name)
    : fd_(fd), size_(size), name_(std::move(name)) {}

CoreSource::CoreSource(std::span<const std::uint8_t> bytes, std::string name)
    : bytes_(bytes), size_(bytes.size()), name_(std::move(name)) {}

Result<void> CoreSource::read(std::uint64_t offset, void* out, std::size_t len, std::string_view what) const {
    if (offset > size_ || len > size_ - offset)
        return plain_error(name_, std::string(what) + " (" + at(offset) + ", " + std::to_string(len) +
                                      " bytes) ends past the end of the file (" + std::to_string(size_) +
                                      " bytes): truncated");
    if (fd_ < 0) {
        std::memcpy(out, bytes_.data() + offset, len);
        return {};
    }
    auto* p = static_cast<std::uint8_t*>(out);
    std::size_t done = 0;
    while (done < len) {
        ssize_t n = ::pread(fd_, p + done, len - done, static_cast<off_t>(offset + done));
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error(errno, name_, "cannot read " + std::string(what) + " at " + at(offset + done));
        }
        if (n == 0)
            return plain_error(name_, std::string(what) + ": the file ends at " + at(offset + done) + ", " +
                                          std::to_string(len - done) + " bytes short: truncated");
        done += static_cast<std::size_t>(n);
    }
    return {};
}

Result<ElfCoreHeaders> read_elf_core_headers(const CoreSource& source) {
    const std::string& name = source.name();
    std::uint8_t ident[EI_NIDENT] = {};
    if (source.size() < SELFMAG)
        return plain_error(name, "not an ELF file: " + std::to_string(source.size()) + " bytes");
    if (auto r = source.read(0, ident, SELFMAG, "ELF magic"); !r) return r.error();
    if (std::memcmp(ident, ELFMAG, SELFMAG) != 0)
        return plain_error(name, "not an ELF file (no \\x7fELF magic)");
    if (auto r = source.read(0, ident, EI_NIDENT, "ELF identification"); !r) return r.error();
    if (ident[EI_CLASS] != ELFCLASS64)
        return plain_error(name, ident[EI_CLASS] == ELFCLASS32
                                     ? "ELF32: only ELF64 cores (x86_64 kernels) are read"
                                     : "EI_CLASS " + std::to_string(ident[EI_CLASS]) + " is not ELFCLASS64");
    if (ident[EI_DATA] != ELFDATA2LSB)
        return plain_error(
            name, "EI_DATA " + std::to_string(ident[EI_DATA]) + " is not little-endian (ELFDATA2LSB)");
    if (ident[EI_VERSION] != EV_CURRENT)
        return plain_error(name, "EI_VERSION " + std::to_string(ident[EI_VERSION]) + " is not EV_CURRENT");
    Elf64_Ehdr eh;
    if (auto r = source.read(0, &eh, sizeof eh, "ELF header"); !r) return r.error();
    if (eh.e_type != ET_CORE)
        return plain_error(name, "e_type " + std::to_string(eh.e_type) + " is not ET_CORE: not a core file");
    if (eh.e_ehsize != sizeof(Elf64_Ehdr))
        return plain_error(name, "e_ehsize " + std::to_string(eh.e_ehsize) + " is not " +
                                     std::to_string(sizeof(Elf64_Ehdr)));
    if (eh.e_phnum == kPnXnum)
        return plain_error(name, "e_phnum is PN_XNUM (extended numbering), which no kernel core uses");
    ElfCoreHeaders out;
    out.type = eh.e_type;
    out.machine = eh.e_machine;
    out.osabi = eh.e_ident[EI_OSABI];
    out.phoff = eh.e_phoff;
    if (eh.e_phnum == 0) return out;
    if (eh.e_phentsize != sizeof(Elf64_Phdr))
        return plain_error(name, "e_phentsize " + std::to_string(eh.e_phentsize) + " is not " +
                                     std::to_string(sizeof(Elf64_Phdr)) + " (Elf64_Phdr)");
    const std::uint64_t table = std::uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr);
    if (eh.e_phoff > source.size() || table > source.size() - eh.e_phoff)
        return plain_error(name, std::to_string(eh.e_phnum) + " program headers (" + std::to_string(table) +
                                     " bytes) at e_phoff " + hex(eh.e_phoff) +
                                     " run past the end of the file (" + std::to_string(source.size()) +
                                     " bytes): truncated");
    // At most 65534 x 56 bytes, and only after they are known to be in the file.
    std::vector<Elf64_Phdr> raw(eh.e_phnum);
    if (auto r = source.read(eh.e_phoff, raw.data(), static_cast<std::size_t>(table), "program headers"); !r)
        return r.error();
    out.phdrs.reserve(raw.size());
    for (const auto& p : raw) out.phdrs.push_back(from_raw(p));
    return out;
}

LoadClasses classify_loads(const std::vector<ElfProgramHeader>& phdrs) {
    LoadClasses c;
    for (std::size_t i = 0; i < phdrs.size(); ++i) {
        const auto& p = phdrs[i];
        if (p.type != PT_LOAD || p.paddr == UINT64_MAX) continue;
        if (p.vaddr >= kStartKernelMap) {
            if (!c.kernel_text) c.kernel_text = KernelText{p.vaddr, p.paddr, p.memsz};
            continue;
        }
        c.ram.push_back(i);
        const std::uint64_t offset = p.vaddr - p.paddr;
        if (c.ram.size() == 1)
            c.page_offset = offset;
        else if (c.page_offset && *c.page_offset != offset && !c.page_offset_conflict)
            c.page_offset_conflict = i;
    }
    if (c.page_offset_conflict) c.page_offset.reset();
    return c;
}

const char* to_string(CoreForm form) {
    return form == CoreForm::elfcorehdr ? "elfcorehdr" : "dump";
}

Result<void> parse_notes(std::span<const std::uint8_t> segment, std::uint64_t base, const std::string& name,
                         CoreHeaderInfo& info) {
    std::size_t pos = 0;
    while (segment.size() - pos >= sizeof(Elf64_Nhdr)) {
        const auto nh = load<Elf64_Nhdr>(segment.data() + pos);
        if (nh.n_namesz == 0) break;  // the kernel's final_note(): the rest is unused buffer
        // In 64 bits: two 32-bit sizes rounded up cannot overflow.
        const std::uint64_t name_bytes = (std::uint64_t{nh.n_namesz} + 3) & ~std::uint64_t{3};
        const std::uint64_t desc_bytes = (std::uint64_t{nh.n_descsz} + 3) & ~std::uint64_t{3};
        const std::uint64_t left = segment.size() - pos - sizeof(Elf64_Nhdr);
        if (name_bytes > left || desc_bytes > left - name_bytes)
            return plain_error(name, "note at " + at(base + pos) + ": n_namesz " +
                                         std::to_string(nh.n_namesz) + " and n_descsz " +
                                         std::to_string(nh.n_descsz) + " run past its segment's end at " +
                                         at(base + segment.size()));
        if (info.notes.size() == kMaxNotes)
            return plain_error(name, "more than " + std::to_string(kMaxNotes) + " notes (at " +
                                         at(base + pos) + "): not a kernel core");
        const auto* name_at = segment.data() + pos + sizeof(Elf64_Nhdr);
        const auto* desc_at = name_at + name_bytes;
        std::string note_name(
            reinterpret_cast<const char*>(name_at),
            static_cast<std::size_t>(std::find(name_at, name_at + nh.n_namesz, std::uint8_t{0}) - name_at));
        const std::span<const std::uint8_t> desc(desc_at, nh.n_descsz);
        info.notes.push_back({note_name, nh.n_type, base + pos, nh.n_descsz});
        if (note_name == "CORE" && nh.n_type == NT_PRSTATUS)
            record_prstatus(desc, info.notes.size() - 1, info.elf.machine, info);
        else if (note_name == "VMCOREINFO")
            parse_vmcoreinfo(desc, info);
        pos += static_cast<std::size_t>(sizeof(Elf64_Nhdr) + name_bytes + desc_bytes);
    }
    return {};
}

Result<CoreHeaderInfo> read_core_header(const CoreSource& source) {
    auto elf = read_elf_core_headers(source);
    if (!elf) return elf.error();
    CoreHeaderInfo info;
    info.path = source.name();
    info.file_size = source.size();
    info.elf = std::move(*elf);
    info.form = offsets_are_physical(info.elf.phdrs) ? CoreForm::elfcorehdr : CoreForm::dump;
    if (auto r = check_load_extents(source, info); !r) return r.error();
    const LoadClasses loads = classify_loads(info.elf.phdrs);
    info.kernel_text = loads.kernel_text;
    info.page_offset = loads.page_offset;
    for (std::size_t i : loads.ram) {
        const auto& p = info.elf.phdrs[i];
        info.ram.push_back({p.paddr, p.paddr + p.memsz});
    }
    if (info.form == CoreForm::elfcorehdr) {
        describe_memory_notes(info);
    } else if (auto r = read_note_segments(source, info); !r) {
        return r.error();
    }
    return info;
}

Result<CoreHeaderInfo> read_core_header(int fd, const std::string& name) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return errno_error(errno, name, "cannot stat");
    if (!S_ISREG(st.st_mode))
        return plain_error(name, "not a regular file: a core header is read at offsets (pread)");
    return read_core_header(CoreSource(fd, static_cast<std::uint64_t>(st.st_size), name));
}

Result<CoreHeaderInfo> read_core_header(const std::filesystem::path& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!fd.valid()) return errno_error(errno, path.string(), "cannot open");
    return read_core_header(fd.get(), path.string());
}

Result<CoreHeaderInfo> read_core_header(std::span<const std::uint8_t> bytes, const std::string& name) {
    return read_core_header(CoreSource(bytes, name));
}

std::optional<std::string> CoreHeaderInfo::vmcoreinfo_value(std::string_view key) const {
    for (auto it = vmcoreinfo.rbegin(); it != vmcoreinfo.rend(); ++it)
        if (it->first == key) return it->second;
    return std::nullopt;
}

std::string phdr_type_name(std::uint32_t type) {
    switch (type) {
        case PT_NULL: return "PT_NULL";
        case PT_LOAD: return "PT_LOAD";
        case PT_DYNAMIC: return "PT_DYNAMIC";
        case PT_INTERP: return "PT_INTERP";
        case PT_NOTE: return "PT_NOTE";
        case PT_PHDR: return "PT_PHDR";
        case PT_TLS: return "PT_TLS";
        default: return hex(type);
    }
}

std::string note_type_name(const std::string& name, std::uint32_t type) {
    if (name == "VMCOREINFO") return "VMCOREINFO";
    if (name == "CORE") {
        switch (type) {
            case NT_PRSTATUS: return "NT_PRSTATUS";
            case NT_PRPSINFO: return "NT_PRPSINFO";
            case NT_TASKSTRUCT: return "NT_TASKSTRUCT";
            default: break;
        }
    }
    return std::to_string(type);
}

std::string machine_name(std::uint16_t machine) {
    switch (machine) {
        case EM_X86_64: return "x86_64";
        case EM_386: return "i386";
        case EM_AARCH64: return "aarch64";
        default: return std::to_string(machine);
    }
}

}  // namespace khod
