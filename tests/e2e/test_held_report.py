"""Held mail is counted and reported (issue #12): `queue list --held` lists
it with its reason; every `queue.held_report_secs` each domain's admins get
the list of what was held for their domain (nothing when nothing was
held); a domain without an admin is not sent a report that would itself
be held. And the quick trial holds none of its own mail."""

import os
import shutil
import smtplib
import subprocess
import time

import pytest

from conftest import BIN

EVERY_SECOND = "[queue]\nheld_report_secs = 1\n"


def runs(s):
    """How many report runs the server has made (each logs one line)."""
    log = s.read_log()
    return log.count("held mail report: nothing was held") + log.count("held mail report sent") \
        + log.count("held mail report: the domain has no admin")


def wait_for(pred, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(what)


def wait_for_runs(s, n):
    start = runs(s)
    wait_for(lambda: runs(s) >= start + n, f"{n} more report runs")


def test_held_mail_is_reported_to_the_domain_admins_once(server_factory):
    s = server_factory(extra_toml=EVERY_SECOND)
    s.cli("alias", "add", "team@esoomllub.com", "dbrooks,carol")
    s.start()
    # Nothing held: runs happen, nothing is sent.
    wait_for_runs(s, 2)
    assert s.messages("kent@esoomllub.com") == []

    with smtplib.SMTP("127.0.0.1", s.port, timeout=10) as c:
        c.sendmail("friend@remote.example", ["team@esoomllub.com"], b"Subject: for the team\r\n\r\nhi\r\n")
    [held] = [line.split("\t") for line in s.cli("queue", "list", "--held").stdout.splitlines()]
    assert held[1] == "held" and held[3] == "carol@esoomllub.com" and held[5] == "unknown-member"
    queue_id = held[0]
    item = s.cli("queue", "show", queue_id).stdout.split(":")[0].split()[-1]

    # kent is the domain's admin (postmaster@ reaches him).
    [report] = wait_for(lambda: s.messages("kent@esoomllub.com"), "no report reached the admin")
    text = s.show("kent@esoomllub.com", report[0])
    assert "Subject: Held mail for esoomllub.com: 1 delivery" in text
    assert "Auto-Submitted: auto-generated" in text
    assert "Sender:    friend@remote.example" in text
    assert "Recipient: carol@esoomllub.com" in text
    assert "Reason:    unknown-member:" in text
    assert f"Queue id:  {queue_id} (item {item})" in text
    assert f"Release:   postroom --config {s.config} queue release {item}" in text
    # Delivered into the mailbox by the delivery commit, not queued or held.
    assert [q[3] for q in s.queue()] == ["carol@esoomllub.com"]
    # Nobody else got it.
    assert s.messages("dbrooks@esoomllub.com")[1:] == []

    # Reported once: later runs find nothing new.
    wait_for_runs(s, 2)
    assert len(s.messages("kent@esoomllub.com")) == 1

    # The command in the report works.
    s.cli("user", "add", "carol@esoomllub.com", "--password-hash", "{PLAIN}x-not-used")
    s.cli("queue", "release", item)
    assert len(s.messages("carol@esoomllub.com")) == 1
    assert s.cli("queue", "list", "--held").stdout == ""


def test_a_domain_without_an_admin_gets_its_report_logged_not_held(server_factory):
    s = server_factory(extra_toml=EVERY_SECOND)
    s.cli("domain", "add", "noadmin.example")
    s.cli("user", "add", "u@noadmin.example", "--password-hash", "{PLAIN}x-not-used")
    s.cli("alias", "add", "list@noadmin.example", "u,ghost")
    s.start()
    with smtplib.SMTP("127.0.0.1", s.port, timeout=10) as c:
        c.sendmail("friend@remote.example", ["list@noadmin.example"], b"Subject: x\r\n\r\nx\r\n")
    wait_for(lambda: "held mail report: the domain has no admin" in s.read_log(), "the report was not logged")
    line = next(l for l in s.read_log().splitlines() if "held mail report: the domain has no admin" in l)
    assert "ghost@noadmin.example" in line and "unknown-member" in line and "server.postmaster is not set" in line
    wait_for_runs(s, 2)
    # Only the member's own held row: the report made nothing held.
    held = [line.split("\t") for line in s.cli("queue", "list", "--held").stdout.splitlines()]
    assert [h[3] for h in held] == ["ghost@noadmin.example"]
    # u only got the list mail.
    assert len(s.messages("u@noadmin.example")) == 1


def test_a_domain_without_an_admin_reports_to_server_postmaster(server_factory):
    s = server_factory(extra_toml=EVERY_SECOND)
    with open(s.config) as f:
        cfg = f.read().replace("[server]\n", '[server]\npostmaster = "dbrooks@esoomllub.com"\n', 1)
    with open(s.config, "w") as f:
        f.write(cfg)
    s.cli("domain", "add", "noadmin.example")
    s.cli("alias", "add", "list@noadmin.example", "dbrooks@esoomllub.com,ghost")
    s.start()
    with smtplib.SMTP("127.0.0.1", s.port, timeout=10) as c:
        c.sendmail("friend@remote.example", ["list@noadmin.example"], b"Subject: x\r\n\r\nx\r\n")

    def report():
        return [m for m in s.messages("dbrooks@esoomllub.com") if "Held mail" in m[3]]

    [r] = wait_for(report, "server.postmaster got no report")
    assert "Held mail for noadmin.example: 1 delivery" in r[3]
    # kent administers esoomllub.com only: nothing for him.
    assert s.messages("kent@esoomllub.com") == []


def test_the_quick_trial_holds_nothing(tmp_path):
    """The README's quick trial, as written: `serve` with no config, then
    domain add, user add, swaks, mail list; nothing ends up held."""
    if not shutil.which("swaks"):
        pytest.skip("swaks is not installed")
    data = tmp_path / "trial"
    env = {k: v for k, v in os.environ.items() if k not in ("POSTROOM_CONFIG", "POSTROOM_DATA_DIR")}
    log = open(tmp_path / "log", "w")
    p = subprocess.Popen([BIN, "--data-dir", str(data), "serve"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        text = wait_for(lambda: (tmp_path / "log").read_text() if "Stop with" in (tmp_path / "log").read_text()
                        or p.poll() is not None else None, "the trial server did not start")
        if "already in use" in text:
            pytest.skip("another process holds a trial port")

        def cli(*args, input=None):
            r = subprocess.run([BIN, "--data-dir", str(data), *args], input=input, capture_output=True,
                               text=True, timeout=60, env=env)
            assert r.returncode == 0, (args, r.stderr)
            return r.stdout

        cli("domain", "add", "example.com")
        cli("user", "add", "you@example.com", "--password-stdin", input="a-long-secret\n")
        r = subprocess.run(["swaks", "--server", "127.0.0.1:10025", "--to", "you@example.com"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert len(cli("mail", "list", "you@example.com").splitlines()) == 1
        assert cli("queue", "list", "--held") == ""
        assert cli("queue", "list") == ""
        st = subprocess.run([BIN, "--data-dir", str(data), "status", "--json"], capture_output=True,
                            text=True, timeout=60, env=env)
        import json

        assert json.loads(st.stdout)["held"] == {}
    finally:
        p.terminate()
        p.wait(timeout=30)
        log.close()
