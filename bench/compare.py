#!/usr/bin/env python3
"""compare.py - run the kalloc benchmark suite under several allocators.

Every workload runs under each allocator chosen at run time with LD_PRELOAD:

  system    no preload: glibc's ptmalloc
  jemalloc  libjemalloc.so.2          (Debian libjemalloc2)
  mimalloc  libmimalloc.so.2*         (Debian libmimalloc2.0)
  tcmalloc  libtcmalloc_minimal.so.4  (Debian libtcmalloc-minimal4 / gperftools)
  kalloc    the library given with --kalloc

Runs are INTERLEAVED: round 1 runs every workload under every allocator
(A B C D E), then round 2 does the same, and so on, so slow drifts of a
shared, noisy machine hit all allocators alike.  Each run's wall time and
peak RSS (ru_maxrss from wait4, so it includes waited-for children, e.g.
cc1plus under g++) are recorded; the report gives the medians per workload
and allocator, kalloc's ratio to each peer and to the best peer, and the
geometric means of those ratios.

Besides the workloads of bench/workloads/ (built into <build>/bench/) it runs
real programs: python3 (PYTHONMALLOC=malloc), python3-bytes (a cache of
bytes values replaced the way a memcached client builds its requests: large
copies between large blocks), sqlite3 (in-memory database),
redis-server (driven by redis-benchmark on 127.0.0.1, a free port), a g++
compile of a mid-sized C++ file, and redis-expiry (redis-server with key
expiry, driven by bench/programs/redis_expiry.py, its RSS sampled from
/proc/<pid>/status every 100 ms).

Issue 4's memory workloads (fragmentation, kv-ttl, idle-drift[-scattered],
sleeping-threads, redis-expiry) also report RSS per phase and RSS over time
(rss_phase / live_kib / rss_sample / phase_mark lines, see
bench/workloads/common.h); the report has a table for each, and a line chart
of RSS over time per server-like workload.

Outputs (in --out, default bench/results/; the base name is --prefix,
default "latest", "quick" in --quick mode):
  latest.md    Markdown report: machine, allocator versions, tables
  latest.json  every run (raw) and the medians
  time.svg     median wall time per workload, normalised to system = 1.0
  rss.svg      median peak RSS per workload, normalised to system = 1.0
  rss-time-<bench>.svg  RSS over time of kv-ttl and redis-expiry

Modes: --quick (2 rounds, small sizes: a few minutes) or full (default: 5
rounds, full sizes: well under 30 minutes on 2 cores).  --micro also runs the
Google Benchmark binary (<build>/bench/micro) under every allocator.

Only the Python standard library is used.  Exit status: 0 if every run
succeeded, 1 if any run failed (crash, non-zero exit, timeout, or a checksum
that differs from the other allocators'), 2 on a usage error.
"""

import argparse
import datetime
import glob
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

ALLOCATOR_ORDER = ["system", "jemalloc", "mimalloc", "tcmalloc", "kalloc"]
PEER_COLOURS = {
    "system": "#7f7f7f",
    "jemalloc": "#1f77b4",
    "mimalloc": "#2ca02c",
    "tcmalloc": "#ff7f0e",
    "kalloc": "#d62728",
}

# The workloads built from bench/workloads/ (name = executable name).
WORKLOADS = [
    "larson", "xmalloc", "cache-scratch", "cache-thrash", "alloc-test",
    "frag-churn", "many-threads", "realloc-string", "containers", "random-sizes",
    "thread-rounds",
    # issue 4's memory workloads (they print rss_phase / rss_sample lines)
    "fragmentation", "kv-ttl", "idle-drift", "idle-drift-scattered", "sleeping-threads",
]
PROGRAMS = ["python3", "python3-bytes", "sqlite3", "redis", "g++", "redis-expiry"]

# Benchmarks run by another benchmark's executable with extra arguments.
WORKLOAD_EXE = {
    "idle-drift-scattered": ("idle-drift", ["--survivors=scattered"]),
}

# Benchmarks whose wall time is mostly a fixed idle period (a sleep, an idle
# tail) or a Python client: their time is shown but left out of the time
# geometric means, which stay comparable with the suite before issue 4.
TIME_EXCLUDED = {"kv-ttl", "idle-drift", "idle-drift-scattered", "sleeping-threads",
                 "redis-expiry"}

# Benchmarks sampled for RSS over time (one SVG line chart each).
RSS_TIME_BENCHES = ["kv-ttl", "redis-expiry"]

# Phases that are a baseline, not a result: shown, left out of the geomean.
BASELINE_PHASES = {"start"}

# Issue 4's hugepage target: AnonHugePages >= 80% of Rss at the steady phases
# of these workloads (thp_coverage lines; redis-expiry: the driver reads the
# server's /proc/<pid>/smaps_rollup at the end of each phase).  Other phases
# that report coverage are shown for information.
THP_STEADY = {
    "kv-ttl": ["warm", "spike", "calm"],
    "frag-churn": ["churn"],
    "fragmentation": ["fill"],
    "redis-expiry": ["spike", "calm"],
}
THP_TARGET = 0.80

# What each memory workload must report (a run without it is a failed run):
# rss_phase names, and "samples" for an RSS time series.
REQUIRED_RSS = {
    "fragmentation": ["start", "fill", "free", "refill", "end"],
    "kv-ttl": ["warm", "spike", "calm", "idle", "samples"],
    "idle-drift": ["start", "burst", "t0", "t0.5", "t1", "t2"],
    "idle-drift-scattered": ["start", "burst", "t0", "t0.5", "t1", "t2"],
    "sleeping-threads": ["start", "asleep", "asleep_1s", "end"],
    "redis-expiry": ["warm", "spike", "calm", "idle", "samples"],
}


def missing_rss(bench, r):
    """The figures REQUIRED_RSS[bench] that run r lacks (a list, maybe empty)."""
    miss = []
    for k in REQUIRED_RSS.get(bench, []):
        if k == "samples":
            if not r.get("rss_samples"):
                miss.append("rss_sample lines")
        elif k not in r.get("rss_phases", {}):
            miss.append("rss_phase " + k)
    return miss

MODES = {
    # reps, scale of the workloads, sqlite rows, redis requests per test,
    # redis-expiry commands, its idle tail (s), micro min time, per-run timeout (s)
    # mem_reps: rounds of issue 4's memory workloads (REQUIRED_RSS), whose
    # figures are RSS (steadier than time) and whose runs are long (idle periods)
    "quick": dict(reps=2, mem_reps=2, scale=0.3, sqlite_rows=120000, redis_requests=20000,
                  expiry_requests=100000, expiry_tail=2.0,
                  micro_min_time=0.01, timeout=120),
    "full": dict(reps=5, mem_reps=3, scale=1.0, sqlite_rows=400000, redis_requests=100000,
                 expiry_requests=300000, expiry_tail=2.0,
                 micro_min_time=0.2, timeout=300),
}


def log(msg):
    print(msg, flush=True)


def warn(msg):
    print("compare.py: warning: " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Allocators
# ---------------------------------------------------------------------------

def lib_dirs():
    dirs = []
    try:
        arch = subprocess.run(["gcc", "-print-multiarch"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        if arch:
            dirs += ["/usr/lib/" + arch, "/lib/" + arch]
    except (OSError, subprocess.SubprocessError):
        pass
    dirs += ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
             "/usr/lib64", "/usr/lib", "/usr/local/lib"]
    seen, out = set(), []
    for d in dirs:
        if d not in seen and os.path.isdir(d):
            seen.add(d)
            out.append(d)
    return out


def find_lib(patterns):
    for d in lib_dirs():
        for pat in patterns:
            hits = sorted(glob.glob(os.path.join(d, pat)))
            # prefer the shortest name (the SONAME link) among the hits
            hits.sort(key=len)
            for h in hits:
                if os.path.isfile(h):
                    return h
    return None


def dpkg_version_of_file(path):
    """'package version' of the Debian package that ships path, or None."""
    if not path:
        return None
    candidates = [path, os.path.realpath(path)]
    for p in candidates:
        # dpkg -S knows /usr/lib/... and /lib/... paths (usrmerge)
        for q in {p, p.replace("/usr/lib/", "/lib/", 1)}:
            try:
                r = subprocess.run(["dpkg", "-S", q], capture_output=True, text=True,
                                   timeout=20)
            except (OSError, subprocess.SubprocessError):
                return None
            if r.returncode == 0 and r.stdout:
                pkg = r.stdout.split(":")[0].strip()
                # "libfoo:amd64: /path" -> libfoo
                pkg = pkg.split(",")[0].strip()
                v = dpkg_version(pkg)
                return "%s %s" % (pkg, v) if v else pkg
    return None


def dpkg_version(pkg):
    try:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                           capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else None


def discover_allocators(kalloc_path, wanted):
    """[(name, path or None for system)] for the allocators that exist."""
    found = []
    cands = {
        "system": None,
        "jemalloc": find_lib(["libjemalloc.so.2", "libjemalloc.so"]),
        "mimalloc": find_lib(["libmimalloc.so.2", "libmimalloc.so.2*", "libmimalloc.so"]),
        "tcmalloc": find_lib(["libtcmalloc_minimal.so.4", "libtcmalloc_minimal.so.4*",
                              "libtcmalloc.so.4", "libtcmalloc.so.4*"]),
        "kalloc": os.path.abspath(kalloc_path) if kalloc_path else None,
    }
    for name in ALLOCATOR_ORDER:
        if wanted and name not in wanted:
            continue
        path = cands[name]
        if name == "system":
            found.append((name, None))
        elif name == "kalloc":
            if not kalloc_path:
                warn("no --kalloc given: kalloc is skipped")
            elif not os.path.isfile(path):
                warn("kalloc library %s not found: kalloc is skipped" % path)
            else:
                found.append((name, path))
        elif path is None:
            warn("%s library not found (is its -dev package installed?): skipped" % name)
        else:
            found.append((name, path))
    return found


def allocator_version(name, path):
    if name == "system":
        v = dpkg_version("libc6")
        return "glibc ptmalloc (libc6 %s)" % v if v else "glibc " + platform.libc_ver()[1]
    if name == "kalloc":
        try:
            r = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                               capture_output=True, text=True, timeout=20)
            if r.returncode == 0:
                return "git " + r.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
        return "local build"
    return dpkg_version_of_file(path) or "unknown"


def alloc_env(path, extra=None):
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    if path:
        env["LD_PRELOAD"] = path
    if extra:
        env.update(extra)
    return env


# ---------------------------------------------------------------------------
# Running one process and measuring it
# ---------------------------------------------------------------------------

GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
ENV = "/usr/bin/env" if os.access("/usr/bin/env", os.X_OK) else shutil.which("env")


def measured_cmd(cmd, env, tmp):
    """Wrap cmd as /usr/bin/time -f '%e %M' -o FILE -- env LD_PRELOAD=... cmd.

    Why not wait4 from here: a child forked from this (large) Python process
    inherits its peak RSS across exec (Linux keeps the pre-exec high-water
    mark in ru_maxrss), so small workloads would all show Python's RSS.
    GNU time is tiny, and the LD_PRELOAD is applied only at the final exec
    (by env), so neither time nor the measurement is affected by the
    allocator.  Returns (cmd, env, file) or (cmd, env, None) without time."""
    if not GNU_TIME or not ENV:
        return cmd, env, None
    env = dict(env)
    pre = env.pop("LD_PRELOAD", None)
    fd, out = tempfile.mkstemp(prefix="time-", dir=tmp)
    os.close(fd)
    inner = [ENV] + (["LD_PRELOAD=" + pre] if pre else []) + list(cmd)
    return [GNU_TIME, "-f", "%e %M", "-o", out, "--"] + inner, env, out


def read_time_file(path):
    """(maxrss_kib, note) from GNU time's -o file."""
    try:
        with open(path) as f:
            lines = [l.strip() for l in f.read().splitlines() if l.strip()]
        os.unlink(path)
    except OSError:
        return None, None
    note = None
    rss = None
    for l in lines:
        if l.startswith("Command"):
            note = l
        else:
            parts = l.split()
            if len(parts) == 2:
                try:
                    rss = int(parts[1])
                except ValueError:
                    pass
    return rss, note


def run_measured(cmd, env, timeout, tmp, stdin_path=None, cwd=None):
    """Run cmd; return dict(wall, maxrss_kib, rc, out, err, timed_out)."""
    cmd, env, time_file = measured_cmd(cmd, env, tmp)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
        try:
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, env=env, stdin=stdin, stdout=out, stderr=err,
                                 cwd=cwd, start_new_session=True)
            timed_out = threading.Event()

            def kill():
                timed_out.set()
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass

            timer = threading.Timer(timeout, kill)
            timer.start()
            try:
                _, status, ru = os.wait4(p.pid, 0)
            finally:
                timer.cancel()
            wall = time.perf_counter() - t0
            p.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if stdin_path:
                stdin.close()
        out.seek(0)
        err.seek(0)
        res = dict(wall=wall, maxrss_kib=ru.ru_maxrss, rc=p.returncode,
                   out=out.read().decode(errors="replace"),
                   err=err.read().decode(errors="replace"),
                   timed_out=timed_out.is_set())
        if time_file:
            rss, note = read_time_file(time_file)
            if rss is not None:
                res["maxrss_kib"] = rss
            if note and res["rc"] != 0:
                res["err"] += "\n" + note
        return res


