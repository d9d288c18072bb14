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
#else
int ag_has_epoll(void) { return 0; }
int ag_epoll_create(void) { errno = ENOSYS; return -1; }
int ag_eventfd(void) { errno = ENOSYS; return -1; }
int ag_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data) { errno = ENOSYS; return -1; }
int ag_epoll_wait(int epfd, uint32_t *events, uint64_t *datas, int max, int timeout_ms) { errno = ENOSYS; return -1; }
int ag_pidfd_open(pid_t pid) { errno = ENOSYS; return -1; }
#endif

int ag_spawn(const char *path, char *const argv[], char *const envp[], const char *cwd,
             int stdin_fd, int stdout_fd, int stderr_fd, pid_t *pid) {
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

int ag_wifexited(int status) { return WIFEXITED(status); }
int ag_wexitstatus(int status) { return WEXITSTATUS(status); }
int ag_wifsignaled(int status) { return WIFSIGNALED(status); }
int ag_wtermsig(int status) { return WTERMSIG(status); }

int ag_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

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
