use postroom_admin::txt_record;

use super::{wait, CmdResult, Context};
use crate::cli::DkimCmd;

pub fn dkim(ctx: &Context, cmd: DkimCmd) -> CmdResult {
    let admin = ctx.admin()?;
    wait(async {
        let (row, keys) = match &cmd {
            DkimCmd::Generate { domain } => {
                let r = admin
                    .dkim_generate(&ctx.actor, domain)
                    .await
                    .map_err(|e| e.to_string())?;
                println!(
                    "Publish these records, then mail from {} is signed with both keys:",
                    r.0.display
                );
                r
            }
            DkimCmd::Show { domain } => admin.dkim_keys(domain).await.map_err(|e| e.to_string())?,
        };
        for k in keys {
            println!(
                "{}",
                txt_record(&k.selector, &row.name, &k.algorithm, &k.public_key)
            );
        }
        Ok(())
    })
}
