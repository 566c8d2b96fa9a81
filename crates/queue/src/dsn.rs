//! Delivery status notifications (RFC 3464, multipart/report per RFC 6522):
//! the bounce a sender gets when a recipient failed for good.

use std::time::SystemTime;

pub struct Failure<'a> {
    pub recipient: &'a str,
    /// The remote server's reply, or our own reason.
    pub diagnostic: &'a str,
    /// RFC 3463 status, e.g. `5.1.1`.
    pub status: &'a str,
    /// The host that said it, if a remote server did.
    pub remote_mta: Option<&'a str>,
}

/// The status code inside a reply text (`550 5.1.1 ...` → `5.1.1`), or a
/// generic one for its class.
pub fn status_of(code: u16, text: &str) -> String {
    let first = text.split_whitespace().next().unwrap_or("");
    let looks = first.split('.').count() == 3
        && first
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if looks {
        first.to_string()
    } else if code >= 500 {
        "5.0.0".into()
    } else {
        "4.0.0".into()
    }
}

/// The bounce for `original` (its header section is attached).
pub fn bounce(
    hostname: &str,
    queue_id: &str,
    sender: &str,
    original: &[u8],
    failures: &[Failure<'_>],
) -> Vec<u8> {
    report(hostname, queue_id, sender, original, failures, None)
}

/// The delay warning (RFC 3464 2.3.3 `Action: delayed`): the message has
/// not been delivered to these recipients yet and is still being tried
/// until `retry_until`. `failures` carry the last temporary reply (4.x.x).
pub fn delayed(
    hostname: &str,
    queue_id: &str,
    sender: &str,
    original: &[u8],
    waiting: &[Failure<'_>],
    retry_until: SystemTime,
) -> Vec<u8> {
    report(hostname, queue_id, sender, original, waiting, Some(retry_until))
}

fn report(
    hostname: &str,
    queue_id: &str,
    sender: &str,
    original: &[u8],
    failures: &[Failure<'_>],
    delayed_until: Option<SystemTime>,
) -> Vec<u8> {
    let now = SystemTime::now();
    let (kind, subject, action) = match delayed_until {
        None => ("bounce", "Undelivered Mail Returned to Sender", "failed"),
        Some(_) => ("delay", "Delayed Mail (still being retried)", "delayed"),
    };
    let boundary = format!("{queue_id}/{hostname}/{kind}");
    // The header section as the one header reader ends it (a bare-LF
    // empty line included), without that empty line.
    let head_end = postroom_message::header::header_section(original).len();
    let mut m = String::new();
    m.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n"
    ));
    m.push_str(&format!("To: <{sender}>\r\n"));
    m.push_str(&format!("Subject: {subject}\r\n"));
    m.push_str(&format!("Date: {}\r\n", postroom_message::date::format(now)));
    // One message may get several reports (a warning, then a bounce; one
    // per destination domain): each needs its own Message-ID (RFC 5322 3.6.4).
    let unique = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    m.push_str(&format!(
        "Message-ID: <{queue_id}.{kind}.{unique}@{hostname}>\r\n"
    ));
    // RFC 3834: never answered by autoresponders.
    m.push_str("Auto-Submitted: auto-replied\r\n");
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\n"
    ));
    m.push_str("This is a MIME-encapsulated message.\r\n\r\n");
    m.push_str(&format!(
        "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    ));
    match delayed_until {
        None => m.push_str(&format!(
            "This is the mail system at {hostname}.\r\n\r\nYour message could not be delivered to one or more \
             recipients. It is attached below.\r\n\r\n"
        )),
        Some(until) => m.push_str(&format!(
            "This is the mail system at {hostname}.\r\n\r\nYour message could not be delivered yet to the \
             recipients below. This is only a warning: you do not need to send it again. Delivery will be \
             tried until {}; you will be told if it fails.\r\n\r\n",
            postroom_message::date::format(until)
        )),
    }
    for f in failures {
        m.push_str(&format!(
            "<{}>: {}\r\n",
            f.recipient,
            f.diagnostic.replace(['\r', '\n'], " ")
        ));
    }
    m.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
    ));
    m.push_str(&format!(
        "Reporting-MTA: dns; {hostname}\r\nX-Postroom-Queue-ID: {queue_id}\r\n"
    ));
    for f in failures {
        m.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: {action}\r\nStatus: {}\r\n",
            f.recipient, f.status
        ));
        if let Some(until) = delayed_until {
            m.push_str(&format!(
                "Will-Retry-Until: {}\r\n",
                postroom_message::date::format(until)
            ));
        }
        if let Some(mta) = f.remote_mta {
            m.push_str(&format!("Remote-MTA: dns; {mta}\r\n"));
            m.push_str(&format!(
                "Diagnostic-Code: smtp; {}\r\n",
                f.diagnostic.replace(['\r', '\n'], " ")
            ));
        } else if delayed_until.is_some() {
            // Our own reason (a connection that failed, a DNS error): still
            // what the sender wants to know (RFC 3464 2.3.6).
            m.push_str(&format!(
                "Diagnostic-Code: X-Postroom; {}\r\n",
                f.diagnostic.replace(['\r', '\n'], " ")
            ));
        }
    }
    m.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    ));
    let mut out = m.into_bytes();
    out.extend_from_slice(&original[..head_end]);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounce_names_recipient_status_and_headers() {
        let b = bounce(
            "mx.example",
            "Q1",
            "a@example.com",
            b"Subject: hi\r\nFrom: a@example.com\r\n\r\nbody\r\n",
            &[Failure {
                recipient: "x@remote.example",
                diagnostic: "550 5.1.1 no such user",
                status: &status_of(550, "5.1.1 no such user"),
                remote_mta: Some("mx.remote.example"),
            }],
        );
        let s = String::from_utf8(b).unwrap();
        assert!(s.contains("report-type=delivery-status"));
        assert!(s.contains("Final-Recipient: rfc822; x@remote.example\r\nAction: failed\r\nStatus: 5.1.1"));
        assert!(s.contains("Subject: hi\r\nFrom: a@example.com\r\n"));
        assert!(!s.contains("body\r\n"));
        assert_eq!(status_of(451, "try later"), "4.0.0");
    }

    #[test]
    fn a_delay_warning_says_delayed() {
        let until = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let d = delayed(
            "mx.example",
            "Q2",
            "a@example.com",
            b"Subject: slow\r\n\r\nbody\r\n",
            &[Failure {
                recipient: "x@remote.example",
                diagnostic: "451 4.3.0 try again later",
                status: &status_of(451, "4.3.0 try again later"),
                remote_mta: Some("mx.remote.example"),
            }],
            until,
        );
        let s = String::from_utf8(d).unwrap();
        assert!(s.contains("multipart/report; report-type=delivery-status"));
        assert!(
            s.contains("Action: delayed\r\nStatus: 4.3.0\r\nWill-Retry-Until: "),
            "{s}"
        );
        assert!(s.contains("Diagnostic-Code: smtp; 451 4.3.0 try again later"));
        assert!(s.contains("Subject: Delayed Mail"));
        assert!(s.contains("Subject: slow\r\n"));
    }
}
