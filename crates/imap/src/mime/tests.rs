//! Expected strings come from RFC 3501 7.4.2, Dovecot's imaptest suite
//! (src/tests/fetch-*, search-*) and Dovecot's BODYSTRUCTURE conventions.

use std::num::NonZeroU32;

use imap_codec::decode::Decoder;
use imap_codec::encode::Encoder;
use imap_codec::imap_types::core::{AString, Vec1};
use imap_codec::imap_types::fetch::{MessageDataItem, Part, Section};
use imap_codec::imap_types::response::{Data, Response};
use imap_codec::ResponseCodec;
use proptest::prelude::*;

use super::*;

/// `\n` line endings to CRLF.
fn crlf(s: &str) -> Vec<u8> {
    s.replace("\r\n", "\n").replace('\n', "\r\n").into_bytes()
}

fn encode_item(item: MessageDataItem<'static>) -> Vec<u8> {
    let rsp = Response::Data(Data::Fetch {
        seq: NonZeroU32::new(1).unwrap(),
        items: Vec1::from(item),
    });
    ResponseCodec::default().encode(&rsp).dump()
}

/// The encoded value of the item: what follows `* 1 FETCH (NAME ` up to `)\r\n`.
fn strip(encoded: Vec<u8>, name: &str) -> String {
    let s = String::from_utf8(encoded).unwrap();
    let prefix = format!("* 1 FETCH ({name} ");
    s.strip_prefix(&prefix)
        .unwrap()
        .strip_suffix(")\r\n")
        .unwrap()
        .to_string()
}

fn env(raw: &[u8]) -> String {
    strip(encode_item(MessageDataItem::Envelope(envelope(raw))), "ENVELOPE")
}

fn bs(raw: &[u8]) -> String {
    strip(
        encode_item(MessageDataItem::BodyStructure(body_structure(raw, true))),
        "BODYSTRUCTURE",
    )
}

fn body(raw: &[u8]) -> String {
    strip(
        encode_item(MessageDataItem::Body(body_structure(raw, false))),
        "BODY",
    )
}

fn path(p: &[u32]) -> Vec<NonZeroU32> {
    p.iter().map(|&n| NonZeroU32::new(n).unwrap()).collect()
}

fn part(p: &[u32]) -> Part {
    Part(Vec1::try_from(path(p)).unwrap())
}

fn names(list: &[&str]) -> Vec1<AString<'static>> {
    Vec1::try_from(
        list.iter()
            .map(|n| AString::try_from(n.to_string()).unwrap())
            .collect::<Vec<_>>(),
    )
    .unwrap()
}

fn text(bytes: Option<Vec<u8>>) -> String {
    String::from_utf8(bytes.expect("section exists")).unwrap()
}

fn sec_part(raw: &[u8], p: &[u32]) -> Option<Vec<u8>> {
    section(raw, Some(&Section::Part(part(p))))
}

fn sec_mime(raw: &[u8], p: &[u32]) -> Option<Vec<u8>> {
    section(raw, Some(&Section::Mime(part(p))))
}

fn sec_header(raw: &[u8], p: &[u32]) -> Option<Vec<u8>> {
    section(raw, Some(&Section::Header((!p.is_empty()).then(|| part(p)))))
}

fn sec_text(raw: &[u8], p: &[u32]) -> Option<Vec<u8>> {
    section(raw, Some(&Section::Text((!p.is_empty()).then(|| part(p)))))
}

fn sec_fields(raw: &[u8], p: &[u32], list: &[&str], not: bool) -> Option<Vec<u8>> {
    let p = (!p.is_empty()).then(|| part(p));
    let s = if not {
        Section::HeaderFieldsNot(p, names(list))
    } else {
        Section::HeaderFields(p, names(list))
    };
    section(raw, Some(&s))
}

// ---------------------------------------------------------------------------
// ENVELOPE
// ---------------------------------------------------------------------------

/// imaptest src/tests/fetch-envelope (with its mbox).
#[test]
fn imaptest_fetch_envelope() {
    let m1 = crlf(
        "Message-ID: <msg@id>\nIn-Reply-To: <reply@to.id>\nDate: Thu, 15 Feb 2007 01:02:03 +0200\n\
         Subject: subject header\nFrom: From Real <fromuser@fromdomain.org>\nTo: To Real <touser@todomain.org>\n\
         Cc: Cc Real <ccuser@ccdomain.org>\nBcc: Bcc Real <bccuser@bccdomain.org>\n\
         Sender: Sender Real <senderuser@senderdomain.org>\nReply-To: ReplyTo Real <replytouser@replytodomain.org>\n\
         \nbody\n",
    );
    assert_eq!(
        env(&m1),
        r#"("Thu, 15 Feb 2007 01:02:03 +0200" "subject header" (("From Real" NIL "fromuser" "fromdomain.org")) (("Sender Real" NIL "senderuser" "senderdomain.org")) (("ReplyTo Real" NIL "replytouser" "replytodomain.org")) (("To Real" NIL "touser" "todomain.org")) (("Cc Real" NIL "ccuser" "ccdomain.org")) (("Bcc Real" NIL "bccuser" "bccdomain.org")) "<reply@to.id>" "<msg@id>")"#
    );

    let m2 = crlf("Date: Thu, 15 Feb 2007 01:02:03 +0200\nFrom: user@domain\n\nbody\n");
    assert_eq!(
        env(&m2),
        r#"("Thu, 15 Feb 2007 01:02:03 +0200" NIL ((NIL NIL "user" "domain")) ((NIL NIL "user" "domain")) ((NIL NIL "user" "domain")) NIL NIL NIL NIL NIL)"#
    );

    let m4 = crlf(
        "Date: Thu, 15 Feb 2007 01:02:03 +0200\nFrom: user@domain (Real Name)\n\
         To: group: g1@d1.org, g2@d2.org;, group2: g3@d3.org;\nCc: group:;, group2: ;\n\nbody\n",
    );
    assert_eq!(
        env(&m4),
        r#"("Thu, 15 Feb 2007 01:02:03 +0200" NIL (("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain")) ((NIL NIL "group" NIL)(NIL NIL "g1" "d1.org")(NIL NIL "g2" "d2.org")(NIL NIL NIL NIL)(NIL NIL "group2" NIL)(NIL NIL "g3" "d3.org")(NIL NIL NIL NIL)) ((NIL NIL "group" NIL)(NIL NIL NIL NIL)(NIL NIL "group2" NIL)(NIL NIL NIL NIL)) NIL NIL NIL)"#
    );

    // Empty Sender and Reply-To default to From.
    let m5 = crlf(
        "Date: Thu, 15 Feb 2007 01:02:03 +0200\nFrom: user@domain (Real Name)\nSender: \nReply-To: \n\nbody\n",
    );
    assert_eq!(
        env(&m5),
        r#"("Thu, 15 Feb 2007 01:02:03 +0200" NIL (("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain")) (("Real Name" NIL "user" "domain")) NIL NIL NIL NIL NIL)"#
    );

    let m6 = crlf("Date: Thu, 15 Feb 2007 01:02:03 +0200\nFrom: <@route:user@domain>\n\nbody\n");
    assert_eq!(
        env(&m6),
        r#"("Thu, 15 Feb 2007 01:02:03 +0200" NIL ((NIL "@route" "user" "domain")) ((NIL "@route" "user" "domain")) ((NIL "@route" "user" "domain")) NIL NIL NIL NIL NIL)"#
    );
}

