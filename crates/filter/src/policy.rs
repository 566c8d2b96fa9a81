//! From a score to an action, per recipient.

use postroom_config::FilterPolicyConfig;
use serde::{Deserialize, Serialize};

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

/// A domain's own filter settings, kept with the domain (the store's
/// `filter_domains`, as JSON): each unset field is the server's
/// `[filter.policy]` / `[filter.html]` value.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DomainPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub junk_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine_at: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_at: Option<f64>,
    /// `reject` or `discard`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high_action: Option<String>,
    /// Whether disarmed mail gets `{Cleaned}` in its Subject (the seed
    /// lets a domain turn it off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleaned: Option<bool>,
}

impl DomainPolicy {
    /// The thresholds that apply: the domain's, else the server's.
    pub fn thresholds(&self, defaults: &Thresholds) -> Thresholds {
        Thresholds {
            junk_at: self.junk_at.unwrap_or(defaults.junk_at),
            quarantine_at: self.quarantine_at.unwrap_or(defaults.quarantine_at),
            high_at: self.high_at.unwrap_or(defaults.high_at),
            high_discards: match self.high_action.as_deref() {
                Some(a) => a == "discard",
                None => defaults.high_discards,
            },
        }
    }

    /// Refused: an unknown `high_action`, a threshold that is not a
    /// number, or thresholds out of order once merged with the server's.
    pub fn validate(&self, defaults: &Thresholds) -> Result<(), String> {
        if let Some(a) = &self.high_action {
            if a != "reject" && a != "discard" {
                return Err(format!("high_action `{a}`: must be \"reject\" or \"discard\""));
            }
        }
        let t = self.thresholds(defaults);
        let finite = [t.junk_at, t.quarantine_at, t.high_at]
            .iter()
            .all(|x| x.is_finite());
        if !finite || t.junk_at > t.quarantine_at || t.quarantine_at > t.high_at {
            return Err(format!(
                "thresholds must be numbers with junk_at <= quarantine_at <= high_at (here {} / {} / {})",
                t.junk_at, t.quarantine_at, t.high_at
            ));
        }
        Ok(())
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

    #[test]
    fn a_domain_policy_overrides_field_by_field() {
        let d = Thresholds::default();
        let p: DomainPolicy = serde_json::from_str(r#"{"junk_at":3.5,"high_action":"discard"}"#).unwrap();
        let t = p.thresholds(&d);
        assert_eq!(
            (t.junk_at, t.quarantine_at, t.high_at, t.high_discards),
            (3.5, 10.0, 20.0, true)
        );
        assert!(p.validate(&d).is_ok());
        let bad = DomainPolicy {
            junk_at: Some(15.0),
            ..Default::default()
        };
        assert!(bad.validate(&d).is_err());
        let bad = DomainPolicy {
            high_action: Some("bounce".into()),
            ..Default::default()
        };
        assert!(bad.validate(&d).is_err());
        assert_eq!(serde_json::to_string(&DomainPolicy::default()).unwrap(), "{}");
    }
}
