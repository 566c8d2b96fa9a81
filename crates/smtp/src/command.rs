//! SMTP command lines (RFC 5321 4.1.1) into [`Command`]s. Pure: one line in
//! (without its CRLF), one command or one error out.

use postroom_core::{Address, AddressError};

use crate::reply::Reply;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RcptTarget {
    /// `RCPT TO:<Postmaster>` without a domain (RFC 5321 4.1.1.3).
    Postmaster,
    Mailbox(Address),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyParam {
    SevenBit,
    EightBitMime,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<u64>,
    pub body: Option<BodyParam>,
    pub smtputf8: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Helo(String),
    Ehlo(String),
    /// `None` is the null reverse-path `<>`.
    Mail(Option<Address>, MailParams),
    Rcpt(RcptTarget),
    Data,
    Bdat {
        size: u64,
        last: bool,
    },
    Rset,
    Noop,
    Quit,
    Vrfy,
    Expn,
    Help,
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954 4).
    Auth {
        mechanism: String,
        initial: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// 500 5.5.2
    Unknown,
    /// 501 5.5.4: the arguments do not parse.
    Syntax(&'static str),
    /// 501 5.1.7 / 5.1.3: an address that does not parse.
    BadAddress { sender: bool, error: AddressError },
    /// 555 5.5.4: a MAIL/RCPT parameter we do not know (RFC 5321 4.1.1.11).
    UnknownParam(String),
    /// 553 5.6.7: a UTF-8 address without SMTPUTF8 (RFC 6531 3.5).
    NeedsUtf8,
    /// BDAT whose size does not parse: the chunk cannot be skipped, so the
    /// connection has to end (RFC 3030 2).
    BadChunkSize,
}

impl CommandError {
    pub fn reply(&self) -> Reply {
        match self {
            CommandError::Unknown => Reply::new(500, "5.5.2", "Error: command not recognized"),
            CommandError::Syntax(why) => Reply::new(501, "5.5.4", format!("Syntax error: {why}")),
            CommandError::BadAddress { sender, error } => Reply::new(
                501,
                if *sender { "5.1.7" } else { "5.1.3" },
                format!("Bad address syntax: {error}"),
            ),
            CommandError::UnknownParam(p) => Reply::new(555, "5.5.4", format!("Unsupported parameter {p}")),
            CommandError::NeedsUtf8 => {
                Reply::new(553, "5.6.7", "Non-ASCII address requires the SMTPUTF8 parameter")
            }
            CommandError::BadChunkSize => Reply::new(501, "5.5.4", "Syntax error: bad BDAT size"),
        }
    }
}

/// `ehlo` says whether the session greeted with EHLO: only then are ESMTP
/// parameters allowed. `utf8_session` is whether SMTPUTF8 was given on MAIL
/// (for RCPT).
pub fn parse_command(line: &[u8], ehlo: bool, utf8_session: bool) -> Result<Command, CommandError> {
    let line = std::str::from_utf8(line).map_err(|_| CommandError::Syntax("command is not valid UTF-8"))?;
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    let no_args = |cmd: Command| {
        if rest.trim().is_empty() {
            Ok(cmd)
        } else {
            Err(CommandError::Syntax("command takes no arguments"))
        }
    };
    match verb.as_str() {
        "HELO" => Ok(Command::Helo(parse_helo_domain(rest)?)),
        "EHLO" => Ok(Command::Ehlo(parse_helo_domain(rest)?)),
        "MAIL" => parse_mail(rest, ehlo),
        "RCPT" => parse_rcpt(rest, ehlo, utf8_session),
        "DATA" => no_args(Command::Data),
        "BDAT" => parse_bdat(rest),
        "RSET" => no_args(Command::Rset),
        // NOOP and HELP may carry a string that is ignored (RFC 5321 4.1.1.9).
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "QUIT" => no_args(Command::Quit),
        "VRFY" => Ok(Command::Vrfy),
        "EXPN" => Ok(Command::Expn),
        "STARTTLS" => no_args(Command::StartTls),
        "AUTH" => {
            let mut words = rest.split(' ').filter(|w| !w.is_empty());
            let mechanism = words
                .next()
                .ok_or(CommandError::Syntax("AUTH needs a mechanism"))?;
            let initial = words.next().map(str::to_string);
            if words.next().is_some() {
                return Err(CommandError::Syntax("too many AUTH arguments"));
            }
            Ok(Command::Auth {
                mechanism: mechanism.to_ascii_uppercase(),
                initial,
            })
        }
        _ => Err(CommandError::Unknown),
    }
}

fn parse_helo_domain(rest: &str) -> Result<String, CommandError> {
    let arg = rest.trim();
    if arg.is_empty() {
        return Err(CommandError::Syntax("HELO/EHLO requires a domain name"));
    }
    // Only the first word is the name; some clients append text.
    let name = arg.split(' ').next().unwrap_or(arg);
    let ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._:[]".contains(c) || !c.is_ascii());
    if !ok || name.len() > 255 {
        return Err(CommandError::Syntax("invalid HELO/EHLO name"));
    }
    Ok(name.to_string())
}

/// Splits `<path> params` into the path's inside and the parameter text. The
/// closing `>` is the first one outside a quoted local part.
fn split_path(arg: &str) -> Result<(&str, &str), CommandError> {
    // Tolerate `FROM: <a@b>`: many clients send the space; the brackets are
    // what RFC 5321 (and the seed's AOL example) insist on.
    let arg = arg.trim_start_matches(' ');
    let inner = arg
        .strip_prefix('<')
        .ok_or(CommandError::Syntax("address must be enclosed in <>"))?;
    let mut in_quote = false;
    let mut escaped = false;
    for (i, c) in inner.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '>' if !in_quote => {
                let rest = &inner[i + 1..];
                if !rest.is_empty() && !rest.starts_with(' ') {
                    return Err(CommandError::Syntax("text after the address"));
                }
                return Ok((&inner[..i], rest.trim()));
            }
            _ => {}
        }
    }
    Err(CommandError::Syntax("address must be enclosed in <>"))
}

