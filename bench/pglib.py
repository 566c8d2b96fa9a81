"""PostgreSQL for the benchmarks' `--postgres URL` option (smtp-throughput,
imap-pop3, relay-throughput): a fresh database per run, one psql session
for the polls, and the database server's own CPU time.

The URL is a cluster on this machine, e.g. the one `scripts/pg-test-cluster
start DIR` prints; its user needs CREATEDB."""

import os
import subprocess
import urllib.parse

TICK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid, with_children=False):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, None
    ticks = int(fields[11]) + int(fields[12])
    if with_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK, int(fields[1])


def psql(url, sql):
    return subprocess.run(["psql", url, "-qtAXc", sql], check=True,
                          capture_output=True, text=True, timeout=120).stdout.strip()


def server_cpu(url):
    """CPU seconds of the PostgreSQL server at `url`: its postmaster with
    every backend it reaped, and its processes alive now. None when no
    postmaster on this machine listens on that port (other clusters, such
    as other users' tests, are not counted)."""
    port = str(urllib.parse.urlsplit(url).port or 5432)
    master = None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"postgres" and (
                f"port={port}".encode() in argv or (b"-p" in argv and port.encode() in argv)):
            master = entry
            break
    if master is None:
        return None
    total = _proc_cpu(master, with_children=True)[0]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            secs, ppid = _proc_cpu(entry)
            if ppid == int(master):
                total += secs
    return total


class Database:
    """A fresh database on the server of `url` for one run, named `tag`."""

    def __init__(self, url, tag):
        self.admin = url
        self.name = "bench_" + "".join(c if c.isalnum() else "_" for c in tag).lower()
        psql(url, f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        psql(url, f"CREATE DATABASE {self.name}")
        base = url.split("?")[0]
        self.url = base[: base.rfind("/")] + "/" + self.name
        self.session = None

    def store_config(self):
        """The `[store]` section of Postroom's configuration."""
        return f'[store]\ndatabase = "{self.url}"\n'

    def count(self, sql):
        """The one number `sql` answers, over one psql session kept open:
        a psql per poll (5 a second) would start a PostgreSQL backend each
        time, whose CPU would count as the database server's."""
        if self.session is None:
            self.session = subprocess.Popen(["psql", "-qtAX", self.url], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, text=True, bufsize=1)
        self.session.stdin.write(sql.rstrip(";") + ";\n")
        self.session.stdin.flush()
        line = self.session.stdout.readline()
        if not line.strip().isdigit():
            raise RuntimeError(f"PostgreSQL did not answer {sql!r}: {line!r}")
        return int(line)

    def close(self):
        if self.session is not None:
            self.session.stdin.close()
            try:
                self.session.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.session.kill()
            self.session = None

    def drop(self):
        self.close()
        psql(self.admin, f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
