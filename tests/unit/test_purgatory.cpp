// The purgatory loader: the real object as meson built it (KHOD_PURGATORY_OBJECT),
// placed at two bases and read back against the object's own relocations,
// which this test reads with libelf on its own; objects built here byte by
// byte that break one rule each; sha256_of against the FIPS 180-4 examples.
#include <elf.h>
#include <gelf.h>
#include <gtest/gtest.h>
#include <libelf.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <random>

#include "khod/base/hex.hpp"
#include "khod/crash/purgatory.hpp"
#include "tree.hpp"

using namespace khod;
using khod::test::TempTree;

namespace {

std::vector<std::uint8_t> slurp(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::uint64_t get_le(const std::vector<std::uint8_t>& b, std::uint64_t at, unsigned width) {
    std::uint64_t v = 0;
    for (unsigned i = width; i-- > 0;) v = (v << 8) | b.at(at + i);
    return v;
}

PurgatoryPatch sample_patch() {
    PurgatoryPatch p;
    p.kernel_entry = 0x7a000200;
    p.boot_params = 0x79ff0000;
    for (std::size_t i = 0; i < p.digest.size(); ++i) p.digest[i] = static_cast<std::uint8_t>(0xa0 + i);
    p.regions = {{0x79ff0000, 0x1000}, {0x7a000000, 0x1234567}, {0x7c000000, 0x89abcd}};
    return p;
}

const PurgatorySection* section_named(const PurgatoryObject& o, const std::string& name) {
    for (const auto& s : o.sections())
        if (s.name == name) return &s;
    return nullptr;
}

// The object's relocations of loaded sections, read here with libelf
// independently of the loader: where each field lands and what it must hold.
struct ExpectedReloc {
    std::uint64_t at = 0;  // from the base
    std::uint32_t type = 0;
    std::uint64_t target = 0;  // symbol offset from the base, + addend
};

std::vector<ExpectedReloc> object_relocations(std::vector<std::uint8_t> bytes,
                                              const PurgatoryObject& placed) {
    elf_version(EV_CURRENT);
    Elf* elf = elf_memory(reinterpret_cast<char*>(bytes.data()), bytes.size());
    EXPECT_NE(elf, nullptr);
    std::size_t shstrndx = 0;
    elf_getshdrstrndx(elf, &shstrndx);
    auto name_of = [&](std::size_t index) {
        GElf_Shdr sh;
        gelf_getshdr(elf_getscn(elf, index), &sh);
        return std::string(elf_strptr(elf, shstrndx, sh.sh_name));
    };
    std::vector<ExpectedReloc> out;
    for (Elf_Scn* scn = elf_nextscn(elf, nullptr); scn; scn = elf_nextscn(elf, scn)) {
        GElf_Shdr sh;
        gelf_getshdr(scn, &sh);
        if (sh.sh_type != SHT_RELA) continue;
        const PurgatorySection* target = section_named(placed, name_of(sh.sh_info));
        if (!target) continue;  // a section that is not loaded
        Elf_Data* symdata = elf_getdata(elf_getscn(elf, sh.sh_link), nullptr);
        Elf_Data* data = elf_getdata(scn, nullptr);
        for (std::size_t i = 0; i < sh.sh_size / sh.sh_entsize; ++i) {
            GElf_Rela r;
            GElf_Sym sym;
            gelf_getrela(data, static_cast<int>(i), &r);
            gelf_getsym(symdata, static_cast<int>(GELF_R_SYM(r.r_info)), &sym);
            const PurgatorySection* symsec = section_named(placed, name_of(sym.st_shndx));
            EXPECT_NE(symsec, nullptr);
            out.push_back({target->offset + r.r_offset, static_cast<std::uint32_t>(GELF_R_TYPE(r.r_info)),
                           symsec->offset + sym.st_value + static_cast<std::uint64_t>(r.r_addend)});
        }
    }
    elf_end(elf);
    return out;
}

PurgatoryObject real_object() {
    auto o = PurgatoryObject::load(KHOD_PURGATORY_OBJECT);
    EXPECT_TRUE(o) << o.error().describe();
    return o ? std::move(*o) : PurgatoryObject{};
}

TEST(PurgatoryReal, LaysOutEveryAllocatedSection) {
    const PurgatoryObject o = real_object();
    ASSERT_NE(section_named(o, ".text"), nullptr);
    ASSERT_NE(section_named(o, ".data"), nullptr);
    ASSERT_NE(section_named(o, ".bss"), nullptr);
    EXPECT_TRUE(section_named(o, ".text")->executable);
    EXPECT_TRUE(section_named(o, ".data")->writable);
    EXPECT_TRUE(section_named(o, ".bss")->nobits);
    // The stack is in .bss: past the image, inside memsz.
    EXPECT_GE(section_named(o, ".bss")->offset, o.filesz());
    EXPECT_LE(section_named(o, ".bss")->offset + section_named(o, ".bss")->size, o.memsz());
    EXPECT_EQ(o.memsz() % 4096, 0u);
    EXPECT_EQ(o.alignment(), 4096u);  // the page-aligned stack
    for (const auto& s : o.sections()) {
        EXPECT_LE(s.offset + s.size, s.nobits ? o.memsz() : o.filesz()) << s.name;
        for (const auto& t : o.sections())
            if (&s != &t && s.size && t.size) {
                EXPECT_TRUE(s.offset + s.size <= t.offset || t.offset + t.size <= s.offset)
                    << s.name << t.name;
            }
    }
}

TEST(PurgatoryReal, EntryIsTheStartOfTextCode) {
    const PurgatoryObject o = real_object();
    const auto* text = section_named(o, ".text");
    ASSERT_NE(text, nullptr);
    const auto entry = o.symbol_offset("khod_purgatory_start");
    ASSERT_TRUE(entry);
    EXPECT_GE(*entry, text->offset);
    EXPECT_LT(*entry, text->offset + text->size);
    auto placed = o.place(0x7b000000, sample_patch());
    ASSERT_TRUE(placed) << placed.error().describe();
    EXPECT_EQ(placed->entry, 0x7b000000 + *entry);
    EXPECT_EQ(placed->image.at(*entry), 0xfa);      // cli
    EXPECT_EQ(placed->image.at(*entry + 1), 0xfc);  // cld
}

TEST(PurgatoryReal, RelocationsMoveExactlyWithTheBase) {
    const PurgatoryObject o = real_object();
    const std::uint64_t low = 0x20000000, high = 0x13fe00000;  // below and above 4 GiB
    auto a = o.place(low, sample_patch());
    auto b = o.place(high, sample_patch());
    ASSERT_TRUE(a) << a.error().describe();
    ASSERT_TRUE(b) << b.error().describe();
    ASSERT_EQ(a->image.size(), o.filesz());
    ASSERT_EQ(b->image.size(), o.filesz());
    EXPECT_EQ(a->memsz, o.memsz());

    std::vector<bool> relocated(o.filesz(), false);
    std::map<std::uint32_t, int> seen;
    for (const auto& r : object_relocations(slurp(KHOD_PURGATORY_OBJECT), o)) {
        ++seen[r.type];
        if (r.type == R_X86_64_64) {
            EXPECT_EQ(get_le(a->image, r.at, 8), low + r.target) << hex(r.at);
            EXPECT_EQ(get_le(b->image, r.at, 8) - get_le(a->image, r.at, 8), high - low) << hex(r.at);
        } else {
            ASSERT_TRUE(r.type == R_X86_64_PC32 || r.type == R_X86_64_PLT32) << "type " << r.type;
            const auto rel = static_cast<std::uint32_t>(r.target - r.at);
            EXPECT_EQ(get_le(a->image, r.at, 4), rel) << hex(r.at);
            EXPECT_EQ(get_le(b->image, r.at, 4), rel) << hex(r.at);
        }
        for (unsigned i = 0; i < (r.type == R_X86_64_64 ? 8u : 4u); ++i) relocated[r.at + i] = true;
    }
    EXPECT_GT(seen[R_X86_64_64], 0);     // the large code model's absolute addresses
    EXPECT_GT(seen[R_X86_64_PC32], 0);   // entry.S's RIP-relative operands
    EXPECT_GT(seen[R_X86_64_PLT32], 0);  // its call into C
    // Everything else is the same at both bases.
    std::size_t same = 0;
    for (std::size_t i = 0; i < o.filesz(); ++i)
        if (!relocated[i]) same += a->image[i] == b->image[i];
    EXPECT_EQ(same, static_cast<std::size_t>(std::count(relocated.begin(), relocated.end(), false)));
}

TEST(PurgatoryReal, PatchedSymbolsReadBack) {
    const PurgatoryObject o = real_object();
    const PurgatoryPatch p = sample_patch();
    auto placed = o.place(0x7b000000, p);
    ASSERT_TRUE(placed) << placed.error().describe();
    const auto& img = placed->image;
    EXPECT_EQ(get_le(img, *o.symbol_offset("khod_kernel_entry"), 8), p.kernel_entry);
    EXPECT_EQ(get_le(img, *o.symbol_offset("khod_boot_params"), 8), p.boot_params);
    const auto digest = *o.symbol_offset("khod_digest");
    EXPECT_TRUE(
        std::equal(p.digest.begin(), p.digest.end(), img.begin() + static_cast<std::ptrdiff_t>(digest)));
    const auto regions = *o.symbol_offset("khod_regions");
    for (std::size_t i = 0; i < kPurgatoryMaxRegions; ++i) {
        const DigestRegion want = i < p.regions.size() ? p.regions[i] : DigestRegion{};
        EXPECT_EQ(get_le(img, regions + 16 * i, 8), want.start) << i;
        EXPECT_EQ(get_le(img, regions + 16 * i + 8, 8), want.size) << i;
    }
}

// rpm's brp-strip runs `strip -g` on the installed object; --strip-unneeded
// removes more. Either way the globals khod patches stay and it places the same.
TEST(PurgatoryReal, StrippedObjectPlacesTheSame) {
    const auto original = real_object().place(0x13fe00000, sample_patch());
    ASSERT_TRUE(original) << original.error().describe();
    for (const char* how : {"-g", "--strip-unneeded"}) {
        SCOPED_TRACE(how);
        TempTree tree;
        const auto copy = tree.root() / "purgatory.o";
        std::filesystem::copy_file(KHOD_PURGATORY_OBJECT, copy);
        std::string path = copy.string();
        char* argv[] = {const_cast<char*>(KHOD_STRIP), const_cast<char*>(how), path.data(), nullptr};
        pid_t pid = 0;
        ASSERT_EQ(posix_spawn(&pid, KHOD_STRIP, nullptr, nullptr, argv, environ), 0);
        int status = 0;
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        ASSERT_NE(slurp(copy), slurp(KHOD_PURGATORY_OBJECT));  // strip did change the file

        auto stripped = PurgatoryObject::load(copy);
        ASSERT_TRUE(stripped) << stripped.error().describe();
        auto placed = stripped->place(0x13fe00000, sample_patch());
        ASSERT_TRUE(placed) << placed.error().describe();
        EXPECT_EQ(placed->image, original->image);
        EXPECT_EQ(placed->entry, original->entry);
        EXPECT_EQ(placed->memsz, original->memsz);
    }
}

TEST(PurgatoryReal, PlaceRefusesBadArguments) {
    const PurgatoryObject o = real_object();
    EXPECT_FALSE(o.place(0x7b000800, sample_patch()));          // not page aligned
    EXPECT_FALSE(o.place(UINT64_MAX - 0xfff, sample_patch()));  // no room
    PurgatoryPatch p = sample_patch();
    p.regions.clear();
    EXPECT_FALSE(o.place(0x7b000000, p));
    p.regions.assign(kPurgatoryMaxRegions + 1, DigestRegion{0x1000, 0x1000});
    EXPECT_FALSE(o.place(0x7b000000, p));
    p.regions.assign(kPurgatoryMaxRegions, DigestRegion{0x1000, 0x1000});
    EXPECT_TRUE(o.place(0x7b000000, p));
    p.regions = {{0x1000, 0x1000}, {0x3000, 0}, {0x5000, 0x1000}};  // 0 would end the list early
    EXPECT_FALSE(o.place(0x7b000000, p));
    p.regions = {{UINT64_MAX - 0xfff, 0x2000}};
    EXPECT_FALSE(o.place(0x7b000000, p));
    EXPECT_FALSE(PurgatoryObject{}.place(0x7b000000, sample_patch()));
}

TEST(PurgatoryReal, LoadNamesTheFile) {
    auto missing = PurgatoryObject::load("/nonexistent/purgatory.o");
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ENOENT);
    EXPECT_NE(missing.error().describe().find("/nonexistent/purgatory.o"), std::string::npos);
    auto dir = PurgatoryObject::load("/");
    EXPECT_FALSE(dir);
}

// A relocatable object written field by field: .text, .data with the five
// patched symbols at their sizes, .bss, .rela.text; each test breaks one thing.
struct TestObject {
    struct Sym {
        std::string name;
        std::uint16_t shndx = 0;
        std::uint64_t value = 0, size = 0;
        unsigned char info = ELF64_ST_INFO(STB_GLOBAL, STT_OBJECT);
    };
    // Section indices.
    static constexpr std::uint16_t kText = 1, kData = 2, kBss = 3, kRela = 4, kSymtab = 5, kStrtab = 6,
                                   kShstrtab = 7, kCount = 8;
    std::uint16_t type = ET_REL, machine = EM_X86_64;
    std::vector<std::uint8_t> text = std::vector<std::uint8_t>(64, 0x90);
    std::uint64_t data_size = 8 + 8 + 32 + 256, bss_size = 0x1000;
    std::vector<Sym> syms = {
        {"", kText, 0, 0, ELF64_ST_INFO(STB_LOCAL, STT_SECTION)},
        {"", kData, 0, 0, ELF64_ST_INFO(STB_LOCAL, STT_SECTION)},
        {"khod_purgatory_start", kText, 0, 16, ELF64_ST_INFO(STB_GLOBAL, STT_FUNC)},
        {"khod_kernel_entry", kData, 0, 8},
        {"khod_boot_params", kData, 8, 8},
        {"khod_digest", kData, 16, 32},
        {"khod_regions", kData, 48, 256},
    };
    std::vector<Elf64_Rela> relas;
    std::uint16_t rela_target = kText;  // the section relas relocate
    std::uint32_t sym_index(const std::string& name) const {
        for (std::size_t i = 0; i < syms.size(); ++i)
            if (syms[i].name == name) return static_cast<std::uint32_t>(i + 1);
        return 0;
    }
    void reloc(std::uint64_t at, std::uint32_t rtype, std::uint32_t sym, std::int64_t addend = 0) {
        relas.push_back({at, ELF64_R_INFO(sym, rtype), addend});
    }

