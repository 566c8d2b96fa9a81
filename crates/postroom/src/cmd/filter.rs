//! `postroom filter`, `whitelist`, `quarantine` and `explain`: the
//! content filter's commands. Changes go through `postroom_admin`; this
//! file parses and prints.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use postroom_filter::{DomainPolicy, Thresholds};

use super::{wait, CmdResult, Context};
use crate::cli::{FilterCmd, QuarantineCmd, WhitelistCmd};

/// How deep `filter check` goes into folders (a Maildir is two levels:
/// the folder, then cur/ and new/; a tree of Maildirs a few more).
const MAX_DEPTH: usize = 6;

/// How long the offline checks of one file may take: nothing waits on
/// the network, so this only stops a pathological message.
const FILE_DEADLINE: Duration = Duration::from_secs(30);

pub fn filter(ctx: &Context, cmd: FilterCmd) -> CmdResult {
    match cmd {
        FilterCmd::Check { paths, json } => check(ctx, &paths, json),
        FilterCmd::Policy {
            domain,
            junk_at,
            quarantine_at,
            high_at,
            high_action,
            cleaned,
            reset,
        } => {
            let cfg = ctx.config()?;
            let defaults = Thresholds::from(&cfg.filter.policy);
            let admin = ctx.admin()?;
            let change = DomainPolicy {
                junk_at,
                quarantine_at,
                high_at,
                high_action,
                cleaned: cleaned.map(|c| c == "on"),
            };
            let changing = reset || change != DomainPolicy::default();
            wait(async {
                let policy = if changing {
                    admin
                        .filter_policy_set(&ctx.actor, &domain, change, reset, &defaults)
                        .await
                        .map_err(|e| e.to_string())?
                } else {
                    admin.filter_policy(&domain).await.map_err(|e| e.to_string())?.1
                };
                let t = policy.thresholds(&defaults);
                let mark = |own: bool| if own { "" } else { " (server)" };
                println!("junk_at\t{}{}", t.junk_at, mark(policy.junk_at.is_some()));
                println!(
                    "quarantine_at\t{}{}",
                    t.quarantine_at,
                    mark(policy.quarantine_at.is_some())
                );
                println!("high_at\t{}{}", t.high_at, mark(policy.high_at.is_some()));
                println!(
                    "high_action\t{}{}",
                    if t.high_discards { "discard" } else { "reject" },
                    mark(policy.high_action.is_some())
                );
                println!(
                    "cleaned\t{}{}",
                    if policy.cleaned.unwrap_or(true) {
                        "on"
                    } else {
                        "off"
                    },
                    mark(policy.cleaned.is_some())
                );
                Ok(())
            })
        }
    }
}