/// Drops an obsolete source route `@a,@b:` (RFC 5321 4.1.1.3: accepted and
/// ignored).
fn strip_source_route(path: &str) -> Result<&str, CommandError> {
    if path.starts_with('@') {
        match path.find(':') {
            Some(i) => Ok(&path[i + 1..]),
            None => Err(CommandError::Syntax("bad source route")),
        }
    } else {
        Ok(path)
    }
}

fn expect_keyword<'a>(rest: &'a str, keyword: &str) -> Result<&'a str, CommandError> {
    let rest = rest.trim_start_matches(' ');
    // Compared as bytes: the line may hold UTF-8 where the keyword ends.
    if rest
        .as_bytes()
        .get(..keyword.len())
        .is_some_and(|k| k.eq_ignore_ascii_case(keyword.as_bytes()))
    {
        Ok(&rest[keyword.len()..])
    } else if keyword.starts_with('F') {
        Err(CommandError::Syntax("expected MAIL FROM:<address>"))
    } else {
        Err(CommandError::Syntax("expected RCPT TO:<address>"))
    }
}

fn params(text: &str) -> impl Iterator<Item = (String, Option<&str>)> {
    text.split(' ')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_ascii_uppercase(), Some(v)),
            None => (p.to_ascii_uppercase(), None),
        })
}

fn parse_mail(rest: &str, ehlo: bool) -> Result<Command, CommandError> {
    let rest = expect_keyword(rest, "FROM:")?;
    let (path, param_text) = split_path(rest)?;
    if !ehlo && !param_text.is_empty() {
        return Err(CommandError::UnknownParam("(parameters need EHLO)".into()));
    }
    let mut p = MailParams::default();
    for (key, value) in params(param_text) {
        match (key.as_str(), value) {
            ("SIZE", Some(v)) => {
                p.size = Some(v.parse().map_err(|_| CommandError::Syntax("bad SIZE value"))?)
            }
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("7BIT") => p.body = Some(BodyParam::SevenBit),
            ("BODY", Some(v)) if v.eq_ignore_ascii_case("8BITMIME") => p.body = Some(BodyParam::EightBitMime),
            ("SMTPUTF8", None) => p.smtputf8 = true,
            // RFC 4954 5: AUTH=<> or an xtext mailbox; informational only.
            ("AUTH", Some(_)) => {}
            _ => return Err(CommandError::UnknownParam(key)),
        }
    }
    if path.is_empty() {
        return Ok(Command::Mail(None, p));
    }
    let mailbox = strip_source_route(path)?;
    if !mailbox.is_ascii() && !p.smtputf8 {
        return Err(CommandError::NeedsUtf8);
    }
    let addr = Address::parse(mailbox, p.smtputf8)
        .map_err(|error| CommandError::BadAddress { sender: true, error })?;
    Ok(Command::Mail(Some(addr), p))
}