/// A body of `lines` CRLF-terminated lines and `octets` octets.
fn filler(octets: usize, lines: usize) -> String {
    let text = octets - 2 * lines;
    let (each, extra) = (text / lines, text % lines);
    (0..lines)
        .map(|i| "x".repeat(each + if i == 0 { extra } else { 0 }) + "\r\n")
        .collect()
}

/// RFC 3501 7.4.2, the FETCH response example.
#[test]
fn rfc3501_example_message() {
    let mut m = crlf(
        "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\nFrom: Terry Gray <gray@cac.washington.edu>\n\
         Subject: IMAP4rev1 WG mtg summary and minutes\nTo: imap@cac.washington.edu\n\
         cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\n\
         Message-Id: <B27397-0100000@cac.washington.edu>\nMIME-Version: 1.0\n\
         Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\nContent-Transfer-Encoding: 7BIT\n\n",
    );
    m.extend_from_slice(filler(3028, 92).as_bytes());
    assert_eq!(
        env(&m),
        r#"("Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" "IMAP4rev1 WG mtg summary and minutes" (("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) (("Terry Gray" NIL "gray" "cac.washington.edu")) ((NIL NIL "imap" "cac.washington.edu")) ((NIL NIL "minutes" "CNRI.Reston.VA.US")("John Klensin" NIL "KLENSIN" "MIT.EDU")) NIL NIL "<B27397-0100000@cac.washington.edu>")"#
    );
    assert_eq!(
        body(&m),
        r#"("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)"#
    );
}

/// RFC 3501 7.4.2, the multipart BODY example.
#[test]
fn rfc3501_example_multipart() {
    let m = format!(
        "Content-Type: MULTIPART/MIXED; BOUNDARY=\"x\"\r\n\r\n--x\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\nContent-Transfer-Encoding: 7BIT\r\n\r\n\
         {}\r\n--x\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff\r\n\
         Content-ID: <960723163407.20117h@cac.washington.edu>\r\nContent-Description: Compiler diff\r\n\
         Content-Transfer-Encoding: BASE64\r\n\r\n{}\r\n--x--\r\n",
        filler(1152, 23),
        filler(4554, 73)
    );
    assert_eq!(
        body(m.as_bytes()),
        r#"(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") "<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) "MIXED")"#
    );
}

