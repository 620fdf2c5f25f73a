// The kernel's uevent datagrams, and which of them khod acts on.
#include <gtest/gtest.h>

#include <string>

#include "khod/kdump/uevent.hpp"

using namespace khod;

namespace {

std::string datagram(std::initializer_list<std::string> parts) {
    std::string s;
    for (const auto& p : parts) {
        s += p;
        s += '\0';
    }
    return s;
}

}  // namespace

TEST(Uevent, MemoryOnlineAsTheKernelSendsIt) {
    auto ev = parse_kernel_uevent(
        datagram({"online@/devices/system/memory/memory9", "ACTION=online",
                  "DEVPATH=/devices/system/memory/memory9", "SUBSYSTEM=memory", "SEQNUM=2045"}));
    ASSERT_TRUE(ev) << ev.error().describe();
    EXPECT_EQ(ev->action, "online");
    EXPECT_EQ(ev->subsystem, "memory");
    EXPECT_EQ(*ev->seqnum, 2045u);
    EXPECT_FALSE(ev->synthetic);
    auto h = hotplug_event(*ev);
    ASSERT_TRUE(h);
    EXPECT_EQ(h->subsystem, HotplugSubsystem::memory);
}

TEST(Uevent, SyntheticCpuEventFromAUeventFile) {
    auto ev = parse_kernel_uevent(
        datagram({"offline@/devices/system/cpu/cpu1", "ACTION=offline", "DEVPATH=/devices/system/cpu/cpu1",
                  "SUBSYSTEM=cpu", "MODALIAS=cpu:type:x86", "SYNTH_UUID=0", "SEQNUM=7"}));
    ASSERT_TRUE(ev);
    EXPECT_TRUE(ev->synthetic);
    auto h = hotplug_event(*ev);
    ASSERT_TRUE(h);
    EXPECT_EQ(h->subsystem, HotplugSubsystem::cpu);
    EXPECT_TRUE(h->synthetic);
}

TEST(Uevent, OtherEventsAreNotHotplug) {
    auto change = parse_kernel_uevent(datagram({"change@/devices/system/cpu/cpu1", "ACTION=change",
                                                "DEVPATH=/devices/system/cpu/cpu1", "SUBSYSTEM=cpu"}));
    ASSERT_TRUE(change);
    EXPECT_FALSE(hotplug_event(*change));
    auto block = parse_kernel_uevent(datagram({"add@/devices/virtual/block/loop0", "ACTION=add",
                                               "DEVPATH=/devices/virtual/block/loop0", "SUBSYSTEM=block"}));
    ASSERT_TRUE(block);
    EXPECT_FALSE(hotplug_event(*block));
}

TEST(Uevent, RefusesWhatTheKernelDoesNotSend) {
    EXPECT_FALSE(parse_kernel_uevent(""));
    EXPECT_FALSE(parse_kernel_uevent(datagram({"libudev", "garbage"})));
    EXPECT_FALSE(parse_kernel_uevent(datagram({"@/x"})));
    EXPECT_FALSE(parse_kernel_uevent(datagram({"add@"})));
    EXPECT_FALSE(parse_kernel_uevent(datagram({"add@/a", "ACTION=remove", "DEVPATH=/a"})));
    EXPECT_FALSE(parse_kernel_uevent(datagram({"add@/a", "SEQNUM=12x"})));
    // No NUL at all, and keys without '=': bounded, no crash.
    auto bare = parse_kernel_uevent("add@/devices/system/cpu/cpu0");
    ASSERT_TRUE(bare);
    EXPECT_EQ(bare->devpath, "/devices/system/cpu/cpu0");
    EXPECT_TRUE(parse_kernel_uevent(datagram({"add@/a", "NOEQUALS", "SUBSYSTEM=cpu"})));
}
