#include "khod/crash/core_layout.hpp"

#include <elf.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <memory>
#include <span>
#include <sstream>

#include "khod/base/fd.hpp"
#include "khod/base/hex.hpp"
#include "khod/base/probe.hpp"
#include "khod/crash/core_header.hpp"

namespace khod {

namespace {

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kElfCoreHeaderAlign = 4096;  // ELF_CORE_HEADER_ALIGN
constexpr std::uint64_t kLowMemory = 1ull << 20;     // elf_header_exclude_ranges(): low 1M
constexpr std::size_t kPnXnum = 0xffff;

std::uint64_t align_up(std::uint64_t v, std::uint64_t a) {
    return (v + a - 1) / a * a;
}

// The kernel shows physical addresses to root only: say so where it refused.
Error with_root_hint(Error e) {
    if (e.code == EACCES || e.code == EPERM)
        e.message += " (physical addresses are root's only: run as root)";
    return e;
}

// "%llx" or "0x%llx".
std::optional<std::uint64_t> parse_hex_token(std::string_view s) {
    if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s.remove_prefix(2);
    return parse_hex_digits(s);
}

Result<std::uint64_t> read_notes_size(const KernelPath& path) {
    auto size = read_u64(path);
    if (!size) return with_root_hint(size.error());
    // crash_notes_memory_init(): one note_buf_t per CPU, at most a page.
    if (*size == 0 || *size > kPage)
        return plain_error(path.host.string(),
                           std::to_string(*size) + " bytes is not a note buffer (1 to 4096 bytes)");
    return *size;
}

// "cpuN/<attr>" in `buf`, without an allocation: this runs per possible CPU.
std::string_view cpu_attr(std::span<char, 48> buf, unsigned cpu, std::string_view attr) {
    std::string_view prefix = "cpu";
    char* p = std::copy(prefix.begin(), prefix.end(), buf.data());
    p = std::to_chars(p, buf.data() + buf.size(), cpu).ptr;
    *p++ = '/';
    p = std::copy(attr.begin(), attr.end(), p);
    return {buf.data(), static_cast<std::size_t>(p - buf.data())};
}

Result<void> read_cpu_notes(const Sysroot& root, CoreLayout& out, CoreLayoutCache* cache) {
    const KernelPath possible_path = root.sys("devices/system/cpu/possible");
    auto possible_text = read_file(possible_path);
    if (!possible_text) return possible_text.error();
    auto possible = parse_list(*possible_text, possible_path.host.string());
    if (!possible) return possible.error();
    if (possible->empty()) return plain_error(possible_path.host.string(), "lists no CPU");
    auto cpus = KernelDir::open(root.sys("devices/system/cpu"));
    if (!cpus) return cpus.error();
    std::optional<std::uint64_t> notes_size;
    std::array<char, 48> buf;
    for (unsigned cpu : *possible) {
        if (cache) {
            if (auto known = cache->cpu_notes.find(cpu); known != cache->cpu_notes.end()) {
                out.cpu_notes.push_back({cpu, known->second});
                continue;
            }
        }
        const std::string_view notes_rel = cpu_attr(buf, cpu, "crash_notes");
        auto addr = read_hex_u64(*cpus, notes_rel);
        if (!addr) {
            const std::string notes_path = cpus->below(notes_rel).host.string();
            // Only present CPUs have a cpuN directory (cpu_dev_register_generic()).
            if (is_missing(addr.error()) && !exists(cpus->below("cpu" + std::to_string(cpu)))) {
                out.cpus_without_notes.push_back(cpu);
                continue;
            }
            if (is_missing(addr.error()))
                return plain_error(notes_path,
                                   "missing while the CPU is there: the kernel keeps no crash notes "
                                   "(CONFIG_CRASH_DUMP off?)");
            return with_root_hint(addr.error());
        }
        // Every CPU's crash_notes_size shows sizeof(note_buf_t): read once.
        if (!notes_size) {
            auto size = read_notes_size(cpus->below(cpu_attr(buf, cpu, "crash_notes_size")));
            if (!size) return size.error();
            notes_size = *size;
        }
        if (*addr == 0)
            return plain_error(cpus->below(cpu_attr(buf, cpu, "crash_notes")).host.string(),
                               "reads 0: no note buffer for cpu " + std::to_string(cpu));
        out.cpu_notes.push_back({cpu, CoreNote{*addr, *notes_size}});
        if (cache) cache->cpu_notes[cpu] = CoreNote{*addr, *notes_size};
    }
    return {};
}

// "%pa %x\n": the vmcoreinfo note's physical address and VMCOREINFO_NOTE_SIZE, both hex.
Result<void> read_vmcoreinfo(const Sysroot& root, CoreLayout& out) {
    const KernelPath path = root.sys("kernel/vmcoreinfo");
    auto text = read_trimmed(path);
    if (!text) {
        if (is_missing(text.error()))
            return plain_error(path.host.string(),
                               "missing: the kernel has no vmcoreinfo (CONFIG_VMCORE_INFO off?)");
        return with_root_hint(text.error());
    }
    std::istringstream words(*text);
    std::string a, s;
    words >> a >> s;
    auto addr = parse_hex_token(a);
    auto size = parse_hex_token(s);
    if (!addr || !size)
        return plain_error(path.host.string(), "not \"<address> <size>\" in hex: \"" + *text + "\"");
    if (*addr == 0) return plain_error(path.host.string(), "reads address 0 (run as root)");
    if (*size == 0 || *size > (1u << 20))
        return plain_error(path.host.string(), "note size " + std::to_string(*size) + " is not plausible");
    out.vmcoreinfo = {*addr, *size};
    return {};
}

Result<void> read_memory(const Sysroot& root, CoreLayout& out) {
    const KernelPath path = root.proc("iomem");
    auto text = read_file(path);
    if (!text) return with_root_hint(text.error());
    auto iomem = parse_iomem(*text, path.host.string());
    if (!iomem) return iomem.error();
    bool nonzero = false;
    for (const auto& e : *iomem) nonzero = nonzero || e.range.start != 0 || e.range.end > 1;
    if (!nonzero)
        return plain_error(path.host.string(),
                           "every range reads as zero: the kernel hides physical addresses from "
                           "unprivileged readers (run as root)");
    std::vector<PhysRange> cut{{0, kLowMemory}};
    for (const auto& e : *iomem)
        if (e.name == "Crash kernel") cut.push_back(e.range);
    auto cma = read_crash_cma(root);
    if (!cma) return cma.error();
    cut.insert(cut.end(), cma->begin(), cma->end());
    const auto ram = core_ram_ranges(*iomem);
    if (ram.empty()) return plain_error(path.host.string(), "has no System RAM range");
    out.ram = exclude_ranges(ram, cut);
    if (out.ram.empty())
        return plain_error(path.host.string(), "no System RAM is left once the crash kernel is cut out");
    out.excluded = std::move(cut);
    return {};
}

// /proc/kcore's ELF and program headers only: the kernel text PT_LOAD (paddr
// __pa_symbol(_text)) and the direct map's PT_LOADs (paddr __pa(vaddr)), as
// kexec-tools reads them.
Result<void> read_kcore(const Sysroot& root, int given_fd, CoreLayout& out) {
    const KernelPath path = root.proc("kcore");
    UniqueFd opened;
    if (given_fd < 0) {
        opened.reset(::open(path.host.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
        if (!opened.valid()) {
            Error e = errno_error(errno, path.host.string(), "cannot open");
            if (e.code == EACCES || e.code == EPERM || e.code == ENOENT)
                e.message +=
                    " (root with CAP_SYS_RAWIO only, not under lockdown=confidentiality, and hidden by "
                    "systemd's ProtectKernelTunables=: khod.service has it opened with OpenFile=)";
            return e;
        }
    }
    const int fd = given_fd >= 0 ? given_fd : opened.get();
    struct stat st {};
    if (::fstat(fd, &st) != 0) return errno_error(errno, path.host.string(), "cannot stat");
    auto elf =
        read_elf_core_headers(CoreSource(fd, static_cast<std::uint64_t>(st.st_size), path.host.string()));
    if (!elf) return elf.error();
    const LoadClasses loads = classify_loads(elf->phdrs);
    if (loads.page_offset_conflict)
        return plain_error(path.host.string(),
                           "PT_LOAD " + std::to_string(*loads.page_offset_conflict) +
                               " maps its physical address at a different direct-map offset "
                               "than the PT_LOADs before it");
    if (!loads.page_offset)
        return plain_error(path.host.string(),
                           "no PT_LOAD of the direct map (one with a physical address "
                           "below the kernel map): cannot tell the direct map's base");
    out.page_offset = *loads.page_offset;
    out.kernel_text = loads.kernel_text;
    if (out.kernel_text && (out.kernel_text->size == 0 || out.kernel_text->paddr == 0))
        return plain_error(path.host.string(), "the kernel text PT_LOAD has no size or no physical address");
    return {};
}

struct ElfEnd {
    void operator()(Elf* e) const { elf_end(e); }
};

Error libelf_error(const std::string& what) {
    const char* msg = elf_errmsg(-1);
    return plain_error("libelf", what + ": " + (msg ? msg : "unknown error"));
}

GElf_Phdr note_phdr(const CoreNote& n) {
    GElf_Phdr p{};
    p.p_type = PT_NOTE;
    p.p_offset = p.p_paddr = n.paddr;
    p.p_filesz = p.p_memsz = n.size;
    return p;
}

GElf_Phdr load_phdr(std::uint64_t vaddr, std::uint64_t paddr, std::uint64_t size) {
    GElf_Phdr p{};
    p.p_type = PT_LOAD;
    p.p_flags = PF_R | PF_W | PF_X;
    p.p_offset = p.p_paddr = paddr;
    p.p_vaddr = vaddr;
    p.p_filesz = p.p_memsz = size;
    return p;  // p_align stays 0, as in the kernel's zeroed buffer
}

Result<std::vector<GElf_Phdr>> program_headers(const CoreLayout& layout) {
    std::vector<GElf_Phdr> out;
    for (const auto& [cpu, note] : layout.cpu_notes) out.push_back(note_phdr(note));
    out.push_back(note_phdr(layout.vmcoreinfo));
    if (layout.kernel_text)
        out.push_back(
            load_phdr(layout.kernel_text->vaddr, layout.kernel_text->paddr, layout.kernel_text->size));
    for (const auto& r : layout.ram) {
        if (r.end <= r.start) return plain_error("elfcorehdr", "empty RAM range at " + hex(r.start));
        if (layout.page_offset > UINT64_MAX - r.end)
            return plain_error("elfcorehdr", "page_offset " + hex(layout.page_offset) + " + RAM range end " +
                                                 hex(r.end) + " wraps around");
        out.push_back(load_phdr(layout.page_offset + r.start, r.start, r.size()));
    }
    if (out.size() >= kPnXnum)
        return plain_error("elfcorehdr", std::to_string(out.size()) +
                                             " program headers: at least PN_XNUM (65535), which the kernel "
                                             "does not read");
    return out;
}

}  // namespace

Result<std::vector<PhysRange>> read_crash_cma(const Sysroot& root) {
    const KernelPath path = root.sys("kernel/kexec/crash_cma_ranges");
    auto text = read_file(path);
    if (!text) {
        if (is_missing(text.error())) return std::vector<PhysRange>{};
        return text.error();
    }
    std::vector<PhysRange> out;
    std::istringstream lines(*text);
    std::string line;
    while (std::getline(lines, line)) {
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        auto dash = line.find('-');
        auto a = dash == std::string::npos ? std::nullopt : parse_hex_token(line.substr(0, dash));
        auto b = dash == std::string::npos ? std::nullopt : parse_hex_token(line.substr(dash + 1));
        if (!a || !b || *b < *a || *b == UINT64_MAX)
            return plain_error(path.host.string(), "not \"start-end\" in hex: \"" + line + "\"");
        out.push_back({*a, *b + 1});
    }
    return out;
}

std::vector<PhysRange> core_ram_ranges(const std::vector<IomemEntry>& iomem) {
    // walk_system_ram_res(): every IORESOURCE_SYSTEM_RAM resource, in address
    // order, at any depth ("System RAM", "System RAM (kmem)", "System RAM
    // (virtio_mem)"), not descending into one it has taken.
    std::vector<PhysRange> out;
    std::uint64_t taken_to = 0;
    for (const auto& e : iomem) {
        const bool ram = e.name == "System RAM" || e.name.rfind("System RAM (", 0) == 0;
        if (!ram || (!out.empty() && e.range.start < taken_to)) continue;
        out.push_back(e.range);
        taken_to = e.range.end;
    }
    return out;
}

std::vector<PhysRange> exclude_ranges(const std::vector<PhysRange>& ram, const std::vector<PhysRange>& cut) {
    // crash_exclude_mem_range() for each cut in turn: drop, trim or split.
    std::vector<PhysRange> out = ram;
    for (const auto& c : cut) {
        std::vector<PhysRange> next;
        for (const auto& r : out) {
            if (c.end <= r.start || c.start >= r.end) {
                next.push_back(r);
                continue;
            }
            if (r.start < c.start) next.push_back({r.start, c.start});
            if (c.end < r.end) next.push_back({c.end, r.end});
        }
        out = std::move(next);
    }
    return out;
}

Result<CoreLayout> read_core_layout(const Sysroot& root, int kcore_fd, CoreLayoutCache* cache) {
    CoreLayout out;
    if (auto r = read_cpu_notes(root, out, cache); !r) return r.error();
    if (cache && cache->vmcoreinfo) {
        out.vmcoreinfo = *cache->vmcoreinfo;
    } else {
        if (auto r = read_vmcoreinfo(root, out); !r) return r.error();
        if (cache) cache->vmcoreinfo = out.vmcoreinfo;
    }
    if (auto r = read_memory(root, out); !r) return r.error();
    if (cache && cache->kcore_read) {
        out.kernel_text = cache->kernel_text;
        out.page_offset = cache->page_offset;
    } else {
        if (auto r = read_kcore(root, kcore_fd, out); !r) return r.error();
        if (cache) {
            cache->kcore_read = true;
            cache->kernel_text = out.kernel_text;
            cache->page_offset = out.page_offset;
        }
    }
    return out;
}

std::uint64_t elfcorehdr_bytes(std::uint64_t phnum) {
    return sizeof(Elf64_Ehdr) + phnum * sizeof(Elf64_Phdr);
}

Result<std::uint64_t> elfcorehdr_capacity(const Sysroot& root, unsigned max_cpus, unsigned max_ranges) {
    // The older name is a symlink to the newer one; either will do.
    for (const char* rel : {"kernel/crash_elfcorehdr_size", "kernel/kexec/crash_elfcorehdr_size"}) {
        const KernelPath path = root.sys(rel);
        auto size = read_u64(path);
        if (!size) {
            if (is_missing(size.error())) continue;
            return size.error();
        }
        if (*size == 0) break;  // the architecture does not say: size it ourselves
        // arch_crash_get_elfcorehdr_size() counts program headers only;
        // the kernel's own segment adds the ELF header to it.
        if (*size > (1ull << 32))
            return plain_error(path.host.string(), std::to_string(*size) + " is not plausible");
        return align_up(*size + sizeof(Elf64_Ehdr), kPage);
    }
    const std::uint64_t phnum = std::uint64_t{max_cpus} + 2 + max_ranges;
    if (phnum >= kPnXnum)
        return plain_error("elfcorehdr", std::to_string(max_cpus) + " CPUs and " +
                                             std::to_string(max_ranges) + " ranges need " +
                                             std::to_string(phnum) +
                                             " program headers: at most 65534 fit (PN_XNUM)");
    return align_up(elfcorehdr_bytes(phnum), kPage);
}

Result<std::vector<std::uint8_t>> build_elfcorehdr(const CoreLayout& layout) {
    auto phdrs = program_headers(layout);
    if (!phdrs) return phdrs.error();

    static const unsigned libelf_version = elf_version(EV_CURRENT);
    if (libelf_version == EV_NONE) return libelf_error("elf_version");
    // libelf writes to a file descriptor; a memfd keeps it in memory.
    UniqueFd fd(::memfd_create("khod-elfcorehdr", MFD_CLOEXEC));
    if (!fd.valid()) return errno_error(errno, "memfd_create", "cannot create the elfcorehdr's buffer");
    {
        std::unique_ptr<Elf, ElfEnd> elf(elf_begin(fd.get(), ELF_C_WRITE, nullptr));
        if (!elf) return libelf_error("elf_begin");
        if (!gelf_newehdr(elf.get(), ELFCLASS64)) return libelf_error("gelf_newehdr");
        // gelf_newphdr() sets e_phnum: take the header after it.
        if (!gelf_newphdr(elf.get(), phdrs->size())) return libelf_error("gelf_newphdr");
        GElf_Ehdr eh;
        if (!gelf_getehdr(elf.get(), &eh)) return libelf_error("gelf_getehdr");
        eh.e_ident[EI_DATA] = ELFDATA2LSB;
        eh.e_ident[EI_VERSION] = EV_CURRENT;
        eh.e_ident[EI_OSABI] = ELFOSABI_NONE;
        eh.e_type = ET_CORE;
        eh.e_machine = EM_X86_64;
        eh.e_version = EV_CURRENT;
        eh.e_entry = 0;
        eh.e_phoff = sizeof(Elf64_Ehdr);
        eh.e_shoff = 0;
        eh.e_flags = 0;
        eh.e_ehsize = sizeof(Elf64_Ehdr);
        eh.e_phentsize = sizeof(Elf64_Phdr);
        eh.e_shentsize = 0;
        eh.e_shnum = 0;
        eh.e_shstrndx = SHN_UNDEF;
        for (std::size_t i = 0; i < phdrs->size(); ++i)
            if (!gelf_update_phdr(elf.get(), static_cast<int>(i), &(*phdrs)[i]))
                return libelf_error("gelf_update_phdr");
        if (!gelf_update_ehdr(elf.get(), &eh)) return libelf_error("gelf_update_ehdr");
        // Our offsets, not libelf's: the kernel's layout is fixed.
        elf_flagelf(elf.get(), ELF_C_SET, ELF_F_LAYOUT);
        if (elf_update(elf.get(), ELF_C_WRITE) < 0) return libelf_error("elf_update");
    }
    const std::uint64_t size = elfcorehdr_bytes(phdrs->size());
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0)
        return errno_error(errno, "memfd", "cannot stat the elfcorehdr's buffer");
    if (static_cast<std::uint64_t>(st.st_size) != size)
        return plain_error("libelf", "wrote " + std::to_string(st.st_size) + " bytes, not the " +
                                         std::to_string(size) + " an ELF header and " +
                                         std::to_string(phdrs->size()) + " program headers take");
    // The kernel's buffer is ALIGN(size, ELF_CORE_HEADER_ALIGN), zeroed.
    std::vector<std::uint8_t> out(align_up(size, kElfCoreHeaderAlign), 0);
    std::size_t done = 0;
    while (done < size) {
        ssize_t n = ::pread(fd.get(), out.data() + done, size - done, static_cast<off_t>(done));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return errno_error(n < 0 ? errno : EIO, "memfd", "cannot read back the elfcorehdr");
        done += static_cast<std::size_t>(n);
    }
    return out;
}

}  // namespace khod
