"""IMAP response forms a conformance checker looks at, beyond what mail
clients need: charset errors, response codes, keyword announcements."""

import os

from test_imap import deliver, imaps


def test_search_with_an_unknown_charset_is_badcharset(server):
    deliver(server, 1)
    m = imaps(server)
    try:
        m.select("INBOX")
        typ, data = m.search("UTF-8", "ALL")
        assert (typ, data) == ("OK", [b"1"])
        typ, data = m.search("us-ascii", "ALL")
        assert typ == "OK"
        typ, data = m.search("KOI8-Q", "ALL")
        assert typ == "NO" and data[0].startswith(b"[BADCHARSET (US-ASCII UTF-8)]"), data
    finally:
        m.logout()


def test_deleting_a_parent_says_haschildren(server):
    m = imaps(server)
    try:
        assert m.create("Work/Sub")[0] == "OK"
        typ, data = m.delete("Work")
        assert typ == "NO" and b"[HASCHILDREN]" in data[0], data
        assert m.delete("Work/Sub")[0] == "OK"
        assert m.delete("Work")[0] == "OK"
    finally:
        m.logout()


def test_keywords_are_announced_in_flags_before_a_fetch_shows_them(server):
    """RFC 3501 7.2.6: FLAGS lists the flags a mailbox uses; a client (or a
    checker) refuses a FETCH that shows a keyword FLAGS never named."""
    deliver(server, 2)
    a, b = imaps(server), imaps(server)
    try:
        a.select("INBOX")
        b.select("INBOX")
        typ, data = a.store("1", "+FLAGS", "($Label1)")
        assert typ == "OK"
        flags = a.untagged_responses.get("FLAGS", [])
        assert flags and b"$Label1" in flags[-1], a.untagged_responses
        assert any(b"$Label1 \\*" in r for r in a.untagged_responses.get("OK", [])), a.untagged_responses
        # The other session learns of it when the change reaches it, FLAGS
        # first.
        typ, data = b.noop()
        assert b"$Label1" in b.untagged_responses.get("FLAGS", [b""])[-1], b.untagged_responses
        b.logout()
        # A new session sees it in SELECT's FLAGS and PERMANENTFLAGS.
        b = imaps(server)
        b.select("INBOX")
        assert b.untagged_responses["FLAGS"][-1] == (
            b"(\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1)")
        b.select("INBOX", readonly=True)
        assert any(b"PERMANENTFLAGS ()" in r for r in b.untagged_responses.get("OK", []))
    finally:
        a.logout()
        b.logout()


def test_unreadable_message_is_unavailable_not_empty(server):
    """Issue #9: a message whose stored body cannot be read is answered
    NO [UNAVAILABLE] (RFC 9051 7.1), never an empty body; SEARCH BODY does
    not take it for a message that does not match. The failure is logged
    with the account."""
    deliver(server, 1)
    blobs = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(server.data, "blobs"))
             if "spool" not in d for f in fs]
    assert len(blobs) == 1, blobs
    os.remove(blobs[0])
    m = imaps(server)
    try:
        m.select("INBOX")
        typ, data = m.fetch("1", "(BODY.PEEK[])")
        assert typ == "NO" and data[0].startswith(b"[UNAVAILABLE]"), (typ, data)
        typ, data = m.search(None, "BODY", "nothing-like-this")
        assert typ == "NO" and data[0].startswith(b"[UNAVAILABLE]"), (typ, data)
        # Flags and sizes come from the index: still there.
        typ, data = m.fetch("1", "(FLAGS RFC822.SIZE)")
        assert typ == "OK", data
    finally:
        m.logout()
    log = server.read_log()
    assert "store failed" in log and "customseo@esoomllub.com" in log, log[-2000:]
