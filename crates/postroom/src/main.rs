//! `postroom`: the server and its administration CLI.

mod classifier;
mod cli;
mod cmd;
mod control;
mod held_report;
mod lock;
mod logging;
mod notify;
mod reload;
mod serve;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Everything Postroom creates (the data folder, the database and its
    // WAL, message files, keys) is for its own user alone, whoever created
    // the folder first and whatever umask the shell had (issue #12: with
    // 022 the database, its password hashes and DKIM keys, and every
    // message were readable by any local user).
    // SAFETY: umask has no preconditions and cannot fail.
    unsafe { libc::umask(0o077) };
    // Linked as /usr/sbin/sendmail: behave as `postroom sendmail ARGS`.
    let mut argv: Vec<String> = std::env::args().collect();
    let invoked_as = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string());
    if matches!(invoked_as.as_deref(), Some("sendmail")) {
        argv.insert(1, "sendmail".into());
        argv.insert(2, "--".into());
    }
    let args = cli::Cli::parse_from(argv);
    match cmd::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("postroom: {e}");
            ExitCode::FAILURE
        }
    }
}
