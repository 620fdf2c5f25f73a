// Test-only: a stand-in for systemd's fd store in the busybox VM guest, where
// there is no service manager. It is NOT systemd and proves nothing about
// systemd itself; the real proof (khod.service with FileDescriptorStoreMax=)
// belongs to the systemd guest tier.
//
//   fdstore-standin [--state DIR] [--max-restarts N] -- CMD ARGS...
//
// What it does:
//   - binds a unix datagram socket at DIR/notify (SO_PASSCRED) and runs CMD
//     with NOTIFY_SOCKET=DIR/notify (DIR defaults to /run/fdstore-standin);
//   - takes sd_notify messages from the child's pid only (like NotifyAccess=main;
//     messages from other pids are logged and dropped, their fds closed):
//       READY=1                      logged, and DIR/ready gets the child's pid
//       FDSTORE=1 [FDNAME=x] + fds   the fds are kept under name x ("stored" when
//                                    absent); systemd's rules for names are not checked
//       FDSTOREREMOVE=1 FDNAME=x     every kept fd named x is closed
//       STATUS=, WATCHDOG=1, ...     logged (first 200 bytes), otherwise ignored
//     fds that come without FDSTORE=1 are closed;
//   - when the child exits or is killed, it runs CMD again with the kept fds as
//     fds 3.. and LISTEN_FDS, LISTEN_FDNAMES (names joined by ':') and
//     LISTEN_PID (set in the child after fork, so it is the new child's pid),
//     in the order they were stored; at most N restarts (default 10), then it
//     exits 1. The first child gets no LISTEN_* variables;
//   - SIGTERM or SIGINT: forwarded to the child; when it has exited, the
//     stand-in closes the fds and exits 0 (no restart).
// Every event is a line "fdstore-standin: ..." on stdout and in DIR/log.
// DIR/fds lists the kept fds ("NAME INODE-OF-THE-FD"), rewritten on each change.
// DIR/pid holds the current child's pid.
//
// Limits (things systemd does that this does not): no FDPOLL (systemd drops
// a kept fd on POLLHUP/POLLERR unless FDPOLL=0), no FileDescriptorStoreMax
// (no limit), no MAINPID=, no watchdog enforcement, no ExecStop, no
// RestartSec, no cgroup, no credentials or sandboxing; restarts happen on any
// exit, clean or not (khod.service has Restart=on-failure); the fds are kept
// only as long as this process lives.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Stored {
    std::string name;
    int fd;
};

std::string state_dir = "/run/fdstore-standin";
std::vector<Stored> stored;
FILE* logf = nullptr;

void say(const char* fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    std::vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    std::printf("fdstore-standin: %s\n", line);
    std::fflush(stdout);
    if (logf) {
        std::fprintf(logf, "fdstore-standin: %s\n", line);
        std::fflush(logf);
    }
}

void write_state(const char* file, const std::string& text) {
    const std::string path = state_dir + "/" + file;
    const std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "w");
    if (!f) return;
    std::fputs(text.c_str(), f);
    std::fclose(f);
    std::rename(tmp.c_str(), path.c_str());
}

void write_fds() {
    std::string text;
    for (const auto& s : stored) {
        struct stat st {};
        fstat(s.fd, &st);
        text += s.name + " " + std::to_string(st.st_ino) + "\n";
    }
    write_state("fds", text);
}

