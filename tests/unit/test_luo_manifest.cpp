// The manifest: round trip, and the strict decoder's refusals.
#include <gtest/gtest.h>

#include "khod/luo/luo_manifest.hpp"

using namespace khod;

namespace {

LuoManifest sample() {
    LuoManifest m;
    m.release = "7.2.0-khod";
    m.phases = {1, 2, 3};
    LuoSessionEntry s{"vm-1", {1000, "vm@1.service"}, {{7, 4096, 15, false}, {8, 1, 0, true}}, false};
    m.sessions.push_back(s);
    m.sessions.push_back(LuoSessionEntry{"vm-1", {0, ""}, {}, true});
    return m;
}

std::string with(const std::string& from, const std::string& to) {
    std::string text = encode_manifest(sample());
    auto at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return text.replace(at, from.size(), to);
}

}  // namespace

TEST(LuoManifest, RoundTrip) {
    auto m = decode_manifest(encode_manifest(sample()));
    ASSERT_TRUE(m) << m.error().describe();
    EXPECT_EQ(m->release, "7.2.0-khod");
    EXPECT_EQ(m->phases.reboot_syscall, 3U);
    ASSERT_EQ(m->sessions.size(), 2U);
    EXPECT_EQ(m->sessions[0].owner.unit, "vm@1.service");
    EXPECT_FALSE(m->sessions[0].incoming);
    EXPECT_TRUE(m->sessions[1].incoming);
    ASSERT_EQ(m->sessions[0].files.size(), 2U);
    EXPECT_EQ(m->sessions[0].files[0].size, 4096U);
    EXPECT_EQ(m->sessions[0].files[0].seals, 15U);
    EXPECT_TRUE(m->sessions[0].files[1].retrieved);
}

TEST(LuoManifest, RefusesNewerFormat) {
    auto m = decode_manifest(with("\"format\":1", "\"format\":2"));
    ASSERT_FALSE(m);
    EXPECT_NE(m.error().message.find("format 2"), std::string::npos);
}

TEST(LuoManifest, RefusesWrongTypesNamingTheField) {
    auto m = decode_manifest(with("\"token\":7", "\"token\":\"7\""));
    ASSERT_FALSE(m);
    EXPECT_NE(m.error().message.find("sessions[0].files[0].token"), std::string::npos) << m.error().message;
    EXPECT_FALSE(decode_manifest(with("\"token\":7", "\"token\":-7")));
    EXPECT_FALSE(decode_manifest(with("\"token\":7", "\"token\":7.5")));
    EXPECT_FALSE(decode_manifest(with("\"incoming\":false", "\"incoming\":0")));
    EXPECT_FALSE(decode_manifest(with("\"uid\":1000", "\"uid\":4294967295")));
    EXPECT_FALSE(decode_manifest(with("\"seals\":15", "\"seals\":4294967296")));
    EXPECT_FALSE(decode_manifest(with("\"unit\":\"vm@1.service\"", "\"unit\":null")));
}

TEST(LuoManifest, RefusesMissingFieldsAndDuplicates) {
    EXPECT_FALSE(decode_manifest(with("\"release\":", "\"rel\":")));
    EXPECT_FALSE(decode_manifest(with("\"token\":8", "\"token\":7")));
    EXPECT_FALSE(decode_manifest(with("\"incoming\":true", "\"incoming\":false")));
    EXPECT_FALSE(decode_manifest(with("\"name\":\"vm-1\"", "\"name\":\"\"")));
    EXPECT_FALSE(decode_manifest(with("\"name\":\"vm-1\"", "\"name\":\"" + std::string(64, 'a') + "\"")));
}

TEST(LuoManifest, BracketsInsideStringsAreNotNesting) {
    auto m = decode_manifest(with("\"release\":\"", "\"release\":\"[[[[{{{{\\\"[[["));
    ASSERT_TRUE(m) << m.error().message;
    EXPECT_EQ(m->release.substr(0, 12), "[[[[{{{{\"[[[");
}

TEST(LuoManifest, RefusesGarbageDeepAndHuge) {
    EXPECT_FALSE(decode_manifest(""));
    EXPECT_FALSE(decode_manifest("[]"));
    EXPECT_FALSE(decode_manifest("{\"format\":1"));
    EXPECT_FALSE(decode_manifest(std::string(10000, '[') + std::string(10000, ']')));
    auto deep = decode_manifest(with("\"phases\":{", "\"extra\":[[[[[[]]]]]],\"phases\":{"));
    ASSERT_FALSE(deep);
    EXPECT_NE(deep.error().message.find("nested deeper"), std::string::npos) << deep.error().message;
    EXPECT_FALSE(decode_manifest(std::string(luo_manifest_max_bytes + 1, ' ')));
    std::string many =
        "{\"format\":1,\"release\":\"r\",\"phases\":{\"exec_requested\":0,\"inhibitors_released\":0,"
        "\"reboot_syscall\":0},\"sessions\":[";
    for (std::size_t i = 0; i <= luo_manifest_max_sessions; ++i) many += (i ? ",{}" : "{}");
    EXPECT_FALSE(decode_manifest(many + "]}"));
}
