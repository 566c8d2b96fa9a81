"""`postroom migrate --to postgres://...` (issue #9): an embedded
installation filled through SMTP, IMAP and the CLI moves to PostgreSQL
with the server stopped, and the server started on PostgreSQL shows mail
clients exactly what they saw before (UIDVALIDITY, UIDs, HIGHESTMODSEQ,
flags, keywords, POP3 UIDLs), keeps the queue and the directory, and
continues the UIDs. An interrupted copy resumes; bad input is refused
with the target left as it was.

Needs a PostgreSQL cluster: POSTROOM_E2E_POSTGRES (the PostgreSQL pass of
scripts/test-all) or POSTROOM_TEST_POSTGRES (so the SQLite pass runs it
too when given one); see scripts/pg-test-cluster."""

import imaplib
import os
import poplib
import re
import smtplib
import sqlite3
import ssl
import subprocess

import pytest

import conftest
from conftest import BIN, discard, free_port, make_server

PG = os.environ.get("POSTROOM_E2E_POSTGRES") or os.environ.get("POSTROOM_TEST_POSTGRES") or None

pytestmark = pytest.mark.skipif(
    PG is None, reason="needs a PostgreSQL cluster: set POSTROOM_E2E_POSTGRES or POSTROOM_TEST_POSTGRES"
)

USER, PASSWORD = "customseo@esoomllub.com", "99test99"
_dbs = []


def psql(url, sql):
    r = subprocess.run(["psql", url, "-qAt", "-v", "ON_ERROR_STOP=1", "-c", sql],
                       check=True, capture_output=True, text=True, timeout=60)
    return r.stdout.strip()


def split_url(url):
    """(URL without the password, the password)."""
    m = re.match(r"(postgres(?:ql)?://)([^:@/]+)(?::([^@/]*))?@(.*)", url)
    assert m, url
    return f"{m[1]}{m[2]}@{m[4]}", m[3]


def fresh_db():
    """A new database on the cluster: its URL with and without the password."""
    name = f"mig_{os.getpid()}_{len(_dbs)}"
    psql(PG, f"CREATE DATABASE {name}")
    _dbs.append(name)
    base = PG.split("?")[0]
    url = base[: base.rfind("/")] + "/" + name
    return url, split_url(url)[0]


@pytest.fixture(autouse=True)
def drop_databases():
    yield
    while _dbs:
        try:
            psql(PG, f"DROP DATABASE IF EXISTS {_dbs.pop()} WITH (FORCE)")
        except subprocess.CalledProcessError:
            pass


def embedded_server(monkeypatch):
    """A populated server on the embedded database, whichever pass this is."""
    monkeypatch.setattr(conftest, "PG_URL", None)
    s = make_server()
    monkeypatch.undo()
    return s


