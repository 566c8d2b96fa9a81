"""IMAP response forms a conformance checker looks at, beyond what mail
clients need: charset errors, response codes, keyword announcements."""

import os
import re
import smtplib

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


def raw(m, line):
    """Sends one command line as it is and returns (untagged lines, tagged
    line), as bytes, read straight from the connection."""
    tag = m._new_tag().decode()
    m.send(f"{tag} {line}\r\n".encode())
    untagged = []
    while True:
        got = m._get_line()
        if got.startswith(tag.encode() + b" "):
            return untagged, got
        # A literal: read its octets and the rest of the line.
        lit = re.search(rb"\{(\d+)\}$", got)
        if lit:
            got += m.read(int(lit.group(1))) + m._get_line()
        untagged.append(got)


def test_condstore_enabled_by_fetch_modseq(server):
    """RFC 7162 3.1: FETCH (MODSEQ) enables CONDSTORE like SELECT
    (CONDSTORE): its tagged OK carries [HIGHESTMODSEQ], and STORE's FETCH
    responses then have UID and MODSEQ."""
    deliver(server, 2)
    for enabling in ["FETCH 1 (MODSEQ)", "FETCH 1:* (FLAGS) (CHANGEDSINCE 1)", "SEARCH MODSEQ 1"]:
        m = imaps(server)
        try:
            m.select("INBOX")
            _, ok = raw(m, enabling)
            assert re.match(rb"\S+ OK \[HIGHESTMODSEQ \d+\]", ok), (enabling, ok)
            untagged, ok = raw(m, "STORE 1 +FLAGS (\\Flagged)")
            assert b" OK" in ok, ok
            assert any(re.match(rb"\* 1 FETCH \(UID 1 .*MODSEQ \(\d+\)", u) for u in untagged), untagged
        finally:
            m.logout()


def test_search_modseq_with_an_entry_name(server):
    """RFC 7162 3.1.5: the entry name and type of SEARCH MODSEQ."""
    deliver(server, 2)
    m = imaps(server)
    try:
        m.select("INBOX")
        untagged, ok = raw(m, 'SEARCH MODSEQ "/flags/\\\\seen" all 1')
        assert b" OK" in ok, ok
        assert untagged and untagged[0].startswith(b"* SEARCH 1 2"), untagged
    finally:
        m.logout()


def test_list_with_several_patterns(server):
    """RFC 5258 3: LIST "" (p1 p2), and LIST () "" "" for the delimiter."""
    m = imaps(server)
    try:
        typ, data = m._simple_command("LIST", '""', "(INBOX Sent)")
        typ, data = m._untagged_response(typ, data, "LIST")
        assert typ == "OK", data
        assert len(data) == 2 and any(b"INBOX" in d for d in data) and any(b"Sent" in d for d in data), data
        untagged, ok = raw(m, 'LIST () "" ""')
        assert b" OK" in ok and untagged == [b'* LIST (\\Noselect) "/" ""'], (untagged, ok)
        assert m.noop()[0] == "OK"
    finally:
        m.logout()


def test_copy_and_move_into_the_selected_mailbox_announce_exists(server):
    deliver(server, 2)
    m = imaps(server)
    try:
        m.select("INBOX")
        untagged, ok = raw(m, "COPY 1 INBOX")
        assert b" OK" in ok and b"* 3 EXISTS" in untagged, (untagged, ok)
        untagged, ok = raw(m, "MOVE 2 INBOX")
        assert b" OK" in ok and b"* 4 EXISTS" in untagged and b"* 2 EXPUNGE" in untagged, (untagged, ok)
        typ, data = m.search(None, "ALL")
        assert data == [b"1 2 3"], data
    finally:
        m.logout()


