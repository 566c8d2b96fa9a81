use std::io::BufRead;

use postroom_core::{Address, Domain, Secret};
use postroom_directory::import::{parse_virtual_lines, plan_import, read_virtual};
use postroom_directory::{password, Directory, Origin};
use postroom_store::directory::DomainRow;
use postroom_store::{Metadata, Store};

use super::{parse_address, wait, CmdResult, Context};
use crate::cli::{AliasCmd, DomainCmd, ImportCmd, PasswordArgs, UserCmd};

/// A name `domain add` (and `import virtual`) may host: the one check,
/// `Domain::parse_hosted`, against this configuration's host name.
fn hosted_name(ctx: &Context, name: &str) -> Result<Domain, String> {
    let own = ctx.config()?.server.hostname;
    Domain::parse_hosted(name, &own).map_err(|e| format!("`{name}` {e}"))
}

fn hosted(db: &dyn Metadata, domain: &Domain) -> Result<DomainRow, String> {
    wait(db.domain(domain.canonical()))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("domain {domain} is not hosted here (postroom domain add {domain})"))
}

/// The local domain an address lives in; mailboxes and aliases live in the
/// target of an alias domain.
fn home_domain(db: &dyn Metadata, domain: &Domain) -> Result<DomainRow, String> {
    let d = hosted(db, domain)?;
    if let Some(target) = d.alias_of {
        let t = wait(db.domain_by_id(target))
            .map_err(|e| e.to_string())?
            .ok_or("dangling alias domain")?;
        return Err(format!(
            "{} is an alias of {}: add it there",
            d.display, t.display
        ));
    }
    Ok(d)
}

fn find_account(db: &dyn Metadata, addr: &Address) -> Result<postroom_store::directory::AccountRow, String> {
    let d = home_domain(db, addr.domain())?;
    wait(db.account(d.id, addr.local_canonical()))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no mailbox {addr}"))
}

