//! IDLE (RFC 2177, RFC 9051 6.3.13).

use super::{Action, Session};
use crate::framing::Expect;

impl Session {
    /// IDLE: the go-ahead, then the caller waits on the folder's signal
    /// and calls [`Session::idle_check`] until DONE arrives.
    pub(super) fn idle(&mut self, tag: String) {
        self.pending_tag = Some(tag);
        self.idling = true;
        self.framer.expect(Expect::IdleDone);
        self.send(b"+ idling\r\n".to_vec());
        self.out.push_back(Action::Idle);
    }

    /// DONE: what changed meanwhile, then IDLE's tagged OK.
    pub(super) fn idle_done(&mut self) {
        self.framer.expect(Expect::Command);
        self.idling = false;
        let tag = self.pending_tag.take().unwrap_or_else(|| "*".into());
        let mut out = Vec::new();
        match self.refresh(true, &mut out) {
            Ok(()) => {
                self.send(out);
                self.tagged(&tag, "OK", "IDLE terminated");
            }
            Err(e) => self.store_failed(&tag, "IDLE", &e),
        }
    }

    /// While idling: announce what changed in the selected mailbox.
    pub fn idle_check(&mut self) {
        if !self.idling {
            return;
        }
        let mut out = Vec::new();
        if let Err(e) = self.refresh(true, &mut out) {
            // Nothing to answer while idling, and nothing was folded in:
            // the client's view stays the session's, and the next signal
            // (or the glue's tick) tries again. Logged, not hidden.
            self.log_store_error("IDLE", &e);
            return;
        }
        self.send(out);
        self.close_if_bye();
    }
}
