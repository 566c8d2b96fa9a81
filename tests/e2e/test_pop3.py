"""POP3 as a phone, Thunderbird or fetchmail uses it: poplib over TLS (995)
and STLS (110), curl, fetchmail --keep."""

import os
import poplib
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from conftest import make_server, sqlite_only


def insecure():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def deliver(server, n, to="customseo@esoomllub.com"):
    with smtplib.SMTP("127.0.0.1", server.port) as s:
        for i in range(n):
            s.sendmail("a@remote.example", [to], f"Subject: msg {i}\r\n\r\n.line {i}\r\nend\r\n".encode())


def login_pop3s(server, user="customseo@esoomllub.com", password="99test99"):
    p = poplib.POP3_SSL("127.0.0.1", server.pop3s_port, context=insecure(), timeout=10)
    p.user(user)
    p.pass_(password)
    return p


def count_blobs(server):
    return sum(len(files) for _, _, files in os.walk(os.path.join(server.data, "blobs")))


def test_bodies_left_by_a_crash_are_swept(server):
    """Bodies released just before a crash (the purge thread waits 2 s) are
    found by `postroom mail sweep`; bodies of kept messages stay."""
    deliver(server, 5)
    p = login_pop3s(server)
    for i in (1, 2, 3):
        p.dele(i)
    p.quit()
    server.kill()
    left = count_blobs(server)
    assert 2 <= left <= 5
    # The default minimum age protects mail being delivered right now.
    r = server.cli("mail", "sweep")
    assert r.stdout.startswith("0 bodies stored more than 10 minutes ago")
    assert count_blobs(server) == left
    r = server.cli("mail", "sweep", "--min-age", "0")
    assert f"{left} bodies stored more than 0 minutes ago; {left - 2} referred to by nothing: deleted" \
        in r.stdout
    assert count_blobs(server) == 2
    server.start()
    p = login_pop3s(server)
    assert p.stat()[0] == 2
    for i in (1, 2):
        assert b".line" in b"\n".join(p.retr(i)[1])
    p.quit()


def test_bodies_released_just_before_a_shutdown_are_deleted(server):
    """SIGTERM within the purge thread's 2 s: the server finishes its queue
    of bodies to delete before it exits."""
    deliver(server, 4)
    p = login_pop3s(server)
    for i in (1, 2, 3):
        p.dele(i)
    p.quit()
    assert server.stop() == 0
    assert count_blobs(server) == 1


def test_pop3s_retrieve_and_leave_on_server(server):
    deliver(server, 3)
    p = login_pop3s(server)
    count, size = p.stat()
    assert count == 3
    uidls = p.uidl()[1]
    _, lines, _ = p.retr(1)
    assert b"Subject: msg 0" in lines and b".line 0" in lines
    assert lines[0].startswith(b"Return-Path:")
    p.quit()
    # A second device sees the same messages with the same UIDLs.
    p = login_pop3s(server)
    assert p.stat()[0] == 3
    assert p.uidl()[1] == uidls
    p.quit()


def test_dele_only_at_quit_and_uidl_stable(server):
    deliver(server, 3)
    a = login_pop3s(server)
    uidls = [u.split()[1] for u in a.uidl()[1]]
    a.dele(2)
    # Before QUIT, another session still sees all three.
    b = login_pop3s(server)
    assert b.stat()[0] == 3
    b.quit()
    a.quit()
    c = login_pop3s(server)
    assert [u.split()[1] for u in c.uidl()[1]] == [uidls[0], uidls[2]]
    c.quit()
    # IMAP and the CLI see the same mailbox.
    assert len(server.messages("customseo@esoomllub.com")) == 2


def test_connection_drop_deletes_nothing(server):
    deliver(server, 2)
    p = login_pop3s(server)
    p.dele(1)
    p.sock.close()
    time.sleep(0.3)
    assert len(server.messages("customseo@esoomllub.com")) == 2


def test_stls_and_plaintext_refusal(server):
    p = poplib.POP3("127.0.0.1", server.pop3_port, timeout=10)
    caps = p.capa()
    assert "STLS" in caps and "USER" not in caps
    with pytest.raises(poplib.error_proto, match="AUTH"):
        p.user("customseo@esoomllub.com")
    p.stls(context=insecure())
    assert "USER" in p.capa()
    p.user("customseo@esoomllub.com")
    p.pass_("99test99")
    assert p.stat()[0] == 0
    p.quit()


def test_plaintext_networks_allow_login_without_tls(server_factory):
    server = server_factory(extra_toml='\n[auth]\nplaintext_networks = ["127.0.0.1"]\n').start()
    p = poplib.POP3("127.0.0.1", server.pop3_port, timeout=10)
    p.user("customseo@esoomllub.com")
    p.pass_("99test99")
    p.quit()


def test_wrong_password_disabled_and_case(server):
    with pytest.raises(poplib.error_proto, match="AUTH"):
        login_pop3s(server, password="99test9XX")
    # The address is case-insensitive; a domain alias works too.
    login_pop3s(server, user="CustomSEO@ESOOMLLUB.net").quit()
    server.cli("user", "disable", "customseo@esoomllub.com")
    with pytest.raises(poplib.error_proto, match="AUTH"):
        login_pop3s(server)


def test_default_domain_lets_old_clients_use_the_local_part(server_factory):
    server = server_factory(extra_toml='\n[auth]\ndefault_domain = "esoomllub.com"\n').start()
    login_pop3s(server, user="customseo").quit()


def test_auth_plain(server):
    import base64

    p = poplib.POP3_SSL("127.0.0.1", server.pop3s_port, context=insecure(), timeout=10)
    token = base64.b64encode(b"\0customseo@esoomllub.com\x0099test99").decode()
    assert p._shortcmd(f"AUTH PLAIN {token}").startswith(b"+OK")
    p.quit()


