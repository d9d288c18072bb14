#ifndef AGENTGATE_CSYSTEMSHIMS_H
#define AGENTGATE_CSYSTEMSHIMS_H

#include <stdint.h>
#include <sys/types.h>

#ifdef __linux__
#include <sys/epoll.h>
#include <sys/eventfd.h>
#endif

/// True when this platform has epoll (Linux); the event loop falls back to poll(2) otherwise.
int ag_has_epoll(void);

/// epoll_ctl with the 64-bit user data passed as a plain integer (epoll_event is packed on
/// x86_64, which Swift does not import reliably).
int ag_epoll_ctl(int epfd, int op, int fd, uint32_t events, uint64_t data);

/// epoll_wait that unpacks events into two parallel arrays.
int ag_epoll_wait(int epfd, uint32_t *events, uint64_t *datas, int max, int timeout_ms);

int ag_epoll_create(void);
int ag_eventfd(void);

/// pidfd_open(2); -1 with errno ENOSYS where the kernel lacks it.
int ag_pidfd_open(pid_t pid);
/* The wait status of the process behind `pidfd` once it has exited: reaped here when it is
   our child, otherwise read from the kernel once whoever inherited it reaped it
   (PIDFD_INFO_EXIT, Linux 6.15+). 1 with `*status` set, 0 not (yet) known, -1 when this
   kernel cannot tell. */
int ag_pidfd_exit_status(int pidfd, int *status);

/// Spawns `path` in a new session (so its process group id equals its pid), with the given
/// fds as stdin/stdout/stderr, no other descriptor, default signal dispositions and an empty
/// mask, and `cwd` as its working directory (NULL keeps ours). With `cgroup_fd` >= 0 (an
/// O_DIRECTORY fd of a cgroup v2 directory) the child is created inside that cgroup by
/// clone3(CLONE_INTO_CGROUP); otherwise posix_spawn (vfork-like) is used.
/// Returns 0 and sets *pid, or an errno value (the exec's own, such as ENOENT).
int ag_spawn(const char *path, char *const argv[], char *const envp[], const char *cwd,
             int stdin_fd, int stdout_fd, int stderr_fd, int cgroup_fd, pid_t *pid);

/// Creates a child inside the cgroup `cgroup_fd` that exits at once: 0 when this machine lets
/// us start processes there (kernel >= 5.7, cgroup v2, delegated to us), else the errno.
int ag_cgroup_probe(int cgroup_fd);

/// prctl(PR_SET_CHILD_SUBREAPER): orphaned descendants are re-parented to us, not to init,
/// so a job's escaped grandchildren stay findable. 0 or -1 with errno.
int ag_set_child_subreaper(void);

/// 1 when this process is a child subreaper.
int ag_is_child_subreaper(void);

/// pipe2(O_CLOEXEC): Glibc hides pipe2 from Swift without _GNU_SOURCE.
int ag_pipe_cloexec(int fds[2]);

/// Ignores SIGPIPE process-wide so writes to closed pipes/sockets fail with EPIPE.
void ag_ignore_sigpipe(void);

/// WIFEXITED/WEXITSTATUS/WIFSIGNALED/WTERMSIG are macros Swift cannot call.
int ag_wifexited(int status);
int ag_wexitstatus(int status);
int ag_wifsignaled(int status);
int ag_wtermsig(int status);


/// Blocks SIGTERM, SIGINT and SIGHUP and returns a non-blocking, close-on-exec signalfd that
/// reports them (-1 on failure): a poll() loop takes them as input, with no handler.
int ag_termination_signalfd(void);

/// Reads every signal pending on a signalfd; how many there were.
int ag_signalfd_drain(int fd);
#endif

/// A listening TCP socket on host:port (numeric IPv4 or IPv6 address, or a name), non-blocking
/// and close-on-exec, SO_REUSEADDR. Returns the fd and sets *bound_port, or -errno
/// (-EAI_* mapped to -EINVAL for bad addresses).
int ag_listen_tcp(const char *host, int port, int backlog, int *bound_port);

/// accept4(SOCK_NONBLOCK | SOCK_CLOEXEC); -1 with errno on failure.
int ag_accept(int listen_fd);

/// A non-blocking, close-on-exec TCP connection attempt to host:port; the fd (connecting or
/// connected) or -errno.
int ag_connect_tcp(const char *host, int port);

/// TCP_NODELAY on: frames go out when written, not after Nagle's delay.
void ag_set_nodelay(int fd);

/// sendfile(2) of `count` bytes of `in_fd` from *offset (advanced by what was sent) to a
/// socket: the bytes go from the page cache to the socket without passing through us. The
/// count sent, or -1 with errno.
long ag_sendfile(int out_fd, int in_fd, long long *offset, unsigned long count);

/// readahead(2): brings a file range into the page cache, blocking until it is read, so a
/// later sendfile of it from the loop does not wait for the disk. 0 or -1 with errno.
int ag_readahead(int fd, long long offset, unsigned long count);

/// inotify_init1(IN_NONBLOCK | IN_CLOEXEC): the fd or -1 with errno.
int ag_inotify_init(void);
/* Closes each of `fds` on a thread of its own, and waits for all of them. */
void ag_close_in_parallel(const int *fds, int count);

/// Watches `path` for writes (IN_MODIFY); the watch descriptor or -1 with errno.
int ag_inotify_watch_writes(int fd, const char *path);

/// Sets the calling thread's nice value (Linux: per thread). 0 on success.
int ag_set_thread_niceness(int value);

/// The per-job supervisor's whole life (`agentgate shim`, issue 14). In the job directory
/// `dir`: opens `stdout` and `stderr` as O_APPEND spool files (the agent writes straight into
/// them: no pipe whose reader can die), takes `stdin` from the file of that name (or
/// /dev/null), becomes a subreaper, spawns the agent in its own group (`ag_spawn`) and writes
/// `agent.json` (pid, start time, boot id). SIGTERM or SIGINT to the supervisor is passed to
/// the agent's group, with SIGKILL `grace_ms` later. When the agent exits, what is left of its
/// group gets the same, the spools are synced, and `exit.json` is written last (temporary
/// file, fsync, rename, fsync of the directory). SIGPIPE and SIGHUP are ignored. With a
/// `heartbeat` path and `orphan_timeout_ms` > 0, the agent is stopped the same way once that
/// file has not been modified for longer than the timeout (no server attached: nothing runs
/// unobserved forever); exit.json then says `"orphanTimeout":true`. With `deadline_ms` > 0
/// (milliseconds since the Unix epoch: the job's timeout) the agent is stopped the same way
/// at that time, server or not; exit.json then says `"timedOut":true`. Returns 0 when exit.json
/// was written, else an errno value (and writes nothing more). With `follow_input`, the
/// agent's stdin is a pipe the supervisor holds open and feeds from the directory's `input`
/// file as it grows (woken by SIGURG, and once a second), closed once `input.closed` exists
/// and all of `input` was copied: a conversation's messages reach the agent across restarts
/// of the server, which never sends it EOF by stopping.
int ag_supervise(const char *dir, const char *path, char *const argv[], char *const envp[], const char *cwd, int grace_ms,
                 const char *heartbeat, long long orphan_timeout_ms, long long deadline_ms, int follow_input);