pid_t spawn(char** argv, bool with_fds) {
    const pid_t pid = fork();
    if (pid < 0) {
        say("fork: %s", std::strerror(errno));
        return -1;
    }
    if (pid > 0) return pid;
    // child: the kept fds go to 3.. in order. First move every one above the
    // target range so dup2 never clobbers one not yet moved.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    const int n = with_fds ? static_cast<int>(stored.size()) : 0;
    std::vector<int> high;
    for (int i = 0; i < n; ++i) {
        const int h = fcntl(stored[i].fd, F_DUPFD_CLOEXEC, 3 + n);
        if (h < 0) _exit(126);
        high.push_back(h);
    }
    for (int i = 0; i < n; ++i) {
        if (dup2(high[i], 3 + i) < 0) _exit(126);  // dup2's copy has no FD_CLOEXEC
    }
    if (n > 0) {
        std::string names;
        for (int i = 0; i < n; ++i) names += (i ? ":" : "") + stored[i].name;
        setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
        setenv("LISTEN_FDS", std::to_string(n).c_str(), 1);
        setenv("LISTEN_FDNAMES", names.c_str(), 1);
    } else {
        unsetenv("LISTEN_PID");
        unsetenv("LISTEN_FDS");
        unsetenv("LISTEN_FDNAMES");
    }
    execvp(argv[0], argv);
    std::fprintf(stderr, "fdstore-standin: exec %s: %s\n", argv[0], std::strerror(errno));
    _exit(127);
}

std::string field(const std::string& msg, const std::string& key) {
    std::size_t pos = 0;
    while (pos < msg.size()) {
        std::size_t end = msg.find('\n', pos);
        if (end == std::string::npos) end = msg.size();
        const std::string line = msg.substr(pos, end - pos);
        if (line.compare(0, key.size() + 1, key + "=") == 0) return line.substr(key.size() + 1);
        pos = end + 1;
    }
    return {};
}

bool has_line(const std::string& msg, const std::string& line) {
    return ("\n" + msg + "\n").find("\n" + line + "\n") != std::string::npos;
}

void receive(int sock, pid_t child) {
    char data[4096];
    alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 253) + CMSG_SPACE(sizeof(struct ucred))];
    struct iovec iov {
        data, sizeof data - 1
    };
    struct msghdr mh {};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    const ssize_t r = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (r < 0) {
        if (errno != EAGAIN && errno != EINTR) say("recvmsg: %s", std::strerror(errno));
        return;
    }
    std::vector<int> fds;
    pid_t sender = 0;
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET) continue;
        if (c->cmsg_type == SCM_RIGHTS) {
            const std::size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            const int* p = reinterpret_cast<const int*>(CMSG_DATA(c));
            for (std::size_t i = 0; i < k; ++i) fds.push_back(p[i]);
        } else if (c->cmsg_type == SCM_CREDENTIALS) {
            struct ucred uc {};
            std::memcpy(&uc, CMSG_DATA(c), sizeof uc);
            sender = uc.pid;
        }
    }
    const std::string msg(data, static_cast<std::size_t>(r));
    if (mh.msg_flags & MSG_CTRUNC) say("control data truncated: some fds were lost");
    if (sender != child) {
        say("message from pid %d, not the child %d: dropped (%zu fds closed)", sender, child, fds.size());
        for (int fd : fds) close(fd);
        return;
    }
    if (has_line(msg, "READY=1")) {
        say("READY=1 from pid %d", sender);
        write_state("ready", std::to_string(sender) + "\n");
    }
    if (has_line(msg, "FDSTOREREMOVE=1")) {
        const std::string name = field(msg, "FDNAME");
        std::size_t removed = 0;
        for (auto it = stored.begin(); it != stored.end();) {
            if (it->name == name) {
                close(it->fd);
                it = stored.erase(it);
                ++removed;
            } else {
                ++it;
            }
        }
        say("FDSTOREREMOVE %s: %zu fds closed, %zu kept", name.c_str(), removed, stored.size());
        write_fds();
    }
    if (has_line(msg, "FDSTORE=1")) {
        std::string name = field(msg, "FDNAME");
        if (name.empty()) name = "stored";
        for (int fd : fds) {
            fcntl(fd, F_SETFD, FD_CLOEXEC);
            stored.push_back({name, fd});
        }
        say("FDSTORE %s: %zu fds stored, %zu kept", name.c_str(), fds.size(), stored.size());
        fds.clear();
        write_fds();
    }
    if (!fds.empty()) {
        say("%zu fds without FDSTORE=1: closed", fds.size());
        for (int fd : fds) close(fd);
    }
    for (const char* other : {"STATUS", "WATCHDOG", "STOPPING", "RELOADING", "ERRNO", "MAINPID"}) {
        const std::string v = field(msg, other);
        if (!v.empty()) say("%s=%.200s", other, v.c_str());
    }
}