/// Every file under `paths`, sorted, dot-files and Maildir `tmp/` left
/// out.
fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    fn walk(p: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), String> {
        let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        if meta.is_file() {
            out.push(p.to_path_buf());
            return Ok(());
        }
        if !meta.is_dir() || depth >= MAX_DEPTH {
            return Ok(());
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(|e| format!("{}: {e}", p.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|e| {
                let name = e
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                !name.starts_with('.') && name != "tmp"
            })
            .collect();
        entries.sort();
        for e in entries {
            walk(&e, depth + 1, out)?;
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        walk(p, 0, &mut out)?;
    }
    Ok(out)
}

/// The classifier as the server would load it, when there is a store
/// (scoring files needs none: without one the classifier is left out).
fn offline_classifier(
    ctx: &Context,
    cfg: &postroom_config::Config,
) -> Option<std::sync::Arc<postroom_filter::classifier::Classifier>> {
    if !cfg.filter.classifier.enabled {
        return None;
    }
    let store = ctx.store().ok()?;
    let c = postroom_filter::classifier::Classifier::new(&cfg.filter.classifier, store.meta_handle());
    match super::wait(c.load()) {
        Ok(()) => Some(std::sync::Arc::new(c)),
        Err(e) => {
            eprintln!("warning: the classifier's training could not be read ({e}): scored without it");
            None
        }
    }
}

/// `filter check`: the chain `[filter]` describes, offline, on files.
fn check(ctx: &Context, paths: &[PathBuf], json: bool) -> CmdResult {
    let cfg = ctx.config()?;
    let deps = postroom_filter::Deps {
        hostname: cfg.server.hostname.clone(),
        // No resolver: the sender checks look nothing up offline.
        dns: None,
        offline: true,
        classifier: offline_classifier(ctx, &cfg),
        ..Default::default()
    };
    let mut chain = postroom_filter::chain(&cfg.filter, &deps).map_err(|e| format!("[filter]: {e}"))?;
    // The server's test hook, here too (see `content::TestScore`).
    if std::env::var_os("POSTROOM_TEST_FILTER_SCORES").is_some() {
        chain = chain.with_check(Box::new(postroom_pipeline::content::TestScore));
    }
    let thresholds = Thresholds::from(&cfg.filter.policy);
    let parser = postroom_filter::mail_parser::MessageParser::default();
    let max = cfg.smtp.max_message_size;
    let mut failed = false;
    for file in files(paths)? {
        let raw = match std::fs::metadata(&file) {
            Ok(m) if m.len() > max => {
                eprintln!(
                    "{}: larger than smtp.max_message_size ({max} bytes): skipped",
                    file.display()
                );
                failed = true;
                continue;
            }
            _ => match std::fs::read(&file) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    failed = true;
                    continue;
                }
            },
        };
        let mail_from = postroom_core::header::header_value(&raw, "return-path")
            .map(|r| r.trim().trim_start_matches('<').trim_end_matches('>').to_string())
            .filter(|r| !r.is_empty());
        // A file has no SMTP transaction: the sender checks are left out
        // offline, so the client and HELO here score nothing.
        let envelope = postroom_filter::Envelope::unauthenticated(
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            "localhost",
            mail_from.as_deref(),
            Instant::now() + FILE_DEADLINE,
        );
        let fallback = postroom_filter::mail_parser::Message::default();
        let parsed = parser.parse(&raw[..]);
        let scan = postroom_filter::Scan {
            envelope: &envelope,
            raw: &raw,
            message: parsed.as_ref().unwrap_or(&fallback),
        };
        let report = wait(chain.run(&scan));
        let score = report.score(false) + 0.0;
        let action = thresholds.decide(&report, false);
        let name = file.display().to_string();
        if json {
            let symbols: Vec<_> = report.symbols().collect();
            println!(
                "{}",
                serde_json::json!({
                    "file": name,
                    "score": score,
                    "action": action.as_str(),
                    "symbols": symbols,
                    "forced": report.forced,
                })
            );
        } else {
            println!(
                "{name}\t{score:.1}\t{}\t{}",
                action.as_str(),
                postroom_pipeline::content::top_symbols(&report)
            );
        }
    }
    if failed {
        return Err("some files could not be checked".into());
    }
    Ok(())
}

pub fn whitelist(ctx: &Context, cmd: WhitelistCmd) -> CmdResult {
    let admin = ctx.admin()?;
    let text = |e: postroom_admin::AdminError| e.to_string();
    wait(async {
        match cmd {
            WhitelistCmd::Add { scope, sender } => {
                let (scope, sender) = admin
                    .whitelist_add(&ctx.actor, &scope, &sender)
                    .await
                    .map_err(text)?;
                println!("{sender} whitelisted for {scope}");
            }
            WhitelistCmd::Remove { scope, sender } => {
                admin
                    .whitelist_remove(&ctx.actor, &scope, &sender)
                    .await
                    .map_err(text)?;
            }
            WhitelistCmd::List { scope } => {
                for r in admin.whitelist_list(scope.as_deref()).await.map_err(text)? {
                    println!(
                        "{}\t{}\t{}",
                        r.scope,
                        r.sender,
                        postroom_admin::format_utc(r.created)
                    );
                }
            }
        }
        Ok(())
    })
}

