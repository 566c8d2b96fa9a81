//! `admin`: the provider's administrators, who log in to the web console;
//! `api-token`: tokens for the HTTP API.

use postroom_admin::format_utc;

use super::directory::read_password;
use super::{wait, CmdResult, Context};
use crate::cli::{AdminCmd, ApiTokenCmd, PasswordArgs};

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
                    println!("{}\tadded {}", a.display, format_utc(a.created));
                }
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
