// fork, popen, posix_spawn and system() while other threads allocate, for
// tests/programs/fork_spawn.sh.
//
// Built as an ordinary executable (not linked with kalloc) and run with and
// without LD_PRELOAD=libkalloc.so; its stdout must be identical.
//
// Worker threads allocate and free all the time (and check their data).
// Meanwhile the main thread forks children that allocate (strings, maps,
// large blocks, a thread of their own, a grandchild), runs popen() and
// posix_spawn() of /bin/echo and `sh -c`, and system(); one worker thread
// forks too.  A child that deadlocks in the allocator (a lock held by a
// thread that does not exist in the child) is killed by alarm() and
// reported.  Output is printed by the main thread only, in a fixed order.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <thread>
#include <vector>

extern char **environ;

namespace {

constexpr int kWorkers = 3;
std::atomic<bool> g_stop{false};
std::atomic<std::uint64_t> g_worker_errors{0};
std::atomic<std::uint64_t> g_worker_rounds{0};
int g_failures = 0;

std::uint64_t mix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

std::string status_text(int st) {
    char buf[64];
    if (WIFEXITED(st)) snprintf(buf, sizeof buf, "exit %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st)) snprintf(buf, sizeof buf, "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else snprintf(buf, sizeof buf, "status 0x%x", st);
    return buf;
}

// Work a child does after fork(): allocations of every kind, a thread, a
// grandchild.  Returns a checksum that does not depend on the allocator.
std::uint64_t child_work(int n) {
    std::uint64_t sum = 0;
    std::map<int, std::string> m;
    for (int i = 0; i < 5000; ++i) m[i * 7 % 5003] = std::string(static_cast<std::size_t>(i % 97), static_cast<char>('a' + i % 26));
    for (const auto &kv : m) sum += static_cast<std::uint64_t>(kv.first) + kv.second.size();
    std::vector<void *> blocks;
    for (int i = 0; i < 2000; ++i) blocks.push_back(malloc(static_cast<std::size_t>(mix(static_cast<std::uint64_t>(n * 10000 + i)) % 4096 + 1)));
    for (void *p : blocks) free(p);
    void *big = malloc(std::size_t{8} << 20);
    memset(big, n & 0xff, std::size_t{8} << 20);
    sum += static_cast<unsigned char *>(big)[12345];
    free(big);
    std::uint64_t tsum = 0;
    std::thread t([&] {
        std::vector<std::string> v;
        for (int i = 0; i < 3000; ++i) v.push_back(std::to_string(i * n));
        for (const auto &s : v) tsum += s.size();
    });
    t.join();
    sum += tsum;
    if (n % 5 == 0) {  // a grandchild
        pid_t g = fork();
        if (g == 0) {
            alarm(30);
            std::string s;
            for (int i = 0; i < 10000; ++i) s += "g";
            _exit(s.size() == 10000 ? 0 : 1);
        }
        int st = 0;
        waitpid(g, &st, 0);
        sum += (WIFEXITED(st) && WEXITSTATUS(st) == 0) ? 1000000 : 0;
    }
    return sum;
}

// fork(); the child runs child_work and writes one line into a pipe.
std::string fork_child(int n) {
    int fds[2];
    if (pipe(fds) != 0) { perror("pipe"); exit(2); }
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); exit(2); }
    if (pid == 0) {
        alarm(30);  // a deadlocked child dies instead of hanging the test
        close(fds[0]);
        char line[128];
        int len = snprintf(line, sizeof line, "child %d checksum %llu\n", n,
                           static_cast<unsigned long long>(child_work(n)));
        ssize_t w = write(fds[1], line, static_cast<std::size_t>(len));
        _exit(w == len ? 0 : 3);
    }
    close(fds[1]);
    std::string out;
    char buf[256];
    ssize_t r;
    while ((r = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(r));
    close(fds[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        ++g_failures;
        fprintf(stderr, "FAIL: forked child %d: %s\n", n, status_text(st).c_str());
        out += "child " + std::to_string(n) + " FAILED: " + status_text(st) + "\n";
    }
    return out;
}

std::string run_popen(const std::string &cmd) {
    FILE *f = popen(cmd.c_str(), "r");
    if (!f) { perror("popen"); ++g_failures; return "popen failed\n"; }
    std::string out;
    char buf[256];
    std::size_t r;
    while ((r = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, r);
    int st = pclose(f);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        ++g_failures;
        out += "popen FAILED: " + status_text(st) + "\n";
    }
    return out;
}

// posix_spawn(p) with stdout captured through a pipe.
std::string run_spawn(const std::vector<std::string> &argv, bool use_path) {
    int fds[2];
    if (pipe(fds) != 0) { perror("pipe"); exit(2); }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    std::vector<char *> args;
    for (const auto &a : argv) args.push_back(const_cast<char *>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid;
    int rc = use_path ? posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ)
                      : posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    std::string out;
    if (rc != 0) {
        ++g_failures;
        close(fds[0]);
        return "posix_spawn FAILED: " + std::string(strerror(rc)) + "\n";
    }
    char buf[256];
    ssize_t r;
    while ((r = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(r));
    close(fds[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        ++g_failures;
        out += "spawned FAILED: " + status_text(st) + "\n";
    }
    return out;
}

void worker(int id) {
    std::uint64_t round = 0;
    std::vector<std::string> keep;
    while (!g_stop.load(std::memory_order_relaxed)) {
        std::vector<std::string> v;
        for (int i = 0; i < 200; ++i) {
            std::uint64_t r = mix(round * 1000 + static_cast<std::uint64_t>(i) + static_cast<std::uint64_t>(id) * 7777777);
            v.emplace_back(static_cast<std::size_t>(r % 700), static_cast<char>('A' + r % 26));
        }
        for (int i = 0; i < 200; ++i) {
            std::uint64_t r = mix(round * 1000 + static_cast<std::uint64_t>(i) + static_cast<std::uint64_t>(id) * 7777777);
            if (v[static_cast<std::size_t>(i)] != std::string(static_cast<std::size_t>(r % 700), static_cast<char>('A' + r % 26)))
                g_worker_errors.fetch_add(1);
        }
        if (round % 16 == 0) {
            void *big = malloc(std::size_t{1} << (16 + round % 6));
            memset(big, 1, 4096);
            free(big);
        }
        keep.push_back(v[round % 200]);
        if (keep.size() > 500) keep.erase(keep.begin(), keep.begin() + 250);
        ++round;
        g_worker_rounds.fetch_add(1, std::memory_order_relaxed);
    }
}

}  // namespace

int main() {
    std::vector<std::thread> workers;
    for (int i = 0; i < kWorkers; ++i) workers.emplace_back(worker, i);
    // Make sure the workers are busy allocating before the first fork.
    while (g_worker_rounds.load() < 100) std::this_thread::yield();

    // A worker-like thread that forks as well.
    std::string thread_fork_out;
    std::thread forker([&] {
        for (int i = 0; i < 50; ++i) thread_fork_out += fork_child(1000 + i);
    });

    for (int n = 0; n < 200; ++n) fputs(fork_child(n).c_str(), stdout);
    forker.join();
    fputs(thread_fork_out.c_str(), stdout);

    for (int n = 0; n < 10; ++n) {
        fputs(run_popen("/bin/echo popen " + std::to_string(n)).c_str(), stdout);
        fputs(run_popen("sh -c 'i=0; s=0; while [ $i -lt " + std::to_string(100 * n) +
                        " ]; do s=$((s+i)); i=$((i+1)); done; echo sh sum $s'").c_str(), stdout);
    }
    for (int n = 0; n < 10; ++n) {
        fputs(run_spawn({"/bin/echo", "spawned", "echo", std::to_string(n)}, false).c_str(), stdout);
        fputs(run_spawn({"sh", "-c", "printf 'spawned sh %s\\n' \"$0\"; echo $((" + std::to_string(n) + " * 11))",
                         "arg" + std::to_string(n)}, true).c_str(), stdout);
    }
    int st = system("exit 3");
    printf("system: %s\n", status_text(st).c_str());
    st = system("echo system echo >/dev/null && true");
    printf("system: %s\n", status_text(st).c_str());

    g_stop = true;
    for (auto &t : workers) t.join();
    printf("workers: errors %llu\n", static_cast<unsigned long long>(g_worker_errors.load()));
    printf("failures: %d\n", g_failures);
    fflush(stdout);
    return (g_failures == 0 && g_worker_errors.load() == 0) ? 0 : 1;
}
