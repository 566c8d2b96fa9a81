"""End-to-end fixtures: a real Postroom server on a loopback port with its own
data folder, driven by clients we did not write (smtplib, swaks, raw
sockets). Nothing here talks to any address outside 127.0.0.0/8."""

import atexit
import itertools
import os
import shutil
import re
import signal
import socket
import subprocess
import tempfile
import time

import pytest

BIN = os.environ.get("POSTROOM_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "target", "debug", "postroom"
)

HOSTNAME = "mx.test.example"
# For mailboxes a test never logs in to: `user add` needs a password (or
# hash), so that no mailbox is made that can never log in.
UNUSED_PASSWORD = "{PLAIN}not-used-by-this-test"


class PortTaken(Exception):
    pass


# Every port handed out in this test run: the kernel may offer a port again
# once its probe socket is closed, and two listeners (or a server and the DNS
# server a test starts next to it) must never be given the same one.
_handed_out = set()


def free_ports(n):
    """n distinct loopback ports that were free a moment ago and were never
    handed out before in this run. All probes stay bound until all are
    picked, so the kernel cannot offer one port twice."""
    probes, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            probes.append(s)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                ports.append(port)
    finally:
        for s in probes:
            s.close()
    return ports


def free_port():
    return free_ports(1)[0]


# When set (a postgres:// URL of a throw-away cluster, see
# scripts/pg-test-cluster), every server of the suite keeps its store in
# a fresh PostgreSQL database of its own on that cluster instead of the
# embedded SQLite database: the whole suite runs on both back ends.
PG_URL = os.environ.get("POSTROOM_E2E_POSTGRES") or None
_pg_databases = itertools.count()

# For the few tests that look inside the embedded database itself.
sqlite_only = pytest.mark.skipif(PG_URL is not None, reason="reads the embedded SQLite database")
# Tests of what does not touch the store's back end (the package) run in
# the embedded pass only.
backend_independent = pytest.mark.skipif(PG_URL is not None, reason="independent of the back end: runs in the embedded pass")


def _pg(sql):
    subprocess.run(["psql", PG_URL, "-q", "-v", "ON_ERROR_STOP=1", "-c", sql],
                   check=True, capture_output=True, timeout=60)


def pg_database():
    """A new database on the test cluster; its URL and name."""
    name = f"e2e_{os.getpid()}_{next(_pg_databases)}"
    _pg(f"CREATE DATABASE {name}")
    base = PG_URL.split("?")[0]
    return base[: base.rfind("/")] + "/" + name, name


PORT_ATTRS = ("port", "pop3_port", "pop3s_port", "imap_port", "imaps_port", "submission_port",
              "submissions_port", "http_port")


