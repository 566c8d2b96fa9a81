//! `postroom config check`: the file parses, and what it names exists on
//! this machine (certificates and keys that load, the `run_as` user), so a
//! mistake shows before `systemctl start`, not in the journal after.

use std::path::Path;

use postroom_config::Config;
use postroom_net::tls::{CertFiles, TlsSettings};

use super::CmdResult;

pub fn check(path: &Path) -> CmdResult {
    let cfg = Config::load(path).map_err(|e| e.to_string())?;
    for w in cfg.warnings() {
        println!("warning: {w}");
    }
    let problems = problems_on_this_machine(&cfg);
    for p in &problems {
        println!("error: {p}");
    }
    match problems.len() {
        0 => {
            println!("{}: ok", path.display());
            Ok(())
        }
        1 => Err(format!("{}: 1 problem", path.display())),
        n => Err(format!("{}: {n} problems", path.display())),
    }
}

/// What the server would fail on at start, beyond the file's syntax.
fn problems_on_this_machine(cfg: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    for pair in cfg.tls.pairs() {
        let mut missing = false;
        for (what, file) in [("certificate", &pair.cert), ("key", &pair.key)] {
            if let Err(e) = std::fs::metadata(file) {
                problems.push(format!("tls: {what} file {}: {e}", file.display()));
                missing = true;
            }
        }
        if missing {
            continue;
        }
        // Loads them as the server does: a key that does not match, or a
        // file that is not PEM, fails here too.
        let files = vec![CertFiles {
            cert: pair.cert.clone(),
            key: pair.key.clone(),
        }];
        if let Err(e) = TlsSettings::load(files) {
            problems.push(format!("tls: {}: {e}", pair.cert.display()));
        }
    }
    if let Some(user) = &cfg.server.run_as {
        if !user_exists(user) {
            problems.push(format!(
                "server.run_as: user `{user}` does not exist (create it: adduser --system --group {user})"
            ));
        }
    }
    problems
}

fn user_exists(name: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(name) else {
        return false;
    };
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: passwd is plain data; all zeroes is a valid value, overwritten
    // by getpwnam_r.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwnam_r writes into `pwd` and `buf`, both ours and alive for
    // the call; `found` is null or points at `pwd`.
    let rc = unsafe { libc::getpwnam_r(c.as_ptr(), &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) };
    rc == 0 && !found.is_null()
}
