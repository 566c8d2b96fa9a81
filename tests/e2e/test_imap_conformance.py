"""IMAP response forms a conformance checker looks at, beyond what mail
clients need: charset errors, response codes, keyword announcements."""

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
