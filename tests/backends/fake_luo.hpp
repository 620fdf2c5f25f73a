// A LuoKernel for fixture sysroots (bus tests and `khod --fake-kexec`), with
// its state in the tree so a test can play the next kernel:
//   <sysroot>/fake-luo/incoming/<session>/<token>  read at construction: what
//       the "previous kernel" preserved; retrieve_fd hands out sealed memfd
//       copies; FINISH (or closing a retrieved session) removes the directory;
//   <sysroot>/fake-luo/outgoing/<session>/<token>  written by freeze(), which
//       the fake kexec's reboot calls: a test moves outgoing/ to incoming/ and
//       restarts khod to simulate the live update;
//   <sysroot>/fake-luo/busy  every open of the device fails with EBUSY;
//   <sysroot>/fake-luo/lost  every open fails with EIO (incoming data lost).
//   <sysroot>/fake-luo/live/{out,in}-<session>  the kernel's live sessions: a
//       session fd is an open file description of that file holding a shared
//       flock, so every dup (khod's, the fd store's) keeps it locked and the
//       fake sees the last close, as the kernel would, across khod restarts;
//       live/out-<session>.d/<token> keeps what was preserved into it, so a
//       restarted khod's fake finds the session again.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "khod/base/sysroot.hpp"
#include "khod/luo/luo_kernel.hpp"

namespace khod {

class FakeLuo : public LuoKernel {
public:
    explicit FakeLuo(const Sysroot& root);

    Result<UniqueFd> create_session(const std::string& name) override;
    Result<UniqueFd> retrieve_session(const std::string& name) override;
    Result<void> preserve_fd(int session_fd, std::uint64_t token, int fd) override;
    Result<UniqueFd> retrieve_fd(int session_fd, std::uint64_t token) override;
    Result<void> finish(int session_fd) override;
    Result<std::string> session_name(int session_fd) override;

    // reboot(KEXEC): writes every live outgoing session under fake-luo/outgoing/.
    Result<void> freeze();

    // Names of the outgoing sessions whose fds are still open somewhere.
    std::vector<std::string> live_outgoing();

private:
    struct Session {
        std::string name;
        bool incoming = false;
        bool finished = false;
        std::filesystem::path path;  // live/{out,in}-<name>
        ino_t ino = 0;               // path's inode: identifies copies of the session fd
        std::map<std::uint64_t, UniqueFd>
            files;  // outgoing: dups of the preserved fds (or copies after a restart)
    };

    Result<void> open_device() const;
    Result<UniqueFd> new_session(const std::string& name, bool incoming);
    Session* lookup(int session_fd);
    void prune();
    void load_live();  // sessions a previous khod left open (fd store)
    static bool held(const std::filesystem::path& path);
    void drop_incoming(const std::string& name);
    Result<void> check_preservable(int fd) const;
    std::filesystem::path dir(const std::string& rel) const;

    const Sysroot& root_;
    std::map<std::string, std::map<std::uint64_t, std::string>> incoming_;
    std::vector<Session> sessions_;
};

}  // namespace khod
