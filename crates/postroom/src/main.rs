//! `postroom`: the server and its administration CLI.

mod cli;
mod cmd;
mod lock;
mod serve;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postroom: {e}");
            ExitCode::FAILURE
        }
    }
}
