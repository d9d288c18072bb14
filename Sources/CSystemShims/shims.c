#define _GNU_SOURCE
#include "CSystemShims.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <fcntl.h>
#include <stdio.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <linux/sched.h>
#include <linux/close_range.h>
#include <stdlib.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/ioctl.h>
#include <dirent.h>
#include <sys/signalfd.h>

#ifdef __linux__
int ag_has_epoll(void) { return 1; }

int ag_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int ag_eventfd(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

int ag_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = events;
    ev.data.u64 = data;
    return epoll_ctl(epfd, op, fd, &ev);
}

int ag_epoll_wait(int epfd, uint32_t *events, uint64_t *datas, int max, int timeout_ms) {
    struct epoll_event evs[256];
    if (max > 256) max = 256;
    int n = epoll_wait(epfd, evs, max, timeout_ms);
    for (int i = 0; i < n; i++) {
        events[i] = evs[i].events;
        datas[i] = evs[i].data.u64;
    }
    return n;
}

int ag_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

/* struct pidfd_info up to exit_code (PIDFD_INFO_SIZE_VER0, 64 bytes): declared here because
   the build machine's headers may predate it; the layout is kernel ABI. */
struct ag_pidfd_info {
    unsigned long long mask, cgroupid;
    unsigned int pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
    int exit_code;
};
#define AG_PIDFD_GET_INFO _IOWR(0xFF, 11, struct ag_pidfd_info)
#define AG_PIDFD_INFO_EXIT (1ULL << 3)

int ag_pidfd_exit_status(int pidfd, int *status) {
    /* Our own child (re-parented to this subreaper): reap it here, exactly this process. */
    siginfo_t child;
    memset(&child, 0, sizeof child);
    if (waitid((idtype_t)3 /* P_PIDFD */, (id_t)pidfd, &child, WEXITED | WNOHANG) == 0 && child.si_pid != 0) {
        *status = child.si_code == CLD_EXITED ? (child.si_status & 0xff) << 8
                                              : (child.si_status & 0x7f) | (child.si_code == CLD_DUMPED ? 0x80 : 0);
        return 1;
    }
    struct ag_pidfd_info info;
    memset(&info, 0, sizeof info);
    info.mask = AG_PIDFD_INFO_EXIT;
    if (ioctl(pidfd, AG_PIDFD_GET_INFO, &info) != 0) return errno == ESRCH ? 0 : -1;
    if (!(info.mask & AG_PIDFD_INFO_EXIT)) return 0;
    *status = info.exit_code;
    return 1;
}
#else
int ag_has_epoll(void) { return 0; }
int ag_epoll_create(void) { errno = ENOSYS; return -1; }
int ag_eventfd(void) { errno = ENOSYS; return -1; }
int ag_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) { errno = ENOSYS; return -1; }
int ag_epoll_wait(int epfd, uint32_t *events, uint64_t *datas, int max, int timeout_ms) { errno = ENOSYS; return -1; }
int ag_pidfd_open(pid_t pid) { errno = ENOSYS; return -1; }
int ag_pidfd_exit_status(int pidfd, int *status) { return -1; }
#endif

/* Marks every descriptor >= 3 close-on-exec (or closes it, keeping `keep`), in a child between
   clone and exec: only raw syscalls, nothing that allocates. */
static void ag_child_close_inherited(int keep) {
#if defined(SYS_close_range) && defined(CLOSE_RANGE_CLOEXEC)
    if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return;
#endif
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 1 << 20) max = 1 << 20;
    for (int fd = 3; fd < max; fd++) {
        if (fd != keep) close(fd);
    }
}

/* The child side of ag_spawn's clone3 path. Runs in a copy of a multi-threaded process, so it
   uses only async-signal-safe calls; every signal is blocked on entry. Never returns. */
