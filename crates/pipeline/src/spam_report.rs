//! The spam report address (`[filter.classifier] report_address`): an
//! authenticated user forwards spam there as an attachment
//! (message/rfc822, "forward as attachment" keeps its full headers), and
//! each attached message trains the classifier as spam. The forward
//! itself is not delivered anywhere. Kept apart from the MX pipeline's
//! delivery path: [`MxPipeline::accept`](crate::MxPipeline) calls
//! [`take_report`] once, before the filter, and stops there when it
//! answers.

use async_trait::async_trait;
use postroom_core::Address;
use postroom_smtp::Reply;

use crate::policy::AcceptedRcpt;

/// Messages taken from one report: a forward of a whole Junk folder is
/// still one batch.
pub const MAX_ATTACHED: usize = 100;

/// Where reports go and what learns from them.
#[async_trait]
pub trait SpamReports: Send + Sync {
    /// The report address, canonical (`Address::to_string`).
    fn address(&self) -> &str;
    /// Trains on these messages as spam; the number trained, or why not
    /// (storage failed).
    async fn train(&self, messages: Vec<Vec<u8>>) -> Result<usize, String>;
}

/// Whether `addr` is the report address (accepted at RCPT from a
/// logged-in user, though no mailbox has it).
pub fn is_report_address(reports: Option<&dyn SpamReports>, addr: &Address) -> bool {
    reports.is_some_and(|r| addr.to_string().eq_ignore_ascii_case(r.address()))
}

/// The raw bytes of each message/rfc822 part of `raw`, at most
/// [`MAX_ATTACHED`].
pub fn attached_messages(raw: &[u8]) -> Vec<Vec<u8>> {
    let Some(m) = mail_parser::MessageParser::default().parse(raw) else {
        return Vec::new();
    };
    m.parts
        .iter()
        .filter_map(|p| match &p.body {
            mail_parser::PartType::Message(inner) => Some(inner.raw_message().to_vec()),
            _ => None,
        })
        .filter(|b| !b.is_empty())
        .take(MAX_ATTACHED)
        .collect()
}

/// When every recipient is the report address and the sender logged in:
/// the answer to the transaction (`250` once trained; `550` without an
/// attached message; `451` when training failed). `None`: not a report,
/// deliver as usual.
pub async fn take_report(
    reports: &dyn SpamReports,
    auth: Option<&str>,
    rcpts: &[AcceptedRcpt],
    body: &[u8],
) -> Option<Result<String, Reply>> {
    let user = auth?;
    let is_report = |r: &AcceptedRcpt| {
        Address::parse(&r.rcpt, true).is_ok_and(|a| a.to_string().eq_ignore_ascii_case(reports.address()))
    };
    if rcpts.is_empty() || !rcpts.iter().all(is_report) {
        return None;
    }
    let messages = attached_messages(body);
    if messages.is_empty() {
        return Some(Err(Reply::new(
            550,
            "5.6.0",
            "No message attached: forward the spam as an attachment (message/rfc822)",
        )));
    }
    let n = messages.len();
    Some(match reports.train(messages).await {
        Ok(trained) => {
            tracing::info!(user, messages = trained, "spam report: classifier trained");
            Ok(format!("{trained} of {n} attached messages learnt as spam"))
        }
        Err(e) => {
            tracing::warn!(user, error = %e, "spam report: classifier not trained");
            Err(Reply::new(
                451,
                "4.3.0",
                "Spam report not taken for now: try again later",
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Recorder(Mutex<Vec<Vec<u8>>>, bool);

    #[async_trait]
    impl SpamReports for Recorder {
        fn address(&self) -> &str {
            "reportspam@provider.example"
        }
        async fn train(&self, messages: Vec<Vec<u8>>) -> Result<usize, String> {
            if !self.1 {
                return Err("injected".into());
            }
            let n = messages.len();
            self.0.lock().unwrap().extend(messages);
            Ok(n)
        }
    }

    fn rcpt(a: &str) -> AcceptedRcpt {
        AcceptedRcpt {
            rcpt: a.into(),
            routes: Vec::new(),
            forwarded: false,
        }
    }

    const FORWARD: &[u8] = b"From: u@example.com\r\nTo: reportspam@provider.example\r\nSubject: Fwd: spam\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
see attached\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: winner@lottery.example\r\n\
Subject: You WON\r\n\r\nClaim your prize\r\n--b--\r\n";

    #[tokio::test]
    async fn an_attached_message_is_trained_and_the_forward_not_delivered() {
        let r = Recorder(Mutex::new(Vec::new()), true);
        let rcpts = [rcpt("ReportSpam@Provider.example")];
        let answer = take_report(&r, Some("u@example.com"), &rcpts, FORWARD).await;
        assert!(matches!(answer, Some(Ok(_))), "{answer:?}");
        let got = r.0.lock().unwrap();
        assert_eq!(got.len(), 1);
        assert!(
            got[0].starts_with(b"From: winner@lottery.example"),
            "{:?}",
            String::from_utf8_lossy(&got[0])
        );
    }

    #[tokio::test]
    async fn only_logged_in_users_and_only_the_report_address() {
        let r = Recorder(Mutex::new(Vec::new()), true);
        assert!(
            take_report(&r, None, &[rcpt("reportspam@provider.example")], FORWARD)
                .await
                .is_none()
        );
        let mixed = [rcpt("reportspam@provider.example"), rcpt("friend@example.org")];
        assert!(take_report(&r, Some("u@example.com"), &mixed, FORWARD)
            .await
            .is_none());
        let plain = b"From: u@example.com\r\nSubject: spam\r\n\r\nno attachment\r\n";
        let answer = take_report(
            &r,
            Some("u@example.com"),
            &[rcpt("reportspam@provider.example")],
            plain,
        )
        .await;
        assert!(
            matches!(answer, Some(Err(ref reply)) if reply.code == 550),
            "{answer:?}"
        );
        assert!(r.0.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_storage_failure_is_a_temporary_failure() {
        let r = Recorder(Mutex::new(Vec::new()), false);
        let answer = take_report(
            &r,
            Some("u@example.com"),
            &[rcpt("reportspam@provider.example")],
            FORWARD,
        )
        .await;
        assert!(
            matches!(answer, Some(Err(ref reply)) if reply.code == 451),
            "{answer:?}"
        );
    }

    #[test]
    fn any_bytes_are_no_panic() {
        for raw in [
            &b""[..],
            b"\r\n\r\n",
            b"Content-Type: message/rfc822\r\n\r\n",
            b"\xff\xfe",
        ] {
            let _ = attached_messages(raw);
        }
    }
}
