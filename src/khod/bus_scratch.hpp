// org.kexec.khod1.Scratch on /org/kexec/khod1: the planner of lib/khod/scratch/
// over the bus. Defined in dbus/org.kexec.khod1.Scratch.xml.
#pragma once

#include <systemd/sd-bus.h>

#include "khod/base/sysroot.hpp"
#include "sd_ptr.hpp"

namespace khod {

class ScratchObject {
public:
    // root may be null only for --bus-introspect, where no member is called.
    ScratchObject(sd_bus* bus, Sysroot* root) : bus_(bus), root_(root) {}
    ScratchObject(const ScratchObject&) = delete;
    ScratchObject& operator=(const ScratchObject&) = delete;

    int attach();

private:
    static const sd_bus_vtable vtable_[];
    static int method_plan(sd_bus_message* m, void* userdata, sd_bus_error* error);

    sd_bus* bus_;
    Sysroot* root_;
    SdBusSlotPtr slot_;
};

}  // namespace khod
