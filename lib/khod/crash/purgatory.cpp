#include "khod/crash/purgatory.hpp"

#include <gelf.h>
#include <libelf.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>

#include "khod/base/caller_file.hpp"
#include "khod/base/hex.hpp"

namespace khod {

namespace {

constexpr std::uint64_t kPage = 4096;
// The object is a few KiB; these bound what a damaged or hostile file costs.
constexpr std::uint64_t kMaxObjectBytes = 4u << 20;
constexpr std::uint64_t kMaxImage = 4u << 20;

// The symbols place() writes, and their sizes (purgatory/purgatory.c).
constexpr const char* kEntrySymbol = "khod_purgatory_start";
constexpr const char* kKernelEntrySymbol = "khod_kernel_entry";
constexpr const char* kBootParamsSymbol = "khod_boot_params";
constexpr const char* kDigestSymbol = "khod_digest";
constexpr const char* kRegionsSymbol = "khod_regions";
constexpr std::uint64_t kRegionBytes = 16;  // struct khod_region: u64 start, u64 size

struct ElfEnd {
    void operator()(Elf* e) const { elf_end(e); }
};
using ElfPtr = std::unique_ptr<Elf, ElfEnd>;

std::string elf_error() {
    const char* m = elf_errmsg(-1);
    return m ? m : "unknown libelf error";
}

bool fits(std::uint64_t offset, std::uint64_t len, std::uint64_t size) {
    return offset <= size && len <= size - offset;
}

std::uint64_t align_up(std::uint64_t v, std::uint64_t a) {
    return (v + a - 1) & ~(a - 1);
}

const char* reloc_name(std::uint32_t type) {
    switch (type) {
        case R_X86_64_NONE: return "R_X86_64_NONE";
        case R_X86_64_64: return "R_X86_64_64";
        case R_X86_64_PC32: return "R_X86_64_PC32";
        case R_X86_64_GOT32: return "R_X86_64_GOT32";
        case R_X86_64_PLT32: return "R_X86_64_PLT32";
        case R_X86_64_GOTPCREL: return "R_X86_64_GOTPCREL";
        case R_X86_64_32: return "R_X86_64_32";
        case R_X86_64_32S: return "R_X86_64_32S";
        case R_X86_64_16: return "R_X86_64_16";
        case R_X86_64_PC16: return "R_X86_64_PC16";
        case R_X86_64_8: return "R_X86_64_8";
        case R_X86_64_PC8: return "R_X86_64_PC8";
        case R_X86_64_PC64: return "R_X86_64_PC64";
        case R_X86_64_GOTOFF64: return "R_X86_64_GOTOFF64";
        case R_X86_64_GOTPC32: return "R_X86_64_GOTPC32";
        case R_X86_64_GOTPCRELX: return "R_X86_64_GOTPCRELX";
        case R_X86_64_REX_GOTPCRELX: return "R_X86_64_REX_GOTPCRELX";
        default: return nullptr;
    }
}

std::string reloc_label(std::uint32_t type) {
    const char* n = reloc_name(type);
    return n ? n : "relocation type " + std::to_string(type);
}

// Bytes a relocation of this type writes, 0 for a type place() does not apply.
unsigned reloc_width(std::uint32_t type) {
    switch (type) {
        case R_X86_64_64: return 8;
        case R_X86_64_PC32:
        case R_X86_64_PLT32:
        case R_X86_64_32:
        case R_X86_64_32S: return 4;
        default: return 0;
    }
}

void put_le(std::vector<std::uint8_t>& b, std::uint64_t at, std::uint64_t v, unsigned width) {
    for (unsigned i = 0; i < width; ++i) b[at + i] = static_cast<std::uint8_t>(v >> (8 * i));
}

std::string openssl_error() {
    const unsigned long e = ERR_get_error();
    if (e == 0) return "no error queued";
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    return buf;
}

}  // namespace

// Reads the object once, into the plain tables place() works from; libelf
// does not outlive parse().
class PurgatoryObject::Parser {
public:
    Parser(std::span<const std::uint8_t> bytes, std::string name) : bytes_(bytes.begin(), bytes.end()) {
        obj_.name_ = std::move(name);
    }

