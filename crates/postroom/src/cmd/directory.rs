//! `domain`, `user`, `alias`, `import` and `audit`: argument handling and
//! printing only; the rules are in `postroom_admin::AdminService`.

use std::io::BufRead;

use postroom_admin::{format_utc, parse_quota, parse_size, AdminService, DomainChange, NewPassword, Removal};
use postroom_core::Secret;
use postroom_directory::import::{parse_virtual_lines, plan_import, read_virtual};

use super::{wait, CmdResult, Context};
use crate::cli::{AliasCmd, DomainCmd, ImportCmd, MembersCmd, PasswordArgs, UserCmd};

fn text(e: postroom_admin::AdminError) -> String {
    e.to_string()
}

pub fn domain(ctx: &Context, cmd: DomainCmd) -> CmdResult {
    let admin = ctx.admin()?;
    let me = ctx.actor.clone();
    wait(async {
        match cmd {
            DomainCmd::Add {
                domain,
                alias_of,
                relay_to,
                verify,
                customer,
            } => {
                let d = admin
                    .domain_add_for(
                        &me,
                        &domain,
                        alias_of.as_deref(),
                        relay_to.as_deref(),
                        verify,
                        customer.as_deref(),
                    )
                    .await
                    .map_err(text)?;
                match (alias_of, &d.relay_to) {
                    (Some(t), _) => println!("added {} (alias of {t})", d.display),
                    (None, Some(hop)) => {
                        println!("added {} (gateway: relayed to {hop})", d.display);
                        if !verify {
                            println!(
                                "list its recipients: postroom domain recipients {} --add sales,info",
                                d.display
                            );
                        }
                    }
                    (None, None) => println!("added {}", d.display),
                }
            }
            DomainCmd::Recipients { domain, add, remove } => {
                let (d, list, not_listed) = admin
                    .relay_recipients(&me, &domain, add.as_deref(), remove.as_deref())
                    .await
                    .map_err(text)?;
                if d.relay_to.is_none() {
                    eprintln!(
                        "note: {} is not a gateway domain (postroom domain set {} --relay-to HOST:PORT)",
                        d.display, d.display
                    );
                }
                for l in not_listed {
                    eprintln!("{l}@{} was not listed", d.display);
                }
                for l in list {
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
                let change = DomainChange {
                    separator: subaddress_separator,
                    default_quota: default_quota
                        .as_deref()
                        .map(parse_quota)
                        .transpose()
                        .map_err(text)?,
                    relay_to: relay_to.map(|h| (h != "none").then_some(h)),
                    verify,
                };
                let d = admin.domain_set(&me, &domain, change).await.map_err(text)?;
                println!("updated {}", d.display);
            }
            DomainCmd::List => {
                let all = admin.domains().await.map_err(text)?;
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
            DomainCmd::Show { domain } => {
                let i = admin.domain_show(&domain).await.map_err(text)?;
                let d = &i.row;
                println!("domain\t{}", d.display);
                match (&i.alias_of, &d.relay_to) {
                    (Some(t), _) => println!("kind\talias of {}", t.display),
                    (None, Some(hop)) => println!(
                        "kind\tgateway to {hop}{}",
                        if d.relay_verify {
                            " (verified recipients)"
                        } else {
                            ""
                        }
                    ),
                    (None, None) => println!("kind\tlocal"),
                }
                println!("subaddress separator\t'{}'", d.subaddress_separator);
                println!(
                    "default quota\t{}",
                    d.default_quota.map_or("none".to_string(), |q| q.to_string())
                );
                let names: Vec<&str> = i.alias_domains.iter().map(|d| d.display.as_str()).collect();
                println!("alias domains\t{}", names.join(", "));
                println!("mailboxes\t{}", i.mailboxes);
                println!("aliases\t{}", i.aliases.len());
                for a in &i.aliases {
                    println!("  {}@{}\t{}", a.display, d.display, a.targets.join(","));
                }
                if d.relay_to.is_some() {
                    println!("recipients\t{}", i.relay_recipients.join(","));
                }
                println!("queued\t{}", i.queued);
            }
            DomainCmd::Remove { domain, force } => {
                let i = admin.domain_remove(&me, &domain, force).await.map_err(text)?;
                println!(
                    "removed {} ({} mailboxes, {} aliases, {} alias domains)",
                    i.row.display,
                    i.mailboxes,
                    i.aliases.len(),
                    i.alias_domains.len()
                );
                if i.queued > 0 {
                    println!(
                        "{} queued messages stay in the queue (postroom queue list)",
                        i.queued
                    );
                }
            }
        }
        Ok(())
    })
}

/// The password `user add` and `user passwd` set: from the first line of
/// standard input, or a hash; None when neither was given.
pub(super) fn read_password(args: &PasswordArgs) -> Result<Option<NewPassword>, String> {
    if let Some(h) = &args.password_hash {
        return Ok(Some(NewPassword::Hash(h.clone())));
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
    Ok(Some(NewPassword::Plain(Secret::new(
        line.trim_end_matches(['\r', '\n']).to_string(),
    ))))
}

const NO_PASSWORD: &str = "give a password: --password-stdin (its first line) or --password-hash HASH \
                           (a mailbox without one could never log in)";

pub fn user(ctx: &Context, cmd: UserCmd) -> CmdResult {
    let admin = ctx.admin()?;
    let me = ctx.actor.clone();
    wait(async {
        match cmd {
            UserCmd::Add {
                address,
                password,
                quota,
                domain_admin,
            } => {
                let quota = quota.as_deref().map(parse_size).transpose().map_err(text)?;
                let pw = read_password(&password)?.ok_or(NO_PASSWORD)?;
                let u = admin
                    .user_add(&me, &address, pw, quota, domain_admin)
                    .await
                    .map_err(text)?;
                println!("added {}", u.address);
            }
            UserCmd::Passwd { address, password } => {
                let pw = read_password(&password)?.ok_or(NO_PASSWORD)?;
                admin.user_passwd(&me, &address, pw).await.map_err(text)?;
                println!("password changed");
            }
            UserCmd::Disable { address } => {
                admin.user_set_enabled(&me, &address, false).await.map_err(text)?;
                println!("disabled {address} (its mail is kept)");
            }
            UserCmd::Enable { address } => {
                admin.user_set_enabled(&me, &address, true).await.map_err(text)?;
                println!("enabled {address}");
            }
            UserCmd::Admin {
                address,
                off,
                permissions: Some(list),
            } if !off => {
                let perms = postroom_admin::Permissions::parse(&list).map_err(text)?;
                let set = admin
                    .user_set_role(&me, postroom_admin::Grantor::Provider, &address, true, perms)
                    .await
                    .map_err(text)?;
                println!("{address} is a domain admin (permissions: {set})");
            }
            UserCmd::Admin { address, off, .. } => {
                admin.user_set_admin(&me, &address, !off).await.map_err(text)?;
                println!("{address} is {}a domain admin", if off { "no longer " } else { "" });
            }
            UserCmd::Forward {
                address,
                targets,
                no_copy,
                off,
            } => {
                if off {
                    admin.user_forward(&me, &address, "", true).await.map_err(text)?;
                    println!("{address}: no forwarding");
                    return Ok(());
                }
                let list = targets.unwrap_or_default();
                if list.trim().is_empty() {
                    return Err("give the addresses to forward to (or --off)".into());
                }
                let targets = admin
                    .user_forward(&me, &address, &list, !no_copy)
                    .await
                    .map_err(text)?;
                if targets.is_empty() {
                    return Err("give the addresses to forward to (or --off)".into());
                }
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
                admin.user_set_sent_copy(&me, &address, !off).await.map_err(text)?;
                println!(
                    "{address}: {}",
                    if off {
                        "submitted mail is not copied to Sent"
                    } else {
                        "submitted mail is copied to Sent"
                    }
                );
            }
            UserCmd::List { domain } => list_users(&admin, domain.as_deref()).await?,
            UserCmd::Show { address } => {
                let u = admin.user_show(&address).await.map_err(text)?;
                let a = &u.account;
                let yes = |b: bool| if b { "yes" } else { "no" };
                println!("address\t{}", u.address);
                println!("enabled\t{}", yes(a.enabled));
                println!("domain admin\t{}", yes(a.domain_admin));
                println!("usage\t{} bytes in {} messages", u.usage, u.messages);
                println!("quota\t{}", a.quota.map_or("none".to_string(), |q| q.to_string()));
                println!("last login\t{}", a.last_login.map_or("never".to_string(), format_utc));
                if a.forward_to.is_empty() {
                    println!("forwarding\tnone");
                } else {
                    println!(
                        "forwarding\t{}{}",
                        a.forward_to.join(","),
                        if a.forward_keep { " (keeps a copy)" } else { " (no copy)" }
                    );
                }
                println!("sent copy\t{}", yes(a.sent_copy));
                if let Some(t) = a.delete_after {
                    println!("removed\tits mail is deleted after {}", format_utc(t));
                }
            }
            UserCmd::Set { address, quota } => {
                let q = parse_quota(&quota).map_err(text)?;
                let u = admin.user_set_quota(&me, &address, q).await.map_err(text)?;
                println!(
                    "{}: quota {}",
                    u.address,
                    u.account.quota.map_or("none".to_string(), |q| q.to_string())
                );
            }
            UserCmd::Remove { address, now } => match admin.user_remove(&me, &address, now).await.map_err(text)? {
                Removal::Now => println!("removed {address} and its mail"),
                Removal::Scheduled(at) => println!(
                    "removed {address}: disabled now, its mail is deleted after {} (--now deletes it at once)",
                    format_utc(at)
                ),
            },
            UserCmd::Rename { old, new } => {
                let u = admin.user_rename(&me, &old, &new).await.map_err(text)?;
                println!("renamed {old} to {} (folders and UIDs kept)", u.address);
            }
        }
        Ok(())
    })
}

async fn list_users(admin: &AdminService, domain: Option<&str>) -> CmdResult {
    for u in admin.users(domain).await.map_err(text)? {
        let a = &u.account;
        let quota = a.quota.map(|q| q.to_string()).unwrap_or_else(|| "-".into());
        let mut flags = Vec::new();
        if !a.enabled {
            flags.push("disabled".to_string());
        }
        if a.domain_admin {
            flags.push("domain-admin".to_string());
        }
        if a.sent_copy {
            flags.push("sent-copy".to_string());
        }
        if !a.forward_to.is_empty() {
            flags.push(format!(
                "forward:{}{}",
                a.forward_to.join(","),
                if a.forward_keep { "" } else { "(no copy)" }
            ));
        }
        if a.delete_after.is_some() {
            flags.push("removed".to_string());
        }
        println!(
            "{}\tused {}\tquota {}\t{}",
            u.address,
            u.usage,
            quota,
            flags.join(",")
        );
    }
    Ok(())
}

pub fn alias(ctx: &Context, cmd: AliasCmd) -> CmdResult {
    let admin = ctx.admin()?;
    let me = ctx.actor.clone();
    wait(async {
        match cmd {
            AliasCmd::Add { alias, targets } => {
                let (a, warning) = admin.alias_add(&me, &alias, &targets).await.map_err(text)?;
                if let Some(w) = warning {
                    eprintln!("warning: {w}");
                }
                println!("{alias} -> {}", a.row.targets.join(","));
            }
            AliasCmd::Remove { alias } => {
                admin.alias_remove(&me, &alias).await.map_err(text)?;
                println!("removed {alias}");
            }
            AliasCmd::List { domain } => {
                for a in admin.aliases(domain.as_deref()).await.map_err(text)? {
                    println!("{}\t{}", a.address, a.row.targets.join(","));
                }
            }
            AliasCmd::Members(MembersCmd::Add { alias, members }) => {
                let a = admin
                    .alias_members_add(&me, &alias, &members.join(","))
                    .await
                    .map_err(text)?;
                println!("{alias} -> {}", a.row.targets.join(","));
            }
            AliasCmd::Members(MembersCmd::Remove { alias, members }) => {
                match admin
                    .alias_members_remove(&me, &alias, &members.join(","))
                    .await
                    .map_err(text)?
                {
                    Some(a) => println!("{alias} -> {}", a.row.targets.join(",")),
                    None => println!("removed {alias} (no members left)"),
                }
            }
        }
        Ok(())
    })
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
    let text_ = read_virtual(input).map_err(at)?;
    let entries = parse_virtual_lines(&text_, origin.as_deref()).map_err(at)?;
    let own = ctx.config()?.server.hostname;
    let admin = ctx.admin()?;
    wait(async {
        // Everything is checked before anything is written, and written in
        // one transaction: a bad line leaves the directory as it was.
        let plan = plan_import(admin.directory(), &entries, &own).await.map_err(at)?;
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
            admin
                .import_aliases(
                    &ctx.actor,
                    &file.display().to_string(),
                    &plan.domains,
                    &plan.aliases,
                )
                .await
                .map_err(|e| format!("{}: nothing imported: {e}", file.display()))?;
        }
        let verb = if dry_run { "would import" } else { "imported" };
        println!(
            "{verb} {} domains, {} aliases",
            plan.domains.len(),
            plan.aliases.len()
        );
        Ok(())
    })
}

pub fn audit(ctx: &Context, object: Option<String>, domain: Option<String>, limit: usize) -> CmdResult {
    let admin = ctx.admin()?;
    wait(async {
        for r in admin
            .audit(object.as_deref(), domain.as_deref(), limit)
            .await
            .map_err(text)?
        {
            let e = &r.entry;
            println!(
                "{}\t{}\t{}\t{}\t{}\t{}",
                format_utc(r.at),
                e.actor,
                e.origin,
                e.operation,
                e.object,
                e.detail
            );
        }
        Ok(())
    })
}
