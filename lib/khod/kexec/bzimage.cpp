#include "khod/kexec/bzimage.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <sstream>

#include "khod/base/caller_file.hpp"
#include "khod/base/fd.hpp"
#include "khod/base/hex.hpp"

namespace khod {

namespace {

// Offsets into the file (= into struct boot_params for the first 0x290 bytes).
constexpr std::size_t kSetupSects = 0x1f1;
constexpr std::size_t kSyssize = 0x1f4;
constexpr std::size_t kBootFlag = 0x1fe;
constexpr std::size_t kJump = 0x200;  // byte 0x201 is the jump's offset: the header ends at 0x202 + it
constexpr std::size_t kHeaderMagic = 0x202;
constexpr std::size_t kVersion = 0x206;
constexpr std::size_t kKernelVersion = 0x20e;
constexpr std::size_t kLoadflags = 0x211;
constexpr std::size_t kKernelAlignment = 0x230;
constexpr std::size_t kRelocatable = 0x234;
constexpr std::size_t kMinAlignment = 0x235;
constexpr std::size_t kXloadflags = 0x236;
constexpr std::size_t kCmdlineSize = 0x238;
constexpr std::size_t kPayloadOffset = 0x248;
constexpr std::size_t kPayloadLength = 0x24c;
constexpr std::size_t kPrefAddress = 0x258;
constexpr std::size_t kInitSize = 0x260;
constexpr std::size_t kHandoverOffset = 0x264;
constexpr std::size_t kKernelInfoOffset = 0x268;
constexpr std::size_t kHeaderFieldsEnd = 0x26c;

// The real-mode part is at most 32 KiB (boot.rst), so that bounds every read
// of the setup code.
constexpr std::size_t kSetupMax = 0x8000;
constexpr std::size_t kVersionMax = 256;
// kernel_read_file() limit used by kexec_file_load (KEXEC_FILE_SIZE_MAX).
constexpr std::uint64_t kKexecFileSizeMax = 4ull << 30;

std::uint16_t le16(const unsigned char* p) {
    return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}
std::uint32_t le32(const unsigned char* p) {
    return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
           (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}
std::uint64_t le64(const unsigned char* p) {
    return static_cast<std::uint64_t>(le32(p)) | (static_cast<std::uint64_t>(le32(p + 4)) << 32);
}

// Reads up to len bytes at offset; returns how many were read (short at EOF).
Result<std::size_t> pread_full(int fd, unsigned char* buf, std::size_t len, std::uint64_t offset,
                               const std::string& path) {
    std::size_t done = 0;
    while (done < len) {
        ssize_t n = ::pread(fd, buf + done, len - done, static_cast<off_t>(offset + done));
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno_error(errno, path, "cannot read");
        }
        if (n == 0) break;
        done += static_cast<std::size_t>(n);
    }
    return done;
}

Error refused(const std::string& path, const std::string& what) {
    return plain_error(path, what + " (kexec_file_load would fail with ENOEXEC)");
}

// The kernel_version string: NUL-terminated, printable, inside the setup code.
void read_version(BzImageInfo& info, const unsigned char* setup, std::size_t setup_len) {
    if (info.kernel_version_ptr == 0) {
        info.version_note = "kernel_version is 0: the image carries no version string";
        return;
    }
    const std::size_t start = static_cast<std::size_t>(info.kernel_version_ptr) + 0x200;
    const std::size_t limit = std::min<std::size_t>(setup_len, info.kernel_offset);
    if (start >= limit) {
        info.version_note = "kernel_version " + hex(info.kernel_version_ptr) + " points past the setup code";
        return;
    }
    std::string text;
    for (std::size_t i = start; i < limit && text.size() <= kVersionMax; ++i) {
        unsigned char c = setup[i];
        if (c == 0) {
            if (text.empty()) break;
            info.version = text;
            info.release = text.substr(0, text.find(' '));
            return;
        }
        if (c < 0x20 || c > 0x7e) {
            info.version_note =
                "kernel_version " + hex(info.kernel_version_ptr) + " does not point to printable text";
            return;
        }
        text += static_cast<char>(c);
    }
    info.version_note = "kernel_version " + hex(info.kernel_version_ptr) + " does not point to a string";
}

// An EFI-stub bzImage is also a PE file; a signed one has a certificate table
// (data directory 4). verify_pefile_signature() looks there.
Result<void> read_pe(BzImageInfo& info, int fd, const unsigned char* setup, std::size_t setup_len) {
    if (setup_len < 0x40 || setup[0] != 'M' || setup[1] != 'Z') return {};
    const std::uint32_t pe = le32(setup + 0x3c);
    std::array<unsigned char, 24 + 112 + 5 * 8> hdr{};
    auto got = pread_full(fd, hdr.data(), hdr.size(), pe, info.path);
    if (!got) return got.error();
    if (*got < 24 + 2 || std::memcmp(hdr.data(), "PE\0\0", 4) != 0) return {};
    info.pe_image = true;
    const unsigned char* opt = hdr.data() + 24;
    const std::uint16_t magic = le16(opt);
    std::size_t count_off = 0;
    std::size_t dirs_off = 0;
    if (magic == 0x20b) {  // PE32+
        count_off = 108;
        dirs_off = 112;
    } else if (magic == 0x10b) {  // PE32
        count_off = 92;
        dirs_off = 96;
    } else {
        return {};
    }
    const std::size_t security = 24 + dirs_off + 4 * 8;
    if (*got < security + 8) return {};
    if (le32(opt + count_off) <= 4) return {};
    info.pe_signed = le32(hdr.data() + security + 4) != 0;
    return {};
}

}  // namespace

std::string BzImageInfo::protocol_string() const {
    return std::to_string(protocol >> 8) + "." + std::to_string(protocol & 0xff);
}

Result<BzImageInfo> read_bzimage(int fd, const std::string& path) {
    BzImageInfo info;
    info.path = path;

    struct stat st {};
    if (::fstat(fd, &st) != 0) return errno_error(errno, path, "cannot stat");
    // kernel_read_file() refuses these before the bzImage loader sees anything.
    if (!S_ISREG(st.st_mode))
        return plain_error(path, "is not a regular file (kexec_file_load would fail with EINVAL)");
    if (st.st_size <= 0) return plain_error(path, "is empty (kexec_file_load would fail with EINVAL)");
    info.file_size = static_cast<std::uint64_t>(st.st_size);
    if (info.file_size > kKexecFileSizeMax)
        return plain_error(path, "is larger than 4 GiB, the most kexec_file_load reads (EFBIG)");

    std::array<unsigned char, kSetupMax> setup{};
    auto got = pread_full(fd, setup.data(), setup.size(), 0, path);
    if (!got) return got.error();
    const std::size_t len = *got;

    if (info.file_size < 2 * 512 || len < 2 * 512)
        return refused(path, "is too short to be a bzImage: " + std::to_string(info.file_size) +
                                 " bytes, a bzImage has at least two 512-byte sectors");
    static_assert(kHeaderFieldsEnd < 2 * 512);

    if (std::memcmp(setup.data() + kHeaderMagic, "HdrS", 4) != 0)
        return refused(path, "is not a bzImage: no \"HdrS\" boot protocol signature at offset 0x202");
    info.boot_flag = le16(setup.data() + kBootFlag);
    if (info.boot_flag != 0xAA55)
        return refused(
            path, "is not an x86 boot image: boot_flag at 0x1fe is " + hex(info.boot_flag) + ", not 0xaa55");

    info.setup_sects_raw = setup[kSetupSects];
    info.setup_sects = info.setup_sects_raw == 0 ? 4 : info.setup_sects_raw;
    info.syssize = le32(setup.data() + kSyssize);
    info.protocol = le16(setup.data() + kVersion);
    info.kernel_version_ptr = le16(setup.data() + kKernelVersion);
    info.loadflags = setup[kLoadflags];
    info.kernel_alignment = le32(setup.data() + kKernelAlignment);
    info.relocatable = setup[kRelocatable] != 0;
    info.min_alignment = setup[kMinAlignment];
    info.xloadflags = le16(setup.data() + kXloadflags);
    info.cmdline_size = le32(setup.data() + kCmdlineSize);
    info.payload_offset = le32(setup.data() + kPayloadOffset);
    info.payload_length = le32(setup.data() + kPayloadLength);
    info.pref_address = le64(setup.data() + kPrefAddress);
    info.init_size = le32(setup.data() + kInitSize);
    info.handover_offset = le32(setup.data() + kHandoverOffset);
    info.kernel_info_offset = le32(setup.data() + kKernelInfoOffset);
    info.setup_header_end = 0x202 + static_cast<std::uint64_t>(setup[kJump + 1]);
    info.kernel_offset = (static_cast<std::uint64_t>(info.setup_sects) + 1) * 512;
    info.kernel_bytes = info.file_size > info.kernel_offset ? info.file_size - info.kernel_offset : 0;

    if (info.protocol < 0x020c)
        return refused(path, "speaks boot protocol " + info.protocol_string() +
                                 "; kexec_file_load needs 2.12 or later (a 64-bit kernel from Linux 3.8 on)");
    if (!(info.loadflags & kLoadedHigh))
        return refused(path, "is a zImage, not a bzImage: LOADED_HIGH is not set in loadflags");
    if (!info.has(kXlfKernel64))
        return refused(path, "has no 64-bit entry point: XLF_KERNEL_64 is not set in xloadflags " +
                                 hex(info.xloadflags) + " (a 32-bit kernel?)");
    if (!info.has(kXlfCanBeLoadedAbove4G))
        return refused(path,
                       "cannot be loaded above 4 GiB: XLF_CAN_BE_LOADED_ABOVE_4G is not set in "
                       "xloadflags " +
                           hex(info.xloadflags));
    // bzImage64_load(): the setup sectors must be in the file.
    if (info.file_size < info.kernel_offset)
        return refused(path, "is truncated: " + std::to_string(info.file_size) + " bytes, but its " +
                                 std::to_string(info.setup_sects) + " setup sectors alone need " +
                                 std::to_string(info.kernel_offset));

    // sanity_check_segment_list(): the kernel segment's bytes must fit in its
    // memsz, PAGE_ALIGN(init_size).
    const std::uint64_t memsz = (static_cast<std::uint64_t>(info.init_size) + 4095) & ~std::uint64_t{4095};
    if (info.kernel_bytes > memsz)
        return plain_error(path,
                           "declares init_size " + hex(info.init_size) + ", less than its own " +
                               std::to_string(info.kernel_bytes) +
                               " bytes of protected-mode code (kexec_file_load would fail with EINVAL)");

    read_version(info, setup.data(), len);
    if (auto pe = read_pe(info, fd, setup.data(), len); !pe) return pe.error();
    return info;
}

Result<BzImageInfo> read_bzimage(const std::filesystem::path& path) {
    auto file = open_regular_file(path, "the kernel");
    if (!file) return file.error();
    return read_bzimage(file->fd.get(), path.string());
}

Result<void> check_bzimage_host(const BzImageInfo& image, const BzImageHost& host) {
    if (host.efi_32bit.value_or(false))
        return plain_error(image.path,
                           "cannot be loaded by kexec_file_load on this machine: the EFI firmware is "
                           "32-bit, so no kernel can be placed above 4 GiB (ENOEXEC); use kexec_load "
                           "(kexec -c) instead");
    if (host.five_level_paging.value_or(false) && !image.has(kXlfFiveLevel))
        return plain_error(image.path,
                           "cannot take over from this kernel: the running kernel uses 5-level paging "
                           "(la57) and the image lacks XLF_5LEVEL (ENOEXEC); boot the current kernel "
                           "with no5lvl, or use a kernel built with 5-level paging support");
    return {};
}

std::uint64_t max_cmdline_len(const BzImageInfo& image) {
    return image.cmdline_size > kElfcorehdrReserve ? image.cmdline_size - kElfcorehdrReserve : 0;
}

Result<void> check_cmdline_len(const BzImageInfo& image, std::uint64_t cmdline_len_with_nul) {
    const std::uint64_t max = max_cmdline_len(image);
    if (cmdline_len_with_nul <= max) return {};
    return plain_error(image.path, "the command line is " + std::to_string(cmdline_len_with_nul - 1) +
                                       " characters; this kernel takes at most " +
                                       std::to_string(max > 0 ? max - 1 : 0) + " (cmdline_size " +
                                       std::to_string(image.cmdline_size) + " less " +
                                       std::to_string(kElfcorehdrReserve) +
                                       " kept for elfcorehdr=) and kexec_file_load would fail with EINVAL");
}

BzImageHost read_bzimage_host(const Sysroot& root) {
    BzImageHost h;
    if (auto cpuinfo = read_file(root.proc("cpuinfo"))) {
        std::istringstream in(*cpuinfo);
        std::string line;
        while (std::getline(in, line)) {
            if (line.rfind("flags", 0) != 0) continue;
            std::istringstream words(
                line.substr(line.find(':') == std::string::npos ? line.size() : line.find(':') + 1));
            std::string w;
            bool la57 = false;
            while (words >> w) la57 = la57 || w == "la57";
            h.five_level_paging = la57;
            break;
        }
    }
    if (auto size = read_trimmed(root.sys("firmware/efi/fw_platform_size")))
        h.efi_32bit = *size == "32";
    else if (!exists(root.sys("firmware/efi")))
        h.efi_32bit = false;
    return h;
}

}  // namespace khod
