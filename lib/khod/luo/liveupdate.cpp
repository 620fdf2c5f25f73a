#include "khod/luo/liveupdate.hpp"

#include "khod/kho/kho_records.hpp"

namespace khod {

LiveupdateStatus probe_liveupdate(const Sysroot& root, const Cmdline& cmdline) {
    LiveupdateStatus s;
    KernelPath dev = root.dev("liveupdate");
    s.device = dev.kernel;
    s.present = exists(dev);
    s.cmdline_value = cmdline.value("liveupdate");
    return s;
}

std::optional<std::uint64_t> incoming_liveupdate_number(const Sysroot& root) {
    KernelPath path = root.debugfs("kho/in/sub_fdts/LUO");
    auto bytes = read_file(path);
    if (!bytes) return std::nullopt;
    auto record = decode_luo_record(*bytes, path.kernel);
    if (!record || !record->known) return std::nullopt;
    return record->liveupdate_num;
}

}  // namespace khod