def tables(url):
    """The tables of a database and their row counts (nothing: no schema)."""
    names = psql(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").split()
    return {t: int(psql(url, f"SELECT count(*) FROM {t}")) for t in names}


def migrate(server, url, *extra, env=None):
    return subprocess.run([BIN, "--config", server.config, "migrate", "--to", url, *extra],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def insecure():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def imaps(server):
    m = imaplib.IMAP4_SSL("127.0.0.1", server.imaps_port, ssl_context=insecure(), timeout=10)
    m.login(USER, PASSWORD)
    return m


def pop3s(server):
    p = poplib.POP3_SSL("127.0.0.1", server.pop3s_port, context=insecure(), timeout=10)
    p.user(USER)
    p.pass_(PASSWORD)
    return p


def send(server, to, subject):
    with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as s:
        s.sendmail("sender@remote.example", [to], f"Subject: {subject}\r\n\r\nbody of {subject}\r\n".encode())


def imap_view(server):
    """What an IMAP client caches: per folder UIDVALIDITY, UIDNEXT,
    HIGHESTMODSEQ and every message's UID, MODSEQ and flags."""
    m = imaps(server)
    view = {}
    for folder in ("INBOX", "Work"):
        typ, _ = m.select(f"{folder} (CONDSTORE)")
        assert typ == "OK"
        head = tuple(int(m.untagged_responses[k][0]) for k in ("UIDVALIDITY", "UIDNEXT", "HIGHESTMODSEQ"))
        typ, data = m.uid("FETCH", "1:*", "(UID MODSEQ FLAGS)")
        assert typ == "OK"
        rows = sorted(
            (int(re.search(rb"UID (\d+)", d)[1]), int(re.search(rb"MODSEQ \((\d+)\)", d)[1]),
             # \Recent belongs to the first session that sees a message, not
             # to the message (RFC 3501 2.3.2).
             tuple(sorted(f for f in re.search(rb"FLAGS \(([^)]*)\)", d)[1].decode().split()
                          if f != "\\Recent")))
            for d in data if d
        )
        view[folder] = (head, rows)
    m.logout()
    return view


def cli_view(server):
    """What the CLI shows of the directory, DKIM keys and queue."""
    out = []
    for args in (("domain", "list"), ("user", "list"), ("alias", "list"), ("queue", "list"),
                 ("dkim", "show", "esoomllub.com"), ("user", "show", "kent@esoomllub.com"),
                 ("mail", "list", USER), ("mail", "list", USER, "--folder", "Work")):
        out.append(server.cli(*args).stdout)
    return out


def fill(server):
    """Folders, flags, keywords, an expunged message (UIDs with a gap),
    outbound mail queued for a host that cannot be reached, an alias,
    forwarding, DKIM keys, and a POP3 client that has seen the UIDLs."""
    server.cli("user", "forward", "kent@esoomllub.com", "friend@elsewhere.example")
    server.cli("dkim", "generate", "esoomllub.com")
    for i in range(6):
        send(server, USER, f"m{i}")
    # dev@ reaches testman@example.com outside: a queue row ([dns] is off,
    # so it can only wait).
    send(server, "dev@esoomllub.com", "to the list")
    send(server, "kent@esoomllub.com", "forwarded")
    m = imaps(server)
    m.create("Work")
    m.select("INBOX")
    m.uid("STORE", "2", "+FLAGS", r"(\Seen \Flagged $Label1)")
    m.uid("STORE", "4", "+FLAGS", r"(\Answered Project-X)")
    m.uid("COPY", "5", "Work")
    m.uid("STORE", "3", "+FLAGS", r"(\Deleted)")
    m.expunge()
    m.logout()
    p = pop3s(server)
    uidl = p.uidl()[1]
    p.quit()
    assert server.queue(), "the queue should hold the outside copies"
    return uidl


def test_an_embedded_installation_moves_to_postgres_unchanged(monkeypatch):
    s = embedded_server(monkeypatch)
    try:
        s.start()
        uidl = fill(s)
        imap_before = imap_view(s)
        assert [uid for uid, _, _ in imap_before["INBOX"][1]] == [1, 2, 4, 5, 6]
        s.stop()
        cli_before = cli_view(s)

        url, shown = fresh_db()
        password = split_url(url)[1]
        pw_file = os.path.join(s.tmp, "db-password")
        with open(pw_file, "w") as f:
            f.write(password + "\n")
        r = migrate(s, shown, "--password-file", pw_file)
        assert r.returncode == 0, r.stderr
        assert password not in r.stdout + r.stderr
        # Progress, then what was checked, then the lines to configure.
        assert re.search(r"messages\s+\d+ / \d+ rows \(100%\)", r.stderr), r.stderr
        counts = dict(re.findall(r"^  (\w+)\s+(\d+)$", r.stdout, re.M))
        sqlite_db = sqlite3.connect(os.path.join(s.data, "postroom.sqlite"))
        for table in ("messages", "folders", "outbound", "dkim_keys", "aliases", "expunged"):
            n = sqlite_db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            assert int(counts[table]) == n > 0, (table, r.stdout)
        sqlite_db.close()
        assert re.search(r"the same \d+ message bodies", r.stdout), r.stdout
        assert re.search(rf"Checked: all \d+ bodies the rows refer to are in {re.escape(s.data)}/blobs\.",
                         r.stdout), r.stdout
        block = r.stdout[r.stdout.index("[store]"):]
        assert block == f'[store]\ndatabase = "{shown}"\npassword_file = "{os.path.realpath(pw_file)}"\n', block

        with open(s.config, "a") as f:
            f.write("\n" + block)
        assert cli_view(s) == cli_before
        s.start()
        assert imap_view(s) == imap_before
        p = pop3s(s)
        assert p.uidl()[1] == uidl
        p.quit()
        # New mail takes the next UID, as if nothing had happened.
        uidnext = imap_before["INBOX"][0][1]
        send(s, USER, "after the move")
        m = imaps(s)
        m.select("INBOX")
        typ, data = m.uid("SEARCH", "SUBJECT", "after")
        assert data[0].split() == [str(uidnext).encode()]
        m.logout()
        assert int(psql(url, "SELECT count(*) FROM messages WHERE uid = %d" % uidnext)) == 1
    finally:
        discard(s)


def test_an_interrupted_migration_resumes(monkeypatch):
    s = embedded_server(monkeypatch)
    try:
        s.start()
        for i in range(5):
            send(s, USER, f"m{i}")
        s.stop()
        url, _ = fresh_db()
        # Killed (SIGKILL) right after the folders are copied.
        r = migrate(s, url, env={"POSTROOM_TEST_MIGRATE_KILL_AFTER": "folders"})
        assert r.returncode == -9, (r.returncode, r.stderr)
        partial = tables(url)
        assert partial["folders"] > 0 and partial["messages"] == 0, partial
        # A body lost before the copy (not by it) is reported, not hidden.
        blobs = os.path.join(s.data, "blobs")
        lost = next(os.path.join(d, f) for d, _, fs in os.walk(blobs) for f in fs if "spool" not in d)
        os.remove(lost)
        r = migrate(s, url)
        assert r.returncode == 0, r.stderr
        assert f"warning: 1 of the 5 bodies the rows refer to are missing from {blobs}" in r.stderr, r.stderr
        copied = int(re.search(r"Rows copied by this run: (\d+)", r.stdout)[1])
        total = sum(int(n) for n in re.findall(r"^  \w+\s+(\d+)$", r.stdout, re.M))
        assert 5 <= copied < total, r.stdout
        whole = tables(url)
        assert whole["messages"] == 5
        assert psql(url, "SELECT count(*) FROM settings WHERE key LIKE 'migration:%'") == "0"
    finally:
        discard(s)


def test_bad_input_is_refused_and_changes_nothing(monkeypatch):
    s = embedded_server(monkeypatch)
    other = embedded_server(monkeypatch)
    try:
        url, shown = fresh_db()
        password = split_url(url)[1]

        # A server running on the data folder.
        s.start()
        r = migrate(s, url)
        assert r.returncode != 0
        assert re.search(rf"a server is running on {re.escape(s.data)} \(pid {s.proc.pid}\): stop it first",
                         r.stderr), r.stderr
        s.stop()
        assert tables(url) == {}

        # Nothing listening.
        dead = f"postgres://postroom:{password}@127.0.0.1:{free_port()}/x"
        r = migrate(s, dead)
        assert r.returncode != 0 and "Connection refused" in r.stderr, r.stderr
        assert password not in r.stdout + r.stderr

        # A wrong password: the server's refusal, and neither password shown.
        wrong = url.replace(f":{password}@", ":not-the-password@")
        r = migrate(s, wrong)
        assert r.returncode != 0 and "password authentication failed" in r.stderr, r.stderr
        assert "not-the-password" not in r.stdout + r.stderr
        assert tables(url) == {}

        # Another application's database (a mistyped name).
        foreign, _ = fresh_db()
        psql(foreign, "CREATE TABLE invoices (id bigint)")
        r = migrate(s, foreign)
        assert r.returncode != 0 and "tables that are not Postroom's" in r.stderr, r.stderr
        assert tables(foreign) == {"invoices": 0}

        # A data folder written by a newer Postroom.
        db = sqlite3.connect(os.path.join(s.data, "postroom.sqlite"))
        version = db.execute("PRAGMA user_version").fetchone()[0]
        db.execute(f"PRAGMA user_version = {version + 1}")
        db.commit()
        r = migrate(s, url)
        assert r.returncode != 0 and "newer than this binary supports" in r.stderr, r.stderr
        assert password not in r.stdout + r.stderr
        assert tables(url) == {}
        db.execute(f"PRAGMA user_version = {version}")
        db.commit()
        db.close()

        # Another installation's data in the target.
        other.cli("domain", "add", "other.example")
        r = migrate(other, url)
        assert r.returncode == 0, r.stderr
        before = tables(url), psql(url, "SELECT name FROM domains ORDER BY name")
        assert "other.example" in before[1]
        r = migrate(s, url)
        assert r.returncode != 0 and "already holds data" in r.stderr, r.stderr
        assert password not in r.stdout + r.stderr
        assert (tables(url), psql(url, "SELECT name FROM domains ORDER BY name")) == before

        # Another installation's interrupted copy: not resumed from here
        # (its last domain, other.example, is no row of this one's).
        url2, _ = fresh_db()
        r = migrate(other, url2, env={"POSTROOM_TEST_MIGRATE_KILL_AFTER": "accounts"})
        assert r.returncode == -9, (r.returncode, r.stderr)
        before = tables(url2)
        r = migrate(s, url2)
        assert r.returncode != 0 and "partial copy that does not match this data folder" in r.stderr, r.stderr
        assert tables(url2) == before
    finally:
        discard(s)
        discard(other)