static void ag_child_exec(const char *path, char *const argv[], char *const envp[], const char *cwd,
                          int stdin_fd, int stdout_fd, int stderr_fd, int report_fd) {
    int fds[3] = { stdin_fd, stdout_fd, stderr_fd };
    if (setsid() < 0) goto fail;
    /* Move the sources above 2 first, so dup2 onto 0-2 cannot overwrite one still needed. */
    for (int i = 0; i < 3; i++) {
        if (fds[i] < 3) {
            fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
            if (fds[i] < 0) goto fail;
        }
    }
    for (int i = 0; i < 3; i++) {
        if (dup2(fds[i], i) < 0) goto fail;  /* dup2 clears FD_CLOEXEC on the target */
    }
    ag_child_close_inherited(report_fd);
    if (cwd != NULL && chdir(cwd) < 0) goto fail;
    /* Default dispositions (SIGPIPE is ignored in the server; ignored signals survive exec),
       then an empty mask, as posix_spawn's SETSIGDEF | SETSIGMASK do. */
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &action, NULL);
    }
    sigset_t empty;
    sigemptyset(&empty);
    sigprocmask(SIG_SETMASK, &empty, NULL);
    execve(path, argv, envp);
fail:;
    int error = errno;
    while (write(report_fd, &error, sizeof error) < 0 && errno == EINTR) {}
    _exit(127);
}

/* posix_spawn cannot place a child in a cgroup, so this path forks with clone3: the child is
   born inside the cgroup (CLONE_INTO_CGROUP), never running a single instruction outside it.
   Exec failures come back through a close-on-exec pipe, as posix_spawn reports them. */
static int ag_spawn_into_cgroup(const char *path, char *const argv[], char *const envp[], const char *cwd,
                                int stdin_fd, int stdout_fd, int stderr_fd, int cgroup_fd, pid_t *pid) {
#if defined(SYS_clone3) && defined(CLONE_INTO_CGROUP)
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return errno;
    sigset_t all, previous;
    sigfillset(&all);
    /* No handler of ours may run in the child before exec. */
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_INTO_CGROUP;
    args.exit_signal = SIGCHLD;
    args.cgroup = (uint64_t)cgroup_fd;
    long child = syscall(SYS_clone3, &args, sizeof args);
    if (child == 0) {
        ag_child_exec(path, argv, envp, cwd, stdin_fd, stdout_fd, stderr_fd, report[1]);
    }
    int clone_error = errno;
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    close(report[1]);
    if (child < 0) {
        close(report[0]);
        return clone_error;
    }
    int child_error = 0;
    ssize_t count;
    do { count = read(report[0], &child_error, sizeof child_error); } while (count < 0 && errno == EINTR);
    close(report[0]);
    if (count == (ssize_t)sizeof child_error) {
        int status;
        while (waitpid((pid_t)child, &status, 0) < 0 && errno == EINTR) {}
        return child_error;
    }
    *pid = (pid_t)child;
    return 0;
#else
    (void)path; (void)argv; (void)envp; (void)cwd; (void)stdin_fd; (void)stdout_fd; (void)stderr_fd;
    (void)cgroup_fd; (void)pid;
    return ENOSYS;
#endif
}

int ag_cgroup_probe(int cgroup_fd) {
#if defined(SYS_clone3) && defined(CLONE_INTO_CGROUP)
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_INTO_CGROUP;
    args.exit_signal = SIGCHLD;
    args.cgroup = (uint64_t)cgroup_fd;
    sigset_t all, previous;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    long child = syscall(SYS_clone3, &args, sizeof args);
    if (child == 0) _exit(0);
    int error = errno;
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    if (child < 0) return error;
    int status;
    while (waitpid((pid_t)child, &status, 0) < 0 && errno == EINTR) {}
    return 0;
#else
    (void)cgroup_fd;
    return ENOSYS;
#endif
}

