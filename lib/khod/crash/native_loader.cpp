#include "khod/crash/native_loader.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "khod/base/fd.hpp"
#include "khod/base/units.hpp"

namespace khod {

namespace {

constexpr std::uint64_t kPage = 4096;
// The kernel's 64-bit entry point, from the start of the protected-mode part.
constexpr std::uint64_t kEntry64Offset = 0x200;
// The kernel allocates its control page and identity-map page tables from
// free pages of the crash region (kimage_alloc_crash_control_pages).
constexpr std::uint64_t kControlReserve = 1ull << 20;

std::uint64_t align_up(std::uint64_t v, std::uint64_t a) {
    return (v + a - 1) / a * a;
}

std::string hex_addr(std::uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

Result<UniqueFd> open_regular(const std::filesystem::path& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return errno_error(errno, path.string(), "cannot open");
    return fd;
}

// The whole of an open regular file, read through that fd.
Result<std::vector<std::uint8_t>> read_whole(int fd, const std::filesystem::path& path) {
    struct stat st {};
    if (::fstat(fd, &st) != 0) return errno_error(errno, path.string(), "cannot stat");
    if (!S_ISREG(st.st_mode)) return plain_error(path.string(), "is not a regular file");
    std::vector<std::uint8_t> data(static_cast<std::size_t>(st.st_size));
    std::size_t at = 0;
    while (at < data.size()) {
        const ssize_t n = ::pread(fd, data.data() + at, data.size() - at, static_cast<off_t>(at));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno_error(errno, path.string(), "cannot read");
        if (n == 0) return plain_error(path.string(), "shrank while it was read");
        at += static_cast<std::size_t>(n);
    }
    return data;
}

// Places segments upwards from the region's start.
class RegionCursor {
public:
    explicit RegionCursor(PhysRange region) : region_(region), at_(region.start) {}

    Result<std::uint64_t> take(const std::string& what, std::uint64_t memsz, std::uint64_t align) {
        const std::uint64_t start = align_up(at_, std::max(align, kPage));
        const std::uint64_t end = start + align_up(memsz, kPage);
        if (end > region_.end || end < start)
            return plain_error("", "the crashkernel region [" + hex_addr(region_.start) + ", " +
                                       hex_addr(region_.end) + ") of " + human_size(region_.size()) +
                                       " has no room for the " + what + " (" + human_size(memsz) + " at " +
                                       hex_addr(start) + "); reserve more with crashkernel=");
        gaps_ += start - at_;
        at_ = end;
        return start;
    }
    std::uint64_t free_bytes() const { return gaps_ + (region_.end - at_); }

private:
    PhysRange region_;
    std::uint64_t at_;
    std::uint64_t gaps_ = 0;
};

std::span<const std::uint8_t> bytes_of(const std::vector<std::uint8_t>& v) {
    return {v.data(), v.size()};
}

}  // namespace

Result<NativeCrashInputs> read_native_crash_inputs(const Sysroot& root, const NativeCrashRequest& request) {
    auto purgatory = PurgatoryObject::load(request.purgatory);
    if (!purgatory) return purgatory.error();
    NativeCrashInputs in;
    in.purgatory = std::move(*purgatory);

    // One fd for the header check and the bytes: the file cannot change between them.
    auto kernel_fd = open_regular(request.kernel);
    if (!kernel_fd) return kernel_fd.error();
    auto info = read_bzimage(kernel_fd->get(), request.kernel.string());
    if (!info) return info.error();
    in.kernel = std::move(*info);
    auto kernel_file = read_whole(kernel_fd->get(), request.kernel);
    if (!kernel_file) return kernel_file.error();
    in.kernel_file = std::move(*kernel_file);
    if (in.kernel.file_size != in.kernel_file.size())
        return plain_error(request.kernel.string(), "changed while it was read");
    if (!request.initrd.empty()) {
        auto initrd_fd = open_regular(request.initrd);
        if (!initrd_fd) return initrd_fd.error();
        auto initrd = read_whole(initrd_fd->get(), request.initrd);
        if (!initrd) return initrd.error();
        in.initrd = std::move(*initrd);
        in.has_initrd = true;
    }
    in.cmdline = request.cmdline;

    const KernelPath iomem_path = root.proc("iomem");
    auto iomem_text = read_file(iomem_path);
    if (!iomem_text) return iomem_text.error();
    auto iomem = parse_iomem(*iomem_text, iomem_path.host.string());
    if (!iomem) return iomem.error();
    in.iomem = std::move(*iomem);

    auto cma = read_crash_cma(root);
    if (!cma) return cma.error();
    in.crash_cma = std::move(*cma);

    if (auto bp = read_file(root.sys("kernel/boot_params/data")); bp && bp->size() >= kBootParamsSize)
        in.firmware_boot_params.assign(bp->begin(), bp->begin() + kBootParamsSize);

    auto layout = read_core_layout(root, request.kcore_fd, request.layout_cache);
    if (!layout) return layout.error();
    auto header = build_elfcorehdr(*layout);
    if (!header) return header.error();
    in.elfcorehdr = std::move(*header);
    auto capacity = elfcorehdr_capacity(root, request.max_cpus, request.max_ranges);
    if (!capacity) return capacity.error();
    in.elfcorehdr_capacity = std::max<std::uint64_t>(*capacity, in.elfcorehdr.size());
    return in;
}

namespace {

// Where each segment goes, bottom up (see the header), and what is left.
struct Placement {
    PhysRange elfcorehdr;
    std::string cmdline;  // the capture kernel's, elfcorehdr= first
    std::uint64_t params = 0, params_size = 0;
    std::uint64_t purgatory = 0;
    std::uint64_t kernel = 0, kernel_memsz = 0;
    std::uint64_t initrd = 0;
    std::uint64_t free_bytes = 0;
};

Result<Placement> place_segments(const NativeCrashInputs& in, PhysRange region) {
    Placement p;
    RegionCursor cursor(region);
    // The elfcorehdr where the kernel's own loader puts it, at the start.
    auto elf_at = cursor.take("elfcorehdr", in.elfcorehdr_capacity, kPage);
    if (!elf_at) return elf_at.error();
    p.elfcorehdr = {*elf_at, *elf_at + align_up(in.elfcorehdr_capacity, kPage)};
    p.cmdline = "elfcorehdr=" + hex_addr(p.elfcorehdr.start) + " " + in.cmdline;
    // The file loader's rule: the prefix fits in the kElfcorehdrReserve bytes kept back.
    if (auto ok = check_cmdline_len(in.kernel, in.cmdline.size() + 1); !ok) return ok.error();
    p.params_size = kBootParamsSize + p.cmdline.size() + 1;
    auto params_at = cursor.take("boot_params and command line", p.params_size, kPage);
    if (!params_at) return params_at.error();
    auto purgatory_at = cursor.take("purgatory", in.purgatory.memsz(), in.purgatory.alignment());
    if (!purgatory_at) return purgatory_at.error();
    p.kernel_memsz = std::max<std::uint64_t>(in.kernel.init_size, in.kernel.kernel_bytes);
    auto kernel_at = cursor.take("kernel (init_size)", p.kernel_memsz,
                                 std::max<std::uint64_t>(in.kernel.kernel_alignment, kPage));
    if (!kernel_at) return kernel_at.error();
    if (in.has_initrd) {
        auto at = cursor.take("initrd", in.initrd.size(), kPage);
        if (!at) return at.error();
        p.initrd = *at;
    }
    p.params = *params_at;
    p.purgatory = *purgatory_at;
    p.kernel = *kernel_at;
    p.free_bytes = cursor.free_bytes();
    if (p.free_bytes < kControlReserve)
        return plain_error("", "the crashkernel region of " + human_size(region.size()) + " leaves " +
                                   human_size(p.free_bytes) + " for the kernel's control pages, under " +
                                   human_size(kControlReserve) + "; reserve more with crashkernel=");
    return p;
}

// The zero page and the command line after it.
Result<CrashSegment> params_segment(const NativeCrashInputs& in, const Placement& p,
                                    const std::vector<E820Entry>& memmap) {
    BootParamsRequest bp;
    bp.setup_header = std::span(in.kernel_file).subspan(0x1f1, in.kernel.setup_header_end - 0x1f1);
    bp.firmware = bytes_of(in.firmware_boot_params);
    bp.cmdline_addr = p.params + kBootParamsSize;
    bp.initrd_addr = p.initrd;
    bp.initrd_size = in.has_initrd ? in.initrd.size() : 0;
    bp.memmap = memmap;
    auto zero_page = build_boot_params(bp);
    if (!zero_page) return zero_page.error();
    CrashSegment params{"boot_params", {}, p.params, align_up(p.params_size, kPage)};
    params.bytes.assign(kBootParamsSize + p.cmdline.size() + 1, 0);  // the NUL included
    std::memcpy(params.bytes.data(), zero_page->data(), kBootParamsSize);
    std::memcpy(params.bytes.data() + kBootParamsSize, p.cmdline.data(), p.cmdline.size());
    return params;
}

// The purgatory placed and patched to check every other segment but the
// elfcorehdr, which the kernel rewrites in place.
Result<CrashSegment> purgatory_segment(const NativeCrashInputs& in, const Placement& p,
                                       NativeCrashImage& image,
                                       const std::vector<const CrashSegment*>& digested) {
    PurgatoryPatch patch;
    patch.kernel_entry = image.kernel_entry;
    patch.boot_params = p.params;
    std::vector<std::span<const std::uint8_t>> parts;
    for (const CrashSegment* s : digested) {
        image.digest_regions.push_back({s->mem, s->bytes.size()});
        parts.push_back(bytes_of(s->bytes));
    }
    patch.regions = image.digest_regions;
    auto digest = sha256_of(parts);
    if (!digest) return digest.error();
    patch.digest = *digest;
    auto placed = in.purgatory.place(p.purgatory, patch);
    if (!placed) return placed.error();
    image.entry = placed->entry;
    return CrashSegment{"purgatory", std::move(placed->image), p.purgatory, align_up(placed->memsz, kPage)};
}

// The kernel finds the elfcorehdr to rewrite by scanning for the ELF magic.
Result<void> check_segments(const std::vector<CrashSegment>& segments) {
    for (const auto& s : segments) {
        const bool magic = s.bytes.size() >= 4 && std::memcmp(s.bytes.data(),
                                                              "\x7f"
                                                              "ELF",
                                                              4) == 0;
        if (magic != (s.what == "elfcorehdr"))
            return plain_error(
                "", "segment " + s.what + (magic ? " starts" : " does not start") +
                        " with the ELF magic: the kernel would rewrite the wrong segment on hotplug");
        if (s.bytes.size() > s.memsz)
            return plain_error("", "segment " + s.what + " is larger than its memory");
    }
    return {};
}

}  // namespace

Result<NativeCrashImage> plan_native_crash_image(const NativeCrashInputs& in) {
    NativeCrashImage image;
    auto regions = crash_regions(in.iomem, "/proc/iomem");
    if (!regions) return regions.error();
    image.crash_region = regions->main;
    auto p = place_segments(in, image.crash_region);
    if (!p) return p.error();
    image.cmdline = p->cmdline;
    image.free_bytes = p->free_bytes;
    image.memmap = capture_memmap({in.iomem, image.crash_region, regions->low, in.crash_cma, p->elfcorehdr});

    auto params = params_segment(in, *p, image.memmap);
    if (!params) return params.error();
    CrashSegment kernel{"kernel", {}, p->kernel, align_up(p->kernel_memsz, kPage)};
    kernel.bytes.assign(in.kernel_file.begin() + static_cast<std::ptrdiff_t>(in.kernel.kernel_offset),
                        in.kernel_file.end());
    image.kernel_entry = p->kernel + kEntry64Offset;
    CrashSegment initrd{"initrd", in.initrd, p->initrd, align_up(in.initrd.size(), kPage)};
    std::vector<const CrashSegment*> digested{&*params, &kernel};
    if (in.has_initrd) digested.push_back(&initrd);
    auto purgatory = purgatory_segment(in, *p, image, digested);
    if (!purgatory) return purgatory.error();

    image.segments.push_back({"elfcorehdr", in.elfcorehdr, p->elfcorehdr.start, p->elfcorehdr.size()});
    image.segments.push_back(std::move(*params));
    image.segments.push_back(std::move(*purgatory));
    image.segments.push_back(std::move(kernel));
    if (in.has_initrd) image.segments.push_back(std::move(initrd));
    if (auto ok = check_segments(image.segments); !ok) return ok.error();
    return image;
}

Result<void> kexec_load_crash(const Sysroot& root, const NativeCrashImage& image) {
    if (!root.is_live())
        return plain_error(root.root().string(), "kexec_load needs the live system, not a sysroot");
    if (image.segments.size() > kKexecSegmentMax) return plain_error("", "more than 16 kexec segments");
    struct KexecSegment {  // struct kexec_segment
        const void* buf;
        std::size_t bufsz;
        std::uint64_t mem;
        std::size_t memsz;
    };
    std::vector<KexecSegment> segments;
    for (const auto& s : image.segments) segments.push_back({s.bytes.data(), s.bytes.size(), s.mem, s.memsz});
    const unsigned long flags = kKexecOnCrash | kKexecUpdateElfcorehdr | kKexecArchX86_64;
    if (::syscall(SYS_kexec_load, image.entry, segments.size(), segments.data(), flags) != 0) {
        const int err = errno;
        return errno_error(err, "kexec_load", explain_kexec_load_errno(err));
    }
    return {};
}

std::string explain_kexec_load_errno(int err) {
    switch (err) {
        case EPERM:
            return "the kernel refused kexec_load: CAP_SYS_BOOT missing, kexec_load_disabled set, "
                   "kexec_load_limit_panic used up, or lockdown (kexec_load is refused under any lockdown "
                   "level; use the file loader with a signed kernel)";
        case ENOSYS: return "this kernel has no kexec_load (CONFIG_KEXEC off); use the file loader";
        case EBUSY: return "another kexec load or unload is running; try again";
        case EADDRNOTAVAIL: return "a segment or the entry point lies outside the crashkernel region";
        case EINVAL:
            return "the kernel refused the segment list or the flags (overlap, alignment, or a kernel "
                   "without the hotplug flag)";
        case ENOMEM: return "the kernel could not allocate the image or its control pages";
        default: return "the kernel refused the crash image";
    }
}

}  // namespace khod
