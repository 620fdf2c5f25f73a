#include "khod/luo/liveupdate.hpp"

namespace khod {

LiveupdateStatus probe_liveupdate(const Sysroot& root, const Cmdline& cmdline) {
    LiveupdateStatus s;
    KernelPath dev = root.dev("liveupdate");
    s.device = dev.kernel;
    s.present = exists(dev);
    s.cmdline_value = cmdline.value("liveupdate");
    return s;
}

}  // namespace khod
