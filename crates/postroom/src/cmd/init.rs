//! `postroom init`: makes the data folder and an empty store, the one way
//! besides `serve` to make them (issue #12: every other command refuses a
//! folder without a store, so a mistyped `--data-dir` is an error, not a
//! fresh installation).

use postroom_store::{Store, StoreError, SQLITE_FILE};

use super::{become_data_owner, store_error, store_place, wait, CmdResult, Context};

pub fn init(ctx: &Context) -> CmdResult {
    let cfg = ctx.config()?;
    let dir = ctx.data_dir_for(&cfg);
    let on_postgres = cfg.store.database.is_some();
    if !on_postgres {
        crate::lock::refuse_while_migrating(&dir)?;
    }
    let folder_was_there = dir.exists();
    if folder_was_there {
        // Run as root on a folder handed to the server's user: the files
        // made here must be that user's, as with every other command.
        become_data_owner(&dir)?;
    }
    // An existing store first, opened without creating anything: it is
    // left as it is.
    match wait(Store::open_configured(&store_place(&cfg, &dir, false))) {
        Ok(_) => {
            match on_postgres {
                false => println!(
                    "{} already holds a Postroom store ({}): nothing changed",
                    dir.display(),
                    dir.join(SQLITE_FILE).display()
                ),
                true => println!(
                    "the PostgreSQL database of [store] already holds a Postroom store: nothing changed"
                ),
            }
            return Ok(());
        }
        Err(StoreError::NoStore(_)) => {}
        Err(e) => return Err(store_error(&cfg, &dir, e)),
    }
    wait(Store::open_configured(&store_place(&cfg, &dir, true))).map_err(|e| store_error(&cfg, &dir, e))?;
    if !folder_was_there {
        println!(
            "made the data folder {} (private to this user: 0700)",
            dir.display()
        );
    }
    match on_postgres {
        false => println!("made an empty store: {}", dir.join(SQLITE_FILE).display()),
        true => println!(
            "made an empty store in the PostgreSQL database of [store] (message bodies go to {})",
            cfg.store
                .blobs
                .clone()
                .unwrap_or_else(|| dir.join("blobs"))
                .display()
        ),
    }
    let flags = ctx.cli_flags();
    println!("next: postroom{flags} domain add example.com, and postroom{flags} serve");
    Ok(())
}
