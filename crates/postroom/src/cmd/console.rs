//! `admin`: the provider's administrators, who log in to the web console;
//! `api-token`: tokens for the HTTP API.

use postroom_admin::format_utc;

use super::directory::read_password;
use super::{wait, CmdResult, Context};
use crate::cli::{AdminCmd, ApiTokenCmd, CapArgs, CustomerCmd, PasswordArgs};

fn stdin_password() -> Result<postroom_admin::NewPassword, String> {
    let args = PasswordArgs {
        password_stdin: true,
        password_hash: None,
    };
    read_password(&args)?.ok_or_else(|| "give the password on standard input (--password-stdin)".into())
}

pub fn admin(ctx: &Context, cmd: AdminCmd) -> CmdResult {
    let admin = ctx.admin()?;
    let me = ctx.actor.clone();
    wait(async {
        match cmd {
            AdminCmd::Add { address, .. } => {
                let pw = stdin_password()?;
                let a = admin
                    .provider_admin_add(&me, &address, pw)
                    .await
                    .map_err(|e| e.to_string())?;
                println!("added provider admin {} (logs in to the web console)", a.display);
            }
            AdminCmd::Passwd { address, .. } => {
                let pw = stdin_password()?;
                admin
                    .provider_admin_passwd(&me, &address, pw)
                    .await
                    .map_err(|e| e.to_string())?;
                println!("password changed; their console sessions end");
            }
            AdminCmd::List => {
                for a in admin.provider_admins().await.map_err(|e| e.to_string())? {
                    let may = admin
                        .provider_permissions(&a.address)
                        .await
                        .map_err(|e| e.to_string())?
                        .contains(postroom_admin::ProviderPermissions::MANAGE_DOMAINS);
                    println!(
                        "{}\tadded {}{}",
                        a.display,
                        format_utc(a.created),
                        if may { "\tmanage-domains" } else { "" }
                    );
                }
            }
            AdminCmd::Set {
                address,
                manage_domains,
            } => {
                let on = manage_domains.unwrap_or(true);
                admin
                    .provider_admin_set_manage_domains(&me, &address, on)
                    .await
                    .map_err(|e| e.to_string())?;
                println!(
                    "{address} {} manage a domain as its admin",
                    if on { "may" } else { "may no longer" }
                );
            }
            AdminCmd::Remove { address } => {
                admin
                    .provider_admin_remove(&me, &address)
                    .await
                    .map_err(|e| e.to_string())?;
                println!("removed provider admin {address}; their console sessions end");
            }
        }
        Ok(())
    })
}

pub fn api_token(ctx: &Context, cmd: ApiTokenCmd) -> CmdResult {
    let admin = ctx.admin()?;
    let me = ctx.actor.clone();
    wait(async {
        match cmd {
            ApiTokenCmd::Create {
                login,
                read_only,
                expires_days,
                allow_from,
            } => {
                let (row, token) = admin
                    .api_token_create(&me, &login, read_only, expires_days, &allow_from)
                    .await
                    .map_err(|e| e.to_string())?;
                eprintln!(
                    "token {} for {}, {}, expires {} (it is shown only now):",
                    row.id,
                    row.login,
                    if row.read_only { "read-only" } else { "read-write" },
                    format_utc(row.expires)
                );
                println!("{token}");
            }
            ApiTokenCmd::List { login } => {
                for t in admin
                    .api_tokens(login.as_deref())
                    .await
                    .map_err(|e| e.to_string())?
                {
                    println!(
                        "{}\t{}\t{}\texpires {}\t{}",
                        t.id,
                        t.login,
                        if t.read_only { "read-only" } else { "read-write" },
                        format_utc(t.expires),
                        if t.allow_from.is_empty() {
                            "anywhere"
                        } else {
                            &t.allow_from
                        }
                    );
                }
            }
            ApiTokenCmd::Revoke { id } => {
                admin.api_token_revoke(&me, id).await.map_err(|e| e.to_string())?;
                println!("revoked token {id}");
            }
        }
        Ok(())
    })
}