int ag_spawn(const char *path, char *const argv[], char *const envp[], const char *cwd,
             int stdin_fd, int stdout_fd, int stderr_fd, int cgroup_fd, pid_t *pid) {
    if (cgroup_fd >= 0) {
        return ag_spawn_into_cgroup(path, argv, envp, cwd, stdin_fd, stdout_fd, stderr_fd, cgroup_fd, pid);
    }
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&actions);
    if (rc != 0) return rc;
    rc = posix_spawnattr_init(&attr);
    if (rc != 0) { posix_spawn_file_actions_destroy(&actions); return rc; }

    /* dup2 clears FD_CLOEXEC on the target, so the child keeps exactly fds 0-2. */
    posix_spawn_file_actions_adddup2(&actions, stdin_fd, 0);
    posix_spawn_file_actions_adddup2(&actions, stdout_fd, 1);
    posix_spawn_file_actions_adddup2(&actions, stderr_fd, 2);
    /* ...and nothing else, not even a descriptor the server itself inherited without
       FD_CLOEXEC (a socket of whoever started it, a file a library opened). */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
#else
#error "posix_spawn_file_actions_addclosefrom_np (glibc 2.34) is needed to close inherited descriptors"
#endif
    if (cwd != NULL) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 29))
        posix_spawn_file_actions_addchdir_np(&actions, cwd);
#else
        (void)cwd;
#endif
    }

    /* A fresh session makes the child a process-group leader, so kill(-pid) reaches every
       process it starts, and the agent has no controlling terminal to read from. Reset the
       signal mask and dispositions we changed (SIGPIPE) to defaults. */
    sigset_t empty, all;
    sigemptyset(&empty);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);
    sigdelset(&all, SIGSTOP);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setsigdefault(&attr, &all);
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
#ifdef POSIX_SPAWN_SETSID
    flags |= POSIX_SPAWN_SETSID;
#else
    flags |= POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setpgroup(&attr, 0);
#endif
    posix_spawnattr_setflags(&attr, flags);

    rc = posix_spawn(pid, path, &actions, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    return rc;
}

void ag_ignore_sigpipe(void) { signal(SIGPIPE, SIG_IGN); }

int ag_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

int ag_is_child_subreaper(void) {
    int value = 0;
    if (prctl(PR_GET_CHILD_SUBREAPER, &value, 0, 0, 0) != 0) return 0;
    return value != 0;
}

int ag_wifexited(int status) { return WIFEXITED(status); }
int ag_wexitstatus(int status) { return WEXITSTATUS(status); }
int ag_wifsignaled(int status) { return WIFSIGNALED(status); }
int ag_wtermsig(int status) { return WTERMSIG(status); }

int ag_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/sendfile.h>
#include <sys/inotify.h>

int ag_listen_tcp(const char *host, int port, int backlog, int *bound_port) {
    struct addrinfo hints, *result = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    if (getaddrinfo(host, service, &hints, &result) != 0 || result == NULL) return -EINVAL;
    int fd = socket(result->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) { int e = errno; freeaddrinfo(result); return -e; }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, result->ai_addr, result->ai_addrlen) != 0 || listen(fd, backlog) != 0) {
        int e = errno;
        close(fd);
        freeaddrinfo(result);
        return -e;
    }
    freeaddrinfo(result);
    struct sockaddr_storage address;
    socklen_t length = sizeof address;
    getsockname(fd, (struct sockaddr *)&address, &length);
    if (address.ss_family == AF_INET) *bound_port = ntohs(((struct sockaddr_in *)&address)->sin_port);
    else *bound_port = ntohs(((struct sockaddr_in6 *)&address)->sin6_port);
    return fd;
}

int ag_accept(int listen_fd) {
    return accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

int ag_connect_tcp(const char *host, int port) {
    struct addrinfo hints, *result = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    if (getaddrinfo(host, service, &hints, &result) != 0 || result == NULL) return -EINVAL;
    int fd = socket(result->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) { int e = errno; freeaddrinfo(result); return -e; }
    int rc = connect(fd, result->ai_addr, result->ai_addrlen);
    freeaddrinfo(result);
    if (rc != 0 && errno != EINPROGRESS) { int e = errno; close(fd); return -e; }
    return fd;
}

void ag_set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int ag_set_thread_niceness(int value) {
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), value);
}

/* ---- the per-job supervisor (ag_supervise) ---- */

