// Reading an ELF64 core header back: an elfcorehdr (as build_elfcorehdr()
// writes it, notes and memory given by physical address), /proc/vmcore in a
// capture kernel (notes merged into one PT_NOTE and memory at file offsets,
// fs/proc/vmcore.c), or the head of /proc/kcore.
//
// Every read is a bounded pread of what the headers point at: the ELF header,
// the program headers (at most 65534 of 56 bytes) and the note segments (at
// most 16 MiB in all). /proc/vmcore is GiBs and is never read past its notes.
// Malformed input is an Error naming the file, the offset and what is wrong.
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "khod/base/iomem.hpp"
#include "khod/base/result.hpp"

namespace khod {

// A note buffer in the crashed kernel's memory.
struct CoreNote {
    std::uint64_t paddr = 0;
    std::uint64_t size = 0;
    bool operator==(const CoreNote&) const = default;
};

// The kernel image as the kernel maps it: _text .. _end.
struct KernelText {
    std::uint64_t vaddr = 0;
    std::uint64_t paddr = 0;
    std::uint64_t size = 0;
    bool operator==(const KernelText&) const = default;
};

// x86_64's __START_KERNEL_map: the kernel image is mapped at or above it, the
// direct map (page_offset + paddr) always below it.
inline constexpr std::uint64_t kStartKernelMap = 0xffffffff80000000ull;
// Limits on what a reader will take from a file.
inline constexpr std::uint64_t kMaxNoteBytes = 16ull << 20;
inline constexpr std::size_t kMaxNotes = 65536;

struct ElfProgramHeader {
    std::uint32_t type = 0;
    std::uint32_t flags = 0;
    std::uint64_t offset = 0;
    std::uint64_t vaddr = 0;
    std::uint64_t paddr = 0;
    std::uint64_t filesz = 0;
    std::uint64_t memsz = 0;
    std::uint64_t align = 0;
    bool operator==(const ElfProgramHeader&) const = default;
};

// The ELF header fields that matter for a core, and its program headers.
struct ElfCoreHeaders {
    std::uint16_t type = 0;
    std::uint16_t machine = 0;
    std::uint8_t osabi = 0;
    std::uint64_t phoff = 0;
    std::vector<ElfProgramHeader> phdrs;
};

// Where the bytes come from: a file descriptor (borrowed, read with pread)
// or memory. size bounds every read.
class CoreSource {
public:
    CoreSource(int fd, std::uint64_t size, std::string name);
    CoreSource(std::span<const std::uint8_t> bytes, std::string name);

    // Exactly len bytes at offset, or an Error saying where the file ends.
    Result<void> read(std::uint64_t offset, void* out, std::size_t len, std::string_view what) const;
    std::uint64_t size() const { return size_; }
    const std::string& name() const { return name_; }

private:
    int fd_ = -1;
    std::span<const std::uint8_t> bytes_;
    std::uint64_t size_ = 0;
    std::string name_;
};

// ELF header and program headers: ELF64, little-endian, ET_CORE, e_ehsize and
// e_phentsize the ELF64 sizes, no extended numbering, inside the file.
Result<ElfCoreHeaders> read_elf_core_headers(const CoreSource& source);

// PT_LOADs sorted into the kernel text (p_vaddr at or above kStartKernelMap)
// and the direct map (p_vaddr = page_offset + p_paddr). PT_LOADs without a
// physical address (p_paddr all ones: /proc/kcore's vmalloc, modules and
// vmemmap) are neither.
struct LoadClasses {
    std::optional<KernelText> kernel_text;
    std::optional<std::uint64_t> page_offset;         // unset when there is no RAM PT_LOAD or they disagree
    std::optional<std::size_t> page_offset_conflict;  // index of the first RAM PT_LOAD that disagrees
    std::vector<std::size_t> ram;                     // indexes of the RAM PT_LOADs
};
LoadClasses classify_loads(const std::vector<ElfProgramHeader>& phdrs);

enum class CoreForm {
    elfcorehdr,  // p_offset = p_paddr everywhere: notes and memory are in the crashed kernel's RAM
    dump,        // p_offset is a file offset (/proc/vmcore, a saved dump, /proc/kcore)
};
const char* to_string(CoreForm form);

// One note found in a note segment (dump form).
struct CoreNoteRecord {
    std::string name;  // up to the first NUL
    std::uint32_t type = 0;
    std::uint64_t offset = 0;  // of the note header in the file
    std::uint32_t descsz = 0;
};

// An NT_PRSTATUS note: one per CPU that saved its registers at the crash, in
// the order of the elfcorehdr's CPU notes.
struct CorePrStatus {
    std::size_t note = 0;  // index into notes
    std::int32_t pid = 0;
    std::optional<std::uint64_t> rip;  // x86_64 struct elf_prstatus only
    std::optional<std::uint64_t> rsp;
};

struct CoreHeaderInfo {
    std::string path;
    std::uint64_t file_size = 0;
    CoreForm form = CoreForm::dump;
    ElfCoreHeaders elf;

    // From the program headers.
    std::vector<CoreNote> cpu_notes;          // elfcorehdr form: every PT_NOTE but the last
    std::optional<CoreNote> vmcoreinfo_note;  // elfcorehdr form: the last PT_NOTE
    std::optional<KernelText> kernel_text;
    std::optional<std::uint64_t> page_offset;
    std::vector<PhysRange> ram;  // [p_paddr, p_paddr + p_memsz) of the RAM PT_LOADs

    // From the note segments (dump form).
    std::vector<CoreNoteRecord> notes;
    std::vector<CorePrStatus> prstatus;
    std::vector<std::pair<std::string, std::string>> vmcoreinfo;  // KEY=VALUE lines, in order

    // The last value of a vmcoreinfo key (CRASHTIME and the like are appended).
    std::optional<std::string> vmcoreinfo_value(std::string_view key) const;
};

Result<CoreHeaderInfo> read_core_header(const std::filesystem::path& path);
Result<CoreHeaderInfo> read_core_header(int fd, const std::string& name);
Result<CoreHeaderInfo> read_core_header(std::span<const std::uint8_t> bytes, const std::string& name);
Result<CoreHeaderInfo> read_core_header(const CoreSource& source);

// Notes in a note segment's bytes, as the kernel walks them: 4-byte aligned
// name and desc, ending at the segment's end or at a header with n_namesz 0.
// base is the segment's file offset, for the records and the errors.
Result<void> parse_notes(std::span<const std::uint8_t> segment, std::uint64_t base, const std::string& name,
                         CoreHeaderInfo& info);

// Names: "PT_LOAD", "NT_PRSTATUS", "x86_64" (or the number as text).
std::string phdr_type_name(std::uint32_t type);
std::string note_type_name(const std::string& name, std::uint32_t type);
std::string machine_name(std::uint16_t machine);

nlohmann::json to_json(const CoreHeaderInfo& info);
std::string format_core_header(const CoreHeaderInfo& info);

}  // namespace khod
