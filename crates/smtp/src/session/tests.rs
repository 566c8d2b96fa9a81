use super::*;

/// Drives a session like a peer would: sends bytes, answers questions with a
/// fixed directory (`user@example.com` exists), collects the reply text.
struct Harness {
    s: Session<String>,
    delivered: Vec<Delivered>,
    /// The body since the last BodyStart, from its BodyChunks.
    body: Vec<u8>,
    chunks: usize,
    delays: usize,
    closed: bool,
    tls_requested: bool,
}

impl Harness {
    fn new() -> Self {
        Self::with(SessionConfig::default())
    }

    fn with(cfg: SessionConfig) -> Self {
        Harness {
            s: Session::new(Arc::new(cfg), "192.0.2.1".parse().unwrap(), false),
            delivered: Vec::new(),
            body: Vec::new(),
            chunks: 0,
            delays: 0,
            closed: false,
            tls_requested: false,
        }
    }

    fn send(&mut self, bytes: &[u8]) -> String {
        self.s.receive(bytes);
        let mut out = Vec::new();
        while let Some(action) = self.s.poll() {
            match action {
                Action::Send(r) => r.write_to(&mut out),
                Action::Delay(_) => self.delays += 1,
                Action::Refused { .. } => {}
                Action::CheckRecipient(RcptTarget::Postmaster) => {
                    self.s.recipient_verdict(RcptVerdict::Accept("postmaster".into()))
                }
                Action::CheckRecipient(RcptTarget::Mailbox(a)) => {
                    let v = if a.canonical() == "user@example.com" {
                        RcptVerdict::Accept(a.canonical())
                    } else {
                        RcptVerdict::Reject(Reply::new(550, "5.1.1", "User unknown"))
                    };
                    self.s.recipient_verdict(v)
                }
                Action::BodyStart => self.body.clear(),
                Action::BodyChunk(c) => {
                    assert!(!c.is_empty());
                    self.chunks += 1;
                    self.body.extend_from_slice(&c);
                }
                Action::Deliver(env) => {
                    let body = std::mem::take(&mut self.body);
                    assert_eq!(env.size, body.len() as u64);
                    self.delivered.push(Delivered { env: *env, body });
                    self.s.delivery_outcome(DeliveryOutcome::Accepted {
                        queue_id: "QID".into(),
                    })
                }
                Action::Authenticate { user, password } => {
                    let ok = user == "u@example.com" && password.expose() == "pw";
                    self.s
                        .auth_result(if ok { Ok(user) } else { Err(AuthFailure::Failed) })
                }
                Action::CheckSender(from) => {
                    let ok = self.s.authenticated().is_none()
                        || from.as_ref().is_none_or(|a| a.canonical() == "u@example.com");
                    self.s.sender_verdict(if ok {
                        Ok(())
                    } else {
                        Err(Reply::new(553, "5.7.1", "not yours"))
                    })
                }
                Action::StartTls => self.tls_requested = true,
                Action::Close => self.closed = true,
            }
        }
        String::from_utf8(out).unwrap()
    }
}

/// A delivered envelope and the body its chunks carried.
struct Delivered {
    env: Envelope<String>,
    body: Vec<u8>,
}

impl std::ops::Deref for Delivered {
    type Target = Envelope<String>;
    fn deref(&self) -> &Envelope<String> {
        &self.env
    }
}

