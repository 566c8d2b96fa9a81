//! IDLE (RFC 2177, RFC 9051 6.3.13).

use super::{Action, Session, Then};
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
        if !self.ask_refresh(true, Then::IdleDone { tag: tag.clone() }) {
            self.tagged(&tag, "OK", "IDLE terminated");
        }
    }

    /// While idling: announce what changed in the selected mailbox (a
    /// refresh is asked of the store; nothing when one is open already).
    pub fn idle_check(&mut self) {
        if !self.idling || self.waiting {
            return;
        }
        self.ask_refresh(true, Then::IdleCheck);
    }
}
