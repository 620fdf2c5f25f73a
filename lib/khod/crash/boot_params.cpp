#include "khod/crash/boot_params.hpp"

#include <algorithm>
#include <cstring>

namespace khod {

namespace {

constexpr std::uint64_t kPage = 4096;
constexpr std::uint64_t kLowMemEnd = 1ull << 20;

// struct boot_params offsets (arch/x86/include/uapi/asm/bootparam.h).
constexpr std::size_t kScreenInfo = 0x000;
constexpr std::size_t kScreenInfoSize = 0x040;
constexpr std::size_t kExtMemK = 0x002;  // screen_info.ext_mem_k
constexpr std::size_t kAcpiRsdpAddr = 0x070;
constexpr std::size_t kExtRamdiskImage = 0x0c0;
constexpr std::size_t kExtRamdiskSize = 0x0c4;
constexpr std::size_t kExtCmdLinePtr = 0x0c8;
constexpr std::size_t kAltMemK = 0x1e0;
constexpr std::size_t kE820Entries = 0x1e8;
constexpr std::size_t kEddbufEntries = 0x1e9;
constexpr std::size_t kEddMbrSigBufEntries = 0x1ea;
constexpr std::size_t kSecureBoot = 0x1ec;
constexpr std::size_t kSetupHeader = 0x1f1;
constexpr std::size_t kSetupHeaderMaxEnd = 0x290;
constexpr std::size_t kTypeOfLoader = 0x210;
constexpr std::size_t kLoadflags = 0x211;
constexpr std::size_t kRamdiskImage = 0x218;
constexpr std::size_t kRamdiskSize = 0x21c;
constexpr std::size_t kCmdLinePtr = 0x228;
constexpr std::size_t kHardwareSubarch = 0x23c;
constexpr std::size_t kSetupData = 0x250;
constexpr std::size_t kEddMbrSigBuffer = 0x290;
constexpr std::size_t kEddMbrSigBufferSize = 16 * 4;
constexpr std::size_t kE820Table = 0x2d0;
constexpr std::size_t kE820EntrySize = 20;
constexpr std::size_t kEddbuf = 0xd00;
constexpr std::size_t kEddbufSize = 6 * 82;  // EDDMAXNR * sizeof(struct edd_info)
// The kexec loader's boot loader id (Documentation/arch/x86/boot.rst: 0xD).
constexpr std::uint8_t kLoaderKexec = 0x0d << 4;

template <class T>
void put(std::array<std::uint8_t, kBootParamsSize>& page, std::size_t off, T value) {
    std::memcpy(page.data() + off, &value, sizeof value);
}

void copy_from(std::array<std::uint8_t, kBootParamsSize>& page, std::span<const std::uint8_t> from,
               std::size_t off, std::size_t len) {
    if (from.size() >= off + len) std::memcpy(page.data() + off, from.data() + off, len);
}

void add(std::vector<E820Entry>& out, std::uint64_t start, std::uint64_t end, E820Type type) {
    if (end > start) out.push_back({start, end - start, type});
}

// [range) minus every hole, in order; pieces shorter than a page are dropped
// as the kernel drops them.
std::vector<PhysRange> subtract(PhysRange range, std::vector<PhysRange> holes) {
    std::sort(holes.begin(), holes.end(),
              [](const PhysRange& a, const PhysRange& b) { return a.start < b.start; });
    std::vector<PhysRange> out;
    std::uint64_t at = range.start;
    for (const auto& h : holes) {
        if (h.end <= at || h.start >= range.end) continue;
        if (h.start > at) out.push_back({at, h.start});
        at = std::max(at, h.end);
    }
    if (at < range.end) out.push_back({at, range.end});
    std::erase_if(out, [](const PhysRange& r) { return r.size() < kPage; });
    return out;
}

}  // namespace

const char* to_string(E820Type type) {
    switch (type) {
        case E820Type::ram: return "ram";
        case E820Type::reserved: return "reserved";
        case E820Type::acpi: return "acpi";
        case E820Type::nvs: return "nvs";
    }
    return "unknown";
}

Result<CrashRegions> crash_regions(const std::vector<IomemEntry>& iomem, const std::string& path) {
    std::vector<PhysRange> found;
    for (const auto& e : iomem)
        if (e.name == "Crash kernel") found.push_back(e.range);
    if (found.empty())
        return plain_error(path,
                           "has no \"Crash kernel\" range: no crashkernel= memory is reserved "
                           "(or the file was read without CAP_SYS_ADMIN and shows no addresses)");
    std::sort(found.begin(), found.end(),
              [](const PhysRange& a, const PhysRange& b) { return a.start < b.start; });
    // reserve_crashkernel_low() only adds a low range when the main one went high.
    CrashRegions regions{found.back(), {}};
    found.pop_back();
    regions.low = std::move(found);
    return regions;
}

std::vector<E820Entry> capture_memmap(const CaptureMemory& memory) {
    std::vector<E820Entry> out;
    // walk_iomem_res_desc() visits every level of the resource tree.
    for (const auto& e : memory.iomem)
        if (e.name == "System RAM" && e.range.start < kLowMemEnd)
            add(out, e.range.start, std::min(e.range.end, kLowMemEnd), E820Type::ram);
    for (const auto& e : memory.iomem)
        if (e.name == "ACPI Tables") add(out, e.range.start, e.range.end, E820Type::acpi);
    for (const auto& e : memory.iomem)
        if (e.name == "ACPI Non-volatile Storage") add(out, e.range.start, e.range.end, E820Type::nvs);
    for (const auto& e : memory.iomem)
        if (e.name == "Reserved") add(out, e.range.start, e.range.end, E820Type::reserved);
    for (const auto& low : memory.low_crash_regions) add(out, low.start, low.end, E820Type::ram);
    for (const auto& r : subtract(memory.crash_region, {memory.elfcorehdr}))
        add(out, r.start, r.end, E820Type::ram);
    for (const auto& cma : memory.crash_cma) add(out, cma.start, cma.end, E820Type::ram);
    return out;
}

Result<std::array<std::uint8_t, kBootParamsSize>> build_boot_params(const BootParamsRequest& request) {
    std::array<std::uint8_t, kBootParamsSize> page{};
    const std::size_t header_end = kSetupHeader + request.setup_header.size();
    if (request.setup_header.size() < 0x202 - kSetupHeader || header_end > kSetupHeaderMaxEnd)
        return plain_error("", "setup header of " + std::to_string(request.setup_header.size()) +
                                   " bytes does not fit struct boot_params");
    if (request.memmap.size() > kZeroPageE820Max)
        return plain_error("", "the capture kernel's memory map has " +
                                   std::to_string(request.memmap.size()) + " entries; the zero page holds " +
                                   std::to_string(kZeroPageE820Max));

    // What firmware told the running kernel and a capture kernel cannot ask again.
    copy_from(page, request.firmware, kScreenInfo, kScreenInfoSize);
    copy_from(page, request.firmware, kAcpiRsdpAddr, 8);
    copy_from(page, request.firmware, kEddbufEntries, 1);
    copy_from(page, request.firmware, kEddMbrSigBufEntries, 1);
    copy_from(page, request.firmware, kSecureBoot, 1);
    copy_from(page, request.firmware, kEddMbrSigBuffer, kEddMbrSigBufferSize);
    copy_from(page, request.firmware, kEddbuf, kEddbufSize);

    std::memcpy(page.data() + kSetupHeader, request.setup_header.data(), request.setup_header.size());
    copy_from(page, request.firmware, kHardwareSubarch, 4);
    page[kTypeOfLoader] = kLoaderKexec;
    page[kLoadflags] = 0;
    put<std::uint64_t>(page, kSetupData, 0);
    put<std::uint32_t>(page, kCmdLinePtr, static_cast<std::uint32_t>(request.cmdline_addr));
    put<std::uint32_t>(page, kExtCmdLinePtr, static_cast<std::uint32_t>(request.cmdline_addr >> 32));
    if (request.initrd_size != 0) {
        put<std::uint32_t>(page, kRamdiskImage, static_cast<std::uint32_t>(request.initrd_addr));
        put<std::uint32_t>(page, kExtRamdiskImage, static_cast<std::uint32_t>(request.initrd_addr >> 32));
        put<std::uint32_t>(page, kRamdiskSize, static_cast<std::uint32_t>(request.initrd_size));
        put<std::uint32_t>(page, kExtRamdiskSize, static_cast<std::uint32_t>(request.initrd_size >> 32));
    }

    page[kE820Entries] = static_cast<std::uint8_t>(request.memmap.size());
    put<std::uint16_t>(page, kExtMemK, 0);
    put<std::uint32_t>(page, kAltMemK, 0);
    for (std::size_t i = 0; i < request.memmap.size(); ++i) {
        const auto& e = request.memmap[i];
        const std::size_t off = kE820Table + i * kE820EntrySize;
        put<std::uint64_t>(page, off, e.addr);
        put<std::uint64_t>(page, off + 8, e.size);
        put<std::uint32_t>(page, off + 16, static_cast<std::uint32_t>(e.type));
        // The legacy memory size fields describe the RAM run that crosses 1 MiB.
        const std::uint64_t end = e.addr + e.size - 1;
        if (e.type == E820Type::ram && e.addr <= kLowMemEnd && end > kLowMemEnd) {
            const std::uint64_t mem_k = (end >> 10) - (kLowMemEnd >> 10);
            put<std::uint16_t>(page, kExtMemK,
                               static_cast<std::uint16_t>(std::min<std::uint64_t>(mem_k, 0xfc00)));
            put<std::uint32_t>(page, kAltMemK,
                               static_cast<std::uint32_t>(std::min<std::uint64_t>(mem_k, 0xffffffff)));
        }
    }
    return page;
}

}  // namespace khod
