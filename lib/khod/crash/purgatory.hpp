// khod's purgatory (purgatory/README.md) as the kexec_load crash loader uses
// it: the relocatable object read and checked with libelf, laid out at a
// physical address, relocated for it and patched with one load's capture
// kernel entry, boot_params, digest and digested regions.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "khod/base/result.hpp"

namespace khod {

using Sha256Digest = std::array<std::uint8_t, 32>;

// A physical range the purgatory hashes at the crash.
struct DigestRegion {
    std::uint64_t start = 0;
    std::uint64_t size = 0;
    bool operator==(const DigestRegion&) const = default;
};
// Entries in the purgatory's khod_regions (KHOD_PURGATORY_MAX_REGIONS).
inline constexpr std::size_t kPurgatoryMaxRegions = 16;

struct PurgatoryPatch {
    std::uint64_t kernel_entry = 0;     // the capture kernel's 64-bit entry (load address + 0x200)
    std::uint64_t boot_params = 0;      // handed to it in %rsi
    Sha256Digest digest{};              // SHA-256 over regions, in order (sha256_of)
    std::vector<DigestRegion> regions;  // 1..kPurgatoryMaxRegions, none of size 0
};

struct PlacedPurgatory {
    std::vector<std::uint8_t> image;  // the bytes to load at the base (.bss is not in them)
    std::uint64_t memsz = 0;          // page-rounded, .bss included: the kernel zero-fills past image
    std::uint64_t entry = 0;          // physical address of khod_purgatory_start
};

// An allocated section as place() lays it out.
struct PurgatorySection {
    std::string name;
    std::uint64_t offset = 0;  // from the base
    std::uint64_t size = 0;
    bool nobits = false;  // .bss: no bytes in the image
    bool executable = false;
    bool writable = false;
};

class PurgatoryObject {
public:
    // Empty: place() fails. A real one comes from load() or parse().
    PurgatoryObject() = default;

    // Reads the file (at most 4 MiB) and parse()s it; the path names every error.
    static Result<PurgatoryObject> load(const std::filesystem::path& path);
    // Checks the bytes as an x86-64 ELF64 ET_REL with nothing outside its
    // bounds, the symbols khod patches (of their sizes, in writable data) and
    // the entry (in code), no undefined symbols, and only relocations place()
    // applies. name is used in errors.
    static Result<PurgatoryObject> parse(std::span<const std::uint8_t> bytes, std::string name);

    const std::string& name() const { return name_; }
    std::uint64_t filesz() const { return filesz_; }        // bytes of the image
    std::uint64_t memsz() const { return memsz_; }          // page-rounded, .bss included
    std::uint64_t alignment() const { return alignment_; }  // the base must be a multiple (at most a page)
    const std::vector<PurgatorySection>& sections() const { return sections_; }
    // Offset from the base of a symbol defined in an allocated section.
    std::optional<std::uint64_t> symbol_offset(std::string_view name) const;

    // Every allocated section laid out from base (code and data in the order
    // of the object, .bss last), the RELA relocations applied for that
    // address (R_X86_64_64, PC32, PLT32, 32, 32S; a 32-bit value that does
    // not fit is an error) and the patch written into khod_kernel_entry,
    // khod_boot_params, khod_digest and khod_regions (zeros after the last).
    Result<PlacedPurgatory> place(std::uint64_t base, const PurgatoryPatch& patch) const;

private:
    struct Symbol {
        std::string name;
        std::uint64_t value = 0;
        std::uint64_t size = 0;
        std::uint32_t shndx = 0;  // an ELF section index, or SHN_ABS
        bool global = false;      // STB_GLOBAL or STB_WEAK
    };
    struct Relocation {
        std::uint64_t at = 0;  // offset of the field from the base
        std::uint32_t type = 0;
        std::uint32_t symbol = 0;
        std::int64_t addend = 0;
        std::string where;  // ".text+0x2c", for errors
    };
    struct Patched {
        std::uint64_t kernel_entry = 0, boot_params = 0, digest = 0, regions = 0;  // offsets from the base
    };

    class Parser;
    std::uint64_t symbol_address(const Relocation& r, std::uint64_t base) const;

    std::string name_;
    std::vector<std::uint8_t> image_;  // section bytes at their offsets, unrelocated
    std::uint64_t filesz_ = 0, memsz_ = 0, alignment_ = 1;
    std::vector<PurgatorySection> sections_;
    std::vector<std::optional<std::uint64_t>> section_offset_;  // by ELF index: allocated sections only
    std::vector<Symbol> symbols_;                               // by ELF symbol index
    std::vector<Relocation> relocations_;
    std::uint64_t entry_ = 0;
    Patched patched_;
    bool loaded_ = false;
};

// SHA-256 over the parts, in order, with OpenSSL's EVP (SHA-NI where the CPU
// has it): what the purgatory computes over the same bytes at the crash.
Result<Sha256Digest> sha256_of(std::span<const std::span<const std::uint8_t>> parts);

}  // namespace khod