CHECKSUM_RE = re.compile(r"checksum=([0-9a-fA-F]+)")


def checksum_from_output(text):
    m = CHECKSUM_RE.search(text)
    return m.group(1) if m else None


def parse_rss_lines(text):
    """The machine-readable lines of the memory workloads (bench/workloads/
    common.h): rss_phase <name> <KiB>, live_kib <name> <KiB>,
    rss_sample <ms> <KiB>, phase_mark <ms> <name>, and
    thp_coverage <name> <AnonHugePages KiB> <Rss KiB>.  Returns a dict with the
    keys that occur: rss_phases {name: KiB} (in order), live_kib {name: KiB},
    rss_samples [[ms, KiB]], phase_marks [[ms, name]], thp {name: [AnonHuge
    KiB, Rss KiB]} (lines with one name summed)."""
    phases, live, samples, marks, thp = {}, {}, [], [], {}
    for line in text.splitlines():
        f = line.split()
        if len(f) == 4 and f[0] == "thp_coverage":
            try:
                cur = thp.setdefault(f[1], [0, 0])
                cur[0] += int(f[2])
                cur[1] += int(f[3])
            except ValueError:
                pass
            continue
        if len(f) != 3:
            continue
        try:
            if f[0] == "rss_phase":
                phases[f[1]] = int(f[2])
            elif f[0] == "live_kib":
                live[f[1]] = int(f[2])
            elif f[0] == "rss_sample":
                samples.append([int(f[1]), int(f[2])])
            elif f[0] == "phase_mark":
                marks.append([int(f[1]), f[2]])
        except ValueError:
            continue
    out = {}
    if phases:
        out["rss_phases"] = phases
    if live:
        out["live_kib"] = live
    if samples:
        out["rss_samples"] = samples
    if marks:
        out["phase_marks"] = marks
    if thp:
        out["thp"] = thp
    return out


def thp_of(pid):
    """[AnonHugePages KiB, Rss KiB] of a process, from /proc/<pid>/smaps_rollup;
    None if it cannot be read."""
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            text = f.read()
    except OSError:
        return None
    rss = re.search(r"^Rss:\s+(\d+)", text, re.M)
    ahp = re.search(r"^AnonHugePages:\s+(\d+)", text, re.M)
    if not rss or not ahp:
        return None
    return [int(ahp.group(1)), int(rss.group(1))]


def thp_mode():
    """The machine's transparent_hugepage enabled and defrag modes (the
    bracketed words), e.g. ("madvise", "madvise"); "?" when unknown."""
    modes = []
    for name in ("enabled", "defrag"):
        try:
            with open("/sys/kernel/mm/transparent_hugepage/" + name) as f:
                m = re.search(r"\[(\S+)\]", f.read())
            modes.append(m.group(1) if m else "?")
        except OSError:
            modes.append("?")
    return tuple(modes)


def vmrss_of(pid):
    """VmRSS of a process in KiB (from /proc/<pid>/status), None if gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class RssSampler:
    """Samples a process's VmRSS every period_s seconds in a thread:
    samples = [[ms since start, KiB]]."""

    def __init__(self, pid, period_s=0.1):
        self.pid, self.period = pid, period_s
        self.samples = []
        self.t0 = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def now_ms(self):
        return int((time.perf_counter() - self.t0) * 1000)

    def _run(self):
        while True:
            v = vmrss_of(self.pid)
            if v is not None:
                self.samples.append([self.now_ms(), v])
            if self._stop.wait(self.period):
                break

    def stop(self):
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------------------
# The benchmarks: each is a callable(alloc_name, alloc_path) -> run dict
# ---------------------------------------------------------------------------

class Suite:
    def __init__(self, args, mode):
        self.args = args
        self.mode = mode
        self.tmp = tempfile.mkdtemp(prefix="kalloc-bench-")
        self.bin_dir = args.bin_dir
        self.timeout = args.timeout or mode["timeout"]
        self.scale = args.scale if args.scale is not None else mode["scale"]
        self.benches = []  # (name, kind, runner)
        self.workload_args = {}  # bench -> extra arguments (--workload-args)
        for spec in args.workload_args or []:
            name, _, rest = spec.partition(":")
            self.workload_args.setdefault(name, []).extend(rest.split())

    def cleanup(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- workloads ---------------------------------------------------------
    def add_workloads(self, only):
        for w in WORKLOADS:
            if only and w not in only:
                continue
            name, extra = WORKLOAD_EXE.get(w, (w, []))
            extra = list(extra) + self.workload_args.get(w, [])
            exe = os.path.join(self.bin_dir, name)
            if not os.access(exe, os.X_OK):
                warn("workload %s not built (%s missing): skipped" % (w, exe))
                continue
            self.benches.append((w, "workload", self._workload_runner(exe, extra)))

    def _workload_runner(self, exe, extra=()):
        def run(alloc, path):
            r = run_measured([exe, "--scale=%g" % self.scale] + list(extra), alloc_env(path),
                             self.timeout, self.tmp)
            r["checksum"] = checksum_from_output(r["out"])
            if r["rc"] == 0 and r["checksum"] is None:
                r["problem"] = "no checksum line in the output"
            r.update(parse_rss_lines(r["out"]))
            return r
        return run

    # -- real programs -----------------------------------------------------
    def add_programs(self, only):
        for prog in PROGRAMS:
            if only and prog not in only:
                continue
            maker = {"python3": self._python, "python3-bytes": self._python_bytes,
                     "sqlite3": self._sqlite,
                     "redis": self._redis, "g++": self._gxx,
                     "redis-expiry": self._redis_expiry}[prog]
            runner = maker()
            if runner:
                self.benches.append((prog, "program", runner))

    def _python_script(self, name, script, env_extra):
        """A Python program of bench/programs/, run by /usr/bin/python3 -S
        with the scale as its argument; its checksum line is compared."""
        py = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else shutil.which("python3")
        if not py:
            warn("python3 not found: the %s workload is skipped" % name)
            return None
        path_script = os.path.join(HERE, "programs", script)

        def run(alloc, path):
            env = alloc_env(path, dict(env_extra, PYTHONHASHSEED="0"))
            r = run_measured([py, "-S", path_script, "%g" % self.scale], env, self.timeout, self.tmp)
            r["checksum"] = checksum_from_output(r["out"])
            if r["rc"] == 0 and r["checksum"] is None:
                r["problem"] = "no checksum line in the output"
            return r
        return run

    def _python(self):
        return self._python_script("python3", "py_workload.py", {"PYTHONMALLOC": "malloc"})

    def _python_bytes(self):
        # CPython's own allocator left on: only objects above 512 B reach malloc.
        return self._python_script("python3-bytes", "py_bytes_cache.py", {})

    def _sqlite(self):
        exe = shutil.which("sqlite3")
        if not exe:
            warn("sqlite3 not found (apt-get install sqlite3): the sqlite3 workload is skipped")
            return None
        rows = max(1000, int(self.mode["sqlite_rows"] * (self.scale / self.mode["scale"])))
        sql = os.path.join(self.tmp, "workload.sql")
        with open(sql, "w") as f:
            f.write(SQLITE_SCRIPT.replace("@ROWS@", str(rows)))

        def run(alloc, path):
            r = run_measured([exe, "-batch", ":memory:"], alloc_env(path), self.timeout,
                             self.tmp, stdin_path=sql)
            lines = r["out"].strip().splitlines()
            r["checksum"] = hashlib.sha256(r["out"].encode()).hexdigest()[:16]
            if r["rc"] == 0 and (len(lines) < 8 or "Error" in r["err"]):
                r["problem"] = "unexpected sqlite3 output: " + (r["err"] or r["out"])[:200]
            return r
        return run

    def _gxx(self):
        exe = shutil.which("g++")
        if not exe:
            warn("g++ not found: the g++ workload is skipped")
            return None
        src = os.path.join(HERE, "workloads", "containers.cc")
        obj = os.path.join(self.tmp, "containers.o")

        def run(alloc, path):
            r = run_measured([exe, "-std=c++20", "-O2", "-c", src, "-o", obj],
                             alloc_env(path), self.timeout, self.tmp)
            r["checksum"] = None  # object files may legitimately differ
            if r["rc"] == 0 and not os.path.isfile(obj):
                r["problem"] = "g++ produced no object file"
            try:
                os.unlink(obj)
            except OSError:
                pass
            return r
        return run

    def _redis(self):
        server = shutil.which("redis-server")
        client = shutil.which("redis-benchmark")
        cli = shutil.which("redis-cli")
        if not (server and client and cli):
            warn("redis-server / redis-benchmark / redis-cli not found "
                 "(apt-get install redis-server redis-tools): the redis workload is skipped")
            return None
        n = max(1000, int(self.args.redis_requests or
                          self.mode["redis_requests"] * min(1.0, self.scale / self.mode["scale"])))

        def run(alloc, path):
            return run_redis(server, client, cli, alloc_env(path), n, self.timeout, self.tmp)
        return run

    def _redis_expiry(self):
        server = shutil.which("redis-server")
        cli = shutil.which("redis-cli")
        if not (server and cli):
            warn("redis-server / redis-cli not found (apt-get install redis-server "
                 "redis-tools): the redis-expiry workload is skipped")
            return None
        n = max(2000, int(self.args.expiry_requests or
                          self.mode["expiry_requests"] * min(1.0, self.scale / self.mode["scale"])))
        tail = self.args.expiry_tail if self.args.expiry_tail is not None else self.mode["expiry_tail"]

        def run(alloc, path):
            return run_redis_expiry(server, cli, alloc_env(path), n, tail, self.timeout, self.tmp)
        return run


SQLITE_SCRIPT = """\
PRAGMA cache_size=-262144;
CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, s TEXT, b BLOB);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < @ROWS@)
INSERT INTO t SELECT x, (x*2654435761) % 1000003,
  printf('%08x-%s', (x*40503) % 4294967296, substr('abcdefghijklmnopqrstuvwxyz', 1 + x % 26)),
  zeroblob(x % 200) FROM c;
