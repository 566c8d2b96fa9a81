"""`postroom status` (issue #12): running or not, listeners, open
connections per protocol (asked over DATA_DIR/control.sock), certificates,
the queue by state and held mail by reason, disk use; exit code 3 when the
server is not running."""

import imaplib
import json
import os
import smtplib
import stat
import time



def status(s, *extra):
    return s.cli("status", *extra, check=False)


def wait_for(pred, what, timeout=20):
    # The server counts a connection once its task is running: a poll,
    # never a fixed sleep.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(what)


def test_status_of_a_running_server_counts_connections_and_held_mail(server):
    server.cli("alias", "add", "team@esoomllub.com", "dbrooks,carol")
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as c:
        c.sendmail("friend@remote.example", ["team@esoomllub.com"], b"Subject: held\r\n\r\nx\r\n")

    sock = os.path.join(server.data, "control.sock")
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600

    imap = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    smtp = smtplib.SMTP("127.0.0.1", server.port, timeout=10)
    smtp.ehlo("client.example.org")
    try:
        def counted():
            r = status(server, "--json")
            assert r.returncode == 0, r.stderr
            st = json.loads(r.stdout)
            c = st["connections"]
            return st if c["imap"] == 1 and c["smtp"] == 1 else None

        st = wait_for(counted, "the two connections were not counted")
        assert st["running"] is True and st["pid"] == server.proc.pid
        assert st["version"] and st["uptime_secs"] >= 0
        assert st["connections"]["pop3"] == 0 and st["connections"]["submission"] == 0
        listeners = {(l["protocol"], l["address"]) for l in st["listeners"]}
        assert ("smtp", f"127.0.0.1:{server.port}") in listeners
        assert ("imaps", f"127.0.0.1:{server.imaps_port}") in listeners
        assert ("pop3", f"127.0.0.1:{server.pop3_port}") in listeners
        assert st["queue"]["held"]["count"] == 1
        assert st["queue"]["queued"]["count"] == 0
        assert st["held"]["unknown-member"]["count"] == 1
        assert st["held"]["unknown-member"]["oldest_age_secs"] >= 0
        # The self-signed certificate the server made (rcgen: valid for
        # centuries).
        [cert] = st["certificates"]
        assert cert["file"].endswith(".crt") and cert["days_left"] > 365
        assert st["disk_bytes"] > 0

        text = status(server)
        assert text.returncode == 0, text.stderr
        out = text.stdout
        assert f"running (pid {server.proc.pid}), up " in out
        assert f"  smtp         127.0.0.1:{server.port}" in out
        assert "1 imap" in out and "1 smtp" in out
        assert "held by reason: 1 unknown-member (oldest " in out
        assert "days left" in out
        assert " on disk)" in out
    finally:
        imap.logout()
        smtp.quit()
    wait_for(lambda: json.loads(status(server, "--json").stdout)["connections"]["imap"] == 0,
             "the closed IMAP connection is still counted")


def test_status_of_a_stopped_server_reads_the_store_and_exits_3(server_factory):
    s = server_factory()
    s.cli("alias", "add", "team@esoomllub.com", "dbrooks,carol")
    s.start()
    try:
        with smtplib.SMTP("127.0.0.1", s.port, timeout=10) as c:
            c.sendmail("friend@remote.example", ["team@esoomllub.com"], b"Subject: held\r\n\r\nx\r\n")
    finally:
        s.stop()
    assert not os.path.exists(os.path.join(s.data, "control.sock"))
    r = status(s)
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert ": not running" in r.stdout
    assert "held by reason: 1 unknown-member" in r.stdout
    assert "queue: 0 deferred, 1 held" in r.stdout
    r = status(s, "--json")
    assert r.returncode == 3
    st = json.loads(r.stdout)
    assert st["running"] is False and st["pid"] is None and st["listeners"] == []
    assert st["held"]["unknown-member"]["count"] == 1
    assert st["disk_bytes"] > 0


def test_a_data_folder_too_long_for_a_socket_still_serves(server_factory):
    # A Unix socket address holds 107 bytes: the server runs without its
    # control socket, and status says the live part is missing.
    s = server_factory(init=False, populate=False)
    long_dir = os.path.join(s.tmp, "d" * 120)
    with open(s.config) as f:
        cfg = f.read().replace(f'data_dir = "{s.data}"', f'data_dir = "{long_dir}"')
    with open(s.config, "w") as f:
        f.write(cfg)
    s.start()
    with smtplib.SMTP("127.0.0.1", s.port, timeout=10) as c:
        assert c.noop()[0] == 250
    wait_for(lambda: "no control socket" in s.read_log(), "the missing socket was not logged")
    r = status(s)
    assert r.returncode == 1 and "running but did not answer" in r.stderr, (r.stdout, r.stderr)
    assert "queue: 0 deferred, 0 held, 0 queued" in r.stdout
