"""`postroom backup` and `postroom restore` (issue #12): a backup taken
while several SMTP clients deliver restores every message that was
acknowledged (250) before the backup started, byte for byte (on both back
ends: with POSTROOM_E2E_POSTGRES the database goes through pg_dump and
pg_restore); a non-empty target, an incomplete or damaged backup, a newer
one, a running server and a database that is not empty are refused."""

import imaplib
import os
import re
import shutil
import smtplib
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

import conftest
from conftest import BIN

embedded_only = conftest.sqlite_only

USER = "customseo@esoomllub.com"
PASSWORD = "99test99"
# 4 clients x 30 messages: enough that the backup overlaps deliveries, a
# few seconds on a loaded 2-core machine.
THREADS = 4
PER_THREAD = 30


def fetch_all(port):
    """Every message in the INBOX over IMAPS: {token: bytes}."""
    ctx = ssl.create_default_context()
    # The test server's own self-signed certificate.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    m = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx, timeout=30)
    try:
        m.login(USER, PASSWORD)
        m.select("INBOX", readonly=True)
        typ, data = m.fetch("1:*", "(BODY.PEEK[])")
        assert typ == "OK", data
        out = {}
        for item in data:
            if isinstance(item, tuple):
                body = item[1]
                for line in body.split(b"\r\n"):
                    if line.startswith(b"X-Token: "):
                        out[line[len(b"X-Token: "):].decode()] = body
        return out
    finally:
        m.logout()


def deliver(port, thread, acked, stop):
    for i in range(PER_THREAD):
        if stop.is_set():
            return
        token = f"t{thread}-{i}"
        msg = (
            f"From: load{thread}@example.org\r\nTo: {USER}\r\nSubject: load {token}\r\n"
            f"X-Token: {token}\r\n\r\nbody of {token}\r\n" + "x" * (200 * i) + "\r\n"
        )
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
                s.sendmail(f"load{thread}@example.org", [USER], msg)
            # sendmail returned: the server answered 250 to the data.
            acked.append((token, time.monotonic()))
        except (smtplib.SMTPException, OSError):
            pass


