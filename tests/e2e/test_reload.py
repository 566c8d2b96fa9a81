"""Live reload (issue #12): `postroom reload` and SIGHUP make the running
server re-read its configuration; a connection limit changes without
dropping an IDLE session, a setting that needs a restart is named, and a
file that does not parse changes nothing."""

import os
import signal
import socket
import time

from conftest import make_server


def greeting(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        return c.recv(200).decode()


class Idle:
    """An IMAP session in IDLE, over plaintext on loopback."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.f = self.sock.makefile("rb")
        assert self.f.readline().startswith(b"* OK")

    def cmd(self, line):
        self.sock.sendall(line.encode() + b"\r\n")

    def until_tagged(self, tag):
        lines = []
        while True:
            line = self.f.readline()
            if not line:
                raise EOFError(lines)
            lines.append(line)
            if line.startswith(tag.encode() + b" "):
                return lines


def wait_in_log(s, text, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with open(s.log) as f:
            if text in f.read():
                return
        time.sleep(0.1)
    raise AssertionError(f"no `{text}` in the server's log")


def edit(s, old, new):
    with open(s.config) as f:
        text = f.read()
    assert old in text, old
    with open(s.config, "w") as f:
        f.write(text.replace(old, new))


def test_a_limit_changes_live_and_an_idle_session_stays(tmp_path):
    s = make_server(extra_imap="max_connections_per_client = 10").start()
    try:
        idle = Idle(s.imap_port)
        idle.cmd("a NOOP")
        idle.until_tagged("a")
        # Log in is not needed for IDLE's liveness here: a session open
        # through the reload is what counts; it then still answers.
        before = [greeting(s.imap_port) for _ in range(3)]
        assert all(g.startswith("* OK") for g in before)
        edit(s, "max_connections_per_client = 10", "max_connections_per_client = 2")
        edit(s, "[smtp]\n", "[smtp]\nmax_recipients = 50\n")
        r = s.cli("reload")
        assert "applied: imap.max_connections_per_client" in r.stdout, r.stdout
        assert "needs a restart: smtp.max_recipients" in r.stdout, r.stdout
        # The session open before the reload counts: one more fits, the
        # next is refused.
        second = socket.create_connection(("127.0.0.1", s.imap_port), timeout=10)
        assert second.recv(200).startswith(b"* OK")
        assert greeting(s.imap_port).startswith("* BYE")
        second.close()
        # The old session is still there and answers.
        idle.cmd("b NOOP")
        assert idle.until_tagged("b")[-1].startswith(b"b OK")
        # Changed back, the limit comes back too.
        edit(s, "max_connections_per_client = 2", "max_connections_per_client = 10")
        r = s.cli("reload")
        time.sleep(0.2)
        assert greeting(s.imap_port).startswith("* OK")
        assert greeting(s.imap_port).startswith("* OK")
    finally:
        s.stop()


def test_a_bad_file_changes_nothing_and_sighup_reloads(tmp_path):
    s = make_server(extra_imap="max_connections_per_client = 2").start()
    try:
        edit(s, "max_connections_per_client = 2", "max_connections_per_client = \"many\"")
        # The command reads the file first and names the bad key.
        r = s.cli("reload", check=False)
        assert r.returncode != 0
        assert "max_connections_per_client" in r.stderr, r.stderr
        # The server, sent SIGHUP, keeps everything as it was.
        os.kill(s.proc.pid, signal.SIGHUP)
        wait_in_log(s, "nothing changed")
        held = [socket.create_connection(("127.0.0.1", s.imap_port), timeout=10) for _ in range(2)]
        for h in held:
            assert h.recv(200).startswith(b"* OK")
        assert greeting(s.imap_port).startswith("* BYE")
        # A good file by SIGHUP: the limit rises, the log says so.
        edit(s, "max_connections_per_client = \"many\"", "max_connections_per_client = 3")
        os.kill(s.proc.pid, signal.SIGHUP)
        wait_in_log(s, "imap.max_connections_per_client")
        assert greeting(s.imap_port).startswith("* OK")
        for h in held:
            h.close()
    finally:
        s.stop()


def test_reload_without_a_server_says_so(tmp_path):
    s = make_server(populate=False)
    r = s.cli("reload", check=False)
    assert r.returncode != 0 and "no running server" in r.stderr, r.stderr