CREATE INDEX t_k ON t(k);
CREATE INDEX t_s ON t(s);
SELECT count(*), sum(k), sum(length(s)) FROM t;
SELECT k % 100 AS g, count(*), max(s) FROM t GROUP BY g ORDER BY g LIMIT 5;
UPDATE t SET s = s || '-updated' WHERE id % 3 = 0;
DELETE FROM t WHERE id % 7 = 0;
SELECT count(*), sum(length(s)) FROM t;
CREATE TABLE u AS SELECT k % 1000 AS g, group_concat(s) AS gs FROM t GROUP BY g;
SELECT count(*), sum(length(gs)) FROM u;
SELECT s FROM t ORDER BY s DESC LIMIT 3;
SELECT count(*) FROM t a JOIN u ON a.k % 1000 = u.g WHERE a.id % 5 = 0;
"""


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_ping(port, timeout=0.5):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def redis_server_cmd(server, port, workdir):
    """redis-server on a loopback port, no persistence, logging to workdir."""
    return [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", workdir, "--daemonize", "no",
            "--logfile", os.path.join(workdir, "redis.log"), "--databases", "1"]


def redis_wait_up(p, port, res):
    """Wait (15 s at most) until the server answers PING; on failure record
    the problem in res and return False (p.returncode is set if it exited)."""
    deadline = time.monotonic() + 15
    while not redis_ping(port):
        if p.poll() is not None:
            res.update(rc=p.returncode, problem="redis-server exited at start-up")
            return False
        if time.monotonic() > deadline:
            res.update(rc=-1, timed_out=True, problem="redis-server did not start")
            return False
        time.sleep(0.05)
    return True


def redis_stop(p, server_pid, res, time_file):
    """Stop the server by its PID (p may be GNU time around it) and reap p:
    its exit status and peak RSS go into res.  Returns whether p was reaped."""
    os.kill(server_pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            res["rc"] = p.returncode
            res["maxrss_kib"] = ru.ru_maxrss
            if time_file:
                rss, note = read_time_file(time_file)
                if rss is not None:
                    res["maxrss_kib"] = rss
                if note and p.returncode != 0:
                    res["err"] += "\n" + note
            return True
        if time.monotonic() > deadline:
            res.update(rc=-1, problem="redis-server did not stop on SIGTERM")
            return False
        time.sleep(0.02)


def redis_kill(p, workdir, reaped):
    """Clean-up: kill and reap a server that was not stopped; remove workdir."""
    if not reaped:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.waitpid(p.pid, 0)
        except OSError:
            pass
    shutil.rmtree(workdir, ignore_errors=True)


def run_redis(server, client, cli, env, requests, timeout, tmp):
    """Start redis-server with the allocator preloaded on a free loopback port,
    drive it with redis-benchmark (plain, no preload), stop it by its PID.
    wall = redis-benchmark's wall time; maxrss = the server's peak RSS."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="redis-", dir=tmp)
    cmd = redis_server_cmd(server, port, workdir)
    # Under GNU time (see measured_cmd): p is time, the server is its child.
    cmd, env, time_file = measured_cmd(cmd, env, tmp)
    p = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    reaped = False
    res = dict(wall=float("nan"), maxrss_kib=0, rc=None, out="", err="", timed_out=False,
               checksum=None)
    try:
        if not redis_wait_up(p, port, res):
            reaped = p.returncode is not None
            return res
        plain = alloc_env(None)
        bench = [client, "-h", "127.0.0.1", "-p", str(port), "-n", str(requests), "-q",
                 "-c", "16", "-P", "16", "-r", "200000", "-d", "200",
                 "-t", "set,get,incr,lpush,rpop,sadd,hset,spop,lpop,mset"]
        t0 = time.perf_counter()
        b = subprocess.run(bench, env=plain, capture_output=True, text=True, timeout=timeout)
        res["wall"] = time.perf_counter() - t0
        res["out"] = b.stdout[-4000:]
        res["err"] = b.stderr[-2000:]
        rps = {}
        for line in b.stdout.replace("\r", "\n").splitlines():
            m = re.match(r"\s*([A-Z_]+[A-Za-z_ ()0-9]*?):\s*([0-9.]+) requests per second", line)
            if m:
                rps[m.group(1).strip()] = float(m.group(2))
        res["rps"] = rps
        # Checked work: a value written must come back, and the data set exists.
        token = "kb-%d-%d" % (os.getpid(), port)
        c1 = subprocess.run([cli, "-h", "127.0.0.1", "-p", str(port), "SET", "kb:check", token],
                            env=plain, capture_output=True, text=True, timeout=30)
        c2 = subprocess.run([cli, "-h", "127.0.0.1", "-p", str(port), "GET", "kb:check"],
                            env=plain, capture_output=True, text=True, timeout=30)
        c3 = subprocess.run([cli, "-h", "127.0.0.1", "-p", str(port), "DBSIZE"],
                            env=plain, capture_output=True, text=True, timeout=30)
        if b.returncode != 0 or len(rps) < 5:
            res["problem"] = "redis-benchmark failed (rc=%s)" % b.returncode
        elif c2.stdout.strip() != token or c1.returncode != 0:
            res["problem"] = "redis-server did not return the value written"
        elif not c3.stdout.strip().isdigit() or int(c3.stdout.strip()) < 2:
            res["problem"] = "redis-server lost its data set"
        res["dbsize"] = c3.stdout.strip()
        # Stop the server by its PID (from INFO; p may be GNU time); its exit
        # status and peak RSS are the result.
        c4 = subprocess.run([cli, "-h", "127.0.0.1", "-p", str(port), "INFO", "server"],
                            env=plain, capture_output=True, text=True, timeout=30)
        m = re.search(r"^process_id:(\d+)", c4.stdout, re.M)
        server_pid = int(m.group(1)) if m else p.pid
        res["server_pid"] = server_pid
        reaped = redis_stop(p, server_pid, res, time_file)
        if res["rc"] == 0 and "problem" not in res:
            res["checksum"] = "ok"
        return res
    except subprocess.TimeoutExpired:
        res.update(rc=-1, timed_out=True, problem="redis-benchmark timed out")
        return res
    finally:
        redis_kill(p, workdir, reaped)