def restored_server(s, backup_dir):
    """Restores `backup_dir` into a new data folder (and, on PostgreSQL, a
    new database) and points `s` at it."""
    new_data = os.path.join(s.tmp, "restored")
    if s.pg_name:
        url, name = conftest.pg_database()
        with open(s.config) as f:
            cfg = f.read()
        cfg = re.sub(r'database = "[^"]*"', f'database = "{url}"', cfg)
        with open(s.config, "w") as f:
            f.write(cfg)
        conftest._pg(f"DROP DATABASE IF EXISTS {s.pg_name} WITH (FORCE)")
        s.pg_name = name
    r = subprocess.run([BIN, "--config", s.config, "--data-dir", new_data, "restore", backup_dir],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "all checksums verified" in r.stdout, r.stdout
    with open(s.config) as f:
        cfg = f.read()
    with open(s.config, "w") as f:
        f.write(cfg.replace(f'data_dir = "{s.data}"', f'data_dir = "{new_data}"'))
    s.data = new_data
    return r


def test_a_backup_under_smtp_load_restores_every_acknowledged_message(server):
    out = tempfile.mkdtemp(prefix="postroom-backup-")
    try:
        backup_dir = os.path.join(out, "b")
        acked, stop = [], threading.Event()
        threads = [threading.Thread(target=deliver, args=(server.port, t, acked, stop)) for t in range(THREADS)]
        for t in threads:
            t.start()
        # Some mail first, so that the backup has acknowledged mail to keep.
        deadline = time.monotonic() + 60
        while len(acked) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        started = time.monotonic()
        before = {tok for tok, at in list(acked) if at < started}
        assert len(before) >= 20
        r = subprocess.run([BIN, "--config", server.config, "backup", backup_dir],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "Backed up" in r.stdout
        for t in threads:
            t.join(timeout=120)
        stop.set()
        assert oct(os.stat(backup_dir).st_mode & 0o777) == "0o700"
        db_file = "postroom.pgdump" if server.pg_name else "postroom.sqlite"
        assert os.path.isfile(os.path.join(backup_dir, db_file))
        originals = fetch_all(server.imaps_port)
        assert before <= set(originals)

        server.stop()
        restored_server(server, backup_dir)
        server.start()
        restored = fetch_all(server.imaps_port)
        missing = sorted(before - set(restored))
        assert not missing, f"acknowledged before the backup, not restored: {missing}"
        for tok in before:
            assert restored[tok] == originals[tok], tok
            assert f"body of {tok}".encode() in restored[tok]
        # Nothing restored that the original never had, and unchanged.
        for tok, body in restored.items():
            assert originals[tok] == body
    finally:
        shutil.rmtree(out, ignore_errors=True)


@embedded_only
def test_backup_and_restore_refuse_what_they_must(server):
    out = tempfile.mkdtemp(prefix="postroom-backup-")
    try:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=30) as s:
            s.sendmail("a@example.org", [USER], f"Subject: one\r\nX-Token: one\r\n\r\nbody\r\n")
        # A target with something in it.
        busy = os.path.join(out, "busy")
        os.mkdir(busy)
        open(os.path.join(busy, "keep"), "w").close()
        r = server.cli("backup", busy, check=False)
        assert r.returncode != 0 and "is not empty" in r.stderr, r.stderr
        assert os.listdir(busy) == ["keep"]

        good = os.path.join(out, "good")
        server.cli("backup", good)

        # Restore while the server runs on the folder: refused by the lock.
        r = server.cli("restore", good, check=False)
        assert r.returncode != 0 and "a server is running" in r.stderr, r.stderr

        # Into a folder that is not empty.
        other = os.path.join(out, "other")
        os.mkdir(other)
        open(os.path.join(other, "postroom.sqlite"), "w").close()
        r = server.cli("--data-dir", other, "restore", good, check=False)
        assert r.returncode != 0 and "is not empty" in r.stderr, r.stderr

        target = os.path.join(out, "target")

        def restore(src):
            r = server.cli("--data-dir", target, "restore", src, check=False)
            assert r.returncode != 0
            # Refused with nothing restored: the folder can be used again.
            if os.path.isdir(target):
                assert set(os.listdir(target)) <= {"postroom.pid"}, os.listdir(target)
            return r.stderr

        # A damaged body: one byte changed.
        damaged = os.path.join(out, "damaged")
        shutil.copytree(good, damaged)
        blob_root = os.path.join(damaged, "blobs")
        shard = os.listdir(blob_root)[0]
        blob = os.path.join(blob_root, shard, os.listdir(os.path.join(blob_root, shard))[0])
        data = bytearray(open(blob, "rb").read())
        data[-3] ^= 0x20
        open(blob, "wb").write(bytes(data))
        assert "damaged" in restore(damaged)

        # An interrupted backup: no manifest.
        cut = os.path.join(out, "cut")
        shutil.copytree(good, cut)
        os.remove(os.path.join(cut, "postroom-backup.manifest"))
        assert "not a complete backup" in restore(cut)

        # From a newer Postroom.
        newer = os.path.join(out, "newer")
        shutil.copytree(good, newer)
        manifest = os.path.join(newer, "postroom-backup.manifest")
        text = open(manifest).read()
        lines = [("schema-version 9999" if l.startswith("schema-version ") else l) for l in text.splitlines()]
        open(manifest, "w").write("\n".join(lines) + "\n")
        assert "newer than this binary" in restore(newer)

        # The good one still restores into the same folder afterwards.
        r = server.cli("--data-dir", target, "restore", good)
        assert "Restored 1 message," in r.stdout, r.stdout
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.mark.skipif(conftest.PG_URL is None, reason="the PostgreSQL pass")
def test_on_postgresql_restore_needs_an_empty_database(server):
    out = tempfile.mkdtemp(prefix="postroom-backup-")
    try:
        b = os.path.join(out, "b")
        r = server.cli("backup", b)
        assert os.path.isfile(os.path.join(b, "postroom.pgdump"))
        # The configured database is the running server's: not empty.
        r = server.cli("--data-dir", os.path.join(out, "data"), "restore", b, check=False)
        assert r.returncode != 0 and "already holds a Postroom store" in r.stderr, r.stderr
    finally:
        shutil.rmtree(out, ignore_errors=True)