    Result<PurgatoryObject> run() {
        for (auto step : {&Parser::open, &Parser::read_sections, &Parser::lay_out, &Parser::read_symbols,
                          &Parser::read_relocations, &Parser::find_patched}) {
            if (auto r = (this->*step)(); !r) return r.error();
        }
        obj_.loaded_ = true;
        return std::move(obj_);
    }

private:
    Error fail(std::string message) const { return plain_error(obj_.name_, std::move(message)); }
    std::string section_label(std::size_t i) const {
        return (names_[i].empty() ? "section" : names_[i]) + " (section " + std::to_string(i) + ")";
    }

    Result<void> open();
    Result<void> read_sections();
    Result<void> lay_out();
    Result<void> read_symbols();
    Result<void> read_relocations();
    Result<void> read_rela(std::size_t index);
    Result<void> find_patched();
    Result<const Symbol*> global_symbol(const char* name) const;
    Result<std::uint64_t> patched_field(const char* name, std::uint64_t size) const;

    std::vector<std::uint8_t> bytes_;  // libelf reads this copy
    ElfPtr elf_;
    PurgatoryObject obj_;
    std::vector<GElf_Shdr> shdrs_;  // by ELF index
    std::vector<std::string> names_;
    std::size_t symtab_ = 0;
};

Result<void> PurgatoryObject::Parser::open() {
    static const unsigned version = elf_version(EV_CURRENT);
    if (version == EV_NONE) return fail("libelf: " + elf_error());
    if (bytes_.size() < EI_NIDENT || std::memcmp(bytes_.data(), ELFMAG, SELFMAG) != 0)
        return fail("not an ELF object");
    if (bytes_[EI_CLASS] != ELFCLASS64) return fail("not ELFCLASS64: the purgatory is x86-64 code");
    if (bytes_[EI_DATA] != ELFDATA2LSB) return fail("not little-endian: the purgatory is x86-64 code");
    if (bytes_.size() < sizeof(Elf64_Ehdr))
        return fail("truncated: " + std::to_string(bytes_.size()) + " bytes, less than an ELF header");
    elf_.reset(elf_memory(reinterpret_cast<char*>(bytes_.data()), bytes_.size()));
    if (!elf_) return fail("libelf: " + elf_error());
    if (elf_kind(elf_.get()) != ELF_K_ELF) return fail("not an ELF object");
    GElf_Ehdr eh;
    if (!gelf_getehdr(elf_.get(), &eh)) return fail("libelf: " + elf_error());
    if (eh.e_ident[EI_VERSION] != EV_CURRENT || eh.e_version != EV_CURRENT)
        return fail("ELF version " + std::to_string(eh.e_version) + ", not 1");
    if (eh.e_type != ET_REL)
        return fail("ELF type " + std::to_string(eh.e_type) +
                    ", not ET_REL: the purgatory is a relocatable object (ld -r)");
    if (eh.e_machine != EM_X86_64) return fail("machine " + std::to_string(eh.e_machine) + ", not x86-64");
    return {};
}

Result<void> PurgatoryObject::Parser::read_sections() {
    std::size_t shnum = 0, shstrndx = 0;
    if (elf_getshdrnum(elf_.get(), &shnum) != 0 || elf_getshdrstrndx(elf_.get(), &shstrndx) != 0)
        return fail("libelf: " + elf_error());
    GElf_Ehdr eh;
    if (!gelf_getehdr(elf_.get(), &eh)) return fail("libelf: " + elf_error());
    if (shnum == 0) return fail("no sections");
    if (eh.e_shentsize != sizeof(Elf64_Shdr) || shnum > bytes_.size() / sizeof(Elf64_Shdr) ||
        !fits(eh.e_shoff, shnum * sizeof(Elf64_Shdr), bytes_.size()))
        return fail("section header table outside the file");
    if (shstrndx == 0 || shstrndx >= shnum) return fail("no section name table");
    shdrs_.resize(shnum);
    names_.resize(shnum);
    for (std::size_t i = 0; i < shnum; ++i) {
        Elf_Scn* scn = elf_getscn(elf_.get(), i);
        if (!scn || !gelf_getshdr(scn, &shdrs_[i])) return fail("libelf: " + elf_error());
    }
    if (shdrs_[shstrndx].sh_type != SHT_STRTAB) return fail("the section name table is not SHT_STRTAB");
    for (std::size_t i = 1; i < shnum; ++i) {
        const GElf_Shdr& s = shdrs_[i];
        if (s.sh_type != SHT_NOBITS && s.sh_type != SHT_NULL && !fits(s.sh_offset, s.sh_size, bytes_.size()))
            return fail("section " + std::to_string(i) + ": bytes " + hex(s.sh_offset) + "+" +
                        hex(s.sh_size) + " run past the end of the file (" + std::to_string(bytes_.size()) +
                        " bytes)");
        const char* n = elf_strptr(elf_.get(), shstrndx, s.sh_name);
        if (!n) return fail("section " + std::to_string(i) + ": name outside the section name table");
        names_[i] = n;
    }
    return {};
}

// Code and data in the object's order, then .bss: the image is the loaded
// bytes, and the kernel zero-fills the rest of the segment.
Result<void> PurgatoryObject::Parser::lay_out() {
    obj_.section_offset_.assign(shdrs_.size(), std::nullopt);
    std::uint64_t cursor = 0;
    for (const bool nobits_pass : {false, true}) {
        for (std::size_t i = 1; i < shdrs_.size(); ++i) {
            const GElf_Shdr& s = shdrs_[i];
            if (!(s.sh_flags & SHF_ALLOC) || (s.sh_type == SHT_NOBITS) != nobits_pass) continue;
            if (s.sh_type != SHT_PROGBITS && s.sh_type != SHT_NOBITS && s.sh_type != SHT_NOTE)
                return fail(
                    section_label(i) + ": allocated section of type " + hex(s.sh_type) +
                    "; the purgatory has only code, data and .bss (no unwind tables, no constructors)");
            if (s.sh_flags & SHF_TLS) return fail(section_label(i) + ": thread-local storage");
            const std::uint64_t align = std::max<std::uint64_t>(s.sh_addralign, 1);
            if ((align & (align - 1)) != 0 || align > kPage)
                return fail(section_label(i) + ": alignment " + hex(align) +
                            " is not a power of two up to a page");
            const std::uint64_t at = align_up(cursor, align);
            if (s.sh_size > kMaxImage || at > kMaxImage - s.sh_size)
                return fail(section_label(i) + ": the sections take more than " + hex(kMaxImage) + " bytes");
            obj_.section_offset_[i] = at;
            obj_.alignment_ = std::max(obj_.alignment_, align);
            obj_.sections_.push_back({names_[i], at, s.sh_size, nobits_pass,
                                      (s.sh_flags & SHF_EXECINSTR) != 0, (s.sh_flags & SHF_WRITE) != 0});
            cursor = at + s.sh_size;
        }
        if (!nobits_pass) obj_.filesz_ = cursor;
    }
    obj_.memsz_ = align_up(cursor, kPage);
    obj_.image_.assign(obj_.filesz_, 0);
    for (std::size_t i = 1; i < shdrs_.size(); ++i) {
        if (!obj_.section_offset_[i] || shdrs_[i].sh_type == SHT_NOBITS) continue;
        std::copy_n(bytes_.begin() + static_cast<std::ptrdiff_t>(shdrs_[i].sh_offset), shdrs_[i].sh_size,
                    obj_.image_.begin() + static_cast<std::ptrdiff_t>(*obj_.section_offset_[i]));
    }
    return {};
}

Result<void> PurgatoryObject::Parser::read_symbols() {
    for (std::size_t i = 1; i < shdrs_.size(); ++i) {
        if (shdrs_[i].sh_type == SHT_SYMTAB_SHNDX) return fail("extended section indices are not supported");
        if (shdrs_[i].sh_type != SHT_SYMTAB) continue;
        if (symtab_ != 0) return fail("more than one symbol table");
        symtab_ = i;
    }
    if (symtab_ == 0) return fail("no symbol table");
    const GElf_Shdr& st = shdrs_[symtab_];
    if (st.sh_entsize != sizeof(Elf64_Sym) || st.sh_size % sizeof(Elf64_Sym) != 0 || st.sh_size == 0)
        return fail("symbol table of " + hex(st.sh_size) + " bytes, entries of " + hex(st.sh_entsize));
    if (st.sh_link == 0 || st.sh_link >= shdrs_.size() || shdrs_[st.sh_link].sh_type != SHT_STRTAB)
        return fail("the symbol table's string table is missing");
    Elf_Data* data = elf_getdata(elf_getscn(elf_.get(), symtab_), nullptr);
    if (!data || data->d_size != st.sh_size) return fail("symbol table: " + elf_error());
    const std::size_t count = st.sh_size / sizeof(Elf64_Sym);
    obj_.symbols_.resize(count);
    for (std::size_t i = 1; i < count; ++i) {
        GElf_Sym sym;
        if (!gelf_getsym(data, static_cast<int>(i), &sym))
            return fail("symbol " + std::to_string(i) + ": " + elf_error());
        const char* n = elf_strptr(elf_.get(), st.sh_link, sym.st_name);
        if (!n) return fail("symbol " + std::to_string(i) + ": name outside the string table");
        Symbol& out = obj_.symbols_[i];
        out.name = n;
        out.value = sym.st_value;
        out.size = sym.st_size;
        out.shndx = sym.st_shndx;
        const unsigned bind = GELF_ST_BIND(sym.st_info);
        out.global = bind == STB_GLOBAL || bind == STB_WEAK;
        const std::string label = "symbol " + (out.name.empty() ? std::to_string(i) : out.name);
        if (sym.st_shndx == SHN_UNDEF)
            return fail(label +
                        " is undefined: the purgatory must define all it uses (no libc, no builtins)");
        if (sym.st_shndx == SHN_COMMON) return fail(label + " is a common symbol (build with -fno-common)");
        if (sym.st_shndx == SHN_ABS) continue;
        if (sym.st_shndx >= SHN_LORESERVE || sym.st_shndx >= shdrs_.size())
            return fail(label + ": section index " + std::to_string(sym.st_shndx) + " out of range");
        if (obj_.section_offset_[sym.st_shndx] &&
            !fits(sym.st_value, sym.st_size, shdrs_[sym.st_shndx].sh_size))
            return fail(label + ": " + hex(sym.st_value) + "+" + hex(sym.st_size) + " lies outside " +
                        section_label(sym.st_shndx));
    }
    return {};
}

Result<void> PurgatoryObject::Parser::read_relocations() {
    for (std::size_t i = 1; i < shdrs_.size(); ++i) {
        const GElf_Shdr& s = shdrs_[i];
        if (s.sh_type != SHT_RELA && s.sh_type != SHT_REL) continue;
        if (s.sh_info == 0 || s.sh_info >= shdrs_.size())
            return fail(section_label(i) + ": relocates section " + std::to_string(s.sh_info) +
                        ", out of range");
        // Relocations of sections that are not loaded (debug info) do not matter.
        if (!obj_.section_offset_[s.sh_info]) continue;
        if (s.sh_type == SHT_REL) return fail(section_label(i) + ": SHT_REL; x86-64 objects use SHT_RELA");
        if (auto r = read_rela(i); !r) return r;
    }
    return {};
}

Result<void> PurgatoryObject::Parser::read_rela(std::size_t index) {
    const GElf_Shdr& s = shdrs_[index];
    const GElf_Shdr& target = shdrs_[s.sh_info];
    if (s.sh_link != symtab_) return fail(section_label(index) + ": not linked to the symbol table");
    if (s.sh_entsize != sizeof(Elf64_Rela) || s.sh_size % sizeof(Elf64_Rela) != 0)
        return fail(section_label(index) + ": entries of " + hex(s.sh_entsize) + " bytes");
    if (target.sh_type == SHT_NOBITS) return fail(section_label(index) + ": relocates .bss-like section");
    Elf_Data* data = elf_getdata(elf_getscn(elf_.get(), index), nullptr);
    if (!data || data->d_size != s.sh_size) return fail(section_label(index) + ": " + elf_error());
    const std::size_t count = s.sh_size / sizeof(Elf64_Rela);
    for (std::size_t j = 0; j < count; ++j) {
        GElf_Rela rela;
        if (!gelf_getrela(data, static_cast<int>(j), &rela))
            return fail(section_label(index) + ": " + elf_error());
        Relocation r;
        r.type = static_cast<std::uint32_t>(GELF_R_TYPE(rela.r_info));
        r.symbol = static_cast<std::uint32_t>(GELF_R_SYM(rela.r_info));
        r.addend = rela.r_addend;
        r.where = names_[s.sh_info] + "+" + hex(rela.r_offset);
        const unsigned width = reloc_width(r.type);
        if (width == 0)
            return fail(r.where + ": " + reloc_label(r.type) + " is not a relocation khod applies");
        if (!fits(rela.r_offset, width, target.sh_size))
            return fail(r.where + ": " + reloc_label(r.type) + " writes past the end of " +
                        section_label(s.sh_info));
        if (r.symbol == 0 || r.symbol >= obj_.symbols_.size())
            return fail(r.where + ": symbol index " + std::to_string(r.symbol) + " out of range");
        const Symbol& sym = obj_.symbols_[r.symbol];
        if (sym.shndx != SHN_ABS && !obj_.section_offset_[sym.shndx])
            return fail(r.where + ": refers to " + (sym.name.empty() ? section_label(sym.shndx) : sym.name) +
                        ", which is not loaded");
        r.where += " (" +
                   (!sym.name.empty()      ? sym.name
                    : sym.shndx == SHN_ABS ? "absolute"
                                           : names_[sym.shndx]) +
                   ")";
        r.at = *obj_.section_offset_[s.sh_info] + rela.r_offset;
        obj_.relocations_.push_back(std::move(r));
    }
    return {};
}

Result<const PurgatoryObject::Symbol*> PurgatoryObject::Parser::global_symbol(const char* name) const {
    const Symbol* found = nullptr;
    for (const Symbol& s : obj_.symbols_) {
        if (!s.global || s.name != name) continue;
        if (found) return fail(std::string("symbol ") + name + " is defined twice");
        found = &s;
    }
    if (!found) return fail(std::string("no symbol ") + name + ": not khod's purgatory object");
    if (found->shndx == SHN_ABS || !obj_.section_offset_[found->shndx])
        return fail(std::string("symbol ") + name + " is not in a loaded section");
    return found;
}

// A symbol place() writes: of the size purgatory.c gives it, in writable bytes of the image.
Result<std::uint64_t> PurgatoryObject::Parser::patched_field(const char* name, std::uint64_t size) const {
    auto sym = global_symbol(name);
    if (!sym) return sym.error();
    const Symbol& s = **sym;
    const GElf_Shdr& sec = shdrs_[s.shndx];
    if (s.size != size)
        return fail(std::string("symbol ") + name + " is " + std::to_string(s.size) + " bytes, not " +
                    std::to_string(size));
    if (sec.sh_type == SHT_NOBITS || !(sec.sh_flags & SHF_WRITE))
        return fail(std::string("symbol ") + name + " is in " + section_label(s.shndx) +
                    ", not in writable data that the image carries");
    return *obj_.section_offset_[s.shndx] + s.value;
}

Result<void> PurgatoryObject::Parser::find_patched() {
    auto entry = global_symbol(kEntrySymbol);
    if (!entry) return entry.error();
    if (!(shdrs_[(*entry)->shndx].sh_flags & SHF_EXECINSTR))
        return fail(std::string(kEntrySymbol) + " is not in code");
    obj_.entry_ = *obj_.section_offset_[(*entry)->shndx] + (*entry)->value;

    auto kernel_entry = patched_field(kKernelEntrySymbol, 8);
    auto boot_params = patched_field(kBootParamsSymbol, 8);
    auto digest = patched_field(kDigestSymbol, std::tuple_size_v<Sha256Digest>);
    auto regions = patched_field(kRegionsSymbol, kPurgatoryMaxRegions * kRegionBytes);
    for (const auto* r : {&kernel_entry, &boot_params, &digest, &regions})
        if (!*r) return r->error();
    obj_.patched_ = {*kernel_entry, *boot_params, *digest, *regions};

    // place() writes the patch after the relocations: one under it would be lost.
    const std::pair<std::uint64_t, std::uint64_t> fields[] = {
        {*kernel_entry, 8},
        {*boot_params, 8},
        {*digest, 32},
        {*regions, kPurgatoryMaxRegions * kRegionBytes}};
    for (const Relocation& r : obj_.relocations_) {
        for (const auto& [at, size] : fields) {
            if (r.at < at + size && at < r.at + reloc_width(r.type))
                return fail(r.where + ": relocates bytes of a symbol khod patches");
        }
    }
    return {};
}

Result<PurgatoryObject> PurgatoryObject::parse(std::span<const std::uint8_t> bytes, std::string name) {
    return Parser(bytes, std::move(name)).run();
}

Result<PurgatoryObject> PurgatoryObject::load(const std::filesystem::path& path) {
    auto file = open_regular_file(path, "the purgatory");
    if (!file) return file.error();
    if (file->size > kMaxObjectBytes)
        return plain_error(path.string(), std::to_string(file->size) + " bytes, more than a purgatory's " +
                                              std::to_string(kMaxObjectBytes));
    std::vector<std::uint8_t> bytes(file->size);
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t n = ::read(file->fd.get(), bytes.data() + done, bytes.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno_error(errno, path.string(), "cannot read");
        if (n == 0) return plain_error(path.string(), "shorter than it was when opened");
        done += static_cast<std::size_t>(n);
    }
    return parse(bytes, path.string());
}

std::optional<std::uint64_t> PurgatoryObject::symbol_offset(std::string_view name) const {
    for (const Symbol& s : symbols_) {
        if (s.name == name && s.shndx != SHN_ABS && s.shndx < section_offset_.size() &&
            section_offset_[s.shndx])
            return *section_offset_[s.shndx] + s.value;
    }
    return std::nullopt;
}

std::uint64_t PurgatoryObject::symbol_address(const Relocation& r, std::uint64_t base) const {
    const Symbol& s = symbols_[r.symbol];
    if (s.shndx == SHN_ABS) return s.value;
    return base + *section_offset_[s.shndx] + s.value;
}

Result<PlacedPurgatory> PurgatoryObject::place(std::uint64_t base, const PurgatoryPatch& patch) const {
    if (!loaded_) return plain_error(name_, "no purgatory object loaded");
    if (base % alignment_ != 0)
        return plain_error(name_, "base " + hex(base) + " is not aligned to " + hex(alignment_));
    if (base > UINT64_MAX - memsz_) return plain_error(name_, "base " + hex(base) + " leaves no room");
    if (patch.regions.empty() || patch.regions.size() > kPurgatoryMaxRegions)
        return plain_error(name_, std::to_string(patch.regions.size()) +
                                      " digest regions; the purgatory takes 1 to " +
                                      std::to_string(kPurgatoryMaxRegions));
    for (const DigestRegion& r : patch.regions) {
        if (r.size == 0 || r.start > UINT64_MAX - r.size)
            return plain_error(name_,
                               "digest region " + hex(r.start) + "+" + hex(r.size) +
                                   (r.size == 0 ? " is empty, and would end the list" : " wraps around"));
    }

    PlacedPurgatory out{image_, memsz_, base + entry_};
    for (const Relocation& r : relocations_) {
        const std::uint64_t s = symbol_address(r, base);
        // The value as the x86-64 psABI defines it (S + A, or S + A - P), in
        // 64-bit arithmetic as a linker computes it; a 32-bit field must then
        // give it back when zero-extended (32) or sign-extended (the others).
        std::uint64_t value = s + static_cast<std::uint64_t>(r.addend);
        if (r.type == R_X86_64_PC32 || r.type == R_X86_64_PLT32) value -= base + r.at;
        bool ok = true;
        if (r.type == R_X86_64_32)
            ok = value <= UINT32_MAX;
        else if (r.type != R_X86_64_64)
            ok = static_cast<std::int64_t>(value) >= INT32_MIN &&
                 static_cast<std::int64_t>(value) <= INT32_MAX;
        if (!ok)
            return plain_error(name_, r.where + ": " + reloc_label(r.type) +
                                          " does not reach its target from base " + hex(base) + " (" +
                                          hex(value) + " does not fit the field)");
        put_le(out.image, r.at, value, reloc_width(r.type));
    }

    put_le(out.image, patched_.kernel_entry, patch.kernel_entry, 8);
    put_le(out.image, patched_.boot_params, patch.boot_params, 8);
    std::copy(patch.digest.begin(), patch.digest.end(),
              out.image.begin() + static_cast<std::ptrdiff_t>(patched_.digest));
    for (std::size_t i = 0; i < kPurgatoryMaxRegions; ++i) {
        const DigestRegion r = i < patch.regions.size() ? patch.regions[i] : DigestRegion{};
        put_le(out.image, patched_.regions + i * kRegionBytes, r.start, 8);
        put_le(out.image, patched_.regions + i * kRegionBytes + 8, r.size, 8);
    }
    return out;
}

Result<Sha256Digest> sha256_of(std::span<const std::span<const std::uint8_t>> parts) {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
        return plain_error("", "SHA-256: OpenSSL: " + openssl_error());
    for (const auto& part : parts) {
        if (EVP_DigestUpdate(ctx.get(), part.data(), part.size()) != 1)
            return plain_error("", "SHA-256: OpenSSL: " + openssl_error());
    }
    Sha256Digest out{};
    unsigned len = 0;
    if (EVP_DigestFinal_ex(ctx.get(), out.data(), &len) != 1 || len != out.size())
        return plain_error("", "SHA-256: OpenSSL: " + openssl_error());
    return out;
}

}  // namespace khod
