// Knobs a test sets for a khod running the fakes (--fake-kexec): files in
// the fixture sysroot, since the test and khod are different processes.
#pragma once

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "khod/base/sysroot.hpp"

namespace khod {

// Sleeps the milliseconds written in the sysroot's knob file (kernel path,
// e.g. "/fake-kdump/load-delay-ms"), as a slow kexec_file_load would take;
// nothing when the file is absent or not a number. KNOB.sleeping exists
// meanwhile, so a test can see the load in flight.
inline void sleep_as_knob_says(const Sysroot& root, const std::string& knob) {
    auto text = read_trimmed(root.resolve(knob));
    if (!text || text->empty() || text->size() > 6 ||
        text->find_first_not_of("0123456789") != std::string::npos)
        return;
    const KernelPath sleeping = root.resolve(knob + ".sleeping");
    std::ofstream(sleeping.host) << "1\n";  // a new file: write_file() opens existing ones only
    std::this_thread::sleep_for(std::chrono::milliseconds(std::stoul(*text)));
    std::error_code ec;
    std::filesystem::remove(sleeping.host, ec);
}

}  // namespace khod