    std::vector<std::uint8_t> bytes() const {
        std::vector<std::uint8_t> out(sizeof(Elf64_Ehdr));
        auto append = [&out](const void* p, std::size_t n, std::size_t align) {
            out.resize((out.size() + align - 1) / align * align);
            const std::size_t at = out.size();
            out.insert(out.end(), static_cast<const std::uint8_t*>(p),
                       static_cast<const std::uint8_t*>(p) + n);
            return at;
        };
        std::string strtab(1, '\0'), shstrtab(1, '\0');
        auto name_in = [](std::string& table, const std::string& n) {
            if (n.empty()) return std::uint32_t{0};
            const auto at = static_cast<std::uint32_t>(table.size());
            table += n + '\0';
            return at;
        };
        std::vector<Elf64_Sym> symtab(1, Elf64_Sym{});
        std::uint32_t first_global = 0;
        for (const Sym& s : syms) {
            if (!first_global && ELF64_ST_BIND(s.info) != STB_LOCAL)
                first_global = static_cast<std::uint32_t>(symtab.size());
            symtab.push_back({name_in(strtab, s.name), s.info, 0, s.shndx, s.value, s.size});
        }
        const std::vector<std::uint8_t> data(data_size, 0);
        std::vector<Elf64_Shdr> sh(kCount, Elf64_Shdr{});
        auto section = [&](std::uint16_t i, const char* n, std::uint32_t t, std::uint64_t flags,
                           std::uint64_t off, std::uint64_t size, std::uint64_t align) {
            sh[i] = Elf64_Shdr{name_in(shstrtab, n), t, flags, 0, off, size, 0, 0, align, 0};
        };
        section(kText, ".text", SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, append(text.data(), text.size(), 16),
                text.size(), 16);
        section(kData, ".data", SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, append(data.data(), data.size(), 8),
                data.size(), 8);
        section(kBss, ".bss", SHT_NOBITS, SHF_ALLOC | SHF_WRITE, out.size(), bss_size, 4096);
        section(kRela, rela_target == kText ? ".rela.text" : ".rela.data", SHT_RELA, SHF_INFO_LINK,
                append(relas.data(), relas.size() * sizeof(Elf64_Rela), 8), relas.size() * sizeof(Elf64_Rela),
                8);
        sh[kRela].sh_link = kSymtab;
        sh[kRela].sh_info = rela_target;
        sh[kRela].sh_entsize = sizeof(Elf64_Rela);
        section(kSymtab, ".symtab", SHT_SYMTAB, 0,
                append(symtab.data(), symtab.size() * sizeof(Elf64_Sym), 8),
                symtab.size() * sizeof(Elf64_Sym), 8);
        sh[kSymtab].sh_link = kStrtab;
        sh[kSymtab].sh_info = first_global;
        sh[kSymtab].sh_entsize = sizeof(Elf64_Sym);
        section(kStrtab, ".strtab", SHT_STRTAB, 0, append(strtab.data(), strtab.size(), 1), strtab.size(), 1);
        const std::uint32_t shname = name_in(shstrtab, ".shstrtab");
        sh[kShstrtab] =
            Elf64_Shdr{shname,          SHT_STRTAB, 0, 0, append(shstrtab.data(), shstrtab.size(), 1),
                       shstrtab.size(), 0,          0, 1, 0};
        const std::size_t shoff = append(sh.data(), sh.size() * sizeof(Elf64_Shdr), 8);

        Elf64_Ehdr eh{};
        std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
        eh.e_ident[EI_CLASS] = ELFCLASS64;
        eh.e_ident[EI_DATA] = ELFDATA2LSB;
        eh.e_ident[EI_VERSION] = EV_CURRENT;
        eh.e_type = type;
        eh.e_machine = machine;
        eh.e_version = EV_CURRENT;
        eh.e_shoff = shoff;
        eh.e_ehsize = sizeof(Elf64_Ehdr);
        eh.e_shentsize = sizeof(Elf64_Shdr);
        eh.e_shnum = kCount;
        eh.e_shstrndx = kShstrtab;
        std::memcpy(out.data(), &eh, sizeof eh);
        return out;
    }
};

Result<PurgatoryObject> parse(const TestObject& t) {
    return PurgatoryObject::parse(t.bytes(), "test.o");
}

// The message of a parse that must fail.
std::string parse_error(const std::vector<std::uint8_t>& bytes) {
    auto r = PurgatoryObject::parse(bytes, "test.o");
    EXPECT_FALSE(r) << "parsed";
    return r ? std::string() : r.error().describe();
}
std::string parse_error(const TestObject& t) {
    return parse_error(t.bytes());
}

#define EXPECT_MENTIONS(text, part) EXPECT_NE((text).find(part), std::string::npos) << (text)

TEST(PurgatoryBuilt, TheTestObjectParses) {
    TestObject t;
    t.reloc(2, R_X86_64_64, t.sym_index("khod_digest"), 4);
    auto o = parse(t);
    ASSERT_TRUE(o) << o.error().describe();
    EXPECT_EQ(o->filesz(), 64u + 304u);
    EXPECT_EQ(o->memsz(), 0x2000u);  // .bss at 0x1000 (its alignment), 0x1000 long
    auto placed = o->place(0x100000000, sample_patch());
    ASSERT_TRUE(placed) << placed.error().describe();
    EXPECT_EQ(get_le(placed->image, 2, 8), 0x100000000 + 64 + 16 + 4);  // .data follows .text
}

TEST(PurgatoryBuilt, EachRelocationTypeComputesItsValue) {
    TestObject t;
    t.syms.push_back({"far", SHN_ABS, 0xfffffffff0000000, 0, ELF64_ST_INFO(STB_LOCAL, STT_NOTYPE)});
    t.reloc(0, R_X86_64_PC32, t.sym_index("khod_boot_params"), -4);
    t.reloc(4, R_X86_64_PLT32, t.sym_index("khod_purgatory_start"), -4);
    t.reloc(8, R_X86_64_32, 2, 0x10);  // the .data section symbol
    t.reloc(12, R_X86_64_32S, t.sym_index("far"), 0x20);
    t.reloc(16, R_X86_64_64, t.sym_index("far"), -1);
    auto o = parse(t);
    ASSERT_TRUE(o) << o.error().describe();
    const std::uint64_t base = 0x7f000000;
    auto p = o->place(base, sample_patch());
    ASSERT_TRUE(p) << p.error().describe();
    EXPECT_EQ(get_le(p->image, 0, 4), 64u + 8 - 4 - 0);                        // S + A - P, .data at 64
    EXPECT_EQ(get_le(p->image, 4, 4), static_cast<std::uint32_t>(0 - 4 - 4));  // back to the start
    EXPECT_EQ(get_le(p->image, 8, 4), base + 64 + 0x10);
    EXPECT_EQ(get_le(p->image, 12, 4), 0xf0000020u);  // sign-extends back to 0xfffffffff0000020
    EXPECT_EQ(get_le(p->image, 16, 8), 0xffffffffefffffffu);
}

TEST(PurgatoryBuilt, ThirtyTwoBitRelocationsThatDoNotFitAreErrors) {
    TestObject t;
    t.reloc(8, R_X86_64_32, 2, 0);
    auto o = parse(t);
    ASSERT_TRUE(o) << o.error().describe();
    EXPECT_TRUE(o->place(0xfffff000 - 0x2000, sample_patch()));  // just below 4 GiB
    auto high = o->place(0x100000000, sample_patch());
    ASSERT_FALSE(high);
    EXPECT_MENTIONS(high.error().describe(), "R_X86_64_32");
    EXPECT_MENTIONS(high.error().describe(), ".text+0x8");

    TestObject s;  // 32S: up to 2 GiB - 1 only
    s.reloc(8, R_X86_64_32S, 2, 0);
    auto os = parse(s);
    ASSERT_TRUE(os);
    EXPECT_TRUE(os->place(0x7fff0000, sample_patch()));
    EXPECT_FALSE(os->place(0x80000000, sample_patch()));

    TestObject pc;  // PC32 to an absolute address more than 2 GiB away
    pc.syms.push_back({"low", SHN_ABS, 0x1000, 0, ELF64_ST_INFO(STB_LOCAL, STT_NOTYPE)});
    pc.reloc(0, R_X86_64_PC32, pc.sym_index("low"), -4);
    auto op = parse(pc);
    ASSERT_TRUE(op);
    EXPECT_TRUE(op->place(0x40000000, sample_patch()));
    EXPECT_FALSE(op->place(0x100000000, sample_patch()));
}

TEST(PurgatoryBuilt, UnknownRelocationTypeIsNamed) {
    TestObject t;
    t.reloc(0, R_X86_64_GOTPCREL, t.sym_index("khod_digest"), -4);
    EXPECT_MENTIONS(parse_error(t), "R_X86_64_GOTPCREL");
    TestObject u;
    u.reloc(0, 200, t.sym_index("khod_digest"));
    EXPECT_MENTIONS(parse_error(u), "relocation type 200");
}

TEST(PurgatoryBuilt, RelocationOutsideItsSection) {
    TestObject t;
    t.reloc(60, R_X86_64_64, 2);  // 60 + 8 > 64
    EXPECT_MENTIONS(parse_error(t), "past the end of .text");
    TestObject u;
    u.reloc(60, R_X86_64_PC32, 2);  // 60 + 4 == 64: fits
    EXPECT_TRUE(parse(u));
    TestObject v;
    v.reloc(UINT64_MAX - 2, R_X86_64_32, 2);  // offset + width wraps
    EXPECT_MENTIONS(parse_error(v), "past the end");
}

TEST(PurgatoryBuilt, RelocationSymbolOutOfRange) {
    TestObject t;
    t.reloc(0, R_X86_64_64, 99);
    EXPECT_MENTIONS(parse_error(t), "symbol index 99");
    TestObject u;
    u.reloc(0, R_X86_64_64, 0);
    EXPECT_MENTIONS(parse_error(u), "symbol index 0");
}

TEST(PurgatoryBuilt, RelocationUnderAPatchedSymbolIsRefused) {
    TestObject t;
    t.rela_target = TestObject::kData;
    t.data_size += 8;
    t.reloc(48 + 256 - 4, R_X86_64_64, 1);  // the last 4 bytes of khod_regions and 4 past them
    EXPECT_MENTIONS(parse_error(t), "relocates bytes of a symbol khod patches");
    TestObject u;
    u.rela_target = TestObject::kData;
    u.reloc(48 + 256, R_X86_64_64, 1);  // just after khod_regions
    EXPECT_MENTIONS(parse_error(u), "past the end of .data");
    TestObject v;
    v.rela_target = TestObject::kData;
    v.data_size += 8;
    v.reloc(48 + 256, R_X86_64_64, 1);
    EXPECT_TRUE(parse(v));
}

TEST(PurgatoryBuilt, PatchedSymbolsMustBeThereAtTheirSizesInData) {
    TestObject missing;
    missing.syms.pop_back();
    EXPECT_MENTIONS(parse_error(missing), "no symbol khod_regions");
    TestObject small;
    small.syms[small.sym_index("khod_digest") - 1].size = 16;
    EXPECT_MENTIONS(parse_error(small), "khod_digest is 16 bytes, not 32");
    TestObject in_bss;
    in_bss.syms[in_bss.sym_index("khod_boot_params") - 1] = {"khod_boot_params", TestObject::kBss, 0, 8};
    EXPECT_MENTIONS(parse_error(in_bss), "khod_boot_params is in .bss");
    TestObject entry_in_data;
    entry_in_data.syms[entry_in_data.sym_index("khod_purgatory_start") - 1] = {"khod_purgatory_start",
                                                                               TestObject::kData, 0, 0};
    EXPECT_MENTIONS(parse_error(entry_in_data), "khod_purgatory_start is not in code");
    TestObject twice;
    twice.syms.push_back({"khod_digest", TestObject::kData, 16, 32});
    EXPECT_MENTIONS(parse_error(twice), "defined twice");
    TestObject outside;
    outside.syms[outside.sym_index("khod_regions") - 1].value = 100;  // 100 + 256 > 304
    EXPECT_MENTIONS(parse_error(outside), "lies outside .data");
}

TEST(PurgatoryBuilt, UndefinedSymbolsAreRefused) {
    TestObject t;
    t.syms.push_back({"memcpy", SHN_UNDEF, 0, 0, ELF64_ST_INFO(STB_GLOBAL, STT_NOTYPE)});
    EXPECT_MENTIONS(parse_error(t), "symbol memcpy is undefined");
    TestObject c;
    c.syms.push_back({"shared", SHN_COMMON, 8, 8});
    EXPECT_MENTIONS(parse_error(c), "-fno-common");
}

TEST(PurgatoryBuilt, WrongKindOfElf) {
    TestObject exec;
    exec.type = ET_EXEC;
    EXPECT_MENTIONS(parse_error(exec), "not ET_REL");
    TestObject dyn;
    dyn.type = ET_DYN;
    EXPECT_MENTIONS(parse_error(dyn), "not ET_REL");
    TestObject arm;
    arm.machine = EM_AARCH64;
    EXPECT_MENTIONS(parse_error(arm), "not x86-64");
    auto class32 = TestObject{}.bytes();
    class32[EI_CLASS] = ELFCLASS32;
    EXPECT_MENTIONS(parse_error(class32), "ELFCLASS64");
    auto big = TestObject{}.bytes();
    big[EI_DATA] = ELFDATA2MSB;
    EXPECT_MENTIONS(parse_error(big), "little-endian");
    EXPECT_MENTIONS(parse_error(std::vector<std::uint8_t>{'#', '!', '/', 'b', 'i', 'n'}),
                    "not an ELF object");
    EXPECT_MENTIONS(parse_error(std::vector<std::uint8_t>{}), "not an ELF object");
}

TEST(PurgatoryBuilt, TruncatedAnywhere) {
    TestObject t;
    t.reloc(0, R_X86_64_64, 2);
    const auto whole = t.bytes();
    ASSERT_TRUE(PurgatoryObject::parse(whole, "test.o"));
    // Every cut fails cleanly: in the header, the sections, or their table at the end.
    for (std::size_t len = 0; len < whole.size(); ++len) {
        const std::vector<std::uint8_t> cut(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(len));
        EXPECT_FALSE(PurgatoryObject::parse(cut, "test.o")) << len;
    }
    EXPECT_MENTIONS(parse_error(std::vector<std::uint8_t>(whole.begin(), whole.begin() + 40)), "truncated");
}

TEST(PurgatoryBuilt, SectionOutsideTheFile) {
    TestObject t;
    auto b = t.bytes();
    Elf64_Ehdr eh;
    std::memcpy(&eh, b.data(), sizeof eh);
    Elf64_Shdr text;
    const std::size_t at = eh.e_shoff + TestObject::kText * sizeof(Elf64_Shdr);
    std::memcpy(&text, b.data() + at, sizeof text);
    text.sh_size = b.size();  // from its offset, past the end
    std::memcpy(b.data() + at, &text, sizeof text);
    EXPECT_MENTIONS(parse_error(b), "past the end of the file");
}

TEST(PurgatoryBuilt, OversizedOrMisalignedSections) {
    TestObject huge;
    huge.bss_size = 1ull << 40;
    EXPECT_MENTIONS(parse_error(huge), "more than");
    auto b = TestObject{}.bytes();
    Elf64_Ehdr eh;
    std::memcpy(&eh, b.data(), sizeof eh);
    Elf64_Shdr data;
    const std::size_t at = eh.e_shoff + TestObject::kData * sizeof(Elf64_Shdr);
    std::memcpy(&data, b.data() + at, sizeof data);
    data.sh_addralign = 24;
    std::memcpy(b.data() + at, &data, sizeof data);
    EXPECT_MENTIONS(parse_error(b), "power of two");
}

TEST(PurgatoryBuilt, RealObjectMutated) {
    const auto real = slurp(KHOD_PURGATORY_OBJECT);
    ASSERT_GT(real.size(), sizeof(Elf64_Ehdr));
    auto exec = real;
    exec[offsetof(Elf64_Ehdr, e_type)] = ET_EXEC;
    EXPECT_MENTIONS(parse_error(exec), "not ET_REL");
    auto machine = real;
    machine[offsetof(Elf64_Ehdr, e_machine)] = EM_386;
    EXPECT_MENTIONS(parse_error(machine), "not x86-64");
    for (std::size_t len : {std::size_t{10}, std::size_t{63}, real.size() / 2, real.size() - 1})
        EXPECT_FALSE(PurgatoryObject::parse(std::span(real.data(), len), "cut")) << len;
}

// Damaged objects: each either parses into one that places within its own
// sizes, or fails with a message (the ASan tier runs this too).
TEST(PurgatoryBuilt, RandomDamageParsesOrFailsCleanly) {
    const auto real = slurp(KHOD_PURGATORY_OBJECT);
    std::mt19937_64 rng(0x70757267);
    int parsed = 0;
    for (int round = 0; round < 3000; ++round) {
        auto b = real;
        const int flips = 1 + static_cast<int>(rng() % 8);
        for (int i = 0; i < flips; ++i) b[rng() % b.size()] = static_cast<std::uint8_t>(rng());
        auto o = PurgatoryObject::parse(b, "damaged");
        if (!o) {
            EXPECT_FALSE(o.error().message.empty());
            continue;
        }
        ++parsed;
        auto p = o->place(0x7b000000, sample_patch());
        if (p) {
            EXPECT_EQ(p->image.size(), o->filesz());
            EXPECT_GE(p->memsz, p->image.size());
            EXPECT_LT(p->entry, 0x7b000000 + o->memsz());
        }
    }
    EXPECT_GT(parsed, 0);  // damage to bytes nobody reads (code, names) still parses
}

// FIPS 180-4 examples (csrc.nist.gov, SHA256.pdf), and the parts being one stream.
TEST(Sha256Of, KnownVectors) {
    auto hash = [](std::initializer_list<std::string_view> parts) {
        std::vector<std::span<const std::uint8_t>> spans;
        for (auto p : parts) spans.emplace_back(reinterpret_cast<const std::uint8_t*>(p.data()), p.size());
        auto d = sha256_of(spans);
        EXPECT_TRUE(d);
        std::string out;
        for (auto b : *d) out += "0123456789abcdef"[b >> 4], out += "0123456789abcdef"[b & 15];
        return out;
    };
    EXPECT_EQ(hash({}), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(hash({"abc"}), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(hash({"a", "", "bc"}), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(hash({"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"}),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const std::string million(1000000, 'a');
    EXPECT_EQ(hash({std::string_view(million).substr(0, 333333), std::string_view(million).substr(333333)}),
              "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

}  // namespace
