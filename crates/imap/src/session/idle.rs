//! IDLE (RFC 2177, RFC 9051 6.3.13).

use super::Session;

impl Session {
    /// While idling: announce what changed in the selected mailbox.
    pub fn idle_check(&mut self) {
        if !self.idling {
            return;
        }
        let mut out = Vec::new();
        self.refresh(true, &mut out);
        self.send(out);
        self.close_if_bye();
    }
}
