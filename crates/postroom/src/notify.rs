//! Tells systemd where the server is in its life (`Type=notify` in the
//! packaged unit): ready once every listener is bound, reloading while
//! SIGHUP is handled, stopping at shutdown. `systemctl start` returns only
//! when the server answers, and `systemctl reload` only when the reload is
//! done. Not under systemd (no `NOTIFY_SOCKET`), each call does nothing.

use sd_notify::NotifyState;

/// Every listener is bound and the queue runs.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// SIGHUP is being handled; `ready` follows when it is done. systemd 253
/// and later want the monotonic time with it (sd_notify(3), RELOADING=1).
pub fn reloading() {
    let mut states = vec![NotifyState::Reloading];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send(&states);
}

/// Shutdown has begun: no new connections, transactions finishing.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("finishing transactions in flight"),
    ]);
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}