pub fn domain(ctx: &Context, cmd: DomainCmd) -> CmdResult {
    let store = ctx.store()?;
    match cmd {
        DomainCmd::Add {
            domain,
            alias_of,
            relay_to,
            verify,
        } => {
            let d = hosted_name(ctx, &domain)?;
            let target = match &alias_of {
                Some(t) => Some(Domain::parse(t).map_err(|e| format!("`{t}`: {e}"))?),
                None => None,
            };
            let relay_to = relay_to.as_deref().map(check_next_hop).transpose()?;
            let row = wait(store.meta().add_domain(
                d.canonical(),
                d.display(),
                target.as_ref().map(Domain::canonical),
            ))
            .map_err(|e| e.to_string())?;
            if let Some(hop) = &relay_to {
                wait(store.meta().set_domain_relay(row.id, Some(hop), verify)).map_err(|e| e.to_string())?;
            }
            match (target, relay_to) {
                (Some(t), _) => println!("added {d} (alias of {t})"),
                (None, Some(hop)) => {
                    println!("added {d} (gateway: relayed to {hop})");
                    if !verify {
                        println!("list its recipients: postroom domain recipients {d} --add sales,info");
                    }
                }
                (None, None) => println!("added {d}"),
            }
        }
        DomainCmd::Recipients { domain, add, remove } => {
            let d = home_domain(
                store.meta(),
                &Domain::parse(&domain).map_err(|e| format!("`{domain}`: {e}"))?,
            )?;
            if d.relay_to.is_none() {
                eprintln!(
                    "note: {} is not a gateway domain (postroom domain set {} --relay-to HOST:PORT)",
                    d.display, d.display
                );
            }
            if let Some(list) = &add {
                let locals = relay_locals(list, &d)?;
                wait(store.meta().add_relay_recipients(d.id, &locals)).map_err(|e| e.to_string())?;
            }
            if let Some(list) = &remove {
                for l in relay_locals(list, &d)? {
                    if !wait(store.meta().remove_relay_recipient(d.id, &l)).map_err(|e| e.to_string())? {
                        eprintln!("{l}@{} was not listed", d.display);
                    }
                }
            }
            for l in wait(store.meta().relay_recipients(d.id)).map_err(|e| e.to_string())? {
                println!("{l}@{}", d.display);
            }
        }
        DomainCmd::Set {
            domain,
            subaddress_separator,
            default_quota,
            relay_to,
            verify,
        } => {
            let d = home_domain(
                store.meta(),
                &Domain::parse(&domain).map_err(|e| format!("`{domain}`: {e}"))?,
            )?;
            if let Some(sep) = &subaddress_separator {
                if sep.chars().count() > 1 || sep.contains(['@', ' ', '"']) {
                    return Err("the separator is one character (or empty)".into());
                }
            }
            let quota = match default_quota.as_deref() {
                None => None,
                Some("none") => Some(None),
                Some(q) => Some(Some(parse_size(q)?)),
            };
            wait(
                store
                    .meta()
                    .update_domain(d.id, subaddress_separator.as_deref(), quota),
            )
            .map_err(|e| e.to_string())?;
            if relay_to.is_some() || verify.is_some() {
                let hop = match relay_to.as_deref() {
                    Some("none") => None,
                    Some(h) => Some(check_next_hop(h)?),
                    None => d.relay_to.clone(),
                };
                if hop.is_none() && verify == Some(true) {
                    return Err("--verify needs a gateway domain (--relay-to HOST:PORT)".into());
                }
                wait(
                    store
                        .meta()
                        .set_domain_relay(d.id, hop.as_deref(), verify.unwrap_or(d.relay_verify)),
                )
                .map_err(|e| e.to_string())?;
            }
            println!("updated {}", d.display);
        }
        DomainCmd::List => {
            let all = wait(store.meta().domains()).map_err(|e| e.to_string())?;
            for d in &all {
                match d.alias_of.and_then(|id| all.iter().find(|x| x.id == id)) {
                    Some(t) => println!("{}\talias of {}", d.display, t.display),
                    None if d.relay_to.is_some() => println!(
                        "{}\tgateway to {}\t{}",
                        d.display,
                        d.relay_to.as_deref().unwrap_or(""),
                        if d.relay_verify {
                            "listed or verified recipients"
                        } else {
                            "listed recipients"
                        }
                    ),
                    None => println!(
                        "{}\tlocal\tsubaddress separator '{}'\tdefault quota {}",
                        d.display,
                        d.subaddress_separator,
                        d.default_quota.map_or("-".to_string(), |q| q.to_string())
                    ),
                }
            }
        }
    }
    Ok(())
}

/// `host:port` as given, when it is one.
fn check_next_hop(hop: &str) -> Result<String, String> {
    match postroom_queue::dns::split_host_port(hop) {
        Some(_) => Ok(hop.to_string()),
        None => Err(format!(
            "`{hop}` is not HOST:PORT (e.g. mail.customer.example:25)"
        )),
    }
}

/// Canonical local parts from `sales,info` or `sales@domain,...`.
fn relay_locals(list: &str, d: &DomainRow) -> Result<Vec<String>, String> {
    let domain = Domain::parse(&d.name).map_err(|e| e.to_string())?;
    qualify_targets(list, &domain)?
        .iter()
        .map(|t| {
            let a = parse_address(t)?;
            if a.domain().canonical() != d.name {
                return Err(format!("{t} is not in {}", d.display));
            }
            Ok(a.local_canonical().to_string())
        })
        .collect()
}