int usage() {
    std::fprintf(stderr, "usage: fdstore-standin [--state DIR] [--max-restarts N] -- CMD ARGS...\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    int i = 1;
    int max_restarts = 10;
    for (; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--") {
            ++i;
            break;
        }
        if (a == "--state" && i + 1 < argc) {
            state_dir = argv[++i];
        } else if (a == "--max-restarts" && i + 1 < argc) {
            max_restarts = std::atoi(argv[++i]);
        } else {
            return usage();
        }
    }
    if (i >= argc) return usage();
    char** cmd = argv + i;

    mkdir(state_dir.c_str(), 0755);
    logf = std::fopen((state_dir + "/log").c_str(), "a");
    const std::string sock_path = state_dir + "/notify";
    unlink(sock_path.c_str());
    const int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa {};
    sa.sun_family = AF_UNIX;
    if (sock < 0 || sock_path.size() >= sizeof sa.sun_path) {
        say("cannot create the notify socket");
        return 1;
    }
    std::memcpy(sa.sun_path, sock_path.c_str(), sock_path.size() + 1);
    const int one = 1;
    if (bind(sock, reinterpret_cast<struct sockaddr*>(&sa), sizeof sa) != 0 ||
        setsockopt(sock, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) != 0) {
        say("notify socket %s: %s", sock_path.c_str(), std::strerror(errno));
        return 1;
    }
    setenv("NOTIFY_SOCKET", sock_path.c_str(), 1);

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, nullptr);
    const int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

    pid_t child = spawn(cmd, false);
    if (child < 0) return 1;
    write_state("pid", std::to_string(child) + "\n");
    say("started %s as pid %d", cmd[0], child);
    bool stopping = false;
    int restarts = 0;
    for (;;) {
        struct pollfd p[2] = {{sock, POLLIN, 0}, {sfd, POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            say("poll: %s", std::strerror(errno));
            return 1;
        }
        // Messages first: a child that sends FDSTORE=1 and dies at once must
        // have its fds kept before the restart.
        if (p[0].revents & POLLIN) {
            receive(sock, child);
            continue;
        }
        if (!(p[1].revents & POLLIN)) continue;
        struct signalfd_siginfo si {};
        if (read(sfd, &si, sizeof si) != sizeof si) continue;
        if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
            say("signal %d: forwarding to pid %d", si.ssi_signo, child);
            stopping = true;
            kill(child, static_cast<int>(si.ssi_signo));
            continue;
        }
        int status = 0;
        pid_t dead;
        bool child_died = false;
        while ((dead = waitpid(-1, &status, WNOHANG)) > 0) {
            if (dead != child) continue;
            child_died = true;
            if (WIFSIGNALED(status)) {
                say("pid %d killed by signal %d", dead, WTERMSIG(status));
            } else {
                say("pid %d exited with status %d", dead, WEXITSTATUS(status));
            }
        }
        if (!child_died) continue;
        // Drain what the dead child sent before it died.
        for (;;) {
            struct pollfd q = {sock, POLLIN, 0};
            if (poll(&q, 1, 0) <= 0 || !(q.revents & POLLIN)) break;
            receive(sock, child);
        }
        if (stopping) {
            say("stopped; closing %zu kept fds", stored.size());
            for (const auto& s : stored) close(s.fd);
            return 0;
        }
        if (restarts >= max_restarts) {
            say("giving up after %d restarts", restarts);
            return 1;
        }
        ++restarts;
        child = spawn(cmd, true);
        if (child < 0) return 1;
        write_state("pid", std::to_string(child) + "\n");
        std::string names;
        for (const auto& s : stored) names += (names.empty() ? "" : ":") + s.name;
        say("restarted %s as pid %d with %zu fds (%s)", cmd[0], child, stored.size(), names.c_str());
    }
}
