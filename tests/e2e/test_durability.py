"""Nothing acknowledged is ever lost: concurrent senders, SIGKILL at random
moments, restart; every message that got a 250 is in its mailbox exactly
once. (The power-cut variant, which SIGKILL cannot show because the page
cache survives it, is crates/pipeline/tests/power_cut.rs.)"""

import random
import smtplib
import threading
import time
from collections import Counter

from conftest import make_server


def sender(port, prefix, acked, stop):
    n = 0
    while not stop.is_set():
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
                s.ehlo("client.example.org")
                while not stop.is_set():
                    token = f"{prefix}-{n}"
                    n += 1
                    body = f"Subject: {token}\r\nMessage-ID: <{token}@test>\r\n\r\n" + "z" * random.randint(10, 20000) + "\r\n"
                    s.sendmail("a@remote.example", ["customseo@esoomllub.com"], body.encode())
                    # sendmail returned: the server said 250.
                    acked.append(token)
        except (OSError, smtplib.SMTPException):
            time.sleep(0.05)


def test_sigkill_loses_nothing_acknowledged():
    rng = random.Random(20261125)
    server = make_server().start()
    acked = []
    try:
        for round_ in range(4):
            stop = threading.Event()
            threads = [
                threading.Thread(target=sender, args=(server.port, f"r{round_}t{i}", acked, stop), daemon=True)
                for i in range(8)
            ]
            for t in threads:
                t.start()
            time.sleep(rng.uniform(0.5, 2.0))
            server.kill()
            stop.set()
            for t in threads:
                t.join(timeout=30)
            server.start()
        assert len(acked) > 50, f"only {len(acked)} messages were acknowledged"
        subjects = Counter(m[3] for m in server.messages("customseo@esoomllub.com"))
        missing = [t for t in acked if subjects[t] == 0]
        doubled = [t for t, c in subjects.items() if c > 1]
        assert not missing, f"{len(missing)} acknowledged messages lost: {missing[:5]}"
        assert not doubled, f"delivered twice: {doubled[:5]}"
    finally:
        server.stop()
