use super::*;

struct Harness {
    s: Session,
    messages: Vec<(MaildropEntry, Vec<u8>)>,
    committed: Vec<i64>,
    closed: bool,
}

impl Harness {
    fn new(login_allowed: bool) -> Self {
        let messages = vec![
            (
                MaildropEntry {
                    uid: 1,
                    size: 30,
                    uidl: "A1".into(),
                },
                b"Subject: one\r\n\r\n.dot\r\nline2\r\n".to_vec(),
            ),
            (
                MaildropEntry {
                    uid: 7,
                    size: 20,
                    uidl: "A7".into(),
                },
                b"Subject: two\r\n\r\nbody".to_vec(),
            ),
        ];
        Harness {
            s: Session::new(
                SessionConfig {
                    login_allowed,
                    starttls: true,
                    ..Default::default()
                },
                false,
            ),
            messages,
            committed: Vec::new(),
            closed: false,
        }
    }

    fn send(&mut self, input: &str) -> String {
        self.s.receive(input.as_bytes());
        let mut out = Vec::new();
        while let Some(a) = self.s.poll() {
            match a {
                Action::Send(b) => out.extend(b),
                Action::Authenticate { user, password } => {
                    let ok = user == "u@x.example" && password.expose() == "pw";
                    self.s
                        .login_result(if ok { Ok(()) } else { Err(LoginFailure::Failed) });
                }
                Action::LoadMaildrop => self
                    .s
                    .maildrop_loaded(Some(self.messages.iter().map(|m| m.0.clone()).collect())),
                Action::Retrieve { uid, .. } => {
                    let m = self.messages.iter().find(|m| m.0.uid == uid).map(|m| m.1.clone());
                    self.s.message(m.as_deref());
                }
                Action::Commit { deleted } => {
                    self.committed = deleted;
                    self.s.committed(true);
                }
                Action::StartTls => {}
                Action::Delay(_) => {}
                Action::Close => self.closed = true,
            }
        }
        String::from_utf8(out).unwrap()
    }
}

#[test]
fn a_session_with_leave_on_server() {
    let mut h = Harness::new(true);
    assert!(h.send("USER u@x.example\r\n").starts_with("+OK"));
    assert!(h
        .send("PASS pw\r\n")
        .starts_with("+OK Logged in, 2 messages (50 octets)"));
    assert_eq!(h.send("STAT\r\n"), "+OK 2 50\r\n");
    assert_eq!(h.send("UIDL\r\n"), "+OK\r\n1 A1\r\n2 A7\r\n.\r\n");
    assert_eq!(h.send("LIST 2\r\n"), "+OK 2 20\r\n");
    assert_eq!(
        h.send("RETR 1\r\n"),
        "+OK message follows\r\nSubject: one\r\n\r\n..dot\r\nline2\r\n.\r\n"
    );
    assert_eq!(
        h.send("TOP 1 0\r\n"),
        "+OK message follows\r\nSubject: one\r\n\r\n.\r\n"
    );
    assert_eq!(
        h.send("RETR 2\r\n"),
        "+OK message follows\r\nSubject: two\r\n\r\nbody\r\n.\r\n"
    );
    assert!(h.send("QUIT\r\n").starts_with("+OK Bye"));
    assert!(h.committed.is_empty());
    assert!(h.closed);
}

#[test]
fn dele_takes_effect_only_at_quit() {
    let mut h = Harness::new(true);
    h.send("USER u@x.example\r\nPASS pw\r\n");
    assert!(h.send("DELE 1\r\n").starts_with("+OK"));
    assert!(h.send("RETR 1\r\n").starts_with("-ERR"));
    assert_eq!(h.send("STAT\r\n"), "+OK 1 20\r\n");
    h.send("RSET\r\n");
    assert_eq!(h.send("STAT\r\n"), "+OK 2 50\r\n");
    h.send("DELE 2\r\n");
    h.send("QUIT\r\n");
    assert_eq!(h.committed, [7]);
}

#[test]
fn plaintext_login_is_refused_without_tls() {
    let mut h = Harness::new(false);
    let capa = h.send("CAPA\r\n");
    assert!(capa.contains("STLS") && !capa.contains("USER") && !capa.contains("SASL"));
    assert!(h.send("USER u@x.example\r\n").starts_with("-ERR [AUTH]"));
    assert!(h
        .send("AUTH PLAIN AHVAeC5leGFtcGxlAHB3\r\n")
        .starts_with("-ERR [AUTH]"));
    assert!(h.send("STAT\r\n").starts_with("-ERR"));
}

#[test]
fn auth_plain_with_and_without_initial_response() {
    let mut h = Harness::new(true);
    // \0u@x.example\0pw
    assert!(h
        .send("AUTH PLAIN AHVAeC5leGFtcGxlAHB3\r\n")
        .starts_with("+OK Logged in"));
    let mut h = Harness::new(true);
    assert_eq!(h.send("AUTH PLAIN\r\n"), "+ \r\n");
    assert!(h.send("AHVAeC5leGFtcGxlAHB3\r\n").starts_with("+OK Logged in"));
    let mut h = Harness::new(true);
    assert!(h
        .send("AUTH PLAIN AHVAeC5leGFtcGxlAHdyb25n\r\n")
        .starts_with("-ERR [AUTH]"));
    assert!(h.send("AUTH PLAIN !!!\r\n").starts_with("-ERR"));
}

#[test]
fn stls_discards_pipelined_commands() {
    let mut h = Harness::new(false);
    let r = h.send("STLS\r\nUSER injected\r\n");
    assert_eq!(r, "+OK Begin TLS negotiation\r\n");
    h.s.tls_established();
    assert!(h.send("PASS pw\r\n").starts_with("-ERR Send USER first"));
    assert!(h.send("CAPA\r\n").contains("USER"));
}

#[test]
fn garbage_never_panics_and_errors_close() {
    let mut h = Harness::new(true);
    for _ in 0..25 {
        h.send("\u{0}\u{ff}BOGUS é\r\n");
    }
    assert!(h.closed);
    let mut h = Harness::new(true);
    h.send(&"x".repeat(5000));
    assert!(h.send("\r\nNOOP\r\n").starts_with("-ERR Line too long"));
}