fn read_password(args: &PasswordArgs, min_len: usize) -> Result<Option<String>, String> {
    if let Some(h) = &args.password_hash {
        if !password::is_supported(h) {
            return Err(
                "unsupported hash: use {SHA512-CRYPT}, {SHA256-CRYPT}, {BLF-CRYPT}, {PLAIN} or $argon2id$"
                    .into(),
            );
        }
        return Ok(Some(h.clone()));
    }
    if !args.password_stdin {
        return Ok(None);
    }
    // One line, read with a cap: a password has no business being longer
    // than 4 KiB, and stdin may be a file or a device that never ends.
    const MAX_LINE: u64 = 4096;
    let mut raw = Vec::new();
    std::io::Read::take(std::io::stdin().lock(), MAX_LINE + 1)
        .read_until(b'\n', &mut raw)
        .map_err(|e| e.to_string())?;
    if raw.len() as u64 > MAX_LINE {
        return Err(format!("password on standard input longer than {MAX_LINE} bytes"));
    }
    let line = String::from_utf8(raw).map_err(|_| "the password on standard input is not UTF-8")?;
    let pw = line.trim_end_matches(['\r', '\n']).to_string();
    password::check_new(&pw, min_len)?;
    Ok(Some(password::hash(&Secret::new(pw))))
}