fn parse_rcpt(rest: &str, ehlo: bool, utf8_session: bool) -> Result<Command, CommandError> {
    let rest = expect_keyword(rest, "TO:")?;
    let (path, param_text) = split_path(rest)?;
    if let Some((key, _)) = params(param_text).next() {
        return Err(if ehlo {
            CommandError::UnknownParam(key)
        } else {
            CommandError::UnknownParam("(parameters need EHLO)".into())
        });
    }
    if path.eq_ignore_ascii_case("postmaster") {
        return Ok(Command::Rcpt(RcptTarget::Postmaster));
    }
    if path.is_empty() {
        return Err(CommandError::Syntax("empty recipient"));
    }
    let mailbox = strip_source_route(path)?;
    if !mailbox.is_ascii() && !utf8_session {
        return Err(CommandError::NeedsUtf8);
    }
    let addr = Address::parse(mailbox, utf8_session)
        .map_err(|error| CommandError::BadAddress { sender: false, error })?;
    Ok(Command::Rcpt(RcptTarget::Mailbox(addr)))
}

fn parse_bdat(rest: &str) -> Result<Command, CommandError> {
    let mut words = rest.split(' ').filter(|w| !w.is_empty());
    let size = words
        .next()
        .filter(|w| w.bytes().all(|b| b.is_ascii_digit()) && w.len() <= 19)
        .and_then(|w| w.parse::<u64>().ok())
        .ok_or(CommandError::BadChunkSize)?;
    let last = match words.next() {
        None => false,
        Some(w) if w.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return Err(CommandError::BadChunkSize),
    };
    if words.next().is_some() {
        return Err(CommandError::BadChunkSize);
    }
    Ok(Command::Bdat { size, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Command, CommandError> {
        parse_command(line.as_bytes(), true, false)
    }

    #[test]
    fn brackets_are_required() {
        assert!(matches!(
            p("MAIL FROM: test@test.net"),
            Err(CommandError::Syntax(_))
        ));
        assert_eq!(
            p("MAIL FROM: test@test.net").unwrap_err().reply().summary(),
            "501 5.5.4 Syntax error: address must be enclosed in <>"
        );
    }

    #[test]
    fn mail_forms() {
        assert_eq!(p("MAIL FROM:<>"), Ok(Command::Mail(None, MailParams::default())));
        assert!(matches!(
            p("mail from: <A@B.example> SIZE=1000 BODY=8BITMIME"),
            Ok(Command::Mail(Some(_), MailParams { size: Some(1000), .. }))
        ));
        assert!(matches!(
            p("MAIL FROM:<@relay.example:a@b.example>"),
            Ok(Command::Mail(Some(_), _))
        ));
        assert!(matches!(
            p("MAIL FROM:<a@b.example> RET=FULL"),
            Err(CommandError::UnknownParam(_))
        ));
        assert!(matches!(
            p("MAIL FROM:<\"a>b\"@b.example>"),
            Ok(Command::Mail(Some(_), _))
        ));
        assert_eq!(p("MAIL FROM:<jösé@b.example>"), Err(CommandError::NeedsUtf8));
        assert!(matches!(
            p("MAIL FROM:<jösé@b.example> SMTPUTF8"),
            Ok(Command::Mail(Some(_), _))
        ));
        assert!(matches!(
            parse_command(b"MAIL FROM:<a@b.example> SIZE=10", false, false),
            Err(CommandError::UnknownParam(_))
        ));
    }

    #[test]
    fn rcpt_forms() {
        assert_eq!(
            p("RCPT TO:<Postmaster>"),
            Ok(Command::Rcpt(RcptTarget::Postmaster))
        );
        assert!(matches!(
            p("RCPT TO:<a@b.example>"),
            Ok(Command::Rcpt(RcptTarget::Mailbox(_)))
        ));
        assert!(matches!(
            p("RCPT TO:<a@b.example> NOTIFY=NEVER"),
            Err(CommandError::UnknownParam(_))
        ));
        assert!(matches!(p("RCPT TO:<>"), Err(CommandError::Syntax(_))));
        assert!(matches!(p("RCPT TO:a@b.example"), Err(CommandError::Syntax(_))));
    }

    #[test]
    fn other_commands() {
        assert_eq!(
            p("BDAT 100 LAST"),
            Ok(Command::Bdat {
                size: 100,
                last: true
            })
        );
        assert_eq!(p("BDAT x"), Err(CommandError::BadChunkSize));
        assert_eq!(p("BDAT 99999999999999999999"), Err(CommandError::BadChunkSize));
        assert_eq!(p("FOO"), Err(CommandError::Unknown));
        assert!(matches!(p("HELO"), Err(CommandError::Syntax(_))));
        assert_eq!(
            p("ehlo client.example"),
            Ok(Command::Ehlo("client.example".into()))
        );
        assert!(matches!(p("DATA x"), Err(CommandError::Syntax(_))));
    }
}
