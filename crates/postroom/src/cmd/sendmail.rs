//! `postroom sendmail`: what /usr/sbin/sendmail does for websites and cron
//! jobs — read a message on standard input and submit it, locally, through
//! the same pipeline as received mail (remote recipients are queued for the
//! running server to deliver).

use std::io::Read;
use std::sync::Arc;

use postroom_core::Address;
use postroom_directory::Directory;
use postroom_pipeline::{MxPipeline, NoFilter, RelayPolicy};

use super::{CmdResult, Context};

/// sendmail(8)'s exit codes (sysexits.h).
const EX_USAGE: i32 = 64;
const EX_TEMPFAIL: i32 = 75;

#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    from_headers: bool,
    ignore_dots: bool,
    sender: Option<String>,
    full_name: Option<String>,
    recipients: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--" => continue,
            "-t" => o.from_headers = true,
            "-i" | "-oi" => o.ignore_dots = true,
            "-f" | "-r" => o.sender = Some(it.next().ok_or("-f needs an address")?.clone()),
            "-F" => o.full_name = Some(it.next().ok_or("-F needs a name")?.clone()),
            s if s.starts_with("-f") || s.starts_with("-r") => o.sender = Some(s[2..].to_string()),
            s if s.starts_with("-F") => o.full_name = Some(s[2..].to_string()),
            // Delivery-mode and queue options that change nothing here.
            s if s.starts_with("-o")
                || s.starts_with("-bm")
                || s.starts_with("-B")
                || s.starts_with("-N") =>
            {
                if matches!(s, "-B" | "-N" | "-O") {
                    it.next();
                }
            }
            "-v" | "-em" | "-ee" | "-oem" | "-U" | "-G" => {}
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unsupported option {s}")),
            s => o.recipients.extend(
                s.split(',')
                    .map(|r| r.trim().to_string())
                    .filter(|r| !r.is_empty()),
            ),
        }
    }
    Ok(o)
}

/// Reads the message; without -i a line with a single dot ends it.
fn read_message(ignore_dots: bool) -> Result<Vec<u8>, String> {
    let mut raw = Vec::new();
    std::io::stdin()
        .read_to_end(&mut raw)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if !ignore_dots && content == b"." {
            break;
        }
        out.extend_from_slice(content);
        out.extend_from_slice(b"\r\n");
    }
    Ok(out)
}

/// Recipients named in To/Cc/Bcc (for -t), and the message without Bcc.
/// Fields are read by the one header reader (postroom_message::header), so
/// `Bcc :` is a Bcc field here as in the submission checks, and is removed
/// (it was kept, and its addresses shown to every recipient).
fn header_recipients(message: &[u8]) -> (Vec<String>, Vec<u8>) {
    use postroom_message::header;
    let mut rcpts = Vec::new();
    for name in ["to", "cc", "bcc"] {
        for f in header::fields(message).filter(|f| f.is(name)) {
            rcpts.extend(
                header::mailboxes(&f.unfolded())
                    .iter()
                    .filter_map(|m| m.addr_spec()),
            );
        }
    }
    let head_end = header::header_section(message).len();
    let mut out = Vec::with_capacity(message.len());
    for f in header::fields(message).filter(|f| !f.is("bcc")) {
        out.extend_from_slice(f.raw);
    }
    out.extend_from_slice(&message[head_end..]);
    (rcpts, out)
}

fn local_user() -> String {
    // SAFETY: getuid has no preconditions; getpwuid returns static storage
    // or null, read at once.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if !pw.is_null() {
            if let Ok(name) = std::ffi::CStr::from_ptr((*pw).pw_name).to_str() {
                return name.to_string();
            }
        }
    }
    std::env::var("USER").unwrap_or_else(|_| "nobody".into())
}

