//! The header lines Postroom writes for each delivery, and the loop checks
//! that read the message's own headers.

use std::net::IpAddr;

pub struct ReceivedInfo<'a> {
    pub helo: &'a str,
    /// `None`: leave the client's address out (authenticated submission).
    pub peer: Option<IpAddr>,
    pub hostname: &'a str,
    /// RFC 3848 / RFC 6531 protocol name: SMTP, ESMTP, ESMTPS, UTF8SMTPS...
    pub protocol: &'a str,
    pub queue_id: &'a str,
    pub date: &'a str,
}

/// Return-Path (RFC 5321 4.4), Delivered-To, and the Received trace line
/// (RFC 5321 4.4) naming the queue id, for one recipient.
pub fn delivery_prefix(
    info: &ReceivedInfo<'_>,
    return_path: &str,
    rcpt: &str,
    delivered_to: &str,
) -> Vec<u8> {
    let helo = sanitize(info.helo);
    let rcpt = sanitize(rcpt);
    let mut out = postroom_message::header::final_delivery_lines(return_path, delivered_to);
    out.extend_from_slice(&received_line_for(info, &helo, &rcpt));
    out
}

/// Received line for queued (outbound) copies: no Return-Path or
/// Delivered-To, which belong to final delivery.
pub fn received_line(info: &ReceivedInfo<'_>, rcpt: &str) -> Vec<u8> {
    received_line_for(info, &sanitize(info.helo), &sanitize(rcpt))
}

/// RFC 5321 4.4 trace line; without the client part when its address is
/// kept private.
fn received_line_for(info: &ReceivedInfo<'_>, helo: &str, rcpt: &str) -> Vec<u8> {
    let from = match info.peer {
        Some(ip) => format!("from {helo} ([{ip}])\r\n\t"),
        None => String::new(),
    };
    format!(
        "Received: {from}by {} (Postroom) with {} id {}\r\n\tfor <{rcpt}>; {}\r\n",
        info.hostname, info.protocol, info.queue_id, info.date
    )
    .into_bytes()
}

/// Peer-supplied text in a header: no line breaks, no control characters.
fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// What the loop checks need from the message's header section.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TraceHeaders {
    pub received: usize,
    /// Delivered-To values, lower-cased.
    pub delivered_to: Vec<String>,
}

/// Read with the one header reader (`postroom_message::header`), so that
/// `Received :` counts as it does everywhere else.
pub fn trace_headers(message: &[u8]) -> TraceHeaders {
    let mut t = TraceHeaders::default();
    for field in postroom_message::header::fields(message) {
        if field.is("received") {
            t.received += 1;
        } else if field.is("delivered-to") {
            t.delivered_to
                .push(String::from_utf8_lossy(&field.unfolded()).to_lowercase());
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_counts_stop_at_the_body() {
        let m =
            b"Received: a\r\n\tb\r\nDelivered-To: Kent@ABC.com\r\nreceived: c\r\n\r\nReceived: in body\r\n";
        let t = trace_headers(m);
        assert_eq!(t.received, 2);
        assert_eq!(t.delivered_to, ["kent@abc.com"]);
        // White space before the colon (RFC 5322 4.5.1) is still the field.
        let t = trace_headers(b"Received : a\r\nReceived\t: b\r\nDelivered-To :\r\n K@x\r\n\r\n");
        assert_eq!(t.received, 2);
        assert_eq!(t.delivered_to, ["k@x"]);
    }

    #[test]
    fn prefix_names_the_queue_id() {
        let info = ReceivedInfo {
            helo: "client.example\r\nX-Injected: 1",
            peer: Some("192.0.2.1".parse().unwrap()),
            hostname: "mx.example",
            protocol: "ESMTP",
            queue_id: "QID123",
            date: "Thu, 01 Jan 1970 00:00:00 +0000",
        };
        let p = String::from_utf8(delivery_prefix(
            &info,
            "a@b.example",
            "u@x.example",
            "u@x.example",
        ))
        .unwrap();
        assert!(p.starts_with("Return-Path: <a@b.example>\r\nDelivered-To: u@x.example\r\nReceived: from client.example??X-Injected: 1 ([192.0.2.1])"));
        assert!(p.contains("id QID123"));
        assert!(p.ends_with("+0000\r\n"));
        assert_eq!(
            postroom_message::date::format(std::time::UNIX_EPOCH),
            "Thu, 01 Jan 1970 00:00:00 +0000"
        );
    }
}