def run_redis_expiry(server, cli, env, requests, tail, timeout, tmp):
    """redis-expiry: start redis-server (allocator preloaded) on a free
    loopback port, drive it with bench/programs/redis_expiry.py (in this
    process: keys with SET PX / SETEX / PEXPIRE, value sizes per key), leave
    it idle for `tail` seconds so the active expire cycle runs, stop it by its
    PID.  The server's VmRSS is sampled every 100 ms from /proc/<pid>/status
    throughout.  wall = the client's time; maxrss = the server's peak RSS."""
    sys.path.insert(0, os.path.join(HERE, "programs"))
    try:
        import redis_expiry  # bench/programs/redis_expiry.py
    finally:
        sys.path.pop(0)
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="redis-", dir=tmp)
    cmd = redis_server_cmd(server, port, workdir)
    cmd, env, time_file = measured_cmd(cmd, env, tmp)
    p = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    plain = alloc_env(None)
    reaped = False
    sampler = None
    res = dict(wall=float("nan"), maxrss_kib=0, rc=None, out="", err="", timed_out=False,
               checksum=None)
    try:
        if not redis_wait_up(p, port, res):
            reaped = p.returncode is not None
            return res
        info = subprocess.run([cli, "-h", "127.0.0.1", "-p", str(port), "INFO", "server"],
                              env=plain, capture_output=True, text=True, timeout=30)
        m = re.search(r"^process_id:(\d+)", info.stdout, re.M)
        if not m:
            res.update(rc=-1, problem="no process_id in INFO server")
            return res
        server_pid = int(m.group(1))
        res["server_pid"] = server_pid
        sampler = RssSampler(server_pid, 0.1)
        phases, marks = {}, []

        thp = {}

        def on_phase(name):
            marks.append([sampler.now_ms(), name])
            phases[name] = vmrss_of(server_pid) or 0
            cov = thp_of(server_pid)
            if cov:
                thp[name] = cov

        phases["start"] = vmrss_of(server_pid) or 0
        t0 = time.perf_counter()
        try:
            stats = redis_expiry.drive(port, requests, seed=1, on_phase=on_phase)
        except (OSError, RuntimeError, ValueError) as e:
            res.update(rc=-1, problem="redis-expiry client: %s" % e)
            return res
        res["wall"] = time.perf_counter() - t0
        if res["wall"] > timeout:
            res["timed_out"] = True
        time.sleep(tail)
        marks.append([sampler.now_ms(), "idle"])
        phases["idle"] = vmrss_of(server_pid) or 0
        sampler.stop()
        res["out"] = "redis-expiry: " + " ".join("%s=%d" % kv for kv in stats.items())
        c3 = subprocess.run([cli, "-h", "127.0.0.1", "-p", str(port), "DBSIZE"],
                            env=plain, capture_output=True, text=True, timeout=30)
        res["dbsize"] = c3.stdout.strip()
        if not c3.stdout.strip().isdigit():
            res["problem"] = "redis-server did not answer DBSIZE"
        elif stats["hits"] == 0 or stats["sets"] == 0:
            res["problem"] = "redis-expiry: no hit (%r)" % stats
        res.update(rss_phases=phases, rss_samples=sampler.samples, phase_marks=marks)
        if thp:
            res["thp"] = thp
        reaped = redis_stop(p, server_pid, res, time_file)
        if res["rc"] == 0 and "problem" not in res:
            res["checksum"] = "ok"
        return res
    except subprocess.TimeoutExpired:
        res.update(rc=-1, timed_out=True, problem="redis-cli timed out")
        return res
    finally:
        if sampler:
            sampler.stop()
        redis_kill(p, workdir, reaped)


# ---------------------------------------------------------------------------
# Statistics
# ---------------------------------------------------------------------------

def ok_runs(runs, bench, alloc):
    return [r for r in runs if r["bench"] == bench and r["alloc"] == alloc and r["ok"]]


def median_of(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None and not math.isnan(r[key])]
    return statistics.median(vals) if vals else None


def geomean(xs):
    xs = [x for x in xs if x and x > 0 and not math.isnan(x)]
    if not xs:
        return None
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def summarise(runs, benches, allocs):
    """medians[bench][alloc] = dict(time, rss_mib, n, spread)."""
    med = {}
    for b in benches:
        med[b] = {}
        for a in allocs:
            rs = ok_runs(runs, b, a)
            all_rs = [r for r in runs if r["bench"] == b and r["alloc"] == a]
            t = median_of(rs, "wall")
            m = median_of(rs, "maxrss_kib")
            spread = None
            if t and len(rs) > 1:
                spread = (max(r["wall"] for r in rs) - min(r["wall"] for r in rs)) / t
            med[b][a] = dict(time=t, rss_mib=(m / 1024.0) if m else None, n=len(rs),
                             failed=len(all_rs) - len(rs), spread=spread)
    return med


def ratios(med, benches, allocs, key, exclude=()):
    """kalloc's ratio to each peer and to the best peer, per bench, + geomeans
    (over the benches not in exclude)."""
    if "kalloc" not in allocs:
        return None
    peers = [a for a in allocs if a != "kalloc"]
    per = {}
    for b in benches:
        k = med[b]["kalloc"][key]
        row = {}
        for p in peers:
            v = med[b][p][key]
            row[p] = (k / v) if (k and v) else None
        vals = [med[b][p][key] for p in peers if med[b][p][key]]
        best = min(vals) if vals else None
        row["best"] = (k / best) if (k and best) else None
        per[b] = row
    gm = {c: geomean([per[b][c] for b in benches if per[b][c] and b not in exclude])
          for c in peers + ["best"]}
    return dict(per=per, geomean=gm, peers=peers, excluded=sorted(set(exclude) & set(benches)))