pub fn run(ctx: &Context, args: &[String]) -> CmdResult {
    let opts = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("sendmail: {e}");
            std::process::exit(EX_USAGE);
        }
    };
    let cfg = ctx.config()?;
    let mut message = read_message(opts.ignore_dots)?;
    let mut recipients = opts.recipients.clone();
    if opts.from_headers {
        let (from_headers, without_bcc) = header_recipients(&message);
        recipients.extend(from_headers);
        message = without_bcc;
    }
    recipients.sort();
    recipients.dedup();
    if recipients.is_empty() {
        eprintln!("sendmail: no recipients");
        std::process::exit(EX_USAGE);
    }
    let sender_text = opts
        .sender
        .clone()
        .unwrap_or_else(|| format!("{}@{}", local_user(), cfg.server.hostname));
    let sender = if sender_text.is_empty() || sender_text == "<>" {
        None
    } else {
        Some(
            Address::parse(sender_text.trim_matches(['<', '>']), true)
                .map_err(|e| format!("-f {sender_text}: {e}"))?,
        )
    };
    // The one header reader: `From :` is a From (RFC 5322 4.5.1), which
    // this check missed, adding a second From: that submission refuses.
    let has_from = postroom_message::header::has(&message, "from");
    if !has_from {
        if let Some(s) = &sender {
            let from = match &opts.full_name {
                Some(n) => format!("From: \"{}\" <{s}>\r\n", n.replace('"', "")),
                None => format!("From: {s}\r\n"),
            };
            let mut with = from.into_bytes();
            with.extend_from_slice(&message);
            message = with;
        }
    }
    let store = ctx.store()?;
    let pipeline = MxPipeline {
        sender_dns: None,
        limits: None,
        auth: None,
        expose_client_ip: false,
        hostname: cfg.server.hostname.clone(),
        max_received_headers: cfg.smtp.max_received_headers,
        policy: RelayPolicy {
            trusted_networks: Default::default(),
            relay_denied_code: cfg.smtp.relay_denied_code,
            reject_disabled_accounts: false,
            quota_code: cfg.smtp.quota_exceeded_code,
        },
        directory: Directory::new(store.meta_handle(), None),
        store,
        filter: Arc::new(NoFilter),
        filter_time: std::time::Duration::from_secs(60),
        spam_reports: None,
        results: None,
        memory: postroom_pipeline::MemoryBudget::new(cfg.smtp.max_in_memory_bytes),
    };
    // On the runtime the store was opened on: a PostgreSQL connection's
    // task lives there.
    match super::wait(pipeline.submit_local(sender, &recipients, message)) {
        Ok(queue_id) => {
            tracing::info!(target: "sendmail", queue_id = %queue_id, user = %local_user(),
                from = %sender_text, to = %recipients.join(","), verdict = "accepted", "sendmail submission");
            eprintln!("sendmail: queued as {queue_id}");
            Ok(())
        }
        Err(e) => {
            tracing::info!(target: "sendmail", user = %local_user(), from = %sender_text,
                to = %recipients.join(","), verdict = "rejected", reply = %e, "sendmail submission");
            eprintln!("sendmail: {e}");
            let temporary = e.starts_with('4');
            std::process::exit(if temporary { EX_TEMPFAIL } else { 67 });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn sendmail_arguments() {
        let o = parse(&s(&[
            "-t",
            "-oi",
            "-f",
            "web@example.com",
            "a@x.example,b@x.example",
            "c@x.example",
        ]))
        .unwrap();
        assert!(o.from_headers && o.ignore_dots);
        assert_eq!(o.sender.as_deref(), Some("web@example.com"));
        assert_eq!(o.recipients, ["a@x.example", "b@x.example", "c@x.example"]);
        let o = parse(&s(&[
            "-fbounce@example.com",
            "-FWeb Site",
            "-i",
            "--",
            "d@x.example",
        ]))
        .unwrap();
        assert_eq!(o.sender.as_deref(), Some("bounce@example.com"));
        assert_eq!(o.full_name.as_deref(), Some("Web Site"));
        assert!(parse(&s(&["-bs"])).is_err());
    }

    #[test]
    fn bcc_is_removed_and_read() {
        let m = b"To: a@x.example\r\nBcc: secret@x.example,\r\n  other@x.example\r\nSubject: s\r\n\r\nBcc: body\r\n";
        let (r, out) = header_recipients(m);
        assert_eq!(r, ["a@x.example", "secret@x.example", "other@x.example"]);
        assert_eq!(out, b"To: a@x.example\r\nSubject: s\r\n\r\nBcc: body\r\n");
    }

    #[test]
    fn bcc_with_space_before_the_colon_is_removed_too() {
        // RFC 5322 4.5.1 obs-optional: `Bcc :` is a Bcc field; it was kept
        // in the message sent to every recipient (issue #10).
        let m = b"To: a@x.example\r\nBcc : secret@x.example\r\nSubject: s\r\n\r\nbody\r\n";
        let (r, out) = header_recipients(m);
        assert_eq!(r, ["a@x.example", "secret@x.example"]);
        assert_eq!(out, b"To: a@x.example\r\nSubject: s\r\n\r\nbody\r\n");
    }
}