pub fn quarantine(ctx: &Context, cmd: QuarantineCmd) -> CmdResult {
    let admin = ctx.admin()?;
    let text = |e: postroom_admin::AdminError| e.to_string();
    wait(async {
        match cmd {
            QuarantineCmd::List { domain, json } => {
                for q in admin.quarantine_list(domain.as_deref()).await.map_err(text)? {
                    let first = &q.rows[0];
                    let rcpts: Vec<&str> = q.rows.iter().map(|r| r.recipient.as_str()).collect();
                    let sender = if first.sender.is_empty() {
                        "<>"
                    } else {
                        &first.sender
                    };
                    if json {
                        println!(
                            "{}",
                            serde_json::json!({
                                "queue_id": q.queue_id,
                                "created": first.created,
                                "sender": first.sender,
                                "recipients": rcpts,
                                "reason": first.reason,
                            })
                        );
                    } else {
                        println!(
                            "{}\t{}\t{sender}\t{}\t{}",
                            q.queue_id,
                            postroom_admin::format_utc(first.created),
                            rcpts.join(","),
                            first.reason
                        );
                    }
                }
            }
            QuarantineCmd::Show { id } => {
                let (q, message) = admin.quarantine_show(&id).await.map_err(text)?;
                for r in &q.rows {
                    println!("# {}\t{}\t{}", r.queue_id, r.recipient, r.reason);
                }
                if let Ok(reports) = admin.explain(&q.queue_id).await {
                    for r in &reports {
                        print_report(&r.report);
                    }
                }
                println!();
                use std::io::Write;
                std::io::stdout().write_all(&message).map_err(|e| e.to_string())?;
            }
            QuarantineCmd::Release { id } => {
                let n = admin.quarantine_release(&ctx.actor, &id).await.map_err(text)?;
                println!("{n} recipient{} released", if n == 1 { "" } else { "s" });
            }
            QuarantineCmd::Delete { id } => {
                let n = admin.quarantine_delete(&ctx.actor, &id).await.map_err(text)?;
                println!("{n} recipient{} deleted", if n == 1 { "" } else { "s" });
            }
        }
        Ok(())
    })
}

pub fn explain(ctx: &Context, id: &str, json: bool) -> CmdResult {
    let admin = ctx.admin()?;
    let rows = wait(admin.explain(id)).map_err(|e| e.to_string())?;
    for r in rows {
        if json {
            println!("{}", r.report);
        } else {
            print_report(&r.report);
        }
    }
    Ok(())
}

/// A stored report (the pipeline's JSON) for a person.
fn print_report(report: &str) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(report) else {
        println!("{report}");
        return;
    };
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    println!("queue id:   {}", s(&v["queue_id"]));
    println!(
        "received:   {} from {} ({}), MAIL FROM <{}>",
        postroom_admin::format_utc(v["at"].as_i64().unwrap_or(0)),
        s(&v["client"]),
        s(&v["helo"]),
        s(&v["from"])
    );
    if !s(&v["message_id"]).is_empty() {
        println!("message-id: <{}>", s(&v["message_id"]));
    }
    println!("answer:     {}", s(&v["reply"]));
    for check in v["checks"].as_array().into_iter().flatten() {
        let symbols = check["symbols"].as_array().cloned().unwrap_or_default();
        println!(
            "check {}: {}",
            s(&check["check"]),
            if symbols.is_empty() { "nothing found" } else { "" }
        );
        for sym in symbols {
            println!(
                "  {:<28} {:>6.1}  {}",
                s(&sym["name"]),
                f(&sym["score"]),
                s(&sym["detail"])
            );
        }
    }
    if let Some(forced) = v["forced"].as_object() {
        println!(
            "decided alone: {} by {}: {}",
            forced.get("kind").map(s).unwrap_or_default(),
            forced.get("symbol").map(s).unwrap_or_default(),
            forced.get("reason").map(s).unwrap_or_default()
        );
    }
    for change in v["changes"].as_array().into_iter().flatten() {
        println!("changed: {}", s(change));
    }
    for r in v["recipients"].as_array().into_iter().flatten() {
        println!(
            "recipient {}: score {:.1}{} -> {} (junk at {}, quarantine at {}, high at {})",
            s(&r["rcpt"]),
            f(&r["score"]),
            if r["whitelisted"].as_bool() == Some(true) {
                ", whitelisted"
            } else {
                ""
            },
            s(&r["action"]),
            f(&r["junk_at"]),
            f(&r["quarantine_at"]),
            f(&r["high_at"])
        );
    }
}