/// `2G`, `500M`, `100K`, `1T` (powers of 1024) or bytes.
pub fn parse_size(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&s[..s.len() - 1], 1i64 << 10),
        Some('M') => (&s[..s.len() - 1], 1 << 20),
        Some('G') => (&s[..s.len() - 1], 1 << 30),
        Some('T') => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1),
    };
    num.trim()
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{s}` is not a size (e.g. 2G, 500M)"))
}

pub fn user(ctx: &Context, cmd: UserCmd) -> CmdResult {
    let min_password = ctx.config()?.auth.min_password_length;
    let store = ctx.store()?;
    let db = store.meta();
    match cmd {
        UserCmd::Add {
            address,
            password,
            quota,
            domain_admin,
        } => {
            let addr = parse_address(&address)?;
            let d = home_domain(db, addr.domain())?;
            let hash = read_password(&password, min_password)?;
            let quota = quota.as_deref().map(parse_size).transpose()?.or(d.default_quota);
            let a = wait(db.add_account(
                d.id,
                addr.local_canonical(),
                addr.local_display(),
                hash.as_deref(),
                quota,
            ))
            .map_err(|e| e.to_string())?;
            if domain_admin {
                wait(db.set_domain_admin(a.id, true)).map_err(|e| e.to_string())?;
            }
            println!("added {}@{}", a.display, d.display);
        }
        UserCmd::Passwd { address, password } => {
            let a = find_account(db, &parse_address(&address)?)?;
            let hash =
                read_password(&password, min_password)?.ok_or("give --password-stdin or --password-hash")?;
            wait(db.set_password_hash(a.id, &hash)).map_err(|e| e.to_string())?;
            println!("password changed");
        }
        UserCmd::Disable { address } => {
            let a = find_account(db, &parse_address(&address)?)?;
            wait(db.set_enabled(a.id, false)).map_err(|e| e.to_string())?;
            println!("disabled {address} (its mail is kept)");
        }
        UserCmd::Enable { address } => {
            let a = find_account(db, &parse_address(&address)?)?;
            wait(db.set_enabled(a.id, true)).map_err(|e| e.to_string())?;
            println!("enabled {address}");
        }
        UserCmd::Admin { address, off } => {
            let a = find_account(db, &parse_address(&address)?)?;
            wait(db.set_domain_admin(a.id, !off)).map_err(|e| e.to_string())?;
            println!(
                "{address} is {}a domain admin",
                if off { "no longer " } else { "" }
            );
        }
        UserCmd::Forward {
            address,
            targets,
            no_copy,
            off,
        } => {
            let addr = parse_address(&address)?;
            let a = find_account(db, &addr)?;
            if off {
                wait(db.set_forwarding(a.id, &[], true)).map_err(|e| e.to_string())?;
                println!("{address}: no forwarding");
                return Ok(());
            }
            let list = targets.ok_or("give the addresses to forward to (or --off)")?;
            let targets = qualify_targets(&list, addr.domain())?;
            if targets.is_empty() {
                return Err("give the addresses to forward to (or --off)".into());
            }
            // The same cycle check as `alias add`: f1 -> f2 -> f1 is refused
            // whether the way back runs through forwarding or aliases.
            let dir = Directory::new(store.meta_handle(), None);
            if let Some(why) = wait(dir.check_targets(Origin::Forward { account: &a }, &targets))
                .map_err(|e| e.to_string())?
            {
                return Err(format!("refused: {why}"));
            }
            wait(db.set_forwarding(a.id, &targets, !no_copy)).map_err(|e| e.to_string())?;
            println!(
                "{address} forwards to {}{}",
                targets.join(", "),
                if no_copy {
                    " (no copy kept)"
                } else {
                    " (and keeps a copy)"
                }
            );
        }
        UserCmd::SentCopy { address, off } => {
            let a = find_account(db, &parse_address(&address)?)?;
            wait(db.set_sent_copy(a.id, !off)).map_err(|e| e.to_string())?;
            println!(
                "{address}: {}",
                if off {
                    "submitted mail is not copied to Sent"
                } else {
                    "submitted mail is copied to Sent"
                }
            );
        }
        UserCmd::List { domain } => list_users(&store, domain.as_deref())?,
    }
    Ok(())
}

fn list_users(store: &Store, domain: Option<&str>) -> CmdResult {
    let db = store.meta();
    let filter = match domain {
        Some(d) => Some(hosted(db, &Domain::parse(d).map_err(|e| e.to_string())?)?.id),
        None => None,
    };
    let domains = wait(db.domains()).map_err(|e| e.to_string())?;
    for a in wait(db.accounts(filter)).map_err(|e| e.to_string())? {
        let dname = domains
            .iter()
            .find(|d| d.id == a.domain_id)
            .map(|d| d.display.as_str())
            .unwrap_or("?");
        let usage = wait(db.usage(a.id)).map_err(|e| e.to_string())?;
        let quota = a.quota.map(|q| q.to_string()).unwrap_or_else(|| "-".into());
        let mut flags = Vec::new();
        if !a.enabled {
            flags.push("disabled");
        }
        if a.domain_admin {
            flags.push("domain-admin");
        }
        if a.sent_copy {
            flags.push("sent-copy");
        }
        let forwards = if a.forward_to.is_empty() {
            String::new()
        } else {
            format!(
                "forward:{}{}",
                a.forward_to.join(","),
                if a.forward_keep { "" } else { "(no copy)" }
            )
        };
        if !forwards.is_empty() {
            flags.push(&forwards);
        }
        println!(
            "{}@{}\tused {}\tquota {}\t{}",
            a.display,
            dname,
            usage,
            quota,
            flags.join(",")
        );
    }
    Ok(())
}

/// `@domain` (catch-all) or `local@domain`: (domain, canonical local, display).
fn parse_alias_name(s: &str) -> Result<(Domain, String, String), String> {
    if let Some(d) = s.strip_prefix('@') {
        return Ok((
            Domain::parse(d).map_err(|e| format!("`{s}`: {e}"))?,
            String::new(),
            String::new(),
        ));
    }
    let a = parse_address(s)?;
    Ok((
        a.domain().clone(),
        a.local_canonical().to_string(),
        a.local_display().to_string(),
    ))
}

/// The targets of an alias, forward or recipient list: separated by commas
/// (spaces around them are ignored), each one address or a local part of
/// `domain`. A target with a space inside is refused, not split into
/// several local targets.
fn qualify_targets(list: &str, domain: &Domain) -> Result<Vec<String>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            let full = if t.contains('@') {
                t.to_string()
            } else {
                format!("{t}@{}", domain.canonical())
            };
            Address::parse(&full, true)
                .map(|a| a.to_string())
                .map_err(|e| format!("target `{t}` is not an address ({e})"))
        })
        .collect()
}

fn add_alias(store: &Store, name: &str, targets: Vec<String>) -> Result<(), String> {
    let (domain, local, display) = parse_alias_name(name)?;
    let d = home_domain(store.meta(), &domain)?;
    let dir = Directory::new(store.meta_handle(), None);
    let mut all = wait(store.meta().alias(d.id, &local))
        .map_err(|e| e.to_string())?
        .map(|a| a.targets)
        .unwrap_or_default();
    all.extend(targets.iter().cloned());
    if let Some(why) = wait(dir.check_alias(&d, &local, &all)).map_err(|e| e.to_string())? {
        return Err(format!("refused: {why}"));
    }
    if local.is_empty()
        && targets
            .iter()
            .any(|t| !t.to_lowercase().ends_with(&format!("@{}", d.name)))
    {
        eprintln!(
            "warning: a catch-all that forwards outside sends every spam for {} onward, and gets this \
             server blocklisted",
            d.display
        );
    }
    wait(store.meta().add_alias_targets(d.id, &local, &display, &targets)).map_err(|e| e.to_string())?;
    Ok(())
}

pub fn alias(ctx: &Context, cmd: AliasCmd) -> CmdResult {
    let store = ctx.store()?;
    match cmd {
        AliasCmd::Add { alias, targets } => {
            let (domain, _, _) = parse_alias_name(&alias)?;
            let targets = qualify_targets(&targets, &domain)?;
            if targets.is_empty() {
                return Err("no targets".into());
            }
            add_alias(&store, &alias, targets.clone())?;
            println!("{alias} -> {}", targets.join(","));
        }
        AliasCmd::Remove { alias } => {
            let (domain, local, _) = parse_alias_name(&alias)?;
            let d = home_domain(store.meta(), &domain)?;
            wait(store.meta().remove_alias(d.id, &local)).map_err(|e| e.to_string())?;
            println!("removed {alias}");
        }
        AliasCmd::List { domain } => {
            let db = store.meta();
            let filter = match domain {
                Some(d) => Some(hosted(db, &Domain::parse(&d).map_err(|e| e.to_string())?)?.id),
                None => None,
            };
            let domains = wait(db.domains()).map_err(|e| e.to_string())?;
            for a in wait(db.aliases(filter)).map_err(|e| e.to_string())? {
                let dname = domains
                    .iter()
                    .find(|d| d.id == a.domain_id)
                    .map(|d| d.display.as_str())
                    .unwrap_or("?");
                println!("{}@{}\t{}", a.display, dname, a.targets.join(","));
            }
        }
    }
    Ok(())
}

pub fn import(ctx: &Context, cmd: ImportCmd) -> CmdResult {
    let ImportCmd::Virtual {
        file,
        origin,
        dry_run,
    } = cmd;
    let at =
        |e: postroom_directory::import::ParseError| format!("{}:{}: {}", file.display(), e.line, e.message);
    let input = std::fs::File::open(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let text = read_virtual(input).map_err(at)?;
    let entries = parse_virtual_lines(&text, origin.as_deref()).map_err(at)?;
    let own = ctx.config()?.server.hostname;
    let store = ctx.store()?;
    let dir = Directory::new(store.meta_handle(), None);
    // Everything is checked before anything is written, and written in one
    // transaction: a bad line leaves the directory as it was.
    let plan = wait(plan_import(&dir, &entries, &own)).map_err(at)?;
    for (_, display) in &plan.domains {
        println!("domain {display}");
    }
    for line in &plan.lines {
        println!("{line}");
    }
    for (n, w) in &plan.warnings {
        eprintln!("warning: {}:{n}: {w}", file.display());
    }
    if !dry_run {
        wait(store.meta().import_aliases(&plan.domains, &plan.aliases))
            .map_err(|e| format!("{}: nothing imported: {e}", file.display()))?;
    }
    let verb = if dry_run { "would import" } else { "imported" };
    println!(
        "{verb} {} domains, {} aliases",
        plan.domains.len(),
        plan.aliases.len()
    );
    Ok(())
}