/// One cap as typed: a count, or `none`.
fn count_cap(flag: &str, v: &str) -> Result<Option<i64>, String> {
    if v.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    v.trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .map(Some)
        .ok_or_else(|| format!("--{flag}: `{v}` is not a count (or none)"))
}

/// The caps given, each `Some(cap)`; those not given `None`.
type GivenCaps = [Option<Option<i64>>; 4];

fn given_caps(c: &CapArgs) -> Result<GivenCaps, String> {
    let storage = match &c.max_storage {
        Some(v) => Some(postroom_admin::parse_quota(v).map_err(|e| format!("--max-storage: {e}"))?),
        None => None,
    };
    Ok([
        c.max_domains
            .as_deref()
            .map(|v| count_cap("max-domains", v))
            .transpose()?,
        c.max_mailboxes
            .as_deref()
            .map(|v| count_cap("max-mailboxes", v))
            .transpose()?,
        c.max_aliases
            .as_deref()
            .map(|v| count_cap("max-aliases", v))
            .transpose()?,
        storage,
    ])
}

fn usage_of(used: i64, cap: Option<i64>) -> String {
    match cap {
        Some(c) => format!("{used} of {c}"),
        None => format!("{used} (no cap)"),
    }
}

fn print_customer(c: &postroom_admin::CustomerInfo) {
    let (u, caps) = (&c.usage, &c.row.caps);
    println!("customer\t{}", c.row.name);
    println!("domains\t{}", usage_of(u.domains, caps.max_domains));
    println!("mailboxes\t{}", usage_of(u.mailboxes, caps.max_mailboxes));
    println!("aliases\t{}", usage_of(u.aliases, caps.max_aliases));
    let mut storage = usage_of(u.storage, caps.max_storage);
    if u.unlimited_mailboxes > 0 {
        storage.push_str(&format!(", {} mailboxes without a quota", u.unlimited_mailboxes));
    }
    println!("storage (bytes of quota)\t{storage}");
    println!("owns\t{}", c.domains.join(", "));
    println!("added\t{}", format_utc(c.row.created));
}

pub fn customer(ctx: &Context, cmd: CustomerCmd) -> CmdResult {
    let admin = ctx.admin()?;
    let me = ctx.actor.clone();
    wait(async {
        match cmd {
            CustomerCmd::Add { name, caps } => {
                let [d, m, a, s] = given_caps(&caps)?;
                let caps = postroom_store::CustomerCaps {
                    max_domains: d.flatten(),
                    max_mailboxes: m.flatten(),
                    max_aliases: a.flatten(),
                    max_storage: s.flatten(),
                };
                let c = admin
                    .customer_add(&me, &name, caps)
                    .await
                    .map_err(|e| e.to_string())?;
                println!("added customer {}", c.row.name);
            }
            CustomerCmd::Set {
                name,
                caps,
                add_domain,
                remove_domain,
            } => {
                let [d, m, a, s] = given_caps(&caps)?;
                let change = postroom_admin::CustomerChange {
                    max_domains: d,
                    max_mailboxes: m,
                    max_aliases: a,
                    max_storage: s,
                    add_domains: add_domain,
                    remove_domains: remove_domain,
                };
                let c = admin
                    .customer_set(&me, &name, change)
                    .await
                    .map_err(|e| e.to_string())?;
                print_customer(&c);
            }
            CustomerCmd::List => {
                for c in admin.customers().await.map_err(|e| e.to_string())? {
                    println!(
                        "{}\tdomains {}\tmailboxes {}\taliases {}\tstorage {}",
                        c.row.name,
                        usage_of(c.usage.domains, c.row.caps.max_domains),
                        usage_of(c.usage.mailboxes, c.row.caps.max_mailboxes),
                        usage_of(c.usage.aliases, c.row.caps.max_aliases),
                        usage_of(c.usage.storage, c.row.caps.max_storage),
                    );
                }
            }
            CustomerCmd::Show { name } => {
                let c = admin.customer_show(&name).await.map_err(|e| e.to_string())?;
                print_customer(&c);
            }
            CustomerCmd::Remove { name } => {
                admin
                    .customer_remove(&me, &name)
                    .await
                    .map_err(|e| e.to_string())?;
                println!("removed customer {name}");
            }
        }
        Ok(())
    })
}
