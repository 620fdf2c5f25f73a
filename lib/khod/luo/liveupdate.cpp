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

namespace {

std::optional<std::uint64_t> luo_record_number(const Sysroot& root, const std::string& rel) {
    KernelPath path = root.debugfs(rel);
    auto bytes = read_file(path);
    if (!bytes) return std::nullopt;
    auto record = decode_luo_record(*bytes, path.kernel);
    if (!record || !record->known) return std::nullopt;
    return record->liveupdate_num;
}

}  // namespace

std::optional<std::uint64_t> incoming_liveupdate_number(const Sysroot& root) {
    if (auto in = luo_record_number(root, "kho/in/sub_fdts/LUO")) return in;
    // The outgoing record says the next boot's number: this boot's plus one.
    auto out = luo_record_number(root, "kho/out/sub_fdts/LUO");
    if (!out || *out == 0) return std::nullopt;
    return *out - 1;
}

}  // namespace khod