#[test]
fn envelope_without_headers() {
    let m = crlf("\nbody\n");
    assert_eq!(env(&m), "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
    assert_eq!(env(b""), "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
    // Present but empty: "" (Dovecot), except address lists: NIL.
    let m = crlf("Subject:\nDate: \nMessage-ID:\nTo:\n\nbody\n");
    assert_eq!(env(&m), r#"("" "" NIL NIL NIL NIL NIL NIL NIL "")"#);
}

#[test]
fn envelope_subject_is_raw_and_for_humans() {
    let m = crlf("Subject: =?UTF-8?B?SGVsbG8gV8O2cmxk?= =?ISO-8859-1?Q?caf=E9?=\n\nx\n");
    assert!(
        env(&m).starts_with(r#"(NIL "=?UTF-8?B?SGVsbG8gV8O2cmxk?= =?ISO-8859-1?Q?caf=E9?=" NIL"#),
        "{}",
        env(&m)
    );
    // Folded: the line break and one white space character become a space.
    let m = crlf("Subject: a long\n subject\n\tline\n\nx\n");
    assert!(
        env(&m).starts_with(r#"(NIL "a long subject line" "#),
        "{}",
        env(&m)
    );
    // White space runs collapse (then a literal, as Dovecot).
    let m = crlf("Subject:   Re:\t  foo   \n\nx\n");
    assert!(env(&m).starts_with("(NIL {7}\r\nRe: foo NIL"), "{:?}", env(&m));
    // Quotes: a literal.
    let m = crlf("Subject: say \"hi\"\n\nx\n");
    assert!(env(&m).starts_with("(NIL {8}\r\nsay \"hi\" NIL"), "{:?}", env(&m));
    // 8-bit (RFC 6532): a literal.
    let m = crlf("Subject: Grüße\n\nx\n");
    assert!(env(&m).starts_with("(NIL {7}\r\nGrüße NIL"), "{:?}", env(&m));
    // NUL becomes 0x80.
    let m = b"Subject: a\0b\r\n\r\nx".to_vec();
    let e = encode_item(MessageDataItem::Envelope(envelope(&m)));
    assert!(
        e.windows(8).any(|w| w == b"{3}\r\na\x80b"),
        "{:?}",
        String::from_utf8_lossy(&e)
    );
}

#[test]
fn envelope_addresses() {
    let m = crlf(
        "From: \"Doe, John\" <john@example.com>\nTo: jane@example.net (Jane Roe), \"john doe\"@example.org,\n \
         =?utf-8?q?J=C3=B6rg?= <joerg@example.de>\nCc: undisclosed-recipients:;\n\
         Bcc: nobody, <@a.example,@b.example:u@c.example>\n\nx\n",
    );
    assert_eq!(
        env(&m),
        r#"(NIL NIL (("Doe, John" NIL "john" "example.com")) (("Doe, John" NIL "john" "example.com")) (("Doe, John" NIL "john" "example.com")) (("Jane Roe" NIL "jane" "example.net")(NIL NIL "john doe" "example.org")("=?utf-8?q?J=C3=B6rg?=" NIL "joerg" "example.de")) ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) ((NIL NIL "nobody" "MISSING_DOMAIN")(NIL "@a.example,@b.example" "u" "c.example")) NIL NIL)"#
    );
    // Obsolete phrase with dots, a quoted pair, a domain literal.
    let m = crlf("From: John Q. Public <jqp@[192.0.2.1]>, \"a\\\"b\" <x@y>\n\nx\n");
    assert!(
        env(&m).starts_with(
            "(NIL NIL ((\"John Q. Public\" NIL \"jqp\" \"[192.0.2.1]\")({3}\r\na\"b NIL \"x\" \"y\")) "
        ),
        "{}",
        env(&m)
    );
    // imaptest search-addresses: comments inside the address.
    let m = crlf("From: <user-from (comment)@ (comment) domain.org>\n\nx\n");
    assert!(
        env(&m).contains(r#"NIL "user-from" "domain.org")"#),
        "{}",
        env(&m)
    );
    // 8-bit display name: a literal.
    let m = crlf("From: Jörg <j@x>\n\nx\n");
    assert!(
        env(&m).starts_with("(NIL NIL (({5}\r\nJörg NIL \"j\" \"x\"))"),
        "{:?}",
        env(&m)
    );
    // Unterminated group and angle bracket, stray specials, empty elements.
    let m = crlf("To: ,, g: a@b, <c@d\nCc: >; @;x\n\nx\n");
    let e = env(&m);
    assert!(
        e.contains(r#"((NIL NIL "g" NIL)(NIL NIL "a" "b")(NIL NIL "c" "d")(NIL NIL NIL NIL))"#),
        "{e}"
    );
}

#[test]
fn envelope_first_occurrence_wins() {
    let m = crlf("Subject: one\nSubject: two\nFrom: a@b\nFrom: c@d\n\nx\n");
    assert!(
        env(&m).starts_with(r#"(NIL "one" ((NIL NIL "a" "b")) "#),
        "{}",
        env(&m)
    );
}

/// The ENVELOPE's From is the field the submission check reads
/// (`postroom_core::header`): `From :` is a From field (RFC 5322 4.5.1),
/// and a quoted local part is the mailbox, not a display name.
#[test]
fn envelope_from_is_the_one_header_readers() {
    let m = crlf("From : \"alice\"@probe.test\nFrom: bob@probe.test\n\nx\n");
    assert!(
        env(&m).starts_with(r#"(NIL NIL ((NIL NIL "alice" "probe.test")) "#),
        "{}",
        env(&m)
    );
}

// ---------------------------------------------------------------------------
// BODYSTRUCTURE
// ---------------------------------------------------------------------------

#[test]
fn default_text_plain() {
    let m = crlf("Subject: x\n\nbody\n");
    assert_eq!(
        bs(&m),
        r#"("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1 NIL NIL NIL NIL)"#
    );
    assert_eq!(
        body(&m),
        r#"("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1)"#
    );
    // No blank line, no body.
    assert_eq!(
        body(b"Subject: x\r\n"),
        r#"("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)"#
    );
    assert_eq!(
        body(b""),
        r#"("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)"#
    );
    // Invalid Content-Type: the default.
    let m = crlf("Content-Type: garbage\n\nbody");
    assert_eq!(
        body(&m),
        r#"("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7bit" 4 0)"#
    );
    // A text part keeps its charset; html without one gets the default.
    let m = crlf("Content-Type: text/html\n\n<p>x</p>\n");
    assert_eq!(
        body(&m),
        r#"("TEXT" "html" ("charset" "us-ascii") NIL NIL "7bit" 10 1)"#
    );
}

/// imaptest src/tests/fetch-bodystructure(.mbox).
#[test]
fn imaptest_fetch_bodystructure() {
    let m = crlf(
        "From: user@domain.org\nDate: Sat, 24 Mar 2007 23:00:00 +0200\nMime-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"foo\n bar\"\n\n--foo bar\n\
         Content-Type: text/html; charset=us-ascii\n\nhello\n\n--foo bar--\n",
    );
    assert_eq!(
        body(&m),
        r#"(("TEXT" "html" ("charset" "us-ascii") NIL NIL "7bit" 7 1) "mixed")"#
    );
    assert_eq!(
        bs(&m),
        r#"(("TEXT" "html" ("charset" "us-ascii") NIL NIL "7bit" 7 1 NIL NIL NIL NIL) "mixed" ("boundary" "foo bar") NIL NIL NIL)"#
    );
}

fn report_message() -> Vec<u8> {
    crlf(
        "From: Alice <alice@example.org>\nTo: Bob <bob@example.net>\nSubject: Report\n\
         Date: Mon, 1 Jan 2024 10:00:00 +0000\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\
         \nThis is a multi-part message in MIME format.\n--b1\nContent-Type: multipart/alternative; boundary=\"b2\"\n\
         \n--b2\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\
         \nHello Bob, caf=C3=A9.\n--b2\nContent-Type: text/html; charset=utf-8\n\n<p>Hello Bob</p>\n--b2--\n\
         \n--b1\nContent-Type: application/pdf; name=\"report.pdf\"\n\
         Content-Disposition: attachment; filename=\"report.pdf\"\nContent-Transfer-Encoding: base64\n\
         \nJVBERi0xLjQK\n--b1--\n",
    )
}

#[test]
fn multipart_mixed_with_alternative_and_attachment() {
    let m = report_message();
    assert_eq!(
        bs(&m),
        r#"((("TEXT" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 21 0 NIL NIL NIL NIL)("TEXT" "html" ("charset" "utf-8") NIL NIL "7bit" 16 0 NIL NIL NIL NIL) "alternative" ("boundary" "b2") NIL NIL NIL)("application" "pdf" ("name" "report.pdf") NIL NIL "base64" 12 NIL ("attachment" ("filename" "report.pdf")) NIL NIL) "mixed" ("boundary" "b1") NIL NIL NIL)"#
    );
    assert_eq!(
        body(&m),
        r#"((("TEXT" "plain" ("charset" "utf-8") NIL NIL "quoted-printable" 21 0)("TEXT" "html" ("charset" "utf-8") NIL NIL "7bit" 16 0) "alternative")("application" "pdf" ("name" "report.pdf") NIL NIL "base64" 12) "mixed")"#
    );
    assert_eq!(text(sec_part(&m, &[1, 1])), "Hello Bob, caf=C3=A9.");
    assert_eq!(
        text(sec_mime(&m, &[1, 1])),
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    );
    assert_eq!(text(sec_part(&m, &[1, 2])), "<p>Hello Bob</p>");
    assert_eq!(text(sec_part(&m, &[2])), "JVBERi0xLjQK");
    assert!(text(sec_part(&m, &[1])).starts_with("--b2\r\nContent-Type: text/plain"));
    assert!(text(sec_part(&m, &[1])).ends_with("<p>Hello Bob</p>\r\n--b2--\r\n"));
    assert_eq!(
        binary(&m, &path(&[1, 1])),
        Ok(Some("Hello Bob, café.".as_bytes().to_vec()))
    );
    assert_eq!(binary(&m, &path(&[2])), Ok(Some(b"%PDF-1.4\n".to_vec())));
    assert_eq!(binary_size(&m, &path(&[2])), Ok(Some(9)));
    assert_eq!(binary(&m, &[]), Ok(Some(m.clone())));
    assert_eq!(sec_part(&m, &[3]), None);
    assert_eq!(sec_part(&m, &[1, 3]), None);
    assert_eq!(sec_part(&m, &[2, 1]), None);
    assert_eq!(sec_header(&m, &[2]), None);
    assert_eq!(binary(&m, &path(&[4])), Ok(None));
    let t = body_text(&m);
    assert!(
        t.contains("Hello Bob, café.") && t.contains("<p>Hello Bob</p>"),
        "{t}"
    );
    assert!(
        !t.contains("PDF") && !t.contains("JVBER") && !t.contains("multi-part message"),
        "{t}"
    );
}

fn forward_message() -> Vec<u8> {
    crlf(
        "From: a@example.org\nSubject: Fwd: hi\nContent-Type: multipart/mixed; boundary=outer\n\n--outer\n\
         Content-Type: text/plain\n\nSee below.\n\n--outer\nContent-Type: message/rfc822\nContent-Disposition: inline\n\
         \nFrom: \"Doe, John\" <john@example.com>\nTo: undisclosed-recipients:;\nSubject: hi\n\
         Message-ID: <1@example.com>\n\nHello\nthere\n\n--outer--\n",
    )
}

#[test]
fn nested_message_rfc822() {
    let m = forward_message();
    assert_eq!(
        bs(&m),
        r#"(("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7bit" 12 1 NIL NIL NIL NIL)("MESSAGE" "RFC822" NIL NIL NIL "7bit" 126 (NIL "hi" (("Doe, John" NIL "john" "example.com")) (("Doe, John" NIL "john" "example.com")) (("Doe, John" NIL "john" "example.com")) ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) NIL NIL NIL "<1@example.com>") ("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7bit" 14 2 NIL NIL NIL NIL) 7 NIL ("inline" NIL) NIL NIL) "mixed" ("boundary" "outer") NIL NIL NIL)"#
    );
    assert_eq!(
        body(&m),
        r#"(("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7bit" 12 1)("MESSAGE" "RFC822" NIL NIL NIL "7bit" 126 (NIL "hi" (("Doe, John" NIL "john" "example.com")) (("Doe, John" NIL "john" "example.com")) (("Doe, John" NIL "john" "example.com")) ((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) NIL NIL NIL "<1@example.com>") ("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7bit" 14 2) 7) "mixed")"#
    );
    assert_eq!(text(sec_part(&m, &[1])), "See below.\r\n");
    assert_eq!(text(sec_text(&m, &[2])), "Hello\r\nthere\r\n");
    assert_eq!(text(sec_part(&m, &[2, 1])), "Hello\r\nthere\r\n");
    assert_eq!(
        text(sec_header(&m, &[2])),
        "From: \"Doe, John\" <john@example.com>\r\nTo: undisclosed-recipients:;\r\nSubject: hi\r\n\
         Message-ID: <1@example.com>\r\n\r\n"
    );
    assert_eq!(
        text(sec_fields(&m, &[2], &["SUBJECT", "x-none"], false)),
        "Subject: hi\r\n\r\n"
    );
    assert_eq!(sec_part(&m, &[2, 2]), None);
    assert_eq!(sec_header(&m, &[1]), None);
    assert_eq!(sec_text(&m, &[1]), None);
    let t = body_text(&m);
    assert!(t.contains("See below.") && t.contains("Hello\r\nthere"), "{t}");
    assert!(!t.contains("Doe, John"), "nested headers are not body text: {t}");
}

#[test]
fn extension_data_fields() {
    let m = crlf(
        "Content-Type: text/plain; charset=\"ISO-8859-1\"; format=flowed\nContent-ID: <part1@example>\n\
         Content-Description: The text\nContent-Transfer-Encoding: QUOTED-PRINTABLE\n\
         Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\nContent-Disposition: inline\nContent-Language: en, de\n\
         Content-Location: http://example.com/x\n\ncaf=E9\n",
    );
    assert_eq!(
        bs(&m),
        r#"("TEXT" "plain" ("charset" "ISO-8859-1" "format" "flowed") "<part1@example>" "The text" "QUOTED-PRINTABLE" 8 1 "Q2hlY2sgSW50ZWdyaXR5IQ==" ("inline" NIL) ("en" "de") "http://example.com/x")"#
    );
    assert_eq!(binary(&m, &path(&[1])), Ok(Some(b"caf\xe9\r\n".to_vec())));
    assert_eq!(body_text(&m), "café\r\n");
}

#[test]
fn rfc2231_parameters() {
    let m = crlf(
        "Content-Type: application/octet-stream;\n name*0=\"very long \";\n name*1=\"file name.txt\"\n\
         Content-Disposition: attachment;\n filename*=UTF-8''%E2%82%AC%20rates.txt; size=3\n\nabc",
    );
    assert_eq!(
        bs(&m),
        r#"("application" "octet-stream" ("name" "very long file name.txt") NIL NIL "7bit" 3 NIL ("attachment" ("filename*" "UTF-8''%E2%82%AC%20rates.txt" "size" "3")) NIL NIL)"#
    );
    // Encoded continuations keep the charset prefix; plain sections are %-escaped.
    let m = crlf("Content-Type: application/x-y; title*0*=us-ascii'en'a%20b; title*1=\" c\"; x=1\n\nabc");
    assert_eq!(
        body(&m),
        r#"("application" "x-y" ("x" "1" "title*" "us-ascii'en'a%20b%20c") NIL NIL "7bit" 3)"#
    );
}

#[test]
fn mime_parameter_syntax() {
    // Comments, odd spacing, upper case, unquoted values, garbage.
    let m = crlf(
        "Content-Type: (comment) IMAGE / PNG ; NAME = \"a \\\"b\\\".png\" (c); junk; =x; y= ;z=1\n\
         Content-Transfer-Encoding:  Base64  (why)\n\niVBO\n",
    );
    assert_eq!(
        body(&m),
        r#"("IMAGE" "PNG" ("NAME" "a \"b\".png" "z" "1") NIL NIL "Base64" 6)"#
    );
    assert_eq!(binary(&m, &path(&[1])), Ok(Some(vec![0x89, b'P', b'N'])));
    // 8-bit parameter values: a literal.
    let m = crlf("Content-Type: application/pdf; name=\"Bericht-März.pdf\"\n\nx");
    assert_eq!(
        body(&m),
        "(\"application\" \"pdf\" (\"name\" {17}\r\nBericht-März.pdf) NIL NIL \"7bit\" 1)"
    );
}

#[test]
fn multipart_edge_cases() {
    // No boundary parameter: a single part.
    let m = crlf("Content-Type: multipart/mixed\n\n--x\nhello\n--x--\n");
    assert_eq!(body(&m), r#"("multipart" "mixed" NIL NIL NIL "7bit" 19)"#);
    assert_eq!(text(sec_part(&m, &[1])), "--x\r\nhello\r\n--x--\r\n");
    // The boundary never appears: an empty text/plain part, as Dovecot.
    let m = crlf("Content-Type: multipart/mixed; boundary=zzz\n\nno parts here\n");
    assert_eq!(
        bs(&m),
        r#"(("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mixed" ("boundary" "zzz") NIL NIL NIL)"#
    );
    assert_eq!(text(sec_part(&m, &[1])), "");
    assert_eq!(text(sec_mime(&m, &[1])), "");
    // No close delimiter: the last part runs to the end.
    let m = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\n\ntwo\n");
    assert_eq!(text(sec_part(&m, &[1])), "one");
    assert_eq!(text(sec_part(&m, &[2])), "two\r\n");
    // An outer boundary ends an unterminated inner multipart.
    let m = crlf(
        "Content-Type: multipart/mixed; boundary=outer\n\n--outer\n\
         Content-Type: multipart/alternative; boundary=inner\n\n--inner\n\none\n--outer\n\ntwo\n--outer--\n",
    );
    assert_eq!(text(sec_part(&m, &[1, 1])), "one");
    assert_eq!(text(sec_part(&m, &[2])), "two");
    assert_eq!(
        body(&m),
        r#"((("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0) "alternative")("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0) "mixed")"#
    );
    // A boundary that is a prefix of the inner one: the longest match wins.
    let m = crlf(
        "Content-Type: multipart/mixed; boundary=abc\n\n--abc\n\
         Content-Type: multipart/mixed; boundary=abcdef\n\n--abcdef\n\nin1\n--abcdef\n\nin2\n--abcdef--\n\
         --abc\n\nout2\n--abc--\n",
    );
    assert_eq!(text(sec_part(&m, &[1, 1])), "in1");
    assert_eq!(text(sec_part(&m, &[1, 2])), "in2");
    assert_eq!(text(sec_part(&m, &[2])), "out2");
    // Bare LF line endings.
    let m = b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b--\n".to_vec();
    assert_eq!(text(sec_part(&m, &[1])), "one");
    // A part without a blank line cut by the next delimiter.
    let m =
        crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/html\n--b\n\nx\n--b--\n");
    assert_eq!(text(sec_mime(&m, &[1])), "Content-Type: text/html");
    assert_eq!(text(sec_part(&m, &[1])), "");
    assert_eq!(text(sec_part(&m, &[2])), "x");
    // An empty message/rfc822 part still has an envelope.
    let m = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: message/rfc822\n--b--\n");
    assert_eq!(
        body(&m),
        r#"(("MESSAGE" "RFC822" NIL NIL NIL "7bit" 0 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) ("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) 0) "mixed")"#
    );
}

/// imaptest fetch-body-mime / fetch-binary-mime.
fn imaptest_mime_message() -> Vec<u8> {
    crlf(
        "From: user@domain.org\nDate: Sat, 24 Mar 2007 23:00:00 +0200\nMime-Version: 1.0\n\
         Content-Type: multipart/mixed; boundary=\"foo\n bar\"\n\nRoot MIME prologue\n\n--foo bar\n\
         Content-Type: text/x-myown; charset=us-ascii\n\nhello\n\n--foo bar\nContent-Type: message/rfc822\n\n\
         From: sub@domain.org\nDate: Sun, 12 Aug 2012 12:34:56 +0300\nSubject: submsg\n\
         Content-Type: multipart/alternative; boundary=\"sub1\"\n\nSub MIME prologue\n--sub1\n\
         Content-Type: text/html\n\n<p>Hello world</p>\n\n--sub1\nContent-Type: text/plain\n\n\
         Hello another world\n\n--sub1--\nSub MIME epilogue\n\n--foo bar--\nRoot MIME epilogue\n",
    )
}

#[test]
fn imaptest_fetch_body_mime() {
    let m = imaptest_mime_message();
    assert_eq!(m.len(), 602, "binary.size[]");
    assert_eq!(section(&m, None), Some(m.clone()));
    assert_eq!(sec_text(&m, &[]).unwrap().len(), 466);
    assert!(text(sec_text(&m, &[])).starts_with("Root MIME prologue\r\n\r\n--foo bar\r\n"));
    assert_eq!(text(sec_part(&m, &[1])), "hello\r\n");
    assert_eq!(
        text(sec_mime(&m, &[1])),
        "Content-Type: text/x-myown; charset=us-ascii\r\n\r\n"
    );
    let p2 = text(sec_part(&m, &[2]));
    assert_eq!(p2.len(), 298);
    assert!(p2.starts_with("From: sub@domain.org\r\n") && p2.ends_with("--sub1--\r\nSub MIME epilogue\r\n"));
    assert_eq!(text(sec_mime(&m, &[2])), "Content-Type: message/rfc822\r\n\r\n");
    assert_eq!(
        text(sec_header(&m, &[2])),
        "From: sub@domain.org\r\nDate: Sun, 12 Aug 2012 12:34:56 +0300\r\nSubject: submsg\r\n\
         Content-Type: multipart/alternative; boundary=\"sub1\"\r\n\r\n"
    );
    assert_eq!(sec_header(&m, &[2]).unwrap().len(), 134);
    assert_eq!(
        text(sec_fields(&m, &[2], &["from", "subject", "X-foo"], false)),
        "From: sub@domain.org\r\nSubject: submsg\r\n\r\n"
    );
    assert_eq!(
        sec_fields(&m, &[2], &["from", "subject", "x-foo"], false)
            .unwrap()
            .len(),
        41
    );
    assert_eq!(
        text(sec_fields(&m, &[2], &["from", "subject", "X-foo"], true)),
        "Date: Sun, 12 Aug 2012 12:34:56 +0300\r\nContent-Type: multipart/alternative; boundary=\"sub1\"\r\n\r\n"
    );
    assert_eq!(
        sec_fields(&m, &[2], &["from", "subject", "x-foo"], true)
            .unwrap()
            .len(),
        95
    );
    let t2 = text(sec_text(&m, &[2]));
    assert_eq!(t2.len(), 164);
    assert!(t2.starts_with("Sub MIME prologue\r\n--sub1\r\n") && t2.ends_with("Sub MIME epilogue\r\n"));
    assert_eq!(text(sec_mime(&m, &[2, 1])), "Content-Type: text/html\r\n\r\n");
    assert_eq!(text(sec_part(&m, &[2, 1])), "<p>Hello world</p>\r\n");
    assert_eq!(text(sec_mime(&m, &[2, 2])), "Content-Type: text/plain\r\n\r\n");
    assert_eq!(text(sec_part(&m, &[2, 2])), "Hello another world\r\n");
    assert_eq!(binary_size(&m, &path(&[1])), Ok(Some(7)));
    assert_eq!(binary_size(&m, &path(&[2])), Ok(Some(298)));
    assert_eq!(binary_size(&m, &path(&[2, 1])), Ok(Some(20)));
    assert_eq!(binary_size(&m, &path(&[2, 2])), Ok(Some(21)));
    assert_eq!(binary_size(&m, &[]), Ok(Some(602)));
    assert_eq!(
        bs(&m),
        r#"(("TEXT" "x-myown" ("charset" "us-ascii") NIL NIL "7bit" 7 1 NIL NIL NIL NIL)("MESSAGE" "RFC822" NIL NIL NIL "7bit" 298 ("Sun, 12 Aug 2012 12:34:56 +0300" "submsg" ((NIL NIL "sub" "domain.org")) ((NIL NIL "sub" "domain.org")) ((NIL NIL "sub" "domain.org")) NIL NIL NIL NIL NIL) (("TEXT" "html" ("charset" "us-ascii") NIL NIL "7bit" 20 1 NIL NIL NIL NIL)("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7bit" 21 1 NIL NIL NIL NIL) "alternative" ("boundary" "sub1") NIL NIL NIL) 18 NIL NIL NIL NIL) "mixed" ("boundary" "foo bar") NIL NIL NIL)"#
    );
}

/// imaptest fetch-body-message-rfc822-x2: message/rfc822 in message/rfc822.
#[test]
fn imaptest_message_rfc822_x2() {
    let m = crlf(
        "From: user@domain.org\nDate: Sat, 24 Mar 2007 23:00:00 +0200\nMime-Version: 1.0\n\
         Content-Type: message/rfc822\n\nFrom: user2@domain.org\nDate: Fri, 23 Mar 2007 11:22:33 +0200\n\
         Mime-Version: 1.0\nContent-Type: message/rfc822\n\nFrom: sub@domain.org\n\
         Date: Sun, 12 Aug 2012 12:34:56 +0300\nSubject: submsg\n\nHello world\n",
    );
    let user2 = "From: user2@domain.org\r\nDate: Fri, 23 Mar 2007 11:22:33 +0200\r\nMime-Version: 1.0\r\n\
                 Content-Type: message/rfc822\r\n\r\n";
    let sub_header =
        "From: sub@domain.org\r\nDate: Sun, 12 Aug 2012 12:34:56 +0300\r\nSubject: submsg\r\n\r\n";
    let sub = format!("{sub_header}Hello world\r\n");
    assert_eq!(text(sec_text(&m, &[])), format!("{user2}{sub}"));
    assert_eq!(text(sec_part(&m, &[1])), format!("{user2}{sub}"));
    assert_eq!(text(sec_part(&m, &[1, 1])), sub);
    assert_eq!(text(sec_header(&m, &[1])), user2);
    assert_eq!(text(sec_text(&m, &[1])), sub);
    assert_eq!(text(sec_part(&m, &[1, 1, 1])), "Hello world\r\n");
    assert_eq!(text(sec_header(&m, &[1, 1])), sub_header);
    assert_eq!(text(sec_text(&m, &[1, 1])), "Hello world\r\n");
    assert_eq!(sec_part(&m, &[1, 1, 1, 1]), None);
    assert_eq!(sec_part(&m, &[2]), None);
    assert_eq!(user2.len() + sub.len(), 207);
    assert_eq!(sub.len(), 93);
    assert_eq!(
        body(&m),
        r#"("MESSAGE" "RFC822" NIL NIL NIL "7bit" 207 ("Fri, 23 Mar 2007 11:22:33 +0200" NIL ((NIL NIL "user2" "domain.org")) ((NIL NIL "user2" "domain.org")) ((NIL NIL "user2" "domain.org")) NIL NIL NIL NIL NIL) ("MESSAGE" "RFC822" NIL NIL NIL "7bit" 93 ("Sun, 12 Aug 2012 12:34:56 +0300" "submsg" ((NIL NIL "sub" "domain.org")) ((NIL NIL "sub" "domain.org")) ((NIL NIL "sub" "domain.org")) NIL NIL NIL NIL NIL) ("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7bit" 13 1) 5) 10)"#
    );
}

/// imaptest fetch-body-message-rfc822-mime: a multipart/digest, whose
/// parts default to message/rfc822, with transport padding after the
/// boundaries.
#[test]
fn imaptest_digest() {
    let m = crlf(
        "From: user@domain.org\nDate: Sat, 24 Mar 2007 23:00:00 +0200\nMime-Version: 1.0\n\
         Content-Type: message/rfc822\n\nFrom: sub@domain.org\nDate: Sun, 12 Aug 2012 12:34:56 +0300\n\
         Subject: submsg\nContent-Type: multipart/digest; boundary=\"foo\"\n\nprologue\n\n--foo \n\n\
         From: m1@example.com\nSubject: m1\n\nm1 body\n\n--foo \nX-Mime: m2 header\n\n\
         From: m2@example.com\nSubject: m2\n\nm2 body\n\n--foo--\n\nepilogue\n",
    );
    assert!(text(sec_text(&m, &[1])).starts_with("prologue\r\n\r\n--foo \r\n"));
    assert!(text(sec_text(&m, &[1])).ends_with("--foo--\r\n\r\nepilogue\r\n"));
    assert_eq!(
        text(sec_part(&m, &[1, 1])),
        "From: m1@example.com\r\nSubject: m1\r\n\r\nm1 body\r\n"
    );
    assert_eq!(text(sec_mime(&m, &[1, 1])), "\r\n");
    assert_eq!(
        text(sec_header(&m, &[1, 1])),
        "From: m1@example.com\r\nSubject: m1\r\n\r\n"
    );
    assert_eq!(text(sec_text(&m, &[1, 1])), "m1 body\r\n");
    assert_eq!(
        text(sec_part(&m, &[1, 2])),
        "From: m2@example.com\r\nSubject: m2\r\n\r\nm2 body\r\n"
    );
    assert_eq!(text(sec_mime(&m, &[1, 2])), "X-Mime: m2 header\r\n\r\n");
    assert_eq!(
        text(sec_header(&m, &[1, 2])),
        "From: m2@example.com\r\nSubject: m2\r\n\r\n"
    );
    assert_eq!(text(sec_text(&m, &[1, 2])), "m2 body\r\n");
    let b = body(&m);
    assert_eq!(
        b,
        r#"("MESSAGE" "RFC822" NIL NIL NIL "7bit" 296 ("Sun, 12 Aug 2012 12:34:56 +0300" "submsg" ((NIL NIL "sub" "domain.org")) ((NIL NIL "sub" "domain.org")) ((NIL NIL "sub" "domain.org")) NIL NIL NIL NIL NIL) (("MESSAGE" "RFC822" NIL NIL NIL "7bit" 46 (NIL "m1" ((NIL NIL "m1" "example.com")) ((NIL NIL "m1" "example.com")) ((NIL NIL "m1" "example.com")) NIL NIL NIL NIL NIL) ("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7bit" 9 1) 4)("MESSAGE" "RFC822" NIL NIL NIL "7bit" 46 (NIL "m2" ((NIL NIL "m2" "example.com")) ((NIL NIL "m2" "example.com")) ((NIL NIL "m2" "example.com")) NIL NIL NIL NIL NIL) ("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7bit" 9 1) 4) "digest") 25)"#
    );
    assert_eq!(sec_part(&m, &[1]).unwrap().len(), 296);
}

// ---------------------------------------------------------------------------
// Sections
// ---------------------------------------------------------------------------

#[test]
fn header_sections() {
    let m = crlf(
        "From: User1 <user1@domain.org>\nDate: Sat, 24 Mar 2007 23:00:00 +0200\nSubject: s1\n\
         X-Folded: a\n  b\n\nbody1\n",
    );
    assert_eq!(
        text(sec_header(&m, &[])),
        "From: User1 <user1@domain.org>\r\nDate: Sat, 24 Mar 2007 23:00:00 +0200\r\nSubject: s1\r\nX-Folded: a\r\n  b\r\n\r\n"
    );
    assert_eq!(text(sec_text(&m, &[])), "body1\r\n");
    assert_eq!(
        text(sec_fields(&m, &[], &["from"], false)),
        "From: User1 <user1@domain.org>\r\n\r\n"
    );
    assert_eq!(
        text(sec_fields(&m, &[], &["SUBJECT", "from"], false)),
        "From: User1 <user1@domain.org>\r\nSubject: s1\r\n\r\n"
    );
    assert_eq!(
        text(sec_fields(&m, &[], &["date"], true)),
        "From: User1 <user1@domain.org>\r\nSubject: s1\r\nX-Folded: a\r\n  b\r\n\r\n"
    );
    assert_eq!(
        text(sec_fields(&m, &[], &["x-folded"], false)),
        "X-Folded: a\r\n  b\r\n\r\n"
    );
    assert_eq!(text(sec_fields(&m, &[], &["xyz"], false)), "\r\n");
    // Part 1 of a single-part message is its body, MIME its header.
    assert_eq!(text(sec_part(&m, &[1])), "body1\r\n");
    assert_eq!(sec_mime(&m, &[1]), sec_header(&m, &[]));
    assert_eq!(sec_part(&m, &[2]), None);
    assert_eq!(sec_part(&m, &[1, 1]), None);
    assert_eq!(sec_header(&m, &[1]), None);
    // No blank line, no body: the header as it is, an empty text.
    let m = b"Subject: x\r\nFrom: y".to_vec();
    assert_eq!(text(sec_header(&m, &[])), "Subject: x\r\nFrom: y");
    assert_eq!(text(sec_text(&m, &[])), "");
    assert_eq!(text(sec_fields(&m, &[], &["from"], false)), "From: y\r\n\r\n");
    // No header at all.
    let m = crlf("\nbody\n");
    assert_eq!(text(sec_header(&m, &[])), "\r\n");
    assert_eq!(text(sec_text(&m, &[])), "body\r\n");
    assert_eq!(text(sec_mime(&m, &[1])), "\r\n");
}

// ---------------------------------------------------------------------------
// BINARY
// ---------------------------------------------------------------------------

#[test]
fn binary_base64_and_qp() {
    let m = crlf(
        "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Transfer-Encoding: base64\n\n\
         YWJjZGVmZ2hp\namtsDQptbm8N\nCnBxcnN0dXZxeHl6\n--b\nContent-Transfer-Encoding: quoted-printable\n\n\
         hello  \nfoo=09bar\nfoo\t \t=\nb =\t\nend=3d=3D=4=ZZ_\n--b\nContent-Transfer-Encoding: x-uuencode\n\nbegin\n\
         --b\nContent-Transfer-Encoding: 8bit\n\n\u{e9}t\u{e9}\n--b--\n",
    );
    assert_eq!(
        binary(&m, &path(&[1])),
        Ok(Some(b"abcdefghijkl\r\nmno\r\npqrstuvqxyz".to_vec()))
    );
    assert_eq!(binary_size(&m, &path(&[1])), Ok(Some(30)));
    assert_eq!(
        binary(&m, &path(&[2])),
        Ok(Some(b"hello\r\nfoo\tbar\r\nfoo\t \tb end===4=ZZ_".to_vec()))
    );
    assert_eq!(binary(&m, &path(&[3])), Err(UnknownCte));
    assert_eq!(binary_size(&m, &path(&[3])), Err(UnknownCte));
    assert_eq!(binary(&m, &path(&[4])), Ok(Some("été".as_bytes().to_vec())));
    assert_eq!(binary(&m, &path(&[5])), Ok(None));
    assert!(
        bs(&m).contains(r#""x-uuencode" 5 0 NIL NIL NIL NIL)"#),
        "{}",
        bs(&m)
    );
    assert!(!needs_literal8(b"hello\r\nbar\r\n\x80\xff"));
    assert!(!needs_literal8(b""));
    assert!(needs_literal8(b"a\0b"));
    assert!(needs_literal8(b"\nfoo\tbar\r\n"));
    assert!(needs_literal8(b"foo\tbar\r"));
    assert!(needs_literal8(b"a\nb"));
    // Sloppy base64: junk skipped, stops at padding.
    assert_eq!(decode_base64(b"YW*J j\r\nZA=\r\n=ZZZZ"), b"abcd".to_vec());
    assert_eq!(decode_base64(b"YQ"), b"a".to_vec());
    assert_eq!(decode_base64(b"Y"), b"".to_vec());
}

// ---------------------------------------------------------------------------
// SEARCH helpers
// ---------------------------------------------------------------------------

#[test]
fn header_values_decode_rfc2047() {
    let m = crlf(
        "Subject: =?UTF-8?B?SGVsbG8gV8O2cmxk?= =?ISO-8859-1?Q?_caf=E9?= and\n =?utf-8*en?q?more?=\n\
         From: =?utf-8?q?J=C3=B6rg?= <joerg@example.de>\nX-Extra: hello beautiful header\n\
         x-extra: second\nX-Empty:\nX-Bad: =?bogus?x?abc?= =?utf-8?q?ok?=\nX-Raw: Grüße\n\nbody\n",
    );
    assert_eq!(
        header_values(&m, "subject"),
        vec!["Hello Wörld café and more".to_string()]
    );
    assert_eq!(
        header_values(&m, "FROM"),
        vec!["Jörg <joerg@example.de>".to_string()]
    );
    assert_eq!(
        header_values(&m, "X-Extra"),
        vec!["hello beautiful header".to_string(), "second".to_string()]
    );
    assert_eq!(header_values(&m, "x-empty"), vec![String::new()]);
    assert_eq!(header_values(&m, "x-bad"), vec!["=?bogus?x?abc?= ok".to_string()]);
    assert_eq!(header_values(&m, "x-raw"), vec!["Grüße".to_string()]);
    assert!(header_values(&m, "to").is_empty());
    // A header in the body is not a header.
    assert!(header_values(&crlf("A: b\n\nTo: x\n"), "to").is_empty());
}

#[test]
fn body_text_charsets() {
    let m = crlf(
        "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain; charset=iso-8859-1\n\
         Content-Transfer-Encoding: quoted-printable\n\nasdfghjkl caf=E9\n--b\n\
         Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n\
         SGVsbG8gV8O2cmxk\n--b\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n\nenhjdmJubQ==\n\
         --b\nContent-Type: text/plain; charset=x-unknown\n\nqwertyuiop\n--b--\n",
    );
    let t = body_text(&m);
    assert!(t.contains("asdfghjkl café"), "{t}");
    assert!(t.contains("Hello Wörld"), "{t}");
    assert!(t.contains("qwertyuiop"), "{t}");
    assert!(!t.contains("zxcvbnm") && !t.contains("enhj"), "{t}");
    assert_eq!(body_text(&crlf("Subject: x\n\nbody\n")), "body\r\n");
    assert_eq!(body_text(b""), "");
}

#[test]
fn dates() {
    let m = crlf("Date: Sat, 24 Mar 2007 23:00:00 +0200\n\nx");
    assert_eq!(sent_date(&m), Some(1_174_770_000));
    assert_eq!(sent_date_with_zone(&m), Some((1_174_770_000, 7200)));
    assert_eq!(sent_day(&m), Some(13_596));
    // imaptest search-date: the day as written, not the UTC day.
    let m = crlf("Date: Sun, 25 Mar 2007 03:30:00 +0300\n\nx");
    assert_eq!(sent_date(&m), Some(1_174_782_600));
    assert_eq!(sent_day(&m), Some(13_597));
    assert_eq!(sent_date(&m).map(|t| t.div_euclid(86_400)), Some(13_597));
    let m = crlf("Date: Sun, 25 Mar 2007 00:30:00 +0300\n\nx");
    assert_eq!(sent_day(&m), Some(13_597));
    assert_eq!(sent_date(&m).map(|t| t.div_euclid(86_400)), Some(13_596));
    // Obsolete forms: no day name, 2-digit year, named zone, no seconds, comments, folding.
    assert_eq!(
        sent_date(&crlf("Date: 1 Feb 07 01:02 EST\n\nx")),
        Some(1_170_309_720)
    );
    assert_eq!(
        sent_date(&crlf(
            "Date: Thu,\n 1 Feb 2007 06:02:00 (comment) GMT (Greenwich)\n\nx"
        )),
        Some(1_170_309_720)
    );
    assert_eq!(
        sent_date(&crlf("Date: Thu, 01 Feb 2007 06:02:00\n\nx")),
        Some(1_170_309_720)
    );
    assert_eq!(
        sent_date(&crlf("Date: Thu, 01 February 2007 01:02:00 -0500\n\nx")),
        Some(1_170_309_720)
    );
    for bad in [
        "",
        "yesterday",
        "32 Jan 2007 00:00:00 +0000",
        "1 Foo 2007 00:00 +0000",
        "1 Jan 2007 25:00 +0000",
    ] {
        assert_eq!(sent_date(&crlf(&format!("Date: {bad}\n\nx"))), None, "{bad}");
    }
    assert_eq!(sent_date(b"Subject: x\r\n\r\n"), None);
}

// ---------------------------------------------------------------------------
// Limits and fuzzing
// ---------------------------------------------------------------------------

fn depth(b: &BodyStructure<'_>) -> usize {
    match b {
        BodyStructure::Multi { bodies, .. } => 1 + bodies.as_ref().iter().map(depth).max().unwrap_or(0),
        BodyStructure::Single { body, .. } => match &body.specific {
            SpecificFields::Message { body_structure, .. } => 1 + depth(body_structure),
            _ => 1,
        },
    }
}

#[test]
fn deep_nesting_is_bounded() {
    let mut m = Vec::new();
    for i in 0..5000 {
        m.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n").as_bytes(),
        );
    }
    m.extend_from_slice(b"\r\nleaf\r\n");
    let b = body_structure(&m, true);
    assert!(depth(&b) <= MAX_DEPTH + 2, "{}", depth(&b));
    let _ = encode_item(MessageDataItem::BodyStructure(b));
    let mut m = Vec::new();
    for _ in 0..5000 {
        m.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
    }
    let b = body_structure(&m, true);
    assert!(depth(&b) <= MAX_DEPTH + 3, "{}", depth(&b));
    let _ = encode_item(MessageDataItem::BodyStructure(b));
    let _ = body_text(&m);
    let _ = section(&m, Some(&Section::Part(part(&[1; 30]))));
}

#[test]
fn many_parts_are_bounded() {
    let mut m = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
    for _ in 0..30_000 {
        m.extend_from_slice(b"--b\r\n\r\nx\r\n");
    }
    let BodyStructure::Multi { bodies, .. } = body_structure(&m, false) else {
        panic!("multipart")
    };
    assert!(bodies.as_ref().len() < MAX_PARTS, "{}", bodies.as_ref().len());
    assert!(text(sec_part(&m, &[1])) == "x");
}

/// Part paths of a BODYSTRUCTURE with the size and lines it claims.
type Claims = Vec<(Vec<u32>, u32, Option<u32>)>;

/// The parts of a message (the top level or a message/rfc822 part's).
fn message_paths(b: &BodyStructure<'_>, prefix: &[u32], out: &mut Claims) {
    match b {
        BodyStructure::Multi { .. } => part_paths(b, prefix, out),
        BodyStructure::Single { .. } => part_paths(b, &[prefix, &[1]].concat(), out),
    }
}

fn part_paths(b: &BodyStructure<'_>, p: &[u32], out: &mut Claims) {
    match b {
        BodyStructure::Multi { bodies, .. } => {
            for (i, child) in bodies.as_ref().iter().enumerate() {
                part_paths(child, &[p, &[i as u32 + 1]].concat(), out);
            }
        }
        BodyStructure::Single { body, .. } => {
            let lines = match &body.specific {
                SpecificFields::Text { number_of_lines, .. } => Some(*number_of_lines),
                SpecificFields::Message {
                    number_of_lines,
                    body_structure,
                    ..
                } => {
                    message_paths(body_structure, p, out);
                    Some(*number_of_lines)
                }
                SpecificFields::Basic { .. } => None,
            };
            out.push((p.to_vec(), body.basic.size, lines));
        }
    }
}

/// Everything holds together and nothing panics.
fn check(raw: &[u8]) {
    let e = encode_item(MessageDataItem::Envelope(envelope(raw)));
    let decoded = ResponseCodec::default().decode(&e);
    assert!(
        matches!(decoded, Ok((rest, _)) if rest.is_empty()),
        "{:?}",
        String::from_utf8_lossy(&e)
    );
    for extended in [true, false] {
        let b = body_structure(raw, extended);
        let shallow = depth(&b) <= 6;
        let mut paths = Vec::new();
        message_paths(&b, &[], &mut paths);
        let item = if extended {
            MessageDataItem::BodyStructure(b)
        } else {
            MessageDataItem::Body(b)
        };
        let e = encode_item(item);
        if shallow {
            let decoded = ResponseCodec::default().decode(&e);
            assert!(
                matches!(decoded, Ok((rest, _)) if rest.is_empty()),
                "{:?}",
                String::from_utf8_lossy(&e)
            );
        }
        for (p, size, lines) in paths {
            let content = sec_part(raw, &p).unwrap_or_else(|| panic!("part {p:?} exists"));
            assert_eq!(content.len() as u32, size, "size of {p:?}");
            if let Some(lines) = lines {
                assert_eq!(
                    content.iter().filter(|&&b| b == b'\n').count() as u32,
                    lines,
                    "lines of {p:?}"
                );
            }
            assert!(sec_mime(raw, &p).is_some());
            if let Ok(Some(v)) = binary(raw, &path(&p)) {
                assert_eq!(binary_size(raw, &path(&p)), Ok(Some(v.len() as u32)));
            }
        }
    }
    assert_eq!(section(raw, None).as_deref(), Some(raw));
    let mut whole = sec_header(raw, &[]).unwrap();
    whole.extend(sec_text(raw, &[]).unwrap());
    assert_eq!(whole, raw);
    let _ = sec_fields(raw, &[], &["subject", "from"], false);
    let _ = sec_fields(raw, &[], &["subject"], true);
    for p in [&[1u32][..], &[2], &[1, 1], &[2, 1], &[1, 2, 1], &[3, 1]] {
        let _ = sec_header(raw, p);
        let _ = sec_text(raw, p);
        let _ = sec_fields(raw, p, &["to"], false);
    }
    let _ = header_values(raw, "subject");
    let _ = header_values(raw, "from");
    let _ = body_text(raw);
    let _ = sent_date(raw);
    let _ = sent_day(raw);
}

#[test]
fn check_samples() {
    for m in samples() {
        check(&m);
    }
}

fn samples() -> Vec<Vec<u8>> {
    vec![
        report_message(),
        forward_message(),
        imaptest_mime_message(),
        crlf("From: a@b\nSubject: =?utf-8?q?x?=\nDate: Mon, 1 Jan 2024 10:00:00 +0000\n\nhello\n"),
        crlf(
            "Content-Type: multipart/digest; boundary=d\n\n--d\n\nFrom: x@y\n\nm1\n--d\n\
             Content-Type: message/rfc822\n\nContent-Type: multipart/alternative; boundary=a\n\n--a\n\n\
             t\n--a\nContent-Type: text/html; charset=\"utf-8\"\nContent-Transfer-Encoding: base64\n\nPGI+\n--a--\n--d--\n",
        ),
    ]
}

const FRAGMENTS: &[&str] = &[
    "\r\n",
    "\n",
    "\r\n\r\n",
    " ",
    "\t",
    "--b",
    "--b--",
    "--c",
    "Content-Type: multipart/mixed; boundary=b\r\n",
    "Content-Type: multipart/alternative; boundary=\"c\"\r\n",
    "Content-Type: multipart/digest; boundary=b\r\n",
    "Content-Type: message/rfc822\r\n",
    "Content-Type: text/plain; charset=utf-8\r\n",
    "Content-Type: ",
    "Content-Transfer-Encoding: base64\r\n",
    "Content-Transfer-Encoding: quoted-printable\r\n",
    "Content-Disposition: attachment; filename*0*=utf-8''%E2; filename*1=x\r\n",
    "From: ",
    "To: ",
    "Subject: ",
    "Date: ",
    "Mon, 1 Jan 2024 10:00:00 +0000",
    "a@b",
    "<@r:x@y>",
    "\"q\\\"\"",
    "(c(d)",
    "g:",
    ";",
    ",",
    "<",
    ">",
    "@",
    "=?utf-8?b?w6k=?=",
    "Content-Type: text/plain; charset=utf-16\r\n",
    "Content-Type: text/plain; charset=utf-7\r\n",
    "Content-Type: text/plain; charset=iso-2022-jp\r\n",
    "Content-Type: text/plain; charset=gb18030\r\n",
    "Content-Type: text/plain; charset=shift_jis\r\n",
    "=?utf-16?b?2D3eAA?=",
    "=?utf-7?q?+AOk-?=",
    "=?iso-2022-jp?b?GyRCJDMbKEI=?=",
    "+AOk",
    "\x1b$B",
    "=?x?q?a_b=",
    "=",
    "=4",
    "\u{e9}",
    "\0",
];

proptest! {
    // PROPTEST_CASES=100000 for a longer run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(400),
        ..ProptestConfig::default()
    })]

    #[test]
    fn fuzz_random_bytes(raw in proptest::collection::vec(any::<u8>(), 0..600)) {
        check(&raw);
    }

    #[test]
    fn fuzz_fragments(picks in proptest::collection::vec(0..FRAGMENTS.len(), 0..80)) {
        let raw: Vec<u8> = picks.iter().flat_map(|&i| FRAGMENTS[i].bytes()).collect();
        check(&raw);
    }

    #[test]
    fn fuzz_mutated_messages(
        sample in 0..5usize,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0..4u8, any::<u8>(), 0..FRAGMENTS.len()), 1..12),
    ) {
        let mut raw = samples().swap_remove(sample);
        for (at, op, byte, frag) in edits {
            let i = at.index(raw.len() + 1);
            match op {
                0 => raw.insert(i, byte),
                1 => {
                    let end = (i + usize::from(byte % 40)).min(raw.len());
                    raw.drain(i..end);
                }
                2 => {
                    let f = FRAGMENTS[frag].as_bytes();
                    raw.splice(i..i, f.iter().copied());
                }
                _ => {
                    let end = (i + usize::from(byte)).min(raw.len());
                    let dup: Vec<u8> = raw[i..end].to_vec();
                    raw.splice(i..i, dup);
                }
            }
        }
        check(&raw);
    }
}