fn codes(replies: &str) -> Vec<String> {
    replies
        .lines()
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn a_full_pipelined_transaction() {
    let mut h = Harness::new();
    let r = h.send(
        b"EHLO client.example\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<user@example.com>\r\nRCPT TO:<nobody@example.com>\r\nDATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n",
    );
    assert!(r.contains("250-PIPELINING"));
    assert!(r.contains("250-CHUNKING") || r.contains("250 CHUNKING"));
    assert_eq!(
        codes(&r)[1..],
        [
            "250 2.1.0",
            "250 2.1.5",
            "550 5.1.1",
            "354 End",
            "250 2.0.0",
            "221 2.0.0"
        ]
    );
    assert!(r.contains("queued as QID"));
    assert!(h.closed);
    let env = &h.delivered[0];
    assert_eq!(env.body, b"Subject: hi\r\n\r\nbody\r\n");
    assert_eq!(env.recipients.len(), 1);
}

#[test]
fn strict_order_and_syntax() {
    let mut h = Harness::new();
    assert_eq!(codes(&h.send(b"MAIL FROM:<a@b.example>\r\n")), ["503 5.5.1"]);
    assert_eq!(codes(&h.send(b"HELO\r\n")), ["501 5.5.4"]);
    assert_eq!(
        codes(&h.send(b"HELO client.example\r\n")),
        ["250 client.example"[..3].to_string() + " localhost"]
    );
    assert_eq!(codes(&h.send(b"MAIL FROM: test@test.net\r\n")), ["501 5.5.4"]);
    assert_eq!(
        codes(&h.send(b"MAIL FROM:<a@b.example> SIZE=5\r\n")),
        ["555 5.5.4"]
    );
    assert_eq!(codes(&h.send(b"RCPT TO:<user@example.com>\r\n")), ["503 5.5.1"]);
    assert_eq!(codes(&h.send(b"MAIL FROM:<>\r\n")), ["250 2.1.0"]);
    assert_eq!(codes(&h.send(b"MAIL FROM:<>\r\n")), ["503 5.5.1"]);
    assert_eq!(codes(&h.send(b"DATA\r\n")), ["554 5.5.1"]);
    assert_eq!(codes(&h.send(b"VRFY user\r\n")), ["502 5.5.1"]);
    assert_eq!(codes(&h.send(b"EXPN list\r\n")), ["502 5.5.1"]);
    assert_eq!(codes(&h.send(b"WHAT\r\n")), ["500 5.5.2"]);
    assert_eq!(codes(&h.send(b"RCPT TO:<Postmaster>\r\n")), ["250 2.1.5"]);
}

#[test]
fn long_lines_are_refused_and_skipped() {
    let mut h = Harness::new();
    let mut line = b"EHLO ".to_vec();
    line.extend(std::iter::repeat_n(b'a', 5000));
    line.extend_from_slice(b"\r\nNOOP\r\n");
    assert_eq!(codes(&h.send(&line)), ["500 5.5.2", "250 2.0.0"]);
    // Split across reads, too.
    let mut h = Harness::new();
    assert_eq!(h.send(&[b'x'; 3000]), "");
    assert_eq!(h.send(&[b'x'; 3000]), "");
    assert_eq!(codes(&h.send(b"\r\nNOOP\r\n")), ["500 5.5.2", "250 2.0.0"]);
}

#[test]
fn size_limits() {
    let mut h = Harness::with(SessionConfig {
        max_message_size: 100,
        ..Default::default()
    });
    h.send(b"EHLO c.example\r\n");
    assert_eq!(
        codes(&h.send(b"MAIL FROM:<a@b.example> SIZE=101\r\n")),
        ["552 5.3.4"]
    );
    h.send(b"MAIL FROM:<a@b.example> SIZE=50\r\nRCPT TO:<user@example.com>\r\nDATA\r\n");
    let mut body = vec![b'x'; 200];
    body.extend_from_slice(b"\r\n.\r\n");
    assert_eq!(codes(&h.send(&body)), ["552 5.3.4"]);
    assert!(h.delivered.is_empty());
    // The session goes on.
    assert_eq!(codes(&h.send(b"NOOP\r\n")), ["250 2.0.0"]);
}

#[test]
fn recipient_limit() {
    let mut h = Harness::with(SessionConfig {
        max_recipients: 2,
        ..Default::default()
    });
    h.send(b"EHLO c.example\r\nMAIL FROM:<>\r\n");
    let r =
        h.send(b"RCPT TO:<user@example.com>\r\nRCPT TO:<user@example.com>\r\nRCPT TO:<user@example.com>\r\n");
    assert_eq!(codes(&r), ["250 2.1.5", "250 2.1.5", "452 4.5.3"]);
}

#[test]
fn bdat_chunks() {
    let mut h = Harness::new();
    h.send(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<user@example.com>\r\n");
    let r = h.send(b"BDAT 5\r\nab\r\ncBDAT 9 LAST\r\n\r\n.\r\nxy\r\nNOOP\r\n");
    assert_eq!(codes(&r), ["250 2.0.0", "250 2.0.0", "250 2.0.0"]);
    assert_eq!(h.delivered[0].body, b"ab\r\nc\r\n.\r\nxy\r\n");
    assert!(h.delivered[0].chunking);
    // BDAT without a transaction: refused, but its octets are skipped.
    let r = h.send(b"BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n");
    assert_eq!(codes(&r), ["503 5.5.1", "250 2.0.0"]);
    // A size that cannot be parsed ends the session.
    let r = h.send(b"BDAT lots\r\n");
    assert_eq!(codes(&r), ["501 5.5.4"]);
    assert!(h.closed);
}

#[test]
fn bdat_smuggling_is_just_data() {
    let mut h = Harness::new();
    h.send(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<user@example.com>\r\n");
    let payload = b"x\n.\nMAIL FROM:<evil@example.com>\r\n";
    let mut cmd = format!("BDAT {} LAST\r\n", payload.len()).into_bytes();
    cmd.extend_from_slice(payload);
    let r = h.send(&cmd);
    assert_eq!(codes(&r), ["250 2.0.0"]);
    assert_eq!(h.delivered.len(), 1);
    assert_eq!(h.delivered[0].body, b"x\r\n.\r\nMAIL FROM:<evil@example.com>\r\n");
    assert_eq!(h.delivered[0].bare_line_ends, 2);
}

#[test]
fn strict_line_endings_refuse_at_end_of_data() {
    let mut h = Harness::with(SessionConfig {
        strict_line_endings: true,
        ..Default::default()
    });
    h.send(b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<user@example.com>\r\nDATA\r\n");
    let r = h.send(b"a\nb\r\n.\r\n");
    assert_eq!(codes(&r), ["550 5.5.2"]);
    assert!(h.delivered.is_empty());
}

#[test]
fn errors_slow_down_then_end_the_session() {
    let mut h = Harness::new();
    for _ in 0..10 {
        h.send(b"BOGUS\r\n");
    }
    assert_eq!(h.delays, 0);
    h.send(b"BOGUS\r\n");
    assert!(h.delays >= 1);
    for _ in 0..8 {
        h.send(b"BOGUS\r\n");
    }
    assert!(!h.closed);
    let r = h.send(b"BOGUS\r\n");
    assert!(r.contains("421 4.7.0"));
    assert!(h.closed);
}

#[test]
fn starttls_discards_pipelined_plaintext() {
    let mut h = Harness::with(SessionConfig {
        starttls: true,
        ..Default::default()
    });
    let r = h.send(b"EHLO c.example\r\n");
    assert!(r.contains("STARTTLS"));
    let r = h.send(b"STARTTLS\r\nMAIL FROM:<injected@example.com>\r\n");
    assert_eq!(codes(&r), ["220 2.0.0"]);
    assert!(h.tls_requested);
    h.s.tls_established();
    // The injected MAIL was dropped, and a new EHLO is required.
    assert_eq!(codes(&h.send(b"MAIL FROM:<a@b.example>\r\n")), ["503 5.5.1"]);
    let r = h.send(b"EHLO c.example\r\n");
    assert!(!r.contains("STARTTLS"));
}

#[test]
fn utf8_addresses_need_smtputf8() {
    let mut h = Harness::new();
    h.send(b"EHLO c.example\r\n");
    assert_eq!(
        codes(&h.send("MAIL FROM:<jösé@b.example>\r\n".as_bytes())),
        ["553 5.6.7"]
    );
    assert_eq!(
        codes(&h.send("MAIL FROM:<jösé@b.example> SMTPUTF8\r\n".as_bytes())),
        ["250 2.1.0"]
    );
    assert_eq!(
        codes(&h.send("RCPT TO:<üser@example.com>\r\n".as_bytes())),
        ["550 5.1.1"]
    );
}

#[test]
fn invalid_utf8_is_a_syntax_error() {
    let mut h = Harness::new();
    assert_eq!(codes(&h.send(b"EHLO \xff\xfe\r\n")), ["501 5.5.4"]);
}

fn submission() -> Harness {
    let mut h = Harness::with(SessionConfig {
        auth: true,
        submission: true,
        starttls: true,
        ..Default::default()
    });
    h.s.tls_established_for_tests();
    h
}

#[test]
fn auth_plain_and_login() {
    let mut h = submission();
    let r = h.send(b"EHLO c.example\r\n");
    assert!(r.contains("AUTH PLAIN LOGIN"));
    assert_eq!(codes(&h.send(b"MAIL FROM:<u@example.com>\r\n")), ["530 5.7.0"]);
    // \0u@example.com\0wrong
    assert_eq!(
        codes(&h.send(b"AUTH PLAIN AHVAZXhhbXBsZS5jb20Ad3Jvbmc=\r\n")),
        ["535 5.7.8"]
    );
    assert_eq!(h.send(b"AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(h.send(b"dUBleGFtcGxlLmNvbQ==\r\n"), "334 UGFzc3dvcmQ6\r\n");
    assert_eq!(codes(&h.send(b"cHc=\r\n")), ["235 2.7.0"]);
    assert_eq!(
        codes(&h.send(b"AUTH PLAIN AHVAZXhhbXBsZS5jb20AcHc=\r\n")),
        ["503 5.5.1"]
    );
    assert_eq!(
        codes(&h.send(b"MAIL FROM:<other@example.com>\r\n")),
        ["553 5.7.1"]
    );
    assert_eq!(codes(&h.send(b"MAIL FROM:<u@example.com>\r\n")), ["250 2.1.0"]);
    h.send(b"RCPT TO:<user@example.com>\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(h.delivered[0].auth.as_deref(), Some("u@example.com"));
}

#[test]
fn auth_needs_tls_and_can_be_cancelled() {
    let mut h = Harness::with(SessionConfig {
        auth: true,
        starttls: true,
        ..Default::default()
    });
    let r = h.send(b"EHLO c.example\r\n");
    assert!(!r.contains("AUTH"));
    assert_eq!(
        codes(&h.send(b"AUTH PLAIN AHVAZXhhbXBsZS5jb20AcHc=\r\n")),
        ["538 5.7.11"]
    );
    let mut h = submission();
    h.send(b"EHLO c.example\r\n");
    assert_eq!(h.send(b"AUTH PLAIN\r\n"), "334 \r\n");
    assert_eq!(codes(&h.send(b"*\r\n")), ["501 5.0.0"]);
    assert_eq!(codes(&h.send(b"AUTH CRAM-MD5\r\n")), ["504 5.5.4"]);
    assert_eq!(codes(&h.send(b"AUTH LOGIN !!!\r\n")), ["501 5.5.2"]);
}

#[test]
fn a_large_body_leaves_in_chunks() {
    // Issue #8: the session holds at most about one chunk of a message,
    // whatever its size; the chunks make up the body exactly.
    let mut h = Harness::new();
    h.send(b"EHLO c.example\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<user@example.com>\r\nDATA\r\n");
    let mut expected = Vec::new();
    let line = b"..0123456789012345678901234567890123456789012345678901234567890123456789\r\n";
    for _ in 0..20 {
        let mut piece = Vec::new();
        for _ in 0..200 {
            piece.extend_from_slice(line);
            expected.extend_from_slice(&line[1..]);
        }
        h.send(&piece);
        assert!(h.s.buffered() < 2 * crate::data::BODY_CHUNK);
    }
    assert!(h.chunks >= 3, "{} chunks", h.chunks);
    assert_eq!(codes(&h.send(b".\r\n")), ["250 2.0.0"]);
    assert_eq!(h.delivered[0].body, expected);
    assert_eq!(h.delivered[0].size, expected.len() as u64);
}

#[test]
fn bdat_bodies_leave_in_chunks_and_a_refused_one_is_not_delivered() {
    let mut h = Harness::new();
    h.send(b"EHLO c.example\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<user@example.com>\r\n");
    let chunk = vec![b'y'; 100_000];
    let mut cmd = b"BDAT 100000\r\n".to_vec();
    cmd.extend_from_slice(&chunk);
    cmd.extend_from_slice(b"BDAT 2 LAST\r\n\r\n");
    assert_eq!(codes(&h.send(&cmd)), ["250 2.0.0", "250 2.0.0"]);
    assert!(h.chunks >= 2);
    let mut expected = chunk.clone();
    expected.extend_from_slice(b"\r\n");
    assert_eq!(h.delivered[0].body, expected);

    let mut h = Harness::with(SessionConfig {
        max_message_size: 70_000,
        ..SessionConfig::default()
    });
    h.send(b"EHLO c.example\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<user@example.com>\r\n");
    assert_eq!(codes(&h.send(&cmd)), ["552 5.3.4", "503 5.5.1"]);
    assert!(h.delivered.is_empty());
    assert!(!h.s.body_open());
}

#[test]
fn a_partial_command_is_mid_command_a_body_is_not() {
    let mut h = Harness::new();
    assert!(!h.s.mid_command());
    h.send(b"EH");
    assert!(h.s.mid_command());
    h.send(b"LO c.example\r\n");
    assert!(!h.s.mid_command());
    // An overlong line is skipped without being kept: still one command.
    h.send(&[b'x'; 3000]);
    assert!(h.s.mid_command() && h.s.buffered() == 0);
    assert_eq!(codes(&h.send(b"\r\n")), ["500 5.5.2"]);
    assert!(!h.s.mid_command());
    h.send(b"MAIL FROM:<a@remote.example>\r\nRCPT TO:<user@example.com>\r\nDATA\r\nSubj");
    assert!(h.s.reading_body() && !h.s.mid_command());
    h.send(b"ect: x\r\n\r\n.\r\nNO");
    assert!(!h.s.reading_body() && h.s.mid_command());
}
