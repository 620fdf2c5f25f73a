// libFuzzer target for the ELF core header reader (`khoctl elfcorehdr show`:
// an elfcorehdr file, /proc/vmcore, a saved dump). The bytes are read from
// memory; as a hash of them picks, one input in 8 is also read from a memfd
// through pread, which must agree, and one in 1024 is rendered as JSON and
// text (rendering a header costs about a hundred times reading it; the memfd
// took a third of what was left). A crash, a sanitizer report, an exception, a
// disagreement or a broken invariant below is a finding.
#include <elf.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <span>
#include <string_view>

#include "khod/base/fd.hpp"
#include "khod/crash/core_header.hpp"

namespace {

void check(const khod::CoreHeaderInfo& info, std::size_t size) {
    if (info.file_size != size || info.elf.phdrs.size() >= 0xffff) std::abort();
    if (info.notes.size() > khod::kMaxNotes || info.prstatus.size() > info.notes.size()) std::abort();
    for (const auto& n : info.notes)
        if (n.offset >= size) std::abort();
    for (const auto& st : info.prstatus)
        if (st.note >= info.notes.size()) std::abort();
    for (const auto& r : info.ram)
        if (r.end < r.start) std::abort();
    if (info.form == khod::CoreForm::dump)
        for (const auto& p : info.elf.phdrs)
            if (p.type == PT_LOAD && (p.offset > size || p.filesz > size - p.offset)) std::abort();
    if (info.form == khod::CoreForm::elfcorehdr && !info.notes.empty()) std::abort();
}

// The same bytes read through pread from a memfd must give the same answer.
void compare_with_fd(const khod::Result<khod::CoreHeaderInfo>& from_memory, const std::uint8_t* data,
                     std::size_t size) {
    khod::UniqueFd fd(memfd_create("fuzz-elfcorehdr", MFD_CLOEXEC));
    if (fd.get() < 0 || ::write(fd.get(), data, size) != static_cast<ssize_t>(size)) std::abort();
    auto from_fd = khod::read_core_header(fd.get(), "fuzz");
    if (from_memory.has_value() != from_fd.has_value()) std::abort();
    if (!from_memory) {
        if (from_memory.error().describe() != from_fd.error().describe()) std::abort();
        return;
    }
    if (from_memory->elf.phdrs != from_fd->elf.phdrs || from_memory->vmcoreinfo != from_fd->vmcoreinfo)
        std::abort();
}

void render(const khod::CoreHeaderInfo& info) {
    (void)khod::to_json(info).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    (void)khod::format_core_header(info);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::size_t pick =
        std::hash<std::string_view>{}(std::string_view(reinterpret_cast<const char*>(data), size));
    auto from_memory = khod::read_core_header(std::span<const std::uint8_t>(data, size), "fuzz");
    if (pick % 8 == 0) compare_with_fd(from_memory, data, size);
    if (!from_memory) return 0;
    check(*from_memory, size);
    if ((pick >> 8) % 1024 == 0) render(*from_memory);
    return 0;
}
