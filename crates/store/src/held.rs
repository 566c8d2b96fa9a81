//! A held delivery: kept in the queue (`outbound.state = 'held'`) for the
//! administrator, with what it was for and why, so that `queue release`
//! can finish it the way it was meant to go: a local copy into its
//! mailbox (through the delivery commit, same body), a remote recipient
//! resolved again and queued or delivered.

use crate::ids::AccountId;
use crate::roles::FolderTarget;

/// Why a delivery is held. Kept as [`HoldReason::code`] in
/// `outbound.hold_reason`; the words for people stay in `outbound.reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HoldReason {
    /// An alias or list target that is not a valid address, or names a
    /// hosted address that does not exist.
    UnknownMember,
    /// postmaster@/abuse@ of a domain with no admin, and no
    /// `server.postmaster`.
    NoPostmaster,
    /// The sending user went far past the hourly caps (a stolen password?).
    SenderOverLimits,
    /// The content filter quarantined it.
    Quarantine,
    /// A bounce to a hosted address that nothing delivers to.
    UndeliverableBounce,
    /// `postroom queue hold`.
    Admin,
    /// Held before reasons were typed (schema version 7 and older).
    Other,
}

impl HoldReason {
    const ALL: [HoldReason; 7] = [
        HoldReason::UnknownMember,
        HoldReason::NoPostmaster,
        HoldReason::SenderOverLimits,
        HoldReason::Quarantine,
        HoldReason::UndeliverableBounce,
        HoldReason::Admin,
        HoldReason::Other,
    ];

    /// The stored form, also the `reason` field of the log line.
    pub const fn code(self) -> &'static str {
        match self {
            HoldReason::UnknownMember => "unknown-member",
            HoldReason::NoPostmaster => "no-postmaster",
            HoldReason::SenderOverLimits => "sender-over-limits",
            HoldReason::Quarantine => "quarantine",
            HoldReason::UndeliverableBounce => "undeliverable-bounce",
            HoldReason::Admin => "admin",
            HoldReason::Other => "other",
        }
    }

    /// The reason a stored code names; an unknown one is `Other`.
    pub fn from_code(s: &str) -> HoldReason {
        Self::ALL
            .into_iter()
            .find(|r| r.code() == s)
            .unwrap_or(HoldReason::Other)
    }
}

impl std::fmt::Display for HoldReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// A held local copy: the mailbox and folder role it was for. A held
/// remote recipient has none (its `recipient` says where it goes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldLocal {
    pub account_id: AccountId,
    pub folder: FolderTarget,
}

/// Why an [`crate::OutboundItem`] is held, and for whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    pub reason: HoldReason,
    /// In words, for `queue list` (the old free-text reason).
    pub detail: String,
    /// `Some`: a copy for this mailbox, released into it.
    pub local: Option<HeldLocal>,
}

impl Hold {
    /// A held remote recipient (or one to resolve again on release).
    pub fn remote(reason: HoldReason, detail: impl Into<String>) -> Hold {
        Hold {
            reason,
            detail: detail.into(),
            local: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for r in HoldReason::ALL {
            assert_eq!(HoldReason::from_code(r.code()), r);
        }
        assert_eq!(HoldReason::from_code(""), HoldReason::Other);
    }
}
