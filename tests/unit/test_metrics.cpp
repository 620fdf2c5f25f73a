// khod's numbers in Prometheus's text format and as JSON, and the atomic
// write of node_exporter's textfile.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cerrno>
#include <fstream>
#include <sstream>

#include "khod/metrics/metrics.hpp"
#include "tree.hpp"

using namespace khod;
using khod::test::TempTree;

namespace {

MetricsSnapshot busy_host() {
    MetricsSnapshot s;
    s.kdump = {true, true, 3, 4, 1'500'250, 200};
    s.previous_release = "7.2.13 \"test\"\\";
    // As LastUpdatePhases has them; first-retrieve not reached yet.
    s.last_update_phases = {{"exec-requested", 1'000'000'000}, {"inhibitors-released", 1'000'250'000},
                            {"reboot-syscall", 1'000'300'000}, {"kernel-start", 1'000'299'000},
                            {"khod-ready", 1'004'300'000},     {"first-retrieve", 0}};
    s.luo_outgoing = 2;
    s.luo_incoming = 1;
    return s;
}

std::string read(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

}  // namespace

TEST(Metrics, PhaseDurationsRunFromTheMarkBefore) {
    auto d = phase_durations(busy_host().last_update_phases);
    ASSERT_EQ(d.size(), 4U);  // first-retrieve (0) has none
    EXPECT_EQ(d[0].phase, "inhibitors-released");
    EXPECT_EQ(d[0].usec, 250'000);
    EXPECT_EQ(d[1].usec, 50'000);
    EXPECT_EQ(d[2].phase, "kernel-start");
    EXPECT_EQ(d[2].usec, -1'000);  // the clocks across the kexec disagree: said, not hidden
    EXPECT_EQ(d[3].usec, 4'001'000);
    EXPECT_TRUE(phase_durations({}).empty());
    EXPECT_TRUE(phase_durations({{"exec-requested", 0}, {"inhibitors-released", 5}}).empty());
}

TEST(Metrics, PrometheusTextFormat) {
    const std::string text = render_prometheus(busy_host());
    const std::string expected =
        "# HELP khod_kdump_loaded Whether a crash kernel is loaded (1) or not (0).\n"
        "# TYPE khod_kdump_loaded gauge\n"
        "khod_kdump_loaded 1\n";
    EXPECT_EQ(text.substr(0, expected.size()), expected);
    for (const char* line : {
             "# TYPE khod_kdump_managed gauge\nkhod_kdump_managed 1\n",
             "# TYPE khod_kdump_reloads_total counter\nkhod_kdump_reloads_total 3\n",
             "# TYPE khod_kdump_unloaded_windows_total counter\nkhod_kdump_unloaded_windows_total 4\n",
             "# TYPE khod_kdump_unloaded_seconds_total counter\nkhod_kdump_unloaded_seconds_total 1.500250\n",
             "# TYPE khod_kdump_hotplug_events_total counter\nkhod_kdump_hotplug_events_total 200\n",
             "# TYPE khod_luo_sessions gauge\nkhod_luo_sessions{direction=\"outgoing\"} 2\n"
             "khod_luo_sessions{direction=\"incoming\"} 1\n",
             "khod_live_update_info{previous_release=\"7.2.13 \\\"test\\\"\\\\\"} 1\n",
             "# TYPE khod_live_update_phase_seconds gauge\n"
             "khod_live_update_phase_seconds{phase=\"inhibitors-released\"} 0.250000\n"
             "khod_live_update_phase_seconds{phase=\"reboot-syscall\"} 0.050000\n"
             "khod_live_update_phase_seconds{phase=\"kernel-start\"} -0.001000\n"
             "khod_live_update_phase_seconds{phase=\"khod-ready\"} 4.001000\n",
         })
        EXPECT_NE(text.find(line), std::string::npos) << line << "\nin:\n" << text;
    EXPECT_EQ(text.find("first-retrieve\"}"), std::string::npos);
    EXPECT_EQ(text.back(), '\n');
    // Every family has its HELP, then its TYPE, once each.
    std::istringstream in(text);
    std::string l, last_help;
    int helps = 0, types = 0;
    while (std::getline(in, l)) {
        if (l.rfind("# HELP ", 0) == 0) {
            ++helps;
            last_help = l.substr(7, l.find(' ', 7) - 7);
        } else if (l.rfind("# TYPE ", 0) == 0) {
            ++types;
            EXPECT_EQ(l.substr(7, l.find(' ', 7) - 7), last_help);
        } else {
            EXPECT_EQ(l.rfind("khod_", 0), 0U) << l;
        }
    }
    EXPECT_EQ(helps, 9);
    EXPECT_EQ(helps, types);
}

TEST(Metrics, ABootWithoutALiveUpdateHasNoPhases) {
    MetricsSnapshot s;  // a cold boot, nothing loaded
    const std::string text = render_prometheus(s);
    EXPECT_NE(text.find("khod_kdump_loaded 0\n"), std::string::npos);
    EXPECT_NE(text.find("khod_kdump_unloaded_seconds_total 0.000000\n"), std::string::npos);
    EXPECT_EQ(text.find("khod_live_update"), std::string::npos) << text;
    EXPECT_NE(text.find("khod_luo_sessions{direction=\"incoming\"} 0\n"), std::string::npos);
}

TEST(Metrics, JsonHasTheSameNumbers) {
    const nlohmann::json j = metrics_json(busy_host());
    EXPECT_EQ(j["kdump"]["loaded"], true);
    EXPECT_EQ(j["kdump"]["reloads"], 3);
    EXPECT_EQ(j["kdump"]["unloaded_windows"], 4);
    EXPECT_EQ(j["kdump"]["unloaded_usec"], 1'500'250);
    EXPECT_DOUBLE_EQ(j["kdump"]["unloaded_seconds"].get<double>(), 1.50025);
    EXPECT_EQ(j["kdump"]["hotplug_events"], 200);
    EXPECT_EQ(j["luo"]["outgoing_sessions"], 2);
    EXPECT_EQ(j["luo"]["incoming_sessions"], 1);
    EXPECT_EQ(j["live_update"]["previous_release"], "7.2.13 \"test\"\\");
    ASSERT_EQ(j["live_update"]["phases"].size(), 4U);
    EXPECT_EQ(j["live_update"]["phases"][2]["phase"], "kernel-start");
    EXPECT_EQ(j["live_update"]["phases"][2]["usec"], -1000);
    EXPECT_DOUBLE_EQ(j["live_update"]["phases"][3]["seconds"].get<double>(), 4.001);
    EXPECT_TRUE(metrics_json(MetricsSnapshot{})["live_update"]["previous_release"].is_null());
}

TEST(Metrics, WriteFileAtomicallyReplacesWithMode0644) {
    TempTree t;
    const auto path = t.root() / "khod.prom";
    ::umask(0077);  // as under khod.service
    ASSERT_TRUE(write_file_atomically(path, "first\n"));
    ASSERT_TRUE(write_file_atomically(path, "second\n"));
    EXPECT_EQ(read(path), "second\n");
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0644U);
    // Nothing left beside it: the temporary files were renamed away.
    std::size_t entries = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(t.root())) ++entries;
    EXPECT_EQ(entries, 1U);

    auto relative = write_file_atomically("khod.prom", "x");
    ASSERT_FALSE(relative);
    auto missing_dir = write_file_atomically(t.root() / "no/such/dir/khod.prom", "x");
    ASSERT_FALSE(missing_dir);
    EXPECT_EQ(missing_dir.error().code, ENOENT);
    // A directory in the way: the rename fails and the temporary file goes.
    t.mkdir("taken.prom");
    auto over_dir = write_file_atomically(t.root() / "taken.prom", "x");
    ASSERT_FALSE(over_dir);
    EXPECT_EQ(over_dir.error().code, EISDIR);
    entries = 0;
    for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(t.root())) ++entries;
    EXPECT_EQ(entries, 2U);
}
