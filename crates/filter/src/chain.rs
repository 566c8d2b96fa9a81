//! The chain: runs every check by the deadline, applies the configured
//! score overrides, and keeps what each check found.

use std::collections::BTreeMap;

use futures_util::future::join_all;
use serde::Serialize;

use crate::check::{Check, Findings, Forced, Rewriter, Rewritten, Scan};
use crate::symbol::Symbol;

/// What one check found.
#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub check: &'static str,
    pub symbols: Vec<Symbol>,
    /// Whether a whitelisted sender skips these symbols' scores.
    #[serde(skip)]
    pub whitelist_skips: bool,
}

/// Everything the chain found in one message.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub checks: Vec<CheckReport>,
    pub forced: Option<Forced>,
    /// Header fields the checks asked to add.
    #[serde(skip)]
    pub headers: Vec<(String, String)>,
}

impl Report {
    /// The sum of the symbols' scores; a whitelisted sender's leaves out
    /// the checks a whitelist skips.
    pub fn score(&self, whitelisted: bool) -> f64 {
        self.checks
            .iter()
            .filter(|c| !(whitelisted && c.whitelist_skips))
            .flat_map(|c| c.symbols.iter())
            .map(|s| s.score)
            .sum()
    }

    pub fn symbols(&self) -> impl Iterator<Item = &Symbol> {
        self.checks.iter().flat_map(|c| c.symbols.iter())
    }
}

pub struct Chain {
    checks: Vec<Box<dyn Check>>,
    /// `[filter.scores]`: a symbol's score by name, replacing the built-in
    /// one.
    overrides: BTreeMap<String, f64>,
    rewriter: Option<Box<dyn Rewriter>>,
}

impl Chain {
    pub fn new(checks: Vec<Box<dyn Check>>, overrides: BTreeMap<String, f64>) -> Chain {
        Chain {
            checks,
            overrides,
            rewriter: None,
        }
    }

    /// One more check at the end of the chain (the server's test hook).
    pub fn with_check(mut self, check: Box<dyn Check>) -> Chain {
        self.checks.push(check);
        self
    }

    /// The stage that changes the message after scoring (HTML disarming).
    pub fn with_rewriter(mut self, rewriter: Box<dyn Rewriter>) -> Chain {
        self.rewriter = Some(rewriter);
        self
    }

    /// The message as the rewriter changes it; `None` when there is no
    /// rewriter or nothing to change.
    pub fn rewrite(&self, scan: &Scan<'_>) -> Option<Rewritten> {
        self.rewriter.as_ref()?.rewrite(scan)
    }

    /// Runs every check at once (they wait on DNS and clamd, not the CPU).
    /// A check still running at the deadline is dropped: it scores nothing
    /// and is named in the report, and a fail-closed one tempfails the
    /// message.
    pub async fn run(&self, scan: &Scan<'_>) -> Report {
        let deadline = tokio::time::Instant::from_std(scan.envelope.deadline);
        let runs = self.checks.iter().map(|check| async move {
            let mut out = Findings::default();
            let finished = tokio::time::timeout_at(deadline, check.check(scan, &mut out))
                .await
                .is_ok();
            if !finished {
                let name = format!("{}_TIMEOUT", check.name().to_uppercase());
                out.add(name.clone(), 0.0, "did not finish before the client's deadline");
                if check.fail_closed() {
                    out.force(Forced::TempFail {
                        symbol: name,
                        reason: format!("{} did not answer in time", check.name()),
                    });
                }
            }
            (check, out)
        });
        let mut report = Report::default();
        for (check, mut out) in join_all(runs).await {
            for symbol in &mut out.symbols {
                if let Some(score) = self.overrides.get(symbol.name.as_ref()) {
                    symbol.score = *score;
                }
            }
            if let Some(forced) = out.forced {
                let mut merged = Findings {
                    forced: report.forced.take(),
                    ..Default::default()
                };
                merged.force(forced);
                report.forced = merged.forced;
            }
            report.headers.extend(out.headers);
            report.checks.push(CheckReport {
                check: check.name(),
                symbols: out.symbols,
                whitelist_skips: check.whitelist_skips(),
            });
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use async_trait::async_trait;

    use super::*;
    use crate::check::Envelope;

    struct Fixed(&'static str, f64, bool);

    #[async_trait]
    impl Check for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        async fn check(&self, _: &Scan<'_>, out: &mut Findings) {
            out.add("FIXED", self.1, "always");
        }
        fn whitelist_skips(&self) -> bool {
            self.2
        }
    }

    struct Slow;

    #[async_trait]
    impl Check for Slow {
        fn name(&self) -> &'static str {
            "clamav"
        }
        async fn check(&self, _: &Scan<'_>, _: &mut Findings) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        fn fail_closed(&self) -> bool {
            true
        }
    }

    fn envelope(deadline: Instant) -> Envelope {
        Envelope::unauthenticated(
            "192.0.2.1".parse().unwrap(),
            "mail.example.com",
            Some("a@example.com"),
            deadline,
        )
    }

    #[tokio::test]
    async fn scores_sum_overrides_apply_and_whitelists_skip() {
        let raw = b"Subject: hi\r\n\r\nbody\r\n";
        let message = mail_parser::MessageParser::default().parse(&raw[..]).unwrap();
        let env = envelope(Instant::now() + Duration::from_secs(5));
        let scan = Scan {
            envelope: &env,
            raw,
            message: &message,
        };
        let chain = Chain::new(
            vec![Box::new(Fixed("a", 2.0, true)), Box::new(Fixed("b", 3.0, false))],
            BTreeMap::new(),
        );
        let report = chain.run(&scan).await;
        assert_eq!(report.score(false), 5.0);
        assert_eq!(report.score(true), 3.0);
        let chain = Chain::new(
            vec![Box::new(Fixed("a", 2.0, true))],
            BTreeMap::from([("FIXED".to_string(), 7.5)]),
        );
        assert_eq!(chain.run(&scan).await.score(false), 7.5);
    }

    #[tokio::test]
    async fn a_fail_closed_check_past_the_deadline_tempfails() {
        let raw = b"Subject: hi\r\n\r\nbody\r\n";
        let message = mail_parser::MessageParser::default().parse(&raw[..]).unwrap();
        let env = envelope(Instant::now() + Duration::from_millis(50));
        let scan = Scan {
            envelope: &env,
            raw,
            message: &message,
        };
        let chain = Chain::new(vec![Box::new(Slow)], BTreeMap::new());
        let report = chain.run(&scan).await;
        assert!(matches!(report.forced, Some(Forced::TempFail { .. })));
        assert_eq!(report.symbols().next().unwrap().name, "CLAMAV_TIMEOUT");
    }
}