def test_search_from_matches_addresses_as_a_reader_sees_them(server):
    """RFC 3501 / RFC 9051 6.4.4: FROM is a substring of the decoded field,
    address included: a quoted local part, a name given as a comment or
    RFC 2047 encoded inside quotes, white space around @."""
    senders = [
        '"user-from"@domain.org',
        "user-from@domain.org (User From)",
        "User From <user-from @ domain.org>",
        '"=?UTF-8?Q?J=C3=BCrgen_From?=" <user-from@domain.org>',
        "=?UTF-8?Q?User_From?= <user-from@domain.org>",
        "plain@elsewhere.example",
    ]
    with smtplib.SMTP("127.0.0.1", server.port) as s:
        for i, sender in enumerate(senders):
            body = (f"From: {sender}\r\nTo: \"Team, The\" <team@domain.org>\r\nSubject: s{i}\r\n"
                    f"Message-ID: <f{i}@x>\r\n\r\nhello\r\n")
            s.sendmail("user-from@domain.org", ["customseo@esoomllub.com"], body.encode())
    m = imaps(server)
    try:
        m.select("INBOX")
        assert m.search(None, "FROM", "user-from@domain.org") == ("OK", [b"1 2 3 4 5"])
        assert m.search(None, "FROM", '"User From <user-from@domain.org>"') == ("OK", [b"2 3 5"])
        m.literal = "Jürgen From <user-from@".encode()
        assert m.search("UTF-8", "FROM") == ("OK", [b"4"])
        assert m.search(None, "TO", '"Team, The <team@domain.org>"') == ("OK", [b"1 2 3 4 5 6"])
        assert m.search(None, "FROM", "nobody@domain.org") == ("OK", [b""])
    finally:
        m.logout()


def test_recent_for_imap4rev1(server):
    """RFC 3501 2.3.2, 6.3.2, 7.3.2: an IMAP4rev1 session sees new mail as
    \\Recent (* n RECENT); EXAMINE shows it so without taking it from the
    next session, and an IMAP4rev2 session neither shows nor takes it."""
    deliver(server, 2)
    rev2 = imaps(server)
    try:
        rev2._simple_command("ENABLE", "IMAP4rev2")
        rev2.select("INBOX")
        assert "RECENT" not in rev2.untagged_responses, rev2.untagged_responses
        typ, data = rev2.fetch("1:*", "(FLAGS)")
        assert not any(b"\\Recent" in d for d in data), data
    finally:
        rev2.logout()
    m = imaps(server)
    try:
        m.select("INBOX", readonly=True)
        assert m.untagged_responses.get("RECENT") == [b"2"], m.untagged_responses
        typ, data = m.fetch("1:*", "(FLAGS)")
        assert all(b"\\Recent" in d for d in data), data
    finally:
        m.logout()
    m = imaps(server)
    try:
        m.select("INBOX")
        assert m.untagged_responses.get("RECENT") == [b"2"], m.untagged_responses
        typ, data = m.fetch("1:*", "(FLAGS)")
        assert all(b"\\Recent" in d for d in data), data
    finally:
        m.logout()
    m = imaps(server)
    try:
        m.select("INBOX")
        assert m.untagged_responses.get("RECENT") == [b"0"], m.untagged_responses
        deliver(server, 1, subject="later")
        m.noop()
        assert m.untagged_responses.get("RECENT", [b""])[-1] == b"1", m.untagged_responses
        typ, data = m.fetch("3", "(FLAGS)")
        assert b"\\Recent" in data[0], data
    finally:
        m.logout()


def test_lsub_parent_is_noselect_without_children_attributes(server):
    """RFC 3501 6.3.9: LSUB % answers an unsubscribed parent \\Noselect;
    \\HasChildren/\\HasNoChildren are LIST attributes, not LSUB ones."""
    m = imaps(server)
    try:
        assert m.create("Work/Sub")[0] == "OK"
        assert m.subscribe("Work/Sub")[0] == "OK"
        assert m.unsubscribe("Work")[0] == "OK"
        typ, data = m.lsub('""', "%")
        assert typ == "OK"
        assert b'(\\Noselect) "/" Work' in data, data
        assert not any(b"Children" in d for d in data), data
        typ, data = m.lsub('""', "*")
        assert b'() "/" Work/Sub' in data and not any(d.endswith(b" Work") for d in data), data
    finally:
        m.logout()
