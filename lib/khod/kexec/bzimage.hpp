// The x86 boot protocol setup header of a bzImage (Documentation/arch/x86/boot.rst),
// and the checks the kernel's kexec_file_load bzImage64 loader makes on it
// (arch/x86/kernel/kexec-bzimage64.c: bzImage64_probe and bzImage64_load).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "khod/base/result.hpp"
#include "khod/base/sysroot.hpp"

namespace khod {

// Boot protocol flags (arch/x86/include/uapi/asm/bootparam.h).
inline constexpr std::uint8_t kLoadedHigh = 1u << 0;
inline constexpr std::uint16_t kXlfKernel64 = 1u << 0;
inline constexpr std::uint16_t kXlfCanBeLoadedAbove4G = 1u << 1;
inline constexpr std::uint16_t kXlfEfiHandover32 = 1u << 2;
inline constexpr std::uint16_t kXlfEfiHandover64 = 1u << 3;
inline constexpr std::uint16_t kXlfEfiKexec = 1u << 4;
inline constexpr std::uint16_t kXlfFiveLevel = 1u << 5;
inline constexpr std::uint16_t kXlfFiveLevelEnabled = 1u << 6;
inline constexpr std::uint16_t kXlfMemEncryption = 1u << 7;

// Room the kexec loader keeps for "elfcorehdr=0x<addr> " (MAX_ELFCOREHDR_STR_LEN):
// it is reserved for every image, crash or not.
inline constexpr std::uint32_t kElfcorehdrReserve = 30;

struct BzImageInfo {
    std::string path;
    std::uint64_t file_size = 0;

    // Setup header fields, as stored (little-endian decoded).
    std::uint8_t setup_sects_raw = 0;
    unsigned setup_sects = 0;  // 0 in the file means 4
    std::uint16_t boot_flag = 0;
    std::uint16_t protocol = 0;  // 0x020f is 2.15
    std::uint32_t syssize = 0;
    std::uint16_t kernel_version_ptr = 0;
    std::uint8_t loadflags = 0;
    std::uint16_t xloadflags = 0;
    std::uint32_t kernel_alignment = 0;
    bool relocatable = false;
    std::uint8_t min_alignment = 0;  // log2
    std::uint32_t cmdline_size = 0;  // longest command line, without the NUL
    std::uint32_t payload_offset = 0;
    std::uint32_t payload_length = 0;
    std::uint64_t pref_address = 0;
    std::uint32_t init_size = 0;  // memory the kernel needs from its load address while booting
    std::uint32_t handover_offset = 0;
    std::uint32_t kernel_info_offset = 0;

    // Derived.
    std::uint64_t setup_header_end = 0;  // 0x202 + byte 0x201: what the loader copies
    std::uint64_t kernel_offset = 0;     // (setup_sects + 1) * 512: the protected-mode part
    std::uint64_t kernel_bytes = 0;      // file_size - kernel_offset

    // The string kernel_version points to ("7.2.13 (user@host) #1 SMP ..."),
    // when the pointer is set and lands on printable text inside the setup code.
    std::optional<std::string> version;
    std::optional<std::string> release;  // its first word ("7.2.13")
    std::string version_note;            // why version is missing, if it is

    // An Authenticode signature (PE certificate table) is present. Whether the
    // kernel's keyrings accept it is only known when the kernel verifies it.
    bool pe_image = false;
    bool pe_signed = false;

    std::string protocol_string() const;  // "2.15"
    bool has(std::uint16_t xlf) const { return (xloadflags & xlf) != 0; }
};

// Reads and checks the setup header from an open file, with bounded reads only
// (at most the 32 KiB setup area and the PE header). Fails, with a message of
// its own for each case, on exactly what the kernel's bzImage64 probe and the
// start of its loader refuse with ENOEXEC (too short, no "HdrS", no 0xAA55,
// protocol < 2.12, not LOADED_HIGH, no XLF_KERNEL_64, no
// XLF_CAN_BE_LOADED_ABOVE_4G, truncated setup), and on what kernel_read_file()
// refuses before that (not a regular file, empty: EINVAL; over 4 GiB: EFBIG).
// Checks that depend on the running system are in check_bzimage_host().
Result<BzImageInfo> read_bzimage(int fd, const std::string& path);
Result<BzImageInfo> read_bzimage(const std::filesystem::path& path);

// What the running kernel contributes to the probe: a kernel using 5-level
// paging refuses images without XLF_5LEVEL, and a 32-bit EFI runtime refuses
// every image (the kexec loader cannot place a kernel above 4 GiB there).
struct BzImageHost {
    std::optional<bool> five_level_paging;  // "la57" in /proc/cpuinfo flags; nullopt: unknown
    std::optional<bool> efi_32bit;          // /sys/firmware/efi/fw_platform_size == 32
};

Result<void> check_bzimage_host(const BzImageInfo& image, const BzImageHost& host);

// Host facts the bzImage probe depends on: "la57" among /proc/cpuinfo's flags
// (the kernel clears it unless it runs with 5-level paging) and
// /sys/firmware/efi/fw_platform_size.
BzImageHost read_bzimage_host(const Sysroot& root);

// The kernel refuses a command line (length including the NUL) longer than
// cmdline_size, and also one that leaves no room for "elfcorehdr=0x<addr> ".
// Returns the largest accepted length including the NUL.
std::uint64_t max_cmdline_len(const BzImageInfo& image);
Result<void> check_cmdline_len(const BzImageInfo& image, std::uint64_t cmdline_len_with_nul);

}  // namespace khod