def representative_run(rs, key):
    """The run whose key(run) is the median (the lower middle for an even
    count): a real run to plot, not a mixture."""
    rs = sorted((r for r in rs if key(r) is not None), key=key)
    return rs[(len(rs) - 1) // 2] if rs else None


def rss_summaries(runs, benches, allocs):
    """Issue 4's memory figures, from the rss_phase/live_kib/rss_sample data.

    phases:   {bench: {"phases": [names], "live_mib": {phase: MiB},
                       "mib": {phase: {alloc: median MiB}},
                       "ratio_best": {phase: kalloc / best peer}}}
    phase_geomean: geomean of kalloc/best peer over every non-baseline phase
    idle:     {bench: {alloc: {live_mib, above_mib: {t: MiB}, ratio_t2, within}}}
    threads:  {alloc: {threads, start_mib, asleep_mib, asleep_1s_mib, per_thread_kib}}
    series:   {bench: {alloc: {samples, marks, peak_mib, mean_mib, last_mib}}}
    """
    out = dict(phases={}, phase_geomean=None, idle={}, threads={}, series={}, thp={})
    peers = [a for a in allocs if a != "kalloc"]
    # Hugepage coverage: {bench: {phase: {alloc: median AnonHugePages/Rss}}}
    for b in benches:
        names = []
        for r in runs:
            if r["bench"] == b and r["ok"]:
                for ph in r.get("thp", {}):
                    if ph not in names:
                        names.append(ph)
        steady = THP_STEADY.get(b, [])
        order = list(names)
        names.sort(key=lambda ph: (ph not in steady, order.index(ph)))
        if names:
            out["thp"][b] = {}
        for ph in names:
            out["thp"][b][ph] = {}
            for a in allocs:
                vals = [r["thp"][ph][0] / r["thp"][ph][1] for r in ok_runs(runs, b, a)
                        if ph in r.get("thp", {}) and r["thp"][ph][1] > 0]
                out["thp"][b][ph][a] = statistics.median(vals) if vals else None
    geo = []
    for b in benches:
        names = []
        for r in runs:
            if r["bench"] == b and r["ok"]:
                for ph in r.get("rss_phases", {}):
                    if ph not in names:
                        names.append(ph)
        if not names:
            continue
        ent = dict(phases=names, mib={}, live_mib={}, ratio_best={})
        for ph in names:
            ent["mib"][ph] = {}
            for a in allocs:
                vals = [r["rss_phases"][ph] for r in ok_runs(runs, b, a)
                        if ph in r.get("rss_phases", {})]
                ent["mib"][ph][a] = statistics.median(vals) / 1024.0 if vals else None
            lives = [r["live_kib"][ph] for r in runs
                     if r["bench"] == b and r["ok"] and ph in r.get("live_kib", {})]
            ent["live_mib"][ph] = statistics.median(lives) / 1024.0 if lives else None
            k = ent["mib"][ph].get("kalloc")
            pv = [ent["mib"][ph][p] for p in peers if ent["mib"][ph][p]]
            rb = (k / min(pv)) if (k and pv) else None
            ent["ratio_best"][ph] = rb
            if rb and ph not in BASELINE_PHASES:
                geo.append(rb)
        out["phases"][b] = ent
    out["phase_geomean"] = geomean(geo)

    for b in ("idle-drift", "idle-drift-scattered"):
        if b not in benches:
            continue
        out["idle"][b] = {}
        for a in allocs:
            rs = [r for r in ok_runs(runs, b, a) if "start" in r.get("rss_phases", {})]
            if not rs:
                continue
            above = {}
            for t in ("t0", "t0.5", "t1", "t2"):
                vals = [r["rss_phases"][t] - r["rss_phases"]["start"] for r in rs
                        if t in r["rss_phases"]]
                above[t] = statistics.median(vals) / 1024.0 if vals else None
            live = statistics.median(r["live_kib"].get("t2", 0) for r in rs) / 1024.0
            a2 = above.get("t2")
            out["idle"][b][a] = dict(
                live_mib=live, above_mib=above,
                ratio_t2=(a2 / live) if (a2 is not None and live) else None,
                within=(a2 is not None and a2 <= 1.1 * live + 2.0))

    if "sleeping-threads" in benches:
        for a in allocs:
            rs = [r for r in ok_runs(runs, "sleeping-threads", a)
                  if "asleep" in r.get("rss_phases", {})]
            if not rs:
                continue
            n = rs[0].get("threads") or 1000
            med = lambda f: statistics.median(f(r) for r in rs)
            st = med(lambda r: r["rss_phases"].get("start", 0))
            asl = med(lambda r: r["rss_phases"]["asleep"])
            asl1 = med(lambda r: r["rss_phases"].get("asleep_1s", r["rss_phases"]["asleep"]))
            out["threads"][a] = dict(threads=n, start_mib=st / 1024.0, asleep_mib=asl / 1024.0,
                                     asleep_1s_mib=asl1 / 1024.0,
                                     per_thread_kib=(asl1 - st) / n)

    for b in RSS_TIME_BENCHES:
        if b not in benches:
            continue
        out["series"][b] = {}
        for a in allocs:
            rs = [r for r in ok_runs(runs, b, a) if r.get("rss_samples")]
            rep = representative_run(rs, lambda r: max(v for _, v in r["rss_samples"]))
            if not rep:
                continue
            smp = rep["rss_samples"]
            med = lambda f: statistics.median(f(r) for r in rs)

            def busy_mean(r):
                # mean over the samples while requests were served (up to the
                # end of the last request phase; the idle tail is "last")
                ends = [ms for ms, name in r.get("phase_marks", []) if name != "idle"]
                cut = max(ends) if ends else None
                vals = [v for ms, v in r["rss_samples"] if cut is None or ms <= cut]
                vals = vals or [v for _, v in r["rss_samples"]]
                return sum(vals) / len(vals)
            out["series"][b][a] = dict(
                round=rep["round"], samples=smp, marks=rep.get("phase_marks", []),
                peak_mib=med(lambda r: max(v for _, v in r["rss_samples"])) / 1024.0,
                mean_mib=med(busy_mean) / 1024.0,
                last_mib=med(lambda r: r["rss_samples"][-1][1]) / 1024.0)
    return out


# ---------------------------------------------------------------------------
# Reports
# ---------------------------------------------------------------------------

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    kib = int(line.split()[1])
                    mem = "%.1f GiB" % (kib / 1024.0 / 1024.0)
                    break
    except OSError:
        pass
    return {
        "uname": " ".join(platform.uname()) if not shutil.which("uname") else sh("uname -a"),
        "cpu": cpu or platform.processor(),
        "nproc": os.cpu_count(),
        "memory": mem,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "python": platform.python_version(),
        "gxx": sh("g++ --version | head -1"),
        "sqlite3": sh("sqlite3 --version | cut -d' ' -f1"),
        "redis": sh("redis-server --version"),
    }


def fmt(x, spec):
    return "—" if x is None else format(x, spec)


def fmt_ratio(x):
    if x is None:
        return "—"
    s = "%.2f" % x
    if x <= 0.95:
        return "**%s**" % s  # kalloc clearly better
    return s


def markdown(meta, runs, benches, kinds, allocs, med, rt, rr, micro, problems, rs=None):
    L = []
    L.append("# kalloc benchmark results")
    L.append("")
    L.append("Mode: **%s** — %d round(s)%s, workload scale %g, interleaved runs "
             "(every round runs each benchmark under every allocator in turn). "
             "Wall-clock seconds and peak RSS (MiB) are medians over the rounds. "
             "Total time of this comparison: %.0f s." %
             (meta["mode"], meta["reps"],
              " (the memory workloads of issue 4: the first %d)" % meta["mem_reps"]
              if meta.get("mem_reps", meta["reps"]) < meta["reps"] else "",
              meta["scale"], meta["elapsed"]))
    L.append("")
    L.append("## Machine")
    L.append("")
    mi = meta["machine"]
    L.append("| | |")
    L.append("|---|---|")
    for k, label in [("uname", "uname -a"), ("cpu", "CPU"), ("nproc", "nproc"),
                     ("memory", "memory"), ("date", "date"), ("python", "python3"),
                     ("gxx", "g++"), ("sqlite3", "sqlite3"), ("redis", "redis-server")]:
        L.append("| %s | `%s` |" % (label, str(mi.get(k, "")).replace("|", "\\|")))
    L.append("")
    L.append("## Allocators")
    L.append("")
    L.append("| allocator | library (LD_PRELOAD) | version |")
    L.append("|---|---|---|")
    for a in allocs:
        info = meta["allocators"][a]
        L.append("| %s | %s | %s |" % (a, "`%s`" % info["path"] if info["path"] else "(none: glibc)",
                                      info["version"]))
    for a in meta["skipped"]:
        L.append("| %s | — | skipped: %s |" % (a, meta["skipped"][a]))
    L.append("")

    def table(title, key, unit_fmt, rat, lower_note):
        L.append("## %s" % title)
        L.append("")
        L.append(lower_note)
        L.append("")
        head = ["benchmark"] + allocs
        if rat:
            head += ["kalloc/%s" % p for p in rat["peers"]] + ["kalloc/best peer"]
        L.append("| " + " | ".join(head) + " |")
        L.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
        for b in benches:
            cells = [b + (" *(program)*" if kinds[b] == "program" else "") +
                     (" †" if rat and b in rat.get("excluded", ()) else "")]
            best = None
            vals = [med[b][a][key] for a in allocs if med[b][a][key]]
            if vals:
                best = min(vals)
            for a in allocs:
                m = med[b][a]
                if m["n"] == 0:
                    cells.append("FAIL" if m["failed"] else "—")
                    continue
                s = fmt(m[key], unit_fmt)
                if best and m[key] == best and len(vals) > 1:
                    s = "**%s**" % s
                if m["failed"]:
                    s += " (%d failed)" % m["failed"]
                cells.append(s)
            if rat:
                for p in rat["peers"] + ["best"]:
                    cells.append(fmt_ratio(rat["per"][b][p]))
            L.append("| " + " | ".join(cells) + " |")
        if rat:
            cells = ["**geometric mean**"] + [""] * len(allocs)
            for p in rat["peers"] + ["best"]:
                g = rat["geomean"][p]
                cells.append("**%s**" % fmt(g, ".3f") if g else "—")
            L.append("| " + " | ".join(cells) + " |")
        L.append("")

    table("Wall time (s, median; lower is better)", "time", ".3f", rt,
          "Bold value: the fastest allocator for that benchmark. Ratios are kalloc's "
          "median divided by the peer's (below 1.0 = kalloc faster; bold when ≤ 0.95)." +
          (" † = mostly a fixed idle period or a Python client (the memory workloads of "
           "issue 4): shown, but left out of the geometric means." if rt and rt.get("excluded")
           else ""))
    table("Peak RSS (MiB, median; lower is better)", "rss_mib", ".1f", rr,
          "Peak resident set size (ru_maxrss; for g++ that of the largest process, "
          "cc1plus; for redis that of the server). Ratios below 1.0 = kalloc uses less memory.")

    if rs:
        L.extend(markdown_rss(rs, allocs, meta.get("svg_suffix", "")))

    # noise
    L.append("## Noise")
    L.append("")
    L.append("Spread of the wall time over the rounds ((max − min) / median) per benchmark "
             "and allocator; large values mean the medians above are less certain "
             "(a shared, noisy machine).")
    L.append("")
    L.append("| benchmark | " + " | ".join(allocs) + " |")
    L.append("|---|" + "|".join(["---:"] * len(allocs)) + "|")
    for b in benches:
        L.append("| %s | %s |" % (b, " | ".join(
            fmt(med[b][a]["spread"] * 100 if med[b][a]["spread"] is not None else None, ".0f") +
            ("%" if med[b][a]["spread"] is not None else "") for a in allocs)))
    L.append("")

    if micro:
        L.append("## Microbenchmarks (Google Benchmark, CPU ns per allocation; lower is better)")
        L.append("")
        L.append("1e9 / items_per_second, where Google Benchmark divides the items of all "
                 "threads by the CPU time of all threads: CPU nanoseconds per allocation "
                 "(contention between threads shows as a higher cost). One run per "
                 "allocator, min time %g s per benchmark." % meta["micro_min_time"])
        L.append("")
        malloc_names = [a for a in allocs if a in micro["results"]]
        names = micro["names"]
        head = ["benchmark"] + malloc_names
        has_k = "kalloc" in malloc_names and len(malloc_names) > 1
        if has_k:
            head.append("kalloc/best peer")
        L.append("| " + " | ".join(head) + " |")
        L.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
        kr = []
        for n in names:
            vals = {a: micro["results"][a].get(n) for a in malloc_names}
            cells = ["`%s`" % n]
            present = [v for v in vals.values() if v]
            best = min(present) if present else None
            for a in malloc_names:
                v = vals[a]
                s = fmt(v, ".1f")
                if v and best and v == best and len(present) > 1:
                    s = "**%s**" % s
                cells.append(s)
            if has_k:
                peers = [vals[a] for a in malloc_names if a != "kalloc" and vals[a]]
                r = (vals["kalloc"] / min(peers)) if (vals["kalloc"] and peers) else None
                if r:
                    kr.append(r)
                cells.append(fmt_ratio(r))
            L.append("| " + " | ".join(cells) + " |")
        if has_k:
            L.append("| **geometric mean** | " + " | ".join([""] * len(malloc_names)) +
                     " | **%s** |" % fmt(geomean(kr), ".3f"))
        for a, e in micro.get("errors", {}).items():
            L.append("")
            L.append("micro under %s: %s" % (a, e))
        L.append("")

    L.append("## Problems")
    L.append("")
    if problems:
        for p in problems:
            L.append("- " + p)
    else:
        L.append("None: every run exited 0 with the same checksum under every allocator.")
    L.append("")
    L.append("## Notes")
    L.append("")
    L.append("- `system` is glibc's malloc (no LD_PRELOAD). Debian's redis-server is itself "
             "linked with jemalloc, so for *redis* `system` means that jemalloc; the "
             "other columns interpose their malloc over it with LD_PRELOAD.")
    L.append("- The *python3* program runs with `PYTHONMALLOC=malloc`, so every Python "
             "object goes to the allocator under test. *python3-bytes* "
             "(`bench/programs/py_bytes_cache.py`) keeps CPython's own allocator: only "
             "its `bytes` values above 512 bytes (1-20 KB, every tenth 100-400 KB, "
             "replaced in a cache) reach the allocator under test.")
    L.append("- The *redis* time is redis-benchmark's wall time for a fixed number of "
             "requests (pipelined, loopback); requests per second are in latest.json.")
    L.append("- *redis-expiry* is the same redis-server (so its `system` is jemalloc too), "
             "driven by a Python client with per-key value sizes and TTLs; its time is the "
             "client's. Its RSS figures are the server's VmRSS, sampled by the driver.")
    L.append("- Plots: `time.svg` and `rss.svg` (normalised to system = 1.0). "
             "Raw runs: `latest.json`.")
    L.append("")
    return "\n".join(L)


def markdown_rss(rs, allocs, sfx=""):
    """The sections of issue 4's memory figures (see rss_summaries)."""
    L = []
    peers = [a for a in allocs if a != "kalloc"]
    has_k = "kalloc" in allocs and peers

    def cell(v, best, spec=".1f"):
        if v is None:
            return "—"
        t = format(v, spec)
        return "**%s**" % t if best is not None and v == best else t

    if rs["phases"]:
        L.append("## RSS per phase (MiB, median; lower is better)")
        L.append("")
        L.append("VmRSS read by the program itself (`rss_phase` lines; for *redis-expiry* read "
                 "by the driver from `/proc/<pid>/status` of the server) at the end of each "
                 "phase. *live* = the bytes the program holds then (its bookkeeping included). "
                 "Phases: *fragmentation* fill / free (a random 90%) / refill (other sizes) / "
                 "end; *kv-ttl*, *redis-expiry* warm / spike / calm / idle; *idle-drift* burst "
                 "/ t0 … t2 (seconds after the free); *sleeping-threads* asleep / asleep_1s. "
                 "The geometric mean of kalloc/best peer is over every phase but `start`.")
        L.append("")
        head = ["benchmark", "phase", "live"] + allocs + (["kalloc/best peer"] if has_k else [])
        L.append("| " + " | ".join(head) + " |")
        L.append("|" + "|".join(["---", "---"] + ["---:"] * (len(head) - 2)) + "|")
        for b, ent in rs["phases"].items():
            for ph in ent["phases"]:
                vals = [ent["mib"][ph][a] for a in allocs if ent["mib"][ph][a] is not None]
                best = min(vals) if len(vals) > 1 else None
                cells = [b, ph, fmt(ent["live_mib"].get(ph), ".1f")]
                cells += [cell(ent["mib"][ph][a], best) for a in allocs]
                if has_k:
                    cells.append(fmt_ratio(ent["ratio_best"][ph]))
                L.append("| " + " | ".join(cells) + " |")
        if has_k:
            L.append("| **geometric mean** | | | " + " | ".join([""] * len(allocs)) +
                     " | **%s** |" % fmt(rs["phase_geomean"], ".3f"))
        L.append("")

    if rs.get("thp"):
        enabled, defrag = thp_mode()
        L.append("## Hugepage coverage (AnonHugePages / Rss, %, median; higher is better)")
        L.append("")
        L.append("Read from `/proc/self/smaps_rollup` by the program (`thp_coverage` lines; for "
                 "*redis-expiry* by the driver from the server's `/proc/<pid>/smaps_rollup`) at "
                 "the end of each phase; *frag-churn* sums every phase's figures after its "
                 "churn, the first cycle left out. This machine: "
                 "`transparent_hugepage/enabled` = %s, `defrag` = %s. Issue 4's target: "
                 "kalloc at least %d%% at the steady phases (*steady* = yes), with its default "
                 "settings." % (enabled, defrag, round(THP_TARGET * 100)))
        L.append("")
        head = ["benchmark", "phase", "steady"] + allocs
        if "kalloc" in allocs:
            head.append("kalloc ≥ %d%%" % round(THP_TARGET * 100))
        L.append("| " + " | ".join(head) + " |")
        L.append("|" + "|".join(["---", "---", "---"] + ["---:"] * len(allocs) +
                                (["---"] if "kalloc" in allocs else [])) + "|")
        for b, per in rs["thp"].items():
            for ph, vals in per.items():
                steady = ph in THP_STEADY.get(b, [])
                got = [v for v in vals.values() if v is not None]
                best = max(got) if len(got) > 1 and max(got) > 0 else None
                cells = [b, ph, "yes" if steady else "no"]
                cells += [cell(None if vals[a] is None else 100.0 * vals[a],
                               None if best is None else 100.0 * best, ".0f") for a in allocs]
                if "kalloc" in allocs:
                    k = vals.get("kalloc")
                    cells.append("—" if (k is None or not steady) else
                                 ("yes" if k >= THP_TARGET else "**no**"))
                L.append("| " + " | ".join(cells) + " |")
        L.append("")

    if rs["idle"]:
        L.append("## Idle drift: RSS after a freed burst (MiB above the start RSS, median)")
        L.append("")
        L.append("A burst (256 MiB × scale, mixed sizes) is freed but for ~5%, then the program "
                 "makes no allocator call for 2 s. Columns: the RSS growth over the RSS before "
                 "the burst at 0, 0.5, 1 and 2 s after the last free, the live bytes, "
                 "RSS(2 s)/live, and whether RSS(2 s) ≤ 1.1 × live + 2 MiB (issue 4's target). "
                 "*idle-drift*: the survivors were allocated before the burst; "
                 "*idle-drift-scattered*: they are a random 5% of the burst's objects.")
        L.append("")
        L.append("| benchmark | allocator | live | t0 | t0.5 | t1 | t2 | t2 / live | "
                 "≤ 1.1 × live + 2 MiB |")
        L.append("|---|---|---:|---:|---:|---:|---:|---:|---|")
        for b, per in rs["idle"].items():
            for a in allocs:
                if a not in per:
                    continue
                e = per[a]
                ab = e["above_mib"]
                L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                    b, a, fmt(e["live_mib"], ".1f"), fmt(ab.get("t0"), ".1f"),
                    fmt(ab.get("t0.5"), ".1f"), fmt(ab.get("t1"), ".1f"),
                    fmt(ab.get("t2"), ".1f"), fmt(e["ratio_t2"], ".2f"),
                    "yes" if e["within"] else "no"))
        L.append("")

    if rs["threads"]:
        n = next(iter(rs["threads"].values()))["threads"]
        L.append("## %d sleeping threads (RSS while they all sleep, MiB, median)" % n)
        L.append("")
        L.append("Every thread allocated and freed about 1 MiB of small objects, then sleeps. "
                 "*per thread* = (RSS after 1 s asleep − RSS before the threads) / threads, "
                 "in KiB; the threads' stacks (256 KiB, a few pages touched) are in it too.")
        L.append("")
        head = ["", *allocs] + (["kalloc/best peer"] if has_k else [])
        L.append("| " + " | ".join(head) + " |")
        L.append("|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|")
        for key, label, spec in [("start_mib", "before the threads", ".1f"),
                                 ("asleep_mib", "all asleep", ".1f"),
                                 ("asleep_1s_mib", "asleep, 1 s later", ".1f"),
                                 ("per_thread_kib", "per thread (KiB)", ".0f")]:
            vals = {a: rs["threads"][a][key] for a in allocs if a in rs["threads"]}
            best = min(vals.values()) if len(vals) > 1 else None
            cells = [label] + [cell(vals.get(a), best, spec) for a in allocs]
            if has_k:
                pv = [vals[p] for p in peers if p in vals and vals[p] > 0]
                k = vals.get("kalloc")
                cells.append(fmt_ratio(k / min(pv) if (k is not None and pv) else None))
            L.append("| " + " | ".join(cells) + " |")
        L.append("")

    if rs["series"]:
        L.append("## RSS over time (server-like churn)")
        L.append("")
        L.append("VmRSS sampled every 100 ms (by *kv-ttl* itself; by the driver for the "
                 "*redis-expiry* server). Peak, mean (while requests are served) and last "
                 "sample (after the idle tail), MiB, medians over the rounds; the plots show "
                 "one run per allocator (the run with the median peak): " +
                 ", ".join("`rss-time-%s%s.svg`" % (b, sfx) for b in rs["series"]) + ".")
        L.append("")
        L.append("| benchmark | figure | " + " | ".join(allocs) +
                 (" | kalloc/best peer |" if has_k else " |"))
        L.append("|---|---|" + "|".join(["---:"] * (len(allocs) + (1 if has_k else 0))) + "|")
        for b, per in rs["series"].items():
            for key, label in [("peak_mib", "peak"), ("mean_mib", "mean"),
                               ("last_mib", "last (idle)")]:
                vals = {a: per[a][key] for a in allocs if a in per}
                best = min(vals.values()) if len(vals) > 1 else None
                cells = [b, label] + [cell(vals.get(a), best) for a in allocs]
                if has_k:
                    pv = [vals[p] for p in peers if p in vals and vals[p] > 0]
                    k = vals.get("kalloc")
                    cells.append(fmt_ratio(k / min(pv) if (k is not None and pv) else None))
                L.append("| " + " | ".join(cells) + " |")
        L.append("")
    return L


