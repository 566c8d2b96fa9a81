//! `postroom spam train|report|stats`: the statistical classifier's
//! training (`postroom_filter::classifier`), written through the store. A
//! running server sees it at its next look (`[filter.classifier]
//! reload_secs`).

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use postroom_filter::classifier::{Classifier, TRAIN_BATCH};

use super::migrate::Progress;
use super::{wait, CmdResult, Context};

/// A message file larger than this is not a message to learn from (the
/// SMTP size limit's default is 50 MiB; a Maildir of them would hold the
/// batch's memory): skipped and counted.
const MAX_MESSAGE: u64 = 64 * 1024 * 1024;

/// The messages of DIR: a Maildir's `cur/` and `new/`, or else every file
/// in DIR (one message a file). Hidden files are skipped; sorted, so a run
/// is repeatable.
fn message_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let maildir = dir.join("cur").is_dir() && dir.join("new").is_dir();
    let folders = if maildir {
        vec![dir.join("cur"), dir.join("new")]
    } else {
        vec![dir.to_path_buf()]
    };
    let mut out = Vec::new();
    for f in folders {
        for e in std::fs::read_dir(&f).map_err(|e| format!("{}: {e}", f.display()))? {
            let e = e.map_err(|e| format!("{}: {e}", f.display()))?;
            let hidden = e.file_name().to_string_lossy().starts_with('.');
            if !hidden && e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                out.push(e.path());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn classifier(ctx: &Context) -> Result<(postroom_store::Store, Classifier), String> {
    let cfg = ctx.config()?;
    let store = ctx.store()?;
    let c = Classifier::new(&cfg.filter.classifier, store.meta_handle());
    Ok((store, c))
}

/// `postroom spam train --spam DIR --ham DIR`.
pub fn train(ctx: &Context, spam: &[PathBuf], ham: &[PathBuf]) -> CmdResult {
    if spam.is_empty() && ham.is_empty() {
        return Err("spam train needs --spam DIR or --ham DIR".into());
    }
    let (_store, classifier) = classifier(ctx)?;
    let mut progress = Progress::new(std::io::stderr().is_terminal(), "messages");
    let mut skipped = 0usize;
    let mut last = None;
    for (is_spam, dirs) in [(true, spam), (false, ham)] {
        let label = if is_spam { "spam" } else { "ham" };
        let mut files = Vec::new();
        for d in dirs {
            files.extend(message_files(d)?);
        }
        let total = files.len() as u64;
        let mut done = 0u64;
        progress.show(label, 0, total);
        for chunk in files.chunks(TRAIN_BATCH) {
            let mut batch = Vec::with_capacity(chunk.len());
            for f in chunk {
                match std::fs::metadata(f) {
                    Ok(m) if m.len() <= MAX_MESSAGE => match std::fs::read(f) {
                        Ok(raw) => batch.push(raw),
                        Err(_) => skipped += 1,
                    },
                    _ => skipped += 1,
                }
            }
            let r = wait(classifier.train_raw(&batch, is_spam));
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    progress.finish();
                    return Err(format!(
                        "training stopped after {done} {label} messages (each batch of {TRAIN_BATCH} is \
                         kept whole or not at all): {e}"
                    ));
                }
            };
            skipped += r.skipped;
            done += chunk.len() as u64;
            progress.show(label, done, total);
            last = Some(r.totals);
        }
    }
    progress.finish();
    if skipped > 0 {
        eprintln!("skipped {skipped} files that are not messages (unreadable, unparsable or over 64 MiB)");
    }
    if let Some(t) = last {
        println!("trained: {} spam and {} ham messages in all", t.spam, t.ham);
    }
    Ok(())
}

/// `postroom spam report [--ham] FILE...`: a message the filter got wrong
/// ("spam not caught", with its full headers), `-` for standard input.
pub fn report(ctx: &Context, files: &[PathBuf], ham: bool) -> CmdResult {
    if files.is_empty() {
        return Err(
            "spam report needs a FILE (the message with its full headers), or - for standard input".into(),
        );
    }
    let mut messages = Vec::new();
    for f in files {
        let raw = if f.as_os_str() == "-" {
            let mut v = Vec::new();
            std::io::stdin()
                .take(MAX_MESSAGE)
                .read_to_end(&mut v)
                .map_err(|e| format!("standard input: {e}"))?;
            v
        } else {
            std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?
        };
        if !looks_like_a_message(&raw)
            || postroom_filter::mail_parser::MessageParser::default()
                .parse(&raw[..])
                .is_none()
        {
            return Err(format!(
                "{}: not a message with its headers (report it as saved, \"with full headers\")",
                f.display()
            ));
        }
        messages.push(raw);
    }
    let (_store, classifier) = classifier(ctx)?;
    let r = wait(classifier.train_raw(&messages, !ham)).map_err(|e| format!("not trained: {e}"))?;
    println!(
        "trained {} message{} as {}; {} spam and {} ham messages in all",
        r.trained,
        if r.trained == 1 { "" } else { "s" },
        if ham { "ham" } else { "spam" },
        r.totals.spam,
        r.totals.ham
    );
    Ok(())
}

/// A header section first: a field name and a colon on the first line
/// (after an mbox `From ` line, which a saved message may start with).
fn looks_like_a_message(raw: &[u8]) -> bool {
    let raw = postroom_filter::classifier::without_mbox_line(raw);
    let line = raw.split(|&b| b == b'\n').next().unwrap_or(b"");
    match line.iter().position(|&b| b == b':') {
        Some(i) => i > 0 && line[..i].iter().all(|&b| b.is_ascii_graphic()),
        None => false,
    }
}

/// `postroom spam stats [--json]`.
pub fn stats(ctx: &Context, json: bool) -> CmdResult {
    let cfg = ctx.config()?;
    let store = ctx.store()?;
    let meta: Arc<dyn postroom_store::backend::ClassifierMeta> = store.meta_handle();
    let model = wait(meta.classifier_model()).map_err(|e| e.to_string())?;
    let c = &cfg.filter.classifier;
    let votes = model.totals.spam >= c.min_spam as i64 && model.totals.ham >= c.min_ham as i64;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "spam": model.totals.spam,
                "ham": model.totals.ham,
                "tokens": model.tokens.len(),
                "generation": model.totals.generation,
                "votes": votes,
                "min_spam": c.min_spam,
                "min_ham": c.min_ham,
            })
        );
    } else {
        println!("spam messages trained: {}", model.totals.spam);
        println!("ham messages trained:  {}", model.totals.ham);
        println!("tokens:                {}", model.tokens.len());
        println!(
            "votes:                 {}",
            if votes {
                "yes".to_string()
            } else {
                format!("no (from {} spam and {} ham)", c.min_spam, c.min_ham)
            }
        );
    }
    Ok(())
}
