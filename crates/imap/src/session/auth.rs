//! LOGIN and AUTHENTICATE (SASL PLAIN), ENABLE.

use imap_codec::imap_types::core::Vec1;
use imap_codec::imap_types::extensions::enable::CapabilityEnable;
use postroom_core::Secret;

use std::fmt::Write as _;

use super::{Action, Session, State};
use crate::format::Lossless;

impl Session {
    pub(super) fn begin_login(&mut self, tag: &str, user: String, password: String) {
        self.pending_tag = Some(tag.to_string());
        self.waiting = true;
        self.out.push_back(Action::Authenticate {
            user,
            password: Secret::new(password),
        });
    }

    /// RFC 4616: authzid NUL authcid NUL password.
    pub(super) fn sasl_plain(&mut self, tag: &str, data: &[u8]) {
        let parts: Vec<&[u8]> = data.split(|b| *b == 0).collect();
        let [authz, user, pass] = parts.as_slice() else {
            self.tagged(tag, "NO", "[AUTHENTICATIONFAILED] Invalid PLAIN response");
            return;
        };
        let (Ok(authz), Ok(user), Ok(pass)) = (
            std::str::from_utf8(authz),
            std::str::from_utf8(user),
            std::str::from_utf8(pass),
        ) else {
            self.tagged(tag, "NO", "[AUTHENTICATIONFAILED] Invalid PLAIN response");
            return;
        };
        if !authz.is_empty() && !authz.eq_ignore_ascii_case(user) {
            self.tagged(tag, "NO", "[AUTHORIZATIONFAILED] Cannot act as another user");
            return;
        }
        self.begin_login(tag, user.to_string(), pass.to_string());
    }

    pub(super) fn enable(&mut self, tag: &str, caps: Vec1<CapabilityEnable<'static>>) {
        let mut enabled = Vec::new();
        for c in caps.as_ref() {
            match c {
                CapabilityEnable::CondStore if !self.condstore => {
                    self.condstore = true;
                    enabled.push("CONDSTORE");
                }
                CapabilityEnable::Utf8(_) if !self.utf8 => {
                    self.utf8 = true;
                    enabled.push("UTF8=ACCEPT");
                }
                CapabilityEnable::Other(_) => {
                    let name = c.to_string().to_ascii_uppercase();
                    if name == "QRESYNC" && !self.qresync {
                        // RFC 7162 3.2.3: QRESYNC implies CONDSTORE.
                        self.qresync = true;
                        self.condstore = true;
                        enabled.push("QRESYNC");
                    } else if name == "IMAP4REV2" && !self.rev2 {
                        self.rev2 = true;
                        enabled.push("IMAP4rev2");
                    }
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        if let State::Selected(sel) = &mut self.state {
            // RFC 7162 3.1: CONDSTORE enabled with a mailbox selected
            // announces where the mailbox stands.
            if self.condstore && !sel.condstore {
                let _ = write!(
                    Lossless(&mut out),
                    "* OK [HIGHESTMODSEQ {}] Highest\r\n",
                    sel.highestmodseq
                );
            }
            sel.condstore |= self.condstore;
            sel.qresync |= self.qresync;
            sel.show_recent = !self.rev2;
        }
        let list = if enabled.is_empty() {
            String::new()
        } else {
            format!(" {}", enabled.join(" "))
        };
        self.send(format!("* ENABLED{list}\r\n").into_bytes());
        self.send(out);
        self.tagged(tag, "OK", "ENABLE completed");
    }
}