static long long ag_now_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* `name` in `dirfd` holds exactly `text` after this, or is untouched. */
static int ag_write_atomically(int dirfd, const char *name, const char *text) {
    char temporary[128];
    snprintf(temporary, sizeof temporary, ".%s.tmp", name);
    int fd = openat(dirfd, temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return errno;
    size_t length = strlen(text), written = 0;
    while (written < length) {
        ssize_t count = write(fd, text + written, length - written);
        if (count < 0 && errno == EINTR) continue;
        if (count <= 0) { int error = errno; close(fd); unlinkat(dirfd, temporary, 0); return error ? error : EIO; }
        written += (size_t)count;
    }
    if (fsync(fd) != 0) { int error = errno; close(fd); unlinkat(dirfd, temporary, 0); return error; }
    close(fd);
    if (renameat(dirfd, temporary, dirfd, name) != 0) { int error = errno; unlinkat(dirfd, temporary, 0); return error; }
    fsync(dirfd);
    return 0;
}

/* Field 22 of /proc/<pid>/stat (clock ticks after boot), 0 when unknown. */
static unsigned long long ag_start_time(pid_t pid) {
    char path[64], buffer[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t count = read(fd, buffer, sizeof buffer - 1);
    close(fd);
    if (count <= 0) return 0;
    buffer[count] = 0;
    char *field = strrchr(buffer, ')');
    if (!field) return 0;
    /* After ") " come fields 3, 4, …: skip 19 of them to reach 22. */
    field += 2;
    for (int skipped = 0; skipped < 19 && field; skipped++) {
        field = strchr(field, ' ');
        if (field) field++;
    }
    return field ? strtoull(field, NULL, 10) : 0;
}

static void ag_boot_id(char *out, size_t size) {
    out[0] = 0;
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t count = read(fd, out, size - 1);
    close(fd);
    if (count <= 0) { out[0] = 0; return; }
    out[count] = 0;
    for (char *c = out; *c; c++) if (*c == '\n') { *c = 0; break; }
}

/* Reaps children until the agent's group has none left or `deadline_ms` passes. */
static void ag_reap_group(pid_t group, long long deadline_ms) {
    for (;;) {
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
        if (kill(-group, 0) != 0 && errno == ESRCH) return;
        if (ag_now_ms() >= deadline_ms) return;
        usleep(10000);
    }
}

/* `signal` to every child of this process (descendants that left the agent's group and were
   re-parented to this subreaper when their parent died); how many there were. */
static int ag_signal_children(int signal_number) {
    DIR *proc = opendir("/proc");
    if (!proc) return 0;
    pid_t me = getpid();
    int count = 0;
    struct dirent *entry;
    while ((entry = readdir(proc)) != NULL) {
        if (entry->d_name[0] < '1' || entry->d_name[0] > '9') continue;
        char path[64], buffer[512];
        snprintf(path, sizeof path, "/proc/%s/stat", entry->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t length = read(fd, buffer, sizeof buffer - 1);
        close(fd);
        if (length <= 0) continue;
        buffer[length] = 0;
        char *field = strrchr(buffer, ')');
        /* ") S PPID": state, then the parent. */
        if (!field || field[1] == 0 || field[2] == 0 || field[2] == 'Z') continue;
        if ((pid_t)strtol(field + 4, NULL, 10) != me) continue;
        kill((pid_t)strtol(entry->d_name, NULL, 10), signal_number);
        count++;
    }
    closedir(proc);
    return count;
}

/* Ends whatever the agent left behind outside its group (a `setsid` daemon), which the
   subreaper inherited: SIGTERM, then SIGKILL after the grace, until none is left. */
static void ag_end_strays(int grace_ms) {
    if (ag_signal_children(SIGTERM) == 0) return;
    long long deadline = ag_now_ms() + (grace_ms > 0 ? grace_ms : 0);
    for (;;) {
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
        if (ag_signal_children(0) == 0) return;
        if (ag_now_ms() >= deadline) break;
        usleep(10000);
    }
    /* SIGKILL also reaches what each killed stray leaves re-parented to us: a few rounds. */
    for (int round = 0; round < 50 && ag_signal_children(SIGKILL) > 0; round++) {
        usleep(10000);
        while (waitpid(-1, NULL, WNOHANG) > 0) {}
    }
}

/* Milliseconds since `path` was last modified (its mtime), or -1 when it cannot be read. */
static long long ag_age_ms(const char *path) {
    struct stat info;
    if (stat(path, &info) != 0) return -1;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (long long)(now.tv_sec - info.st_mtim.tv_sec) * 1000 + (now.tv_nsec - info.st_mtim.tv_nsec) / 1000000;
}

/* The agent's stdin in a conversation: the server appends messages to `input` in the job's
   directory and sends SIGURG; the supervisor copies what is new into the agent's stdin pipe,
   which it holds open (a server that stops or restarts never sends EOF). Once `input.closed`
   exists and everything before it was copied, the pipe is closed: the agent reads EOF. */
struct ag_input {
    int file;          /* `input`, read from `offset` */
    int pipe;          /* the write end of the agent's stdin, non-blocking; -1 once closed */
    long long offset;
    char buffer[65536];
    size_t start, end; /* bytes read from the file and not yet written to the pipe */
    int blocked;       /* the pipe was full: try again soon */
};

static void ag_input_close(struct ag_input *input) {
    if (input->pipe >= 0) close(input->pipe);
    input->pipe = -1;
    if (input->file >= 0) close(input->file);
    input->file = -1;
}

static void ag_input_pump(struct ag_input *input, int dirfd) {
    input->blocked = 0;
    while (input->pipe >= 0) {
        if (input->start == input->end) {
            ssize_t count = pread(input->file, input->buffer, sizeof input->buffer, (off_t)input->offset);
            if (count < 0 && errno == EINTR) continue;
            if (count <= 0) {
                /* Everything written so far is in the pipe: close it if the server said so. */
                if (faccessat(dirfd, "input.closed", F_OK, 0) == 0) {
                    /* Written before the marker? Read once more, then close. */
                    count = pread(input->file, input->buffer, sizeof input->buffer, (off_t)input->offset);
                    if (count > 0) { input->offset += count; input->start = 0; input->end = (size_t)count; continue; }
                    ag_input_close(input);
                }
                return;
            }
            input->offset += count;
            input->start = 0;
            input->end = (size_t)count;
        }
        ssize_t written = write(input->pipe, input->buffer + input->start, input->end - input->start);
        if (written < 0 && errno == EINTR) continue;
        if (written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { input->blocked = 1; return; }
        /* EPIPE: the agent closed its stdin; nothing more can reach it. */
        if (written <= 0) { ag_input_close(input); return; }
        input->start += (size_t)written;
    }
}

int ag_supervise(const char *dir, const char *path, char *const argv[], char *const envp[], const char *cwd, int grace_ms,
                 const char *heartbeat, long long orphan_timeout_ms, long long deadline_ms, int follow_input) {
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    /* Signals are taken synchronously (sigwaitinfo), so none is lost between a check and a
       wait. The agent starts with an empty mask and default dispositions (ag_spawn). */
    sigset_t wanted;
    sigemptyset(&wanted);
    sigaddset(&wanted, SIGTERM);
    sigaddset(&wanted, SIGINT);
    sigaddset(&wanted, SIGALRM);
    sigaddset(&wanted, SIGCHLD);
    /* SIGURG: the server appended to `input`. Its default is to be ignored, so one sent
       before this mask is set is harmless (the first copy below reads what it announced). */
    sigaddset(&wanted, SIGURG);
    sigprocmask(SIG_BLOCK, &wanted, NULL);

    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) return errno;
    int out = openat(dirfd, "stdout", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    int err = openat(dirfd, "stderr", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    static struct ag_input input;
    input.file = -1;
    input.pipe = -1;
    int in;
    if (follow_input) {
        int fds[2];
        input.file = openat(dirfd, "input", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (input.file < 0 || pipe2(fds, O_CLOEXEC) != 0) { int error = errno; close(dirfd); return error ? error : EIO; }
        fcntl(fds[1], F_SETFL, O_NONBLOCK);
        in = fds[0];
        input.pipe = fds[1];
    } else {
        in = openat(dirfd, "stdin", O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (in >= 0) fcntl(in, F_SETFL, 0);
        else in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (out < 0 || err < 0 || in < 0) { int error = errno; close(dirfd); return error ? error : EIO; }

    char boot[64];
    ag_boot_id(boot, sizeof boot);
    char text[512];
    pid_t pid = 0;
    int rc = ag_spawn(path, argv, envp, cwd, in, out, err, -1, &pid);
    close(in);
    if (rc != 0) {
        ag_input_close(&input);
        snprintf(text, sizeof text, "{\"kind\":\"spawn_failed\",\"errno\":%d,\"error\":\"%s\",\"endedAt\":%lld}\n", rc, strerror(rc), ag_now_ms());
        int written = ag_write_atomically(dirfd, "exit.json", text);
        close(out); close(err); close(dirfd);
        return written;
    }
    snprintf(text, sizeof text, "{\"pid\":%d,\"pgid\":%d,\"startTime\":%llu,\"bootId\":\"%s\",\"supervisor\":%d}\n",
             (int)pid, (int)pid, ag_start_time(pid), boot, (int)getpid());
    ag_write_atomically(dirfd, "agent.json", text);

    int status = 0, stopped_by = 0, killed = 0, exited = 0, orphaned = 0, timed_out = 0;
    /* How often the server's heartbeat is looked at: often enough for the timeout. */
    long long check_ms = orphan_timeout_ms / 4;
    if (check_ms > 1000) check_ms = 1000;
    if (check_ms < 50) check_ms = 50;
    int watching_heartbeat = heartbeat && orphan_timeout_ms > 0;
    for (;;) {
        int child_status;
        pid_t reaped;
        while ((reaped = waitpid(-1, &child_status, WNOHANG)) > 0) {
            if (reaped == pid) { status = child_status; exited = 1; }
        }
        if (exited) break;
        ag_input_pump(&input, dirfd);
        int following = input.pipe >= 0;
        int signal_number;
        if (watching_heartbeat || (deadline_ms > 0 && !stopped_by) || following) {
            long long wait_ms = watching_heartbeat ? check_ms : 1000;
            /* A full pipe is tried again soon; otherwise SIGURG wakes the copy (and a look
               each second catches a signal that was lost). */
            if (following && input.blocked && wait_ms > 20) wait_ms = 20;
            if (deadline_ms > 0 && !stopped_by) {
                long long left = deadline_ms - ag_now_ms();
                if (left < wait_ms) wait_ms = left < 1 ? 1 : left;
            }
            struct timespec wait = { wait_ms / 1000, (wait_ms % 1000) * 1000000 };
            signal_number = sigtimedwait(&wanted, NULL, &wait);
            /* The job's timeout: stopped as a SIGTERM would stop it, whether or not a server
               is attached (the server stops it at the same time when one is). Checked also
               when a message's SIGURG woke the wait: a stream of them must not put the
               deadline or the orphan timeout off. (A SIGCHLD is seen to first: the agent may
               have ended.) */
            int idle = signal_number < 0 || signal_number == SIGURG;
            if (idle && !stopped_by && deadline_ms > 0 && ag_now_ms() >= deadline_ms) {
                timed_out = 1;
                signal_number = SIGTERM;
            }
            long long age = watching_heartbeat ? ag_age_ms(heartbeat) : 0;
            /* No server has touched the heartbeat for too long (or it is gone): nothing runs
               unobserved forever. Stopped as a SIGTERM would stop it. */
            if (idle && !timed_out && watching_heartbeat && !stopped_by && (age < 0 || age > orphan_timeout_ms)) {
                orphaned = 1;
                signal_number = SIGTERM;
            }
        } else {
            signal_number = sigwaitinfo(&wanted, NULL);
        }
        if ((signal_number == SIGTERM || signal_number == SIGINT) && !stopped_by) {
            stopped_by = signal_number;
            kill(-pid, SIGTERM);
            struct itimerval grace = { {0, 0}, { grace_ms / 1000, (grace_ms % 1000) * 1000 } };
            if (grace_ms <= 0) grace.it_value.tv_usec = 1;
            setitimer(ITIMER_REAL, &grace, NULL);
        } else if (signal_number == SIGALRM && !killed) {
            killed = 1;
            kill(-pid, SIGKILL);
        }
    }
    /* What the agent left in its group goes too: SIGTERM, then SIGKILL after the grace. */
    if (kill(-pid, 0) == 0) {
        kill(-pid, SIGTERM);
        ag_reap_group(pid, ag_now_ms() + (grace_ms > 0 ? grace_ms : 0));
        if (kill(-pid, 0) == 0) { kill(-pid, SIGKILL); ag_reap_group(pid, ag_now_ms() + 1000); }
    }
    while (waitpid(-1, NULL, WNOHANG) > 0) {}
    ag_end_strays(grace_ms);
    ag_input_close(&input);

    fdatasync(out);
    fdatasync(err);
    struct stat out_info, err_info;
    long long out_bytes = fstat(out, &out_info) == 0 ? (long long)out_info.st_size : -1;
    long long err_bytes = fstat(err, &err_info) == 0 ? (long long)err_info.st_size : -1;
    close(out);
    close(err);
    if (WIFSIGNALED(status)) {
        snprintf(text, sizeof text, "{\"kind\":\"signaled\",\"signal\":%d,\"endedAt\":%lld,\"stopRequested\":%s,\"orphanTimeout\":%s,\"timedOut\":%s,\"stdoutBytes\":%lld,\"stderrBytes\":%lld}\n",
                 WTERMSIG(status), ag_now_ms(), stopped_by ? "true" : "false", orphaned ? "true" : "false", timed_out ? "true" : "false", out_bytes, err_bytes);
    } else {
        snprintf(text, sizeof text, "{\"kind\":\"exited\",\"code\":%d,\"endedAt\":%lld,\"stopRequested\":%s,\"orphanTimeout\":%s,\"timedOut\":%s,\"stdoutBytes\":%lld,\"stderrBytes\":%lld}\n",
                 WEXITSTATUS(status), ag_now_ms(), stopped_by ? "true" : "false", orphaned ? "true" : "false", timed_out ? "true" : "false", out_bytes, err_bytes);
    }
    int written = ag_write_atomically(dirfd, "exit.json", text);
    close(dirfd);
    return written;
}

long ag_sendfile(int out_fd, int in_fd, long long *offset, unsigned long count) {
    off_t position = (off_t)*offset;
    ssize_t sent = sendfile(out_fd, in_fd, &position, count);
    *offset = (long long)position;
    return (long)sent;
}

int ag_readahead(int fd, long long offset, unsigned long count) {
    return (int)readahead(fd, (off64_t)offset, count);
}

int ag_inotify_init(void) {
    return inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
}

int ag_inotify_watch_writes(int fd, const char *path) {
    return inotify_add_watch(fd, path, IN_MODIFY);
}

/* Closes `count` descriptors each on a thread of its own and waits for all: closing an inotify
   instance waits for the kernel to reap its marks, and those waits overlap this way. */
static void *ag_close_one(void *fd) {
    close((int)(long)fd);
    return NULL;
}

void ag_close_in_parallel(const int *fds, int count) {
    pthread_t *threads = calloc((size_t)(count > 0 ? count : 1), sizeof *threads);
    char *started = calloc((size_t)(count > 0 ? count : 1), 1);
    for (int i = 0; i < count; i++) {
        if (threads && started && pthread_create(&threads[i], NULL, ag_close_one, (void *)(long)fds[i]) == 0) started[i] = 1;
        else close(fds[i]);
    }
    for (int i = 0; i < count; i++) if (started && started[i]) pthread_join(threads[i], NULL);
    free(threads);
    free(started);
}

int ag_termination_signalfd(void) {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &signals, NULL) != 0) return -1;
    return signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
}

int ag_signalfd_drain(int fd) {
    struct signalfd_siginfo info;
    int count = 0;
    while (read(fd, &info, sizeof info) == (ssize_t)sizeof info) count++;
    return count;
}
