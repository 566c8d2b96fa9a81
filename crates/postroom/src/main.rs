//! `postroom`: the server and its administration CLI.

mod cli;
mod cmd;
mod serve;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cmd::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postroom: {e}");
            ExitCode::FAILURE
        }
    }
}
