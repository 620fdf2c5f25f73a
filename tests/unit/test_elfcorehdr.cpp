// The elfcorehdr (lib/khod/crash/core_layout, core_header): built from the
// crash-7.2 tree, a capture from the shared 7.2.13 kernel, and checked field
// by field against crash_prepare_elf64_headers() and against the header that
// same kernel built for itself in that boot (crash-7.2-capture: the head of
// /proc/vmcore after a kexec_file_load crash kernel took over). Then the
// reader on crafted, truncated and hostile files.
#include <elf.h>
#include <fcntl.h>
#include <gelf.h>
#include <gtest/gtest.h>
#include <libelf.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "khod/base/fd.hpp"
#include "khod/crash/core_header.hpp"
#include "khod/crash/core_layout.hpp"
#include "tree.hpp"

using namespace khod;
using khod::test::fixture;
using khod::test::TempTree;

namespace {

constexpr std::uint64_t MiB = 1ull << 20;
constexpr std::uint64_t GiB = 1ull << 30;

std::string slurp(const std::filesystem::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

std::uint64_t hex_file(const std::filesystem::path& p) {
    return std::stoull(slurp(p), nullptr, 16);
}

// What crash-7.2 shows, read here from its files so the test does not just
// repeat the code: cpuN/crash_notes is "%llx", crash_notes_size decimal.
CoreNote fixture_note(unsigned cpu) {
    const auto dir = fixture("crash-7.2") / "sys/devices/system/cpu" / ("cpu" + std::to_string(cpu));
    return {hex_file(dir / "crash_notes"), std::stoull(slurp(dir / "crash_notes_size"))};
}

Result<CoreLayout> fixture_layout() {
    return read_core_layout(Sysroot(fixture("crash-7.2")));
}

// /proc/vmcore as the capture kernel had it: the bytes kept, at the real size (sparse).
class SparseVmcore {
public:
    SparseVmcore() {
        const auto dir = fixture("crash-7.2-capture");
        path_ = std::filesystem::temp_directory_path() / ("khod-vmcore-" + std::to_string(::getpid()));
        std::filesystem::copy_file(dir / "proc/vmcore", path_,
                                   std::filesystem::copy_options::overwrite_existing);
        std::filesystem::resize_file(path_, std::stoull(slurp(dir / "VMCORE_SIZE")));
    }
    ~SparseVmcore() { std::filesystem::remove(path_); }
    const std::filesystem::path& path() const { return path_; }

private:
    std::filesystem::path path_;
};

std::uint64_t rchar() {
    std::ifstream io("/proc/self/io");
    std::string key;
    std::uint64_t value = 0;
    while (io >> key >> value)
        if (key == "rchar:") return value;
    return 0;
}

// A little ELF64 core written by hand, to break.
struct Crafted {
    Elf64_Ehdr eh{};
    std::vector<Elf64_Phdr> phdrs;
    std::vector<std::uint8_t> tail;  // after the program headers

    Crafted() {
        std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
        eh.e_ident[EI_CLASS] = ELFCLASS64;
        eh.e_ident[EI_DATA] = ELFDATA2LSB;
        eh.e_ident[EI_VERSION] = EV_CURRENT;
        eh.e_type = ET_CORE;
        eh.e_machine = EM_X86_64;
        eh.e_version = EV_CURRENT;
        eh.e_phoff = sizeof(Elf64_Ehdr);
        eh.e_ehsize = sizeof(Elf64_Ehdr);
        eh.e_phentsize = sizeof(Elf64_Phdr);
    }
    std::uint64_t data_offset() const { return sizeof(Elf64_Ehdr) + phdrs.size() * sizeof(Elf64_Phdr); }
    // A PT_NOTE over the notes in tail, which follows the program headers.
    void add_notes(const std::vector<std::uint8_t>& notes) {
        Elf64_Phdr p{};
        p.p_type = PT_NOTE;
        p.p_filesz = p.p_memsz = notes.size();
        phdrs.push_back(p);
        for (auto& q : phdrs)
            if (q.p_type == PT_NOTE) q.p_offset = data_offset() + tail.size();
        tail.insert(tail.end(), notes.begin(), notes.end());
    }
    std::vector<std::uint8_t> bytes() const {
        Elf64_Ehdr h = eh;
        if (h.e_phnum == 0) h.e_phnum = static_cast<std::uint16_t>(phdrs.size());
        std::vector<std::uint8_t> out(sizeof h);
        std::memcpy(out.data(), &h, sizeof h);
        for (const auto& p : phdrs) {
            const auto* b = reinterpret_cast<const std::uint8_t*>(&p);
            out.insert(out.end(), b, b + sizeof p);
        }
        out.insert(out.end(), tail.begin(), tail.end());
        return out;
    }
};

void put_note(std::vector<std::uint8_t>& out, const std::string& name, std::uint32_t type,
              const std::vector<std::uint8_t>& desc, std::uint32_t namesz_override = 0,
              std::uint32_t descsz_override = 0) {
    Elf64_Nhdr nh{namesz_override ? namesz_override : static_cast<std::uint32_t>(name.size() + 1),
                  descsz_override ? descsz_override : static_cast<std::uint32_t>(desc.size()), type};
    const auto* h = reinterpret_cast<const std::uint8_t*>(&nh);
    out.insert(out.end(), h, h + sizeof nh);
    out.insert(out.end(), name.begin(), name.end());
    out.resize((out.size() + 1 + 3) & ~std::size_t{3}, 0);
    out.insert(out.end(), desc.begin(), desc.end());
    out.resize((out.size() + 3) & ~std::size_t{3}, 0);
}

std::string error_of(const std::vector<std::uint8_t>& bytes) {
    auto r = read_core_header(bytes, "crafted");
    return r ? std::string() : r.error().describe();
}

}  // namespace

// ---------------------------------------------------------------------------
// What the kernel puts in: /proc/iomem's RAM and what it cuts out.

TEST(CoreRanges, EverySystemRamResourceAtAnyDepthButNotInsideOneTaken) {
    auto iomem = parse_iomem(
        "00001000-0009fbff : System RAM\n"
        "00100000-3ffdffff : System RAM\n"
        "  01000000-01ffffff : Kernel code\n"
        "  2f000000-3effffff : Crash kernel\n"
        "100000000-13fffffff : System RAM\n"
        "140000000-1bfffffff : dax0.0\n"
        "  140000000-17fffffff : System RAM (kmem)\n"
        "180000000-1bfffffff : virtio0\n"
        "  180000000-187ffffff : System RAM (virtio_mem)\n"
        "  188000000-18fffffff : System RAMBO\n",
        "iomem");
    ASSERT_TRUE(iomem) << iomem.error().describe();
    const std::vector<PhysRange> want{{0x1000, 0x9fc00},
                                      {0x100000, 0x3ffe0000},
                                      {0x100000000, 0x140000000},
                                      {0x140000000, 0x180000000},
                                      {0x180000000, 0x188000000}};
    EXPECT_EQ(core_ram_ranges(*iomem), want);
}

TEST(CoreRanges, ExcludingDropsTrimsAndSplitsAsCrashExcludeMemRange) {
    const std::vector<PhysRange> ram{{0x1000, 0x9fc00}, {0x100000, 0x40000000}, {0x100000000, 0x200000000}};
    const std::vector<PhysRange> cut{
        {0, MiB}, {0x2f000000, 0x3f000000}, {0x100000000, 0x110000000}, {0x1f0000000, 0x210000000}};
    const std::vector<PhysRange> want{
        {0x100000, 0x2f000000}, {0x3f000000, 0x40000000}, {0x110000000, 0x1f0000000}};
    EXPECT_EQ(exclude_ranges(ram, cut), want);
}

// ---------------------------------------------------------------------------
// The layout of the captured boot.

TEST(CoreLayout, ReadFromTheCapturedTree) {
    auto layout = fixture_layout();
    ASSERT_TRUE(layout) << layout.error().describe();
    // possible 0-2 and all three present (cpu2 offline keeps its buffer).
    ASSERT_EQ(layout->cpu_notes.size(), 3u);
    for (unsigned cpu = 0; cpu < 3; ++cpu) {
        EXPECT_EQ(layout->cpu_notes[cpu].first, cpu);
        EXPECT_EQ(layout->cpu_notes[cpu].second, fixture_note(cpu));
        EXPECT_EQ(layout->cpu_notes[cpu].second.size, 368u);  // sizeof(note_buf_t) on 7.2
    }
    EXPECT_TRUE(layout->cpus_without_notes.empty());
    // /sys/kernel/vmcoreinfo "0x00000000018a4000 1024": VMCOREINFO_NOTE_SIZE 0x1024.
    EXPECT_EQ(layout->vmcoreinfo, (CoreNote{0x18a4000, 0x1024}));
    // iomem: System RAM 0x1000-0x9fbff and 0x100000-0x3ffdffff, Crash kernel 0x2f000000-0x3effffff.
    const std::vector<PhysRange> ram{{0x100000, 0x2f000000}, {0x3f000000, 0x3ffe0000}};
    EXPECT_EQ(layout->ram, ram);
    const std::vector<PhysRange> cut{{0, MiB}, {0x2f000000, 0x3f000000}};
    EXPECT_EQ(layout->excluded, cut);
    // The kernel text from /proc/kcore: at "Kernel code" in iomem, at the kernel
    // map plus the KASLR offset the capture's VMCOREINFO names (KERNELOFFSET=16000000).
    ASSERT_TRUE(layout->kernel_text);
    EXPECT_EQ(layout->kernel_text->paddr, 0x25800000u);
    EXPECT_EQ(layout->kernel_text->vaddr, 0xffffffff81000000u + 0x16000000u);
    EXPECT_EQ(layout->kernel_text->size, 0x2079000u);
    EXPECT_EQ(layout->page_offset, 0xff3e5b9140000000u);  // 5-level paging (-cpu max has la57), randomized
}

TEST(CoreLayout, PossibleCpusThatAreNotPresentHaveNoNotesAndAreListed) {
    TempTree t;
    t.copy_from(fixture("crash-7.2"));
    t.write("sys/devices/system/cpu/possible", "0-3\n");
    t.remove("sys/devices/system/cpu/cpu2");
    auto layout = read_core_layout(Sysroot(t.root()));
    ASSERT_TRUE(layout) << layout.error().describe();
    ASSERT_EQ(layout->cpu_notes.size(), 2u);
    EXPECT_EQ(layout->cpu_notes[1].first, 1u);
    EXPECT_EQ(layout->cpus_without_notes, (std::vector<unsigned>{2, 3}));
}

TEST(CoreLayout, ACacheKeepsWhatABootCannotChangeAndRereadsMemory) {
    TempTree t;
    t.copy_from(fixture("crash-7.2"));
    Sysroot root(t.root());
    CoreLayoutCache cache;
    auto first = read_core_layout(root, -1, &cache);
    ASSERT_TRUE(first) << first.error().describe();
    EXPECT_EQ(cache.cpu_notes.size(), first->cpu_notes.size());
    ASSERT_TRUE(cache.kcore_read);
    // Gone from the tree, kept by the cache: notes, vmcoreinfo, kcore.
    t.remove("sys/devices/system/cpu/cpu0/crash_notes");
    t.remove("sys/kernel/vmcoreinfo");
    t.remove("proc/kcore");
    // Memory is read again: a hot-added range shows.
    std::ifstream in(t.root() / "proc/iomem");
    std::stringstream iomem;
    iomem << in.rdbuf();
    t.write("proc/iomem", iomem.str() + "8000000000-807fffffff : System RAM\n");
    auto again = read_core_layout(root, -1, &cache);
    ASSERT_TRUE(again) << again.error().describe();
    EXPECT_EQ(again->cpu_notes, first->cpu_notes);
    EXPECT_EQ(again->vmcoreinfo, first->vmcoreinfo);
    EXPECT_EQ(again->kernel_text, first->kernel_text);
    EXPECT_EQ(again->page_offset, first->page_offset);
    EXPECT_EQ(again->ram.size(), first->ram.size() + 1);
    EXPECT_EQ(again->ram.back(), (PhysRange{0x8000000000, 0x8080000000}));
    EXPECT_FALSE(read_core_layout(root)) << "without the cache the removed files are missed";
}

TEST(CoreLayout, HotAddedMemoryIsItsOwnRange) {
    TempTree t;
    t.copy_from(fixture("crash-7.2"));
    std::string iomem = slurp(fixture("crash-7.2") / "proc/iomem");
    iomem +=
        "440000000-47fffffff : System RAM\n480000000-4bfffffff : dax0.0\n  480000000-4bfffffff : System RAM "
        "(kmem)\n";
    t.write("proc/iomem", iomem);
    auto layout = read_core_layout(Sysroot(t.root()));
    ASSERT_TRUE(layout) << layout.error().describe();
    ASSERT_EQ(layout->ram.size(), 4u);
    EXPECT_EQ(layout->ram[2], (PhysRange{0x440000000, 0x480000000}));
    EXPECT_EQ(layout->ram[3], (PhysRange{0x480000000, 0x4c0000000}));
}

TEST(CoreLayout, CrashCmaRangesAreCutToo) {
    TempTree t;
    t.copy_from(fixture("crash-7.2"));
    t.remove("sys/kernel/kexec/crash_cma_ranges");
    t.write("sys/kernel/kexec/crash_cma_ranges", "10000000-17ffffff\n");
    auto layout = read_core_layout(Sysroot(t.root()));
    ASSERT_TRUE(layout) << layout.error().describe();
    const std::vector<PhysRange> ram{
        {0x100000, 0x10000000}, {0x18000000, 0x2f000000}, {0x3f000000, 0x3ffe0000}};
    EXPECT_EQ(layout->ram, ram);
}

TEST(CoreLayout, WhatAnUnprivilegedReaderSeesIsRefusedWithTheReason) {
    TempTree t;
    t.copy_from(fixture("crash-7.2"));
    // /proc/iomem as a user reads it: every address zero.
    std::string zeros;
    for (const char* name : {"System RAM", "Reserved", "System RAM"})
        zeros += std::string("00000000-00000000 : ") + name + "\n";
    t.write("proc/iomem", zeros);
    auto layout = read_core_layout(Sysroot(t.root()));
    ASSERT_FALSE(layout);
    EXPECT_NE(layout.error().describe().find("run as root"), std::string::npos) << layout.error().describe();

    TempTree k;
    k.copy_from(fixture("crash-7.2"));
    k.remove("proc/kcore");
    auto no_kcore = read_core_layout(Sysroot(k.root()));
    ASSERT_FALSE(no_kcore);
    EXPECT_EQ(no_kcore.error().code, ENOENT);
    EXPECT_NE(no_kcore.error().path.find("proc/kcore"), std::string::npos);

    TempTree n;
    n.copy_from(fixture("crash-7.2"));
    n.remove("sys/devices/system/cpu/cpu1/crash_notes");
    auto no_notes = read_core_layout(Sysroot(n.root()));
    ASSERT_FALSE(no_notes);
    EXPECT_NE(no_notes.error().describe().find("cpu1/crash_notes"), std::string::npos);
}

// ---------------------------------------------------------------------------
// The header, field by field, as crash_prepare_elf64_headers() writes it.

TEST(BuildElfcorehdr, EveryFieldAsTheKernelLaysItOut) {
    auto layout = fixture_layout();
    ASSERT_TRUE(layout) << layout.error().describe();
    auto bytes = build_elfcorehdr(*layout);
    ASSERT_TRUE(bytes) << bytes.error().describe();
    // nr_cpus + vmcoreinfo + kernel text + 2 RAM ranges; ALIGN(64 + 7 * 56, 4096).
    ASSERT_EQ(bytes->size(), 4096u);
    Elf64_Ehdr eh;
    std::memcpy(&eh, bytes->data(), sizeof eh);
    const unsigned char ident[EI_NIDENT] = {0x7f,       'E',         'L',        'F',
                                            ELFCLASS64, ELFDATA2LSB, EV_CURRENT, ELFOSABI_NONE};
    EXPECT_EQ(std::memcmp(eh.e_ident, ident, EI_NIDENT), 0);
    EXPECT_EQ(eh.e_type, ET_CORE);
    EXPECT_EQ(eh.e_machine, EM_X86_64);
    EXPECT_EQ(eh.e_version, EV_CURRENT);
    EXPECT_EQ(eh.e_entry, 0u);
    EXPECT_EQ(eh.e_phoff, sizeof(Elf64_Ehdr));
    EXPECT_EQ(eh.e_shoff, 0u);
    EXPECT_EQ(eh.e_flags, 0u);
    EXPECT_EQ(eh.e_ehsize, sizeof(Elf64_Ehdr));
    EXPECT_EQ(eh.e_phentsize, sizeof(Elf64_Phdr));
    EXPECT_EQ(eh.e_phnum, 7);
    EXPECT_EQ(eh.e_shentsize, 0);
    EXPECT_EQ(eh.e_shnum, 0);
    EXPECT_EQ(eh.e_shstrndx, 0);
    std::vector<Elf64_Phdr> ph(eh.e_phnum);
    std::memcpy(ph.data(), bytes->data() + eh.e_phoff, ph.size() * sizeof(Elf64_Phdr));
    // One PT_NOTE per possible CPU: p_offset = p_paddr = the note buffer, nothing else set.
    for (unsigned cpu = 0; cpu < 3; ++cpu) {
        SCOPED_TRACE("cpu " + std::to_string(cpu));
        const CoreNote n = fixture_note(cpu);
        EXPECT_EQ(ph[cpu].p_type, PT_NOTE);
        EXPECT_EQ(ph[cpu].p_flags, 0u);
        EXPECT_EQ(ph[cpu].p_offset, n.paddr);
        EXPECT_EQ(ph[cpu].p_paddr, n.paddr);
        EXPECT_EQ(ph[cpu].p_vaddr, 0u);
        EXPECT_EQ(ph[cpu].p_filesz, n.size);
        EXPECT_EQ(ph[cpu].p_memsz, n.size);
        EXPECT_EQ(ph[cpu].p_align, 0u);
    }
    EXPECT_EQ(ph[3].p_type, PT_NOTE);
    EXPECT_EQ(ph[3].p_offset, 0x18a4000u);
    EXPECT_EQ(ph[3].p_paddr, 0x18a4000u);
    EXPECT_EQ(ph[3].p_filesz, 0x1024u);
    EXPECT_EQ(ph[3].p_memsz, 0x1024u);
    // The kernel map of _text .. _end.
    EXPECT_EQ(ph[4].p_type, PT_LOAD);
    EXPECT_EQ(ph[4].p_flags, unsigned{PF_R | PF_W | PF_X});
    EXPECT_EQ(ph[4].p_vaddr, 0xffffffff97000000u);
    EXPECT_EQ(ph[4].p_offset, 0x25800000u);
    EXPECT_EQ(ph[4].p_paddr, 0x25800000u);
    EXPECT_EQ(ph[4].p_filesz, 0x2079000u);
    EXPECT_EQ(ph[4].p_memsz, 0x2079000u);
    EXPECT_EQ(ph[4].p_align, 0u);
    // RAM: __va(start), end - start + 1 of the inclusive ranges.
    const std::pair<std::uint64_t, std::uint64_t> ram[] = {{0x100000, 0x2ef00000}, {0x3f000000, 0xfe0000}};
    for (int i = 0; i < 2; ++i) {
        const auto& p = ph[5 + i];
        EXPECT_EQ(p.p_type, PT_LOAD);
        EXPECT_EQ(p.p_flags, unsigned{PF_R | PF_W | PF_X});
        EXPECT_EQ(p.p_offset, ram[i].first);
        EXPECT_EQ(p.p_paddr, ram[i].first);
        EXPECT_EQ(p.p_vaddr, 0xff3e5b9140000000u + ram[i].first);
        EXPECT_EQ(p.p_filesz, ram[i].second);
        EXPECT_EQ(p.p_memsz, ram[i].second);
        EXPECT_EQ(p.p_align, 0u);
    }
    // The rest of the kernel's vzalloc'd buffer.
    for (std::size_t i = sizeof(Elf64_Ehdr) + 7 * sizeof(Elf64_Phdr); i < bytes->size(); ++i)
        ASSERT_EQ((*bytes)[i], 0) << "byte " << i;
}

TEST(BuildElfcorehdr, LibelfReadsWhatLibelfWrote) {
    auto layout = fixture_layout();
    ASSERT_TRUE(layout);
    auto bytes = build_elfcorehdr(*layout);
    ASSERT_TRUE(bytes);
    ASSERT_NE(elf_version(EV_CURRENT), EV_NONE);
    Elf* e = elf_memory(reinterpret_cast<char*>(bytes->data()), bytes->size());
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(elf_kind(e), ELF_K_ELF);
    std::size_t n = 0;
    ASSERT_EQ(elf_getphdrnum(e, &n), 0);
    EXPECT_EQ(n, 7u);
    GElf_Phdr p;
    ASSERT_NE(gelf_getphdr(e, 6, &p), nullptr);
    EXPECT_EQ(p.p_paddr, 0x3f000000u);
    EXPECT_EQ(p.p_memsz, 0xfe0000u);
    elf_end(e);
}

TEST(BuildElfcorehdr, TheSameRangesAndTextAsTheKernelsOwnHeaderForThatBoot) {
    auto layout = fixture_layout();
    ASSERT_TRUE(layout);
    auto bytes = build_elfcorehdr(*layout);
    ASSERT_TRUE(bytes);
    auto ours = read_core_header(*bytes, "khod");
    ASSERT_TRUE(ours) << ours.error().describe();
    SparseVmcore vmcore;
    auto kernels = read_core_header(vmcore.path());
    ASSERT_TRUE(kernels) << kernels.error().describe();
    EXPECT_EQ(kernels->form, CoreForm::dump);
    EXPECT_EQ(ours->form, CoreForm::elfcorehdr);
    // /proc/vmcore keeps every PT_LOAD of the header the kernel built, in
    // order, with only p_offset moved into the file (fs/proc/vmcore.c).
    std::vector<ElfProgramHeader> our_loads, kernel_loads;
    for (auto p : ours->elf.phdrs)
        if (p.type == PT_LOAD) our_loads.push_back((p.offset = 0, p));
    for (auto p : kernels->elf.phdrs)
        if (p.type == PT_LOAD) kernel_loads.push_back((p.offset = 0, p));
    EXPECT_EQ(our_loads, kernel_loads);
    EXPECT_EQ(ours->ram, kernels->ram);
    EXPECT_EQ(ours->kernel_text, kernels->kernel_text);
    EXPECT_EQ(ours->page_offset, kernels->page_offset);
    // Ours has a note per possible CPU; the kernel's dump keeps the notes of
    // the two CPUs that were online at the crash (cpu2 was offline).
    EXPECT_EQ(ours->cpu_notes.size(), 3u);
    EXPECT_EQ(kernels->prstatus.size(), 2u);
}

TEST(BuildElfcorehdr, RefusesWhatTheKernelCouldNotRead) {
    CoreLayout layout;
    layout.vmcoreinfo = {0x1000, 0x1024};
    layout.page_offset = 0xffff888000000000;
    layout.ram = {{0x100000, 0x100000}};
    auto empty = build_elfcorehdr(layout);
    ASSERT_FALSE(empty);
    EXPECT_NE(empty.error().message.find("empty RAM range"), std::string::npos);
    layout.ram.clear();
    for (std::uint64_t i = 0; i < 65534; ++i) layout.ram.push_back({i * 2 * MiB, i * 2 * MiB + MiB});
    auto many = build_elfcorehdr(layout);
    ASSERT_FALSE(many);
    EXPECT_NE(many.error().message.find("PN_XNUM"), std::string::npos);
}

TEST(ElfcorehdrCapacity, TheKernelsSizePlusTheElfHeaderOrRoomForTheGivenMaximum) {
    // crash_elfcorehdr_size 462448 = (2 + NR_CPUS 64 + CRASH_MAX_MEMORY_RANGES 8192) * 56.
    ASSERT_EQ(slurp(fixture("crash-7.2") / "sys/kernel/crash_elfcorehdr_size"), "462448\n");
    auto from_kernel = elfcorehdr_capacity(Sysroot(fixture("crash-7.2")), 1, 1);
    ASSERT_TRUE(from_kernel) << from_kernel.error().describe();
    EXPECT_EQ(*from_kernel, (462448u + 64 + 4095) / 4096 * 4096);

    TempTree t;
    t.mkdir("sys/kernel");
    auto fallback = elfcorehdr_capacity(Sysroot(t.root()), 4, 16);
    ASSERT_TRUE(fallback) << fallback.error().describe();
    EXPECT_EQ(*fallback, 4096u);  // 64 + 22 * 56 bytes
    auto big = elfcorehdr_capacity(Sysroot(t.root()), 8192, 8192);
    ASSERT_TRUE(big);
    EXPECT_EQ(*big, (64 + 16386ull * 56 + 4095) / 4096 * 4096);
    auto too_big = elfcorehdr_capacity(Sysroot(t.root()), 60000, 8192);
    ASSERT_FALSE(too_big);
    EXPECT_NE(too_big.error().message.find("PN_XNUM"), std::string::npos);
}

// ---------------------------------------------------------------------------
// Reading back.

TEST(ReadCoreHeader, RoundTripThroughAFile) {
    auto layout = fixture_layout();
    ASSERT_TRUE(layout);
    auto bytes = build_elfcorehdr(*layout);
    ASSERT_TRUE(bytes);
    TempTree t;
    t.write("ech", std::string(bytes->begin(), bytes->end()));
    auto info = read_core_header(t.root() / "ech");
    ASSERT_TRUE(info) << info.error().describe();
    EXPECT_EQ(info->form, CoreForm::elfcorehdr);
    EXPECT_EQ(info->file_size, 4096u);
    EXPECT_EQ(info->elf.machine, EM_X86_64);
    ASSERT_EQ(info->cpu_notes.size(), layout->cpu_notes.size());
    for (std::size_t i = 0; i < info->cpu_notes.size(); ++i)
        EXPECT_EQ(info->cpu_notes[i], layout->cpu_notes[i].second);
    EXPECT_EQ(info->vmcoreinfo_note, layout->vmcoreinfo);
    EXPECT_EQ(info->kernel_text, layout->kernel_text);
    EXPECT_EQ(info->page_offset, layout->page_offset);
    EXPECT_EQ(info->ram, layout->ram);
    EXPECT_TRUE(info->notes.empty());  // in the crashed kernel's memory, not in the file

    const auto j = to_json(*info);
    EXPECT_EQ(j["form"], "elfcorehdr");
    EXPECT_EQ(j["program_headers"].size(), 7u);
    EXPECT_EQ(j["program_headers"][4]["type"], "PT_LOAD");
    EXPECT_EQ(j["program_headers"][4]["vaddr"], 0xffffffff97000000u);
    EXPECT_EQ(j["cpus"].size(), 3u);
    EXPECT_EQ(j["ranges"][1]["start"], 0x3f000000u);
}

TEST(ReadCoreHeader, TheCaptureKernelsVmcoreWithoutReadingItWhole) {
    SparseVmcore vmcore;
    const std::uint64_t before = rchar();
    auto info = read_core_header(vmcore.path());
    const std::uint64_t read = rchar() - before;
    ASSERT_TRUE(info) << info.error().describe();
    EXPECT_EQ(info->file_size, 838184960u);
    EXPECT_LT(read, 64u * 1024) << "read " << read << " bytes of an 800 MiB file";
    // Merged notes: one NT_PRSTATUS per CPU online at the crash, then VMCOREINFO.
    ASSERT_EQ(info->notes.size(), 3u);
    EXPECT_EQ(info->notes[0].name, "CORE");
    EXPECT_EQ(info->notes[0].type, unsigned{NT_PRSTATUS});
    EXPECT_EQ(info->notes[0].descsz, 336u);  // x86_64 struct elf_prstatus
    EXPECT_EQ(info->notes[2].name, "VMCOREINFO");
    ASSERT_EQ(info->prstatus.size(), 2u);
    for (const auto& st : info->prstatus) {
        ASSERT_TRUE(st.rip);
        EXPECT_GE(*st.rip, kStartKernelMap) << "a CPU stopped outside the kernel text";
    }
    EXPECT_NE(info->prstatus[0].pid, 0) << "the CPU that ran `echo c` saved the shell's pid";
    std::string release = slurp(fixture("crash-7.2-capture") / "proc/sys/kernel/osrelease");
    release.erase(release.find_last_not_of('\n') + 1);
    EXPECT_EQ(info->vmcoreinfo_value("OSRELEASE"), release);
    EXPECT_EQ(info->vmcoreinfo_value("OSRELEASE"), "7.2.13");
    EXPECT_EQ(info->vmcoreinfo_value("PAGESIZE"), "4096");
    EXPECT_EQ(info->vmcoreinfo_value("KERNELOFFSET"), "16000000");
    EXPECT_TRUE(info->vmcoreinfo_value("CRASHTIME"));
    EXPECT_FALSE(info->vmcoreinfo_value("NO_SUCH_KEY"));
    ASSERT_TRUE(info->kernel_text);
    EXPECT_EQ(info->kernel_text->vaddr - 0xffffffff81000000u, 0x16000000u);
}

TEST(ReadCoreHeader, TheHeadAloneIsTruncatedAndSaysWhere) {
    auto info = read_core_header(fixture("crash-7.2-capture") / "proc/vmcore");
    ASSERT_FALSE(info);
    const std::string e = info.error().describe();
    EXPECT_NE(e.find("PT_LOAD 1"), std::string::npos) << e;
    EXPECT_NE(e.find("truncated"), std::string::npos) << e;
}

TEST(ReadCoreHeader, CraftedFilesAreErrorsThatSayWhatAndWhere) {
    Crafted good;
    std::vector<std::uint8_t> notes;
    put_note(notes, "VMCOREINFO", 0, {'O', 'S', 'R', 'E', 'L', 'E', 'A', 'S', 'E', '=', '9', '\n'});
    good.add_notes(notes);
    auto ok = read_core_header(good.bytes(), "crafted");
    ASSERT_TRUE(ok) << ok.error().describe();
    EXPECT_EQ(ok->vmcoreinfo_value("OSRELEASE"), "9");

    const auto bytes = good.bytes();
    // Truncated ELF header.
    EXPECT_NE(error_of({bytes.begin(), bytes.begin() + 40}).find("ELF header"), std::string::npos);
    EXPECT_NE(error_of({bytes.begin(), bytes.begin() + 40}).find("truncated"), std::string::npos);
    EXPECT_NE(error_of({bytes.begin(), bytes.begin() + 3}).find("not an ELF file"), std::string::npos);
    // Not ELF at all.
    const std::string text = "#!/bin/sh\necho not a core\n";
    EXPECT_NE(error_of({text.begin(), text.end()}).find("no \\x7fELF magic"), std::string::npos);
    // ELF32.
    auto elf32 = bytes;
    elf32[EI_CLASS] = ELFCLASS32;
    EXPECT_NE(error_of(elf32).find("ELF32"), std::string::npos);
    // Big-endian, not a core.
    auto msb = bytes;
    msb[EI_DATA] = ELFDATA2MSB;
    EXPECT_NE(error_of(msb).find("little-endian"), std::string::npos);
    Crafted exec = good;
    exec.eh.e_type = ET_EXEC;
    EXPECT_NE(error_of(exec.bytes()).find("not ET_CORE"), std::string::npos);
    // e_phentsize wrong.
    Crafted entsize = good;
    entsize.eh.e_phentsize = 32;
    EXPECT_NE(error_of(entsize.bytes()).find("e_phentsize 32"), std::string::npos);
    // e_phnum pointing beyond the end.
    Crafted beyond = good;
    beyond.eh.e_phnum = 40;
    const std::string b = error_of(beyond.bytes());
    EXPECT_NE(b.find("40 program headers"), std::string::npos) << b;
    EXPECT_NE(b.find("truncated"), std::string::npos) << b;
    Crafted far = good;
    far.eh.e_phoff = UINT64_MAX - 8;
    EXPECT_NE(error_of(far.bytes()).find("truncated"), std::string::npos);
    // Huge e_phnum: the largest is refused by the file's size, PN_XNUM outright.
    Crafted huge = good;
    huge.eh.e_phnum = 65534;
    EXPECT_NE(error_of(huge.bytes()).find("65534 program headers"), std::string::npos);
    huge.eh.e_phnum = PN_XNUM;
    EXPECT_NE(error_of(huge.bytes()).find("PN_XNUM"), std::string::npos);
    // A note whose sizes overflow its segment (and 32 bits, were they added there).
    for (auto [namesz, descsz] :
         {std::pair<std::uint32_t, std::uint32_t>{0xffffffff, 4}, {5, 0xfffffffd}, {5, 200}}) {
        SCOPED_TRACE(std::to_string(namesz) + "/" + std::to_string(descsz));
        Crafted bad;
        std::vector<std::uint8_t> n;
        put_note(n, "CORE", NT_PRSTATUS, std::vector<std::uint8_t>(8, 0), namesz, descsz);
        bad.add_notes(n);
        const std::string e = error_of(bad.bytes());
        EXPECT_NE(e.find("note at offset 0x78"), std::string::npos) << e;
        EXPECT_NE(e.find("run past its segment's end"), std::string::npos) << e;
    }
    // A PT_NOTE beyond the file, and one larger than any kernel's notes.
    Crafted gone = good;
    gone.phdrs[0].p_offset = 1 << 20;
    EXPECT_NE(error_of(gone.bytes()).find("PT_NOTE 0"), std::string::npos);
    Crafted vast = good;
    vast.phdrs[0].p_filesz = 1ull << 40;
    EXPECT_NE(error_of(vast.bytes()).find("16 MiB"), std::string::npos);
    // A PT_LOAD that wraps around.
    Crafted wrap = good;
    Elf64_Phdr load{};
    load.p_type = PT_LOAD;
    load.p_paddr = UINT64_MAX - 10;
    load.p_filesz = 0;
    load.p_memsz = 100;
    wrap.phdrs.push_back(load);
    wrap.add_notes({});
    EXPECT_NE(error_of(wrap.bytes()).find("wraps around"), std::string::npos);
}

TEST(ReadCoreHeader, ASparseMultiGigabyteFileIsNotReadWhole) {
    TempTree t;
    Crafted c;
    Elf64_Phdr load{};
    load.p_type = PT_LOAD;
    load.p_flags = PF_R | PF_W | PF_X;
    load.p_offset = GiB;
    load.p_paddr = 0x100000000;
    load.p_vaddr = 0xffff888100000000;
    load.p_filesz = load.p_memsz = 4 * GiB;
    c.phdrs.push_back(load);
    std::vector<std::uint8_t> notes;
    put_note(notes, "CORE", NT_PRSTATUS, std::vector<std::uint8_t>(336, 0));
    put_note(notes, "VMCOREINFO", 0, {'P', 'A', 'G', 'E', 'S', 'I', 'Z', 'E', '=', '4', '0', '9', '6', '\n'});
    c.add_notes(notes);
    const auto bytes = c.bytes();
    const auto path = t.root() / "vmcore";
    {
        UniqueFd fd(::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
        ASSERT_TRUE(fd.valid());
        ASSERT_EQ(::write(fd.get(), bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
        ASSERT_EQ(::ftruncate(fd.get(), static_cast<off_t>(5 * GiB)), 0);
    }
    const std::uint64_t before = rchar();
    auto info = read_core_header(path);
    const std::uint64_t read = rchar() - before;
    ASSERT_TRUE(info) << info.error().describe();
    EXPECT_LT(read, 16u * 1024) << "read " << read << " bytes of a 5 GiB file";
    EXPECT_EQ(info->file_size, 5 * GiB);
    EXPECT_EQ(info->form, CoreForm::dump);
    ASSERT_EQ(info->ram.size(), 1u);
    EXPECT_EQ(info->ram[0], (PhysRange{0x100000000, 0x200000000}));
    EXPECT_EQ(info->page_offset, 0xffff888000000000u);
    EXPECT_EQ(info->prstatus.size(), 1u);
    EXPECT_EQ(info->vmcoreinfo_value("PAGESIZE"), "4096");
    // The same file cut short of its PT_LOAD's data.
    ASSERT_EQ(::truncate(path.c_str(), static_cast<off_t>(2 * GiB)), 0);
    auto cut = read_core_header(path);
    ASSERT_FALSE(cut);
    EXPECT_NE(cut.error().describe().find("truncated"), std::string::npos);
}

TEST(ReadCoreHeader, NotAFileItCanSeekIn) {
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    UniqueFd r(p[0]), w(p[1]);
    auto info = read_core_header(r.get(), "pipe");
    ASSERT_FALSE(info);
    EXPECT_NE(info.error().message.find("not a regular file"), std::string::npos);
    auto missing = read_core_header(std::filesystem::path("/nonexistent/vmcore"));
    ASSERT_FALSE(missing);
    EXPECT_EQ(missing.error().code, ENOENT);
    EXPECT_EQ(missing.error().path, "/nonexistent/vmcore");
}
