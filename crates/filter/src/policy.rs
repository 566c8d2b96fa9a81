//! From a score to an action, per recipient.

use postroom_config::FilterPolicyConfig;
use serde::Serialize;

use crate::chain::Report;
use crate::check::Forced;

/// What happens to the message for one recipient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Deliver,
    /// `X-Spam-*` headers, into the recipient's `\Junk` folder.
    Junk,
    /// Held for an admin's release.
    Quarantine,
    /// Refused at SMTP time, `550 5.7.1`.
    Reject,
    /// Accepted and dropped.
    Discard,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deliver => "deliver",
            Action::Junk => "junk",
            Action::Quarantine => "quarantine",
            Action::Reject => "reject",
            Action::Discard => "discard",
        }
    }
}

/// A domain's thresholds (MailScanner's defaults: junk at 6, quarantine at
/// 10).
#[derive(Clone, Debug, PartialEq)]
pub struct Thresholds {
    pub junk_at: f64,
    pub quarantine_at: f64,
    pub high_at: f64,
    /// Above `high_at`: discard instead of reject.
    pub high_discards: bool,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds::from(&FilterPolicyConfig::default())
    }
}

impl From<&FilterPolicyConfig> for Thresholds {
    fn from(c: &FilterPolicyConfig) -> Self {
        Thresholds {
            junk_at: c.junk_at,
            quarantine_at: c.quarantine_at,
            high_at: c.high_at,
            high_discards: c.high_action == "discard",
        }
    }
}

impl Thresholds {
    pub fn for_score(&self, score: f64) -> Action {
        if score >= self.high_at {
            if self.high_discards {
                Action::Discard
            } else {
                Action::Reject
            }
        } else if score >= self.quarantine_at {
            Action::Quarantine
        } else if score >= self.junk_at {
            Action::Junk
        } else {
            Action::Deliver
        }
    }

    /// The action for one recipient. A forced rejection rejects whatever
    /// the score; a whitelisted sender's score leaves out the checks a
    /// whitelist skips (never the virus scan, the phishing blocklist or the
    /// attachment rules). A forced temporary failure is the chain's answer
    /// to the whole transaction and is not an action.
    pub fn decide(&self, report: &Report, whitelisted: bool) -> Action {
        if let Some(Forced::Reject { .. }) = report.forced {
            return Action::Reject;
        }
        self.for_score(report.score(whitelisted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailscanner_defaults() {
        let t = Thresholds::default();
        assert_eq!(t.for_score(0.0), Action::Deliver);
        assert_eq!(t.for_score(5.9), Action::Deliver);
        assert_eq!(t.for_score(6.0), Action::Junk);
        assert_eq!(t.for_score(10.0), Action::Quarantine);
        assert_eq!(t.for_score(20.0), Action::Reject);
        let discarding = Thresholds {
            high_discards: true,
            ..t
        };
        assert_eq!(discarding.for_score(25.0), Action::Discard);
    }
}