def svg_lines(path, title, per_alloc, allocs):
    """A line chart of RSS over time: one line per allocator.
    per_alloc = {alloc: {"samples": [[ms, KiB]], "marks": [[ms, name]]}}."""
    series = [(a, per_alloc[a]["samples"]) for a in allocs if a in per_alloc]
    xmax = max((s[-1][0] for _, s in series if s), default=1000) / 1000.0
    ymax_mib = max((v for _, s in series for _, v in s), default=1024) / 1024.0
    xmax = max(xmax, 0.5)
    # a round y step: 1, 2, 5 × 10^k, about 6 lines
    raw = ymax_mib / 6.0
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    ystep = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    ymax = math.ceil(ymax_mib * 1.05 / ystep) * ystep
    xstep = next(m for m in (0.5, 1, 2, 5, 10, 20, 30, 60) if xmax / m <= 10)
    left, right, top_m, bottom, plot_w, plot_h = 70, 150, 50, 50, 640, 320
    W, H = left + plot_w + right, top_m + plot_h + bottom

    def X(sec):
        return left + sec / xmax * plot_w

    def Y(mib):
        return top_m + plot_h - mib / ymax * plot_h

    def esc(t):
        return (str(t).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))

    o = ['<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" '
         'font-family="sans-serif" font-size="11">' % (W, H, W, H),
         '<rect x="0" y="0" width="%d" height="%d" fill="white"/>' % (W, H),
         '<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>' % (left, esc(title)),
         '<text x="%d" y="38" fill="#555">VmRSS sampled every 100 ms; one run per allocator '
         '(the median peak); lower is better</text>' % left]
    v = 0.0
    while v <= ymax + 1e-9:
        o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e5e5e5"/>' %
                 (left, Y(v), left + plot_w, Y(v)))
        o.append('<text x="%d" y="%.1f" text-anchor="end">%g</text>' % (left - 6, Y(v) + 4, v))
        v += ystep
    t = 0.0
    while t <= xmax + 1e-9:
        o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#f0f0f0"/>' %
                 (X(t), top_m, X(t), top_m + plot_h))
        o.append('<text x="%.1f" y="%d" text-anchor="middle">%g</text>' %
                 (X(t), top_m + plot_h + 16, t))
        t += xstep
    o.append('<text x="%d" y="%d" text-anchor="middle">seconds</text>' %
             (left + plot_w // 2, top_m + plot_h + 36))
    o.append('<text transform="translate(18,%d) rotate(-90)" text-anchor="middle">RSS (MiB)'
             '</text>' % (top_m + plot_h // 2))
    o.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333"/>' %
             (left, top_m, plot_w, plot_h))
    for a, smp in series:
        pts = " ".join("%.1f,%.1f" % (X(ms / 1000.0), Y(kib / 1024.0)) for ms, kib in smp)
        o.append('<polyline fill="none" stroke="%s" stroke-width="1.8" points="%s">'
                 '<title>%s</title></polyline>' % (PEER_COLOURS.get(a, "#444"), pts, esc(a)))
        for ms, name in per_alloc[a].get("marks", []):
            # a dot on the allocator's line where each phase ended
            if not smp:
                continue
            ms = min(max(ms, smp[0][0]), smp[-1][0])
            kib = smp[-1][1]
            for (m0, v0), (m1, v1) in zip(smp, smp[1:]):
                if m0 <= ms <= m1:
                    kib = v0 + (v1 - v0) * ((ms - m0) / (m1 - m0) if m1 > m0 else 0.0)
                    break
            o.append('<circle cx="%.1f" cy="%.1f" r="2.5" fill="%s"><title>%s: end of %s'
                     '</title></circle>' % (X(ms / 1000.0), Y(kib / 1024.0),
                                            PEER_COLOURS.get(a, "#444"), esc(a), esc(name)))
    lx = left + plot_w + 20
    for i, (a, _) in enumerate(series):
        ly = top_m + 10 + i * 20
        o.append('<rect x="%d" y="%d" width="14" height="4" fill="%s"/>' %
                 (lx, ly + 5, PEER_COLOURS.get(a, "#444")))
        o.append('<text x="%d" y="%d">%s</text>' % (lx + 20, ly + 11, esc(a)))
    o.append('<text x="%d" y="%d" fill="#555">dots: ends of</text>' % (lx, top_m + 130))
    o.append('<text x="%d" y="%d" fill="#555">the phases</text>' % (lx, top_m + 144))
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


def svg_chart(path, title, benches, allocs, med, key, ylabel):
    base_alloc = "system" if "system" in allocs else allocs[0]
    groups = []
    for b in benches:
        base = med[b][base_alloc][key]
        vals = []
        for a in allocs:
            v = med[b][a][key]
            vals.append((v / base) if (v and base) else None)
        groups.append((b, vals))
    finite = [v for _, vs in groups for v in vs if v is not None]
    top = max(finite) if finite else 1.0
    cap = 3.0
    ymax = min(max(1.25, top * 1.1), cap)
    step = 0.25 if ymax <= 1.5 else 0.5
    ymax = math.ceil(ymax / step) * step

    n = len(allocs)
    bar_w = 12
    gap = 18
    group_w = n * bar_w + gap
    left, right, top_m, bottom = 60, 150, 50, 120
    plot_w = max(len(groups), 1) * group_w
    plot_h = 300
    W = left + plot_w + right
    H = top_m + plot_h + bottom

    def y(v):
        return top_m + plot_h - (min(v, ymax) / ymax) * plot_h

    def esc(s):
        return (str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                .replace('"', "&quot;"))

    o = []
    o.append('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
             'viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">' % (W, H, W, H))
    o.append('<rect x="0" y="0" width="%d" height="%d" fill="white"/>' % (W, H))
    o.append('<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>' % (left, esc(title)))
    cut = "; bars above %.1f are cut, their value printed" % ymax if top > ymax else ""
    o.append('<text x="%d" y="38" fill="#555">normalised to %s = 1.0 (median of the runs; '
             'lower is better%s)</text>' % (left, base_alloc, cut))
    # grid
    v = 0.0
    while v <= ymax + 1e-9:
        yy = y(v)
        o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s" stroke-width="1"/>' %
                 (left, yy, left + plot_w, yy, "#999" if abs(v - 1.0) < 1e-9 else "#e5e5e5"))
        o.append('<text x="%d" y="%.1f" text-anchor="end">%.2f</text>' % (left - 6, yy + 4, v))
        v += step
    o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#333" stroke-dasharray="4,3"/>'
             % (left, y(1.0), left + plot_w, y(1.0)))
    o.append('<text transform="translate(16,%d) rotate(-90)" text-anchor="middle">%s</text>' %
             (top_m + plot_h // 2, esc(ylabel)))
    for gi, (b, vals) in enumerate(groups):
        gx = left + gi * group_w + gap / 2
        for ai, v in enumerate(vals):
            x = gx + ai * bar_w
            colour = PEER_COLOURS.get(allocs[ai], "#444")
            if v is None:
                o.append('<text x="%.1f" y="%.1f" font-size="9" fill="#c00" '
                         'text-anchor="middle">×</text>' % (x + bar_w / 2, y(0) - 2))
                continue
            yy = y(v)
            o.append('<rect x="%.1f" y="%.1f" width="%d" height="%.1f" fill="%s">'
                     '<title>%s / %s: %.3f</title></rect>' %
                     (x, yy, bar_w - 1, y(0) - yy, colour, esc(b), allocs[ai], v))
            if v > ymax:
                o.append('<text x="%.1f" y="%.1f" font-size="9" text-anchor="middle">%.1f</text>'
                         % (x + bar_w / 2, yy - 3, v))
        cx = gx + n * bar_w / 2
        o.append('<text transform="translate(%.1f,%d) rotate(-40)" text-anchor="end">%s</text>' %
                 (cx, top_m + plot_h + 14, esc(b)))
    o.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>' %
             (left, top_m + plot_h, left + plot_w, top_m + plot_h))
    # legend
    lx = left + plot_w + 20
    for ai, a in enumerate(allocs):
        ly = top_m + 10 + ai * 20
        o.append('<rect x="%d" y="%d" width="14" height="14" fill="%s"/>' %
                 (lx, ly, PEER_COLOURS.get(a, "#444")))
        o.append('<text x="%d" y="%d">%s</text>' % (lx + 20, ly + 11, esc(a)))
    o.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(o) + "\n")


# ---------------------------------------------------------------------------
# Microbenchmarks
# ---------------------------------------------------------------------------

def run_micro(exe, allocs, min_time, timeout, tmp, bench_filter):
    results, errors, names = {}, {}, []
    for a, path in allocs:
        out = os.path.join(tmp, "micro-%s.json" % a)
        cmd = [exe, "--benchmark_min_time=%g" % min_time, "--benchmark_out=" + out,
               "--benchmark_out_format=json", "--benchmark_format=console"]
        if bench_filter:
            cmd.append("--benchmark_filter=" + bench_filter)
        log("[micro] %-9s running %s" % (a, os.path.basename(exe)))
        t0 = time.perf_counter()
        r = run_measured(cmd, alloc_env(path), timeout, tmp)
        log("[micro] %-9s %.1f s rc=%s" % (a, time.perf_counter() - t0, r["rc"]))
        if r["rc"] != 0:
            errors[a] = "exit status %s%s: %s" % (r["rc"], " (timeout)" if r["timed_out"] else "",
                                                  r["err"].strip()[-300:])
        try:
            with open(out) as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        res = {}
        for bm in data.get("benchmarks", []):
            if bm.get("error_occurred"):
                errors.setdefault(a, "")
                errors[a] += " %s: %s;" % (bm["name"], bm.get("error_message", "error"))
                continue
            ips = bm.get("items_per_second")
            if ips:
                res[bm["name"]] = 1e9 / ips
                if bm["name"] not in names:
                    names.append(bm["name"])
        results[a] = res
    return dict(results=results, errors=errors, names=names)


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(
        description="Run the kalloc benchmarks under system, jemalloc, mimalloc, tcmalloc "
                    "and kalloc (LD_PRELOAD), interleaved, and write a report.")
    ap.add_argument("--kalloc", help="path of libkalloc.so (skipped with a warning if missing)")
    ap.add_argument("--quick", action="store_true", help="2 rounds, small sizes (a few minutes)")
    ap.add_argument("--full", action="store_true", help="5 rounds, full sizes (the default)")
    ap.add_argument("--reps", type=int, help="rounds (repetitions); overrides the mode's")
    ap.add_argument("--mem-reps", type=int,
                    help="rounds of the memory workloads (fragmentation, kv-ttl, idle-drift*, "
                         "sleeping-threads, redis-expiry); default 3 full, 2 quick, at most --reps")
    ap.add_argument("--scale", type=float, help="workload scale; overrides the mode's")
    ap.add_argument("--allocators", help="comma-separated subset of " + ",".join(ALLOCATOR_ORDER))
    ap.add_argument("--only", help="comma-separated subset of the benchmarks: " +
                    ",".join(WORKLOADS + PROGRAMS))
    ap.add_argument("--no-programs", action="store_true",
                    help="skip the real programs (python3, python3-bytes, sqlite3, redis, g++, redis-expiry)")
    ap.add_argument("--no-workloads", action="store_true", help="skip bench/workloads/")
    ap.add_argument("--micro", action="store_true",
                    help="also run the Google Benchmark binary under every allocator")
    ap.add_argument("--micro-filter", help="--benchmark_filter for --micro")
    ap.add_argument("--redis-requests", type=int, help="redis-benchmark -n (per test)")
    ap.add_argument("--expiry-requests", type=int,
                    help="commands sent by the redis-expiry client (default: the mode's)")
    ap.add_argument("--expiry-tail", type=float,
                    help="seconds redis-expiry leaves the server idle after the commands")
    ap.add_argument("--workload-args", action="append", metavar="NAME:ARGS",
                    help="extra arguments for one workload, e.g. 'sleeping-threads:--threads=50' "
                         "(repeatable; the smoke tests use it to make the runs tiny)")
    ap.add_argument("--prefix", default=None,
                    help="base name of the result files (default latest; quick-mode runs "
                         "default to quick: quick.md, quick.json, *-quick.svg)")
    ap.add_argument("--timeout", type=float, help="seconds before a run is killed")
    ap.add_argument("--bin-dir", help="where the workload binaries are "
                    "(default: <dir of --kalloc>/bench, else build/bench)")
    ap.add_argument("--out", default=os.path.join(HERE, "results"),
                    help="output directory (default bench/results)")
    args = ap.parse_args()
    if args.quick and args.full:
        ap.error("--quick and --full together")
    mode_name = "quick" if args.quick else "full"
    if args.prefix is None:
        args.prefix = "quick" if args.quick else "latest"
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", args.prefix):
        ap.error("--prefix: letters, digits, '.', '_' and '-' only")
    mode = dict(MODES[mode_name])
    if args.reps is not None:
        if args.reps < 1:
            ap.error("--reps must be at least 1")
        mode["reps"] = args.reps
    if args.mem_reps is not None:
        if args.mem_reps < 1:
            ap.error("--mem-reps must be at least 1")
        mode["mem_reps"] = args.mem_reps
    if args.bin_dir is None:
        cands = []
        if args.kalloc:
            cands.append(os.path.join(os.path.dirname(os.path.abspath(args.kalloc)), "bench"))
        cands += [os.path.join(ROOT, "build", "bench"), os.path.join(ROOT, "build-bench", "bench")]
        args.bin_dir = next((c for c in cands if os.path.isdir(c)), cands[0])
    wanted = [a.strip() for a in args.allocators.split(",")] if args.allocators else None
    if wanted:
        bad = [a for a in wanted if a not in ALLOCATOR_ORDER]
        if bad:
            ap.error("unknown allocator(s): %s" % ", ".join(bad))
        if "kalloc" in wanted and not args.kalloc:
            ap.error("--allocators includes kalloc but no --kalloc path was given")
    only = [b.strip() for b in args.only.split(",")] if args.only else None
    if only:
        bad = [b for b in only if b not in WORKLOADS + PROGRAMS]
        if bad:
            ap.error("unknown benchmark(s): %s" % ", ".join(bad))

    allocs_paths = discover_allocators(args.kalloc, wanted)
    allocs = [a for a, _ in allocs_paths]
    skipped = {}
    for a in ALLOCATOR_ORDER:
        if (not wanted or a in wanted) and a not in allocs:
            skipped[a] = "library not found" if a != "kalloc" or args.kalloc else "no --kalloc given"
    if not allocs:
        print("compare.py: no allocator to run", file=sys.stderr)
        return 2

    suite = Suite(args, mode)
    t_start = time.perf_counter()
    try:
        if not args.no_workloads:
            suite.add_workloads(only)
        if not args.no_programs:
            suite.add_programs(only)
        benches = [b for b, _, _ in suite.benches]
        kinds = {b: k for b, k, _ in suite.benches}
        if not benches and not args.micro:
            print("compare.py: nothing to run (no workload built in %s?)" % args.bin_dir,
                  file=sys.stderr)
            return 2
        log("compare.py: %s mode, %d round(s), scale %g, %d benchmark(s) x %d allocator(s) "
            "(%s)" % (mode_name, mode["reps"], suite.scale, len(benches), len(allocs),
                      ", ".join(allocs)))
        for a, p in allocs_paths:
            log("  %-9s %s" % (a, p or "(no preload: glibc malloc)"))

        runs = []
        mem_reps = min(mode["reps"], mode["mem_reps"])

        def rounds_of(b):
            return mem_reps if b in REQUIRED_RSS else mode["reps"]
        total = sum(rounds_of(b) for b, _, _ in suite.benches) * len(allocs_paths)
        k = 0
        for rnd in range(1, mode["reps"] + 1):
            for bname, kind, runner in suite.benches:
                if rnd > rounds_of(bname):
                    continue
                for a, path in allocs_paths:
                    k += 1
                    try:
                        r = runner(a, path)
                    except Exception as e:  # a broken runner must not stop the comparison
                        r = dict(wall=float("nan"), maxrss_kib=0, rc=None, out="", err=repr(e),
                                 timed_out=False, checksum=None, problem="runner error: %r" % e)
                    rec = dict(bench=bname, kind=kind, alloc=a, round=rnd, wall=r["wall"],
                               maxrss_kib=r["maxrss_kib"], rc=r["rc"],
                               timed_out=r.get("timed_out", False),
                               checksum=r.get("checksum"), problem=r.get("problem"))
                    if "rps" in r:
                        rec["redis_rps"] = r["rps"]
                    for key in ("rss_phases", "live_kib", "rss_samples", "phase_marks", "thp"):
                        if key in r:
                            rec[key] = r[key]
                    m = re.search(r"\bthreads=(\d+)", r.get("out") or "")
                    if m and bname == "sleeping-threads":
                        rec["threads"] = int(m.group(1))
                    if r["rc"] != 0:
                        rec["problem"] = rec["problem"] or (
                            "timed out" if rec["timed_out"] else "exit status %s" % r["rc"])
                        tail = (r["err"] or r["out"]).strip().splitlines()[-3:]
                        rec["stderr_tail"] = "\n".join(tail)
                    if rec["problem"] is None and r["rc"] == 0 and missing_rss(bname, r):
                        rec["problem"] = "missing " + ", ".join(missing_rss(bname, r))
                    rec["ok"] = rec["problem"] is None
                    runs.append(rec)
                    status = "ok" if rec["ok"] else "FAIL: " + rec["problem"]
                    if rec.get("stderr_tail") and not rec["ok"]:
                        status += " | " + rec["stderr_tail"].replace("\n", " | ")[:200]
                    log("[%4d/%d] round %d/%d  %-15s %-9s %8.3f s %9.1f MiB  %s" %
                        (k, total, rnd, mode["reps"], bname, a, rec["wall"],
                         rec["maxrss_kib"] / 1024.0, status))

        # Checksums must agree across allocators (the reference: system, else the first).
        problems = []
        for b in benches:
            ref_alloc = None
            ref = None
            for a in allocs:
                cs = [r["checksum"] for r in runs if r["bench"] == b and r["alloc"] == a and r["ok"]]
                if cs and cs[0]:
                    ref_alloc, ref = a, cs[0]
                    break
            if ref is None:
                continue
            for r in runs:
                if r["bench"] == b and r["ok"] and r["checksum"] and r["checksum"] != ref:
                    r["ok"] = False
                    r["problem"] = "checksum %s differs from %s's %s" % (r["checksum"], ref_alloc, ref)
                    log("checksum mismatch: %s under %s (round %d): %s" %
                        (b, r["alloc"], r["round"], r["problem"]))
        for r in runs:
            if not r["ok"]:
                problems.append("%s under %s, round %d: %s" % (r["bench"], r["alloc"], r["round"],
                                                              r["problem"]))

        micro = None
        micro_exe = os.path.join(args.bin_dir, "micro")
        if args.micro:
            if os.access(micro_exe, os.X_OK):
                micro = run_micro(micro_exe, allocs_paths, mode["micro_min_time"],
                                  max(suite.timeout, 1800), suite.tmp, args.micro_filter)
                for a, e in micro["errors"].items():
                    problems.append("micro under %s: %s" % (a, e))
            else:
                warn("--micro: %s not built: skipped" % micro_exe)

        elapsed = time.perf_counter() - t_start
        med = summarise(runs, benches, allocs)
        rt = ratios(med, benches, allocs, "time", TIME_EXCLUDED)
        rr = ratios(med, benches, allocs, "rss_mib")
        meta = dict(mode=mode_name, reps=mode["reps"], mem_reps=mem_reps,
                    scale=suite.scale, elapsed=elapsed,
                    machine=machine_info(), micro_min_time=mode["micro_min_time"],
                    allocators={a: dict(path=p, version=allocator_version(a, p))
                                for a, p in allocs_paths},
                    skipped=skipped)
        os.makedirs(args.out, exist_ok=True)
        rs = rss_summaries(runs, benches, allocs)
        meta["rss_time_excluded_from_time_geomean"] = sorted(TIME_EXCLUDED & set(benches))
        meta["svg_suffix"] = "" if args.prefix == "latest" else "-" + args.prefix
        md = markdown(meta, runs, benches, kinds, allocs, med, rt, rr, micro, problems, rs)
        prefix = args.prefix
        with open(os.path.join(args.out, prefix + ".md"), "w") as f:
            f.write(md)
        with open(os.path.join(args.out, prefix + ".json"), "w") as f:
            json.dump(dict(meta=meta, benchmarks=benches, allocators=allocs, runs=runs,
                           medians=med, time_ratios=rt, rss_ratios=rr, rss=rs, micro=micro,
                           problems=problems), f, indent=1, default=str)
        svgs = []
        sfx = "" if prefix == "latest" else "-" + prefix
        if benches:
            svg_chart(os.path.join(args.out, "time%s.svg" % sfx), "kalloc benchmarks: wall time",
                      benches, allocs, med, "time", "time relative to system")
            svg_chart(os.path.join(args.out, "rss%s.svg" % sfx), "kalloc benchmarks: peak RSS",
                      benches, allocs, med, "rss_mib", "peak RSS relative to system")
            svgs += ["time%s.svg" % sfx, "rss%s.svg" % sfx]
        for b, per in rs["series"].items():
            if per:
                name = "rss-time-%s%s.svg" % (b, sfx)
                svg_lines(os.path.join(args.out, name), "%s: RSS over time" % b, per, allocs)
                svgs.append(name)

        # Console summary
        log("")
        log("median wall time (s) / peak RSS (MiB):")
        log("%-15s " % "benchmark" + " ".join("%17s" % a for a in allocs))
        for b in benches:
            cells = []
            for a in allocs:
                m = med[b][a]
                cells.append("%17s" % ("FAIL" if m["n"] == 0 else
                                       "%7.3f /%7.1f" % (m["time"], m["rss_mib"] or 0)))
            log("%-15s " % b + " ".join(cells))
        if rt:
            log("")
            log("kalloc geometric-mean ratios (time):  " + "  ".join(
                "vs %s %s" % (p, fmt(rt["geomean"][p], ".3f")) for p in rt["peers"] + ["best"]))
            log("kalloc geometric-mean ratios (RSS):   " + "  ".join(
                "vs %s %s" % (p, fmt(rr["geomean"][p], ".3f")) for p in rr["peers"] + ["best"]))
        if rs["phase_geomean"]:
            log("kalloc/best peer, RSS per phase (geometric mean): %.3f" % rs["phase_geomean"])
        for b, per in rs.get("thp", {}).items():
            log("%s: hugepage coverage: " % b + "  ".join(
                "%s%s %s" % (ph, "*" if ph in THP_STEADY.get(b, []) else "", "  ".join(
                    "%s %s%%" % (a, fmt(None if v is None else 100 * v, ".0f"))
                    for a, v in vals.items())) for ph, vals in per.items()))
        for b, per in rs["idle"].items():
            log("%s: RSS(2 s) above start / live: " % b + "  ".join(
                "%s %s%s" % (a, fmt(e["ratio_t2"], ".2f"), "" if e["within"] else " (miss)")
                for a, e in per.items()))
        if rs["threads"]:
            log("sleeping-threads: RSS asleep (MiB): " + "  ".join(
                "%s %.1f" % (a, e["asleep_1s_mib"]) for a, e in rs["threads"].items()))
        log("")
        log("wrote %s/%s.md, %s.json, %s (%.0f s in all)" %
            (args.out, prefix, prefix, ", ".join(svgs), elapsed))
        if problems:
            log("%d problem(s):" % len(problems))
            for p in problems:
                log("  " + p)
            return 1
        return 0
    finally:
        suite.cleanup()


if __name__ == "__main__":
    sys.exit(main())