class Server:
    """One Postroom instance: its config, data folder, process and CLI."""

    def __init__(self, tmp, extra_smtp="", extra_toml="", extra_pop3="", extra_imap="", extra_http=""):
        self.tmp = tmp
        for attr, port in zip(PORT_ATTRS, free_ports(len(PORT_ATTRS))):
            setattr(self, attr, port)
        self.data = os.path.join(tmp, "data")
        self.config = os.path.join(tmp, "postroom.toml")
        self.pg_name = None
        store = ""
        if PG_URL:
            url, self.pg_name = pg_database()
            store = f'[store]\ndatabase = "{url}"\n'

        with open(self.config, "w") as f:
            f.write(
                f"""
[server]
hostname = "{HOSTNAME}"
data_dir = "{self.data}"

{store}
[smtp]
listen = ["127.0.0.1:{self.port}"]
error_sleep_ms = 10
{extra_smtp}

[submission]
listen = ["127.0.0.1:{self.submission_port}"]
tls_listen = ["127.0.0.1:{self.submissions_port}"]

[pop3]
listen = ["127.0.0.1:{self.pop3_port}"]
tls_listen = ["127.0.0.1:{self.pop3s_port}"]
{extra_pop3}

[imap]
listen = ["127.0.0.1:{self.imap_port}"]
tls_listen = ["127.0.0.1:{self.imaps_port}"]
{extra_imap}

[http]
listen = ["127.0.0.1:{self.http_port}"]
{extra_http}

[dns]
enabled = false
{extra_toml}
"""
            )
        self.proc = None
        self.log = os.path.join(tmp, "server.log")
        # Extra environment for the server process (test hooks).
        self.env = {}

    def cli(self, *args, input=None, check=True):
        r = subprocess.run(
            [BIN, "--config", self.config, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"postroom {' '.join(args)} failed: {r.stderr}")
        return r

    def start(self, attempts=3):
        """Starts the server; if a port was taken meanwhile (the ports are
        picked free but not held), picks new ones and tries again."""
        for attempt in range(attempts):
            try:
                return self._start()
            except PortTaken:
                if attempt + 1 == attempts:
                    raise
                self._new_ports()

    def _new_ports(self):
        with open(self.config) as f:
            cfg = f.read()
        # One pass over the file: replacing port by port could turn a new
        # port that equals another listener's old one into a duplicate.
        renumber = {}
        for attr, new in zip(PORT_ATTRS, free_ports(len(PORT_ATTRS))):
            renumber[getattr(self, attr)] = new
            setattr(self, attr, new)
        cfg = re.sub(r'127\.0\.0\.1:(\d+)"', lambda m: f'127.0.0.1:{renumber.get(int(m[1]), int(m[1]))}"', cfg)
        with open(self.config, "w") as f:
            f.write(cfg)

    def _start(self):
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [BIN, "--config", self.config, "serve"],
            stdout=logf,
            stderr=logf,
            env={**os.environ, **self.env},
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                # Connecting is enough: the listener is bound before the
                # store opens, and a PROXY listener would wait for a header.
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                return self
            except OSError:
                if self.proc.poll() is not None:
                    log = open(self.log).read()
                    if "Address already in use" in log.splitlines()[-1]:
                        raise PortTaken()
                    raise AssertionError("server exited: " + log)
                time.sleep(0.05)
        raise AssertionError("server did not start")

    def stop(self, sig=signal.SIGTERM, timeout=40):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def kill(self):
        self.stop(signal.SIGKILL)

    def read_log(self):
        with open(self.log) as f:
            return f.read()

    def messages(self, address, folder="INBOX"):
        out = self.cli("mail", "list", address, "--folder", folder).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def show(self, address, uid, folder="INBOX"):
        """The stored message, byte-exact (CRLF kept)."""
        r = subprocess.run(
            [BIN, "--config", self.config, "mail", "show", address, str(uid), "--folder", folder],
            capture_output=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        return r.stdout.decode()

    def queue(self):
        out = self.cli("queue", "list").stdout
        return [line.split("\t") for line in out.splitlines() if line]


# Every server folder made in this run, removed when the run ends (tests
# that make a server without the fixtures stop it themselves but leave its
# folder; 2,378 of them once filled the disk).
_made = []


@atexit.register
def _remove_made():
    for tmp in _made:
        shutil.rmtree(tmp, ignore_errors=True)


def make_server(extra_smtp="", extra_toml="", populate=True, extra_pop3="", extra_imap="", init=True, extra_http=""):
    """A server's folder and config; with `init` (the default) its store
    made by `postroom init`, as only it and `serve` make one (issue #12):
    the CLI refuses a folder without a store."""
    tmp = tempfile.mkdtemp(prefix="postroom-e2e-")
    _made.append(tmp)
    s = Server(tmp, extra_smtp, extra_toml, extra_pop3, extra_imap, extra_http)
    if init or populate:
        s.cli("init")
    if populate:
        s.cli("domain", "add", "esoomllub.com")
        s.cli("domain", "add", "esoomllub.net", "--alias-of", "esoomllub.com")
        s.cli("user", "add", "customseo@esoomllub.com", "--password-stdin", input="99test99\n")
        s.cli("user", "add", "dbrooks@esoomllub.com", "--password-hash", UNUSED_PASSWORD)
        s.cli("user", "add", "kent@esoomllub.com", "--password-hash", UNUSED_PASSWORD, "--domain-admin")
        s.cli("alias", "add", "dev@esoomllub.com", "dbrooks,testman@example.com,kent")
    return s


def discard(s):
    """Stops a server and removes its folder (data, config, log): a run
    leaves nothing behind in /tmp."""
    s.stop()
    shutil.rmtree(s.tmp, ignore_errors=True)
    if s.pg_name:
        try:
            _pg(f"DROP DATABASE IF EXISTS {s.pg_name} WITH (FORCE)")
        except subprocess.CalledProcessError:
            pass


@pytest.fixture
def server():
    s = make_server().start()
    yield s
    discard(s)


@pytest.fixture
def server_factory():
    started = []

    def factory(extra_smtp="", extra_toml="", populate=True, extra_pop3="", extra_imap="", init=True, extra_http=""):
        s = make_server(extra_smtp, extra_toml, populate, extra_pop3, extra_imap, init, extra_http)
        started.append(s)
        return s

    yield factory
    for s in started:
        discard(s)


# EICAR's test file (68 bytes): every scanner reports it.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


class Clamd:
    """A real clamd (Debian's clamav-daemon) in the foreground, with a
    throw-away configuration and a signature database of one line the
    test writes (EICAR's MD5): nothing is downloaded. It listens on a unix
    socket (`socket`) and on 127.0.0.1 (`address`)."""

    def __init__(self, stream_max="10M"):
        self.bin = shutil.which("clamd") or "/usr/sbin/clamd"
        self.dir = tempfile.mkdtemp(prefix="postroom-clamd-")
        db = os.path.join(self.dir, "db")
        os.mkdir(db)
        with open(os.path.join(db, "postroom-test.hdb"), "w") as f:
            f.write("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n")
        self.socket = os.path.join(self.dir, "clamd.sock")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.conf = os.path.join(self.dir, "clamd.conf")
        with open(self.conf, "w") as f:
            f.write(
                f"Foreground yes\nLocalSocket {self.socket}\nTCPSocket {self.port}\nTCPAddr 127.0.0.1\n"
                f"DatabaseDirectory {db}\nLogFile {self.dir}/clamd.log\nStreamMaxLength {stream_max}\n"
                # Its scratch files go with the rest, not into /tmp.
                f"TemporaryDirectory {self.dir}\n"
            )
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([self.bin, "-c", self.conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Polled, not slept: with one signature clamd is up in a fraction
        # of a second, on a loaded machine in a few.
        # Ready when both sockets answer PING: the unix socket's file exists
        # from bind(), before clamd listens on it.
        deadline = time.time() + 30
        while time.time() < deadline:
            if self._pong(socket.AF_UNIX, self.socket) and self._pong(socket.AF_INET, ("127.0.0.1", self.port)):
                return self
            if self.proc.poll() is not None:
                raise AssertionError("clamd exited at start: " + open(f"{self.dir}/clamd.log").read())
            time.sleep(0.05)
        raise AssertionError("clamd did not start")

    @staticmethod
    def _pong(family, address):
        try:
            with socket.socket(family) as s:
                s.settimeout(2)
                s.connect(address)
                s.sendall(b"zPING\0")
                return s.recv(16).startswith(b"PONG")
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def remove(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def clamd():
    """A started `Clamd`, stopped and removed after the test; skips only
    when clamd is not installed (scripts/test-all installs it)."""
    if not (shutil.which("clamd") or os.path.exists("/usr/sbin/clamd")):
        pytest.skip("clamd not installed (clamav-daemon)")
    c = Clamd().start()
    yield c
    c.remove()


class Raw:
    """A raw SMTP connection for what clients libraries refuse to send."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.banner = self.reply()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode()

    def reply(self):
        """One whole (possibly multi-line) reply, as its last line."""
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return "\n".join(lines)

    def cmd(self, data):
        self.send(data if data.endswith("\r\n") else data + "\r\n")
        return self.reply()

    def closed(self):
        try:
            self.sock.settimeout(5)
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True

    def close(self):
        self.sock.close()


def rss_kib(pid):
    """The resident memory of process `pid`, in KiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")