@sqlite_only
def test_imported_hash_is_rehashed_at_login(server):
    server.cli("user", "add", "old@esoomllub.com", "--password-hash", "{PLAIN}legacy")
    login_pop3s(server, user="old@esoomllub.com", password="legacy").quit()
    import sqlite3

    db = sqlite3.connect(os.path.join(server.data, "postroom.sqlite"))
    (h,) = db.execute("SELECT password_hash FROM accounts WHERE local = 'old'").fetchone()
    assert h.startswith("$argon2id$")
    login_pop3s(server, user="old@esoomllub.com", password="legacy").quit()


def test_failed_logins_slow_down(server_factory):
    server = server_factory(extra_toml="\n[auth]\nfailures_before_delay = 2\nblock_after = 4\n").start()
    for _ in range(2):
        with pytest.raises(poplib.error_proto):
            login_pop3s(server, password="bad")
    t = time.time()
    with pytest.raises(poplib.error_proto):
        login_pop3s(server, password="bad")
    assert time.time() - t >= 0.9
    with pytest.raises(poplib.error_proto):
        login_pop3s(server, password="bad")
    # Blocked now, even with the right password, from this client.
    with pytest.raises(poplib.error_proto, match="LOGIN-DELAY"):
        login_pop3s(server)


def test_curl_pop3s(server):
    deliver(server, 2)
    r = subprocess.run(
        ["curl", "-sk", "--user", "customseo@esoomllub.com:99test99", f"pop3s://127.0.0.1:{server.pop3s_port}/1"],
        capture_output=True, timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert b"Subject: msg 0" in r.stdout
    r = subprocess.run(
        ["curl", "-sk", "--ssl-reqd", "--user", "customseo@esoomllub.com:99test99",
         f"pop3://127.0.0.1:{server.pop3_port}/"],
        capture_output=True, timeout=30,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(b"\n") == 2  # LIST: two messages


def test_fetchmail_keep_twice_gets_no_duplicates(server, tmp_path):
    if subprocess.run(["which", "fetchmail"], capture_output=True).returncode != 0:
        pytest.skip("fetchmail not installed")
    deliver(server, 3)
    mbox = tmp_path / "fetched"
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f"set no syslog\nset idfile {tmp_path}/ids\n"
        f"poll 127.0.0.1 service {server.pop3s_port} protocol pop3 uidl\n"
        f"  user 'customseo@esoomllub.com' password '99test99' ssl no sslcertck\n"
        f"  keep mda 'cat >> {mbox}'\n"
    )
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(tmp_path))
    for _ in range(2):
        r = subprocess.run(["fetchmail", "-f", str(rc), "--nodetach"], capture_output=True, text=True, env=env,
                           timeout=60)
        assert r.returncode in (0, 1), r.stderr  # 1: no new mail
    assert mbox.read_text().count("Subject: msg") == 3
    assert len(server.messages("customseo@esoomllub.com")) == 3


def test_pipelined_commands_are_answered_in_order_and_bodies_purged(server):
    """A client that pipelines RETR, TOP, DELE and LIST (RFC 2449 PIPELINING)
    gets every answer in order, byte-stuffed, across more output than one
    batch of retrievals holds; after QUIT the messages are gone and so,
    shortly after, are their bodies on disk."""
    big = "Subject: big\r\n\r\n" + "".join(f".{i:06d} {'x' * 90}\r\n" for i in range(4000))
    with smtplib.SMTP("127.0.0.1", server.port) as s:
        for i in range(30):
            body = big if i == 7 else f"Subject: msg {i}\r\n\r\n.line {i}\r\nend\r\n"
            s.sendmail("a@remote.example", ["customseo@esoomllub.com"], body.encode())
    assert count_blobs(server) == 30
    raw = insecure().wrap_socket(
        socket.create_connection(("127.0.0.1", server.pop3s_port), timeout=10))
    f = raw.makefile("rb")
    assert f.readline().startswith(b"+OK")
    cmds = b"USER customseo@esoomllub.com\r\nPASS 99test99\r\n"
    for i in range(1, 31):
        cmds += f"RETR {i}\r\nTOP {i} 0\r\nLIST {i}\r\nDELE {i}\r\n".encode()
    raw.sendall(cmds + b"STAT\r\nQUIT\r\n")

    def multiline():
        lines = []
        while (line := f.readline()) != b".\r\n":
            assert line, "connection closed inside a multi-line answer"
            lines.append(line)
        return lines

    assert f.readline().startswith(b"+OK") and f.readline().startswith(b"+OK")
    for i in range(1, 31):
        assert f.readline().startswith(b"+OK"), f"RETR {i}"
        text = b"".join(multiline())
        if i == 8:
            assert b"\r\n..000000 " in text and b"\r\n..003999 " in text and len(text) > 380_000
        else:
            assert f"Subject: msg {i - 1}\r\n".encode() in text and f"\r\n..line {i - 1}\r\n".encode() in text
        assert f.readline().startswith(b"+OK"), f"TOP {i}"
        top = b"".join(multiline())
        assert b"Subject:" in top and b"..line" not in top and b"..000000" not in top
        assert f.readline().startswith(f"+OK {i} ".encode()), f"LIST {i}"
        assert f.readline().startswith(b"+OK"), f"DELE {i}"
    assert f.readline().startswith(b"+OK 0 0")
    assert f.readline().startswith(b"+OK")
    assert f.readline() == b""
    raw.close()
    assert login_pop3s(server).stat()[0] == 0
    deadline = time.time() + 15
    while count_blobs(server) and time.time() < deadline:
        time.sleep(0.2)
    assert count_blobs(server) == 0
