//! Aliases and lists: add (or add members), remove members, remove.

use postroom_core::Domain;
use postroom_directory::Origin;
use postroom_store::directory::{AliasRow, DomainRow};
use postroom_store::StoreError;

use crate::customer::Adding;
use crate::{
    parse_address, parse_domain, qualify_targets, Actor, AdminError, AdminService, Result, MAX_ATTEMPTS,
};

/// An alias with its address.
#[derive(Clone, Debug)]
pub struct AliasInfo {
    /// `local@domain`, or `@domain` for the catch-all.
    pub address: String,
    pub row: AliasRow,
}

/// `@domain` (catch-all) or `local@domain`: (domain, canonical local,
/// display local).
fn parse_alias_name(s: &str) -> Result<(Domain, String, String)> {
    if let Some(d) = s.trim().strip_prefix('@') {
        return Ok((parse_domain(d)?, String::new(), String::new()));
    }
    let a = parse_address(s)?;
    Ok((
        a.domain().clone(),
        a.local_canonical().to_string(),
        a.local_display().to_string(),
    ))
}

fn name_of(local: &str, d: &DomainRow) -> String {
    format!("{local}@{}", d.display)
}

impl AdminService {
    /// Adds targets to an alias, creating it. Refused on an address that is
    /// a mailbox (mailboxes are looked up first, so such an alias would
    /// never be used) and when the targets lead back to the alias.
    /// Returns the alias and a warning to show, if any.
    pub async fn alias_add(
        &self,
        actor: &Actor,
        name: &str,
        targets: &str,
    ) -> Result<(AliasInfo, Option<String>)> {
        let (domain, local, display) = parse_alias_name(name)?;
        let d = self.home_domain(&domain).await?;
        let targets = qualify_targets(targets, &domain)?;
        if targets.is_empty() {
            return Err(AdminError::Invalid("no targets".into()));
        }
        if !local.is_empty() && self.meta().account(d.id, &local).await?.is_some() {
            return Err(AdminError::Conflict(format!(
                "{} is a mailbox: mail to it goes to the mailbox, so an alias there would never be used; \
                 forward the mailbox instead (postroom user forward {} ...)",
                name_of(&display, &d),
                name_of(&display, &d)
            )));
        }
        if self.meta().alias(d.id, &local).await?.is_none() {
            self.check_domain_caps(
                &d,
                Adding {
                    aliases: 1,
                    ..Adding::default()
                },
            )
            .await?;
        }
        let row = self.add_targets_checked(&d, &local, &display, &targets).await?;
        let warning = (local.is_empty()
            && targets
                .iter()
                .any(|t| !t.to_lowercase().ends_with(&format!("@{}", d.name))))
        .then(|| {
            format!(
                "a catch-all that forwards outside sends every spam for {} onward, and gets this server blocklisted",
                d.display
            )
        });
        let address = name_of(&row.display, &d);
        self.record(actor, "alias.add", &address, &d.name, targets.join(","))
            .await;
        Ok((AliasInfo { address, row }, warning))
    }

    /// `alias members add`: like `alias_add`, on an alias that exists.
    pub async fn alias_members_add(&self, actor: &Actor, name: &str, members: &str) -> Result<AliasInfo> {
        let (domain, local, _) = parse_alias_name(name)?;
        let d = self.home_domain(&domain).await?;
        if self.meta().alias(d.id, &local).await?.is_none() {
            return Err(AdminError::NotFound(format!(
                "no alias {name} (postroom alias add creates one)"
            )));
        }
        Ok(self.alias_add(actor, name, members).await?.0)
    }

    /// The cycle check and the write, the write made only if the directory
    /// did not change since the check read it.
    async fn add_targets_checked(
        &self,
        d: &DomainRow,
        local: &str,
        display: &str,
        targets: &[String],
    ) -> Result<AliasRow> {
        for attempt in 0..MAX_ATTEMPTS {
            let version = self.meta().directory_version().await?;
            let mut all = self
                .meta()
                .alias(d.id, local)
                .await?
                .map(|a| a.targets)
                .unwrap_or_default();
            all.extend(targets.iter().cloned());
            if all.len() > crate::MAX_TARGETS {
                return Err(AdminError::Invalid(format!(
                    "an alias has at most {} targets",
                    crate::MAX_TARGETS
                )));
            }
            if let Some(why) = self
                .dir
                .check_targets(Origin::Alias { domain: d, local }, &all)
                .await?
            {
                return Err(AdminError::Invalid(format!("refused: {why}")));
            }
            self.before_write().await;
            match self
                .meta()
                .add_alias_targets_if(d.id, local, display, targets, version)
                .await
            {
                Err(StoreError::Conflict(_)) => {
                    tracing::info!(
                        attempt,
                        "the directory changed during the alias check; checking again"
                    );
                    continue;
                }
                r => return Ok(r?),
            }
        }
        Err(AdminError::Conflict(
            "the directory kept changing during the cycle check; try again".into(),
        ))
    }

    /// Removes members; an alias left with none is removed (None).
    pub async fn alias_members_remove(
        &self,
        actor: &Actor,
        name: &str,
        members: &str,
    ) -> Result<Option<AliasInfo>> {
        let (domain, local, _) = parse_alias_name(name)?;
        let d = self.home_domain(&domain).await?;
        let members = qualify_targets(members, &domain)?;
        if members.is_empty() {
            return Err(AdminError::Invalid("no members".into()));
        }
        let a = self
            .meta()
            .alias(d.id, &local)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("no alias {name}")))?;
        let missing: Vec<&String> = members
            .iter()
            .filter(|m| !a.targets.iter().any(|t| t.eq_ignore_ascii_case(m)))
            .collect();
        if !missing.is_empty() {
            let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
            return Err(AdminError::NotFound(format!(
                "not members of {name}: {}",
                list.join(", ")
            )));
        }
        let left = self.meta().remove_alias_targets(d.id, &local, &members).await?;
        let address = name_of(&a.display, &d);
        self.record(
            actor,
            "alias.members.remove",
            &address,
            &d.name,
            members.join(","),
        )
        .await;
        Ok(left.map(|row| AliasInfo { address, row }))
    }

    pub async fn alias_remove(&self, actor: &Actor, name: &str) -> Result<()> {
        let (domain, local, _) = parse_alias_name(name)?;
        let d = self.home_domain(&domain).await?;
        let a = self
            .meta()
            .alias(d.id, &local)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("no alias {name}")))?;
        self.meta().remove_alias(d.id, &local).await?;
        self.record(
            actor,
            "alias.remove",
            &name_of(&a.display, &d),
            &d.name,
            a.targets.join(","),
        )
        .await;
        Ok(())
    }

    /// Every alias, or a domain's.
    pub async fn aliases(&self, domain: Option<&str>) -> Result<Vec<AliasInfo>> {
        let filter = match domain {
            Some(d) => Some(self.hosted(&parse_domain(d)?).await?.id),
            None => None,
        };
        let domains = self.meta().domains().await?;
        Ok(self
            .meta()
            .aliases(filter)
            .await?
            .into_iter()
            .filter_map(|row| {
                let d = domains.iter().find(|d| d.id == row.domain_id)?;
                Some(AliasInfo {
                    address: name_of(&row.display, d),
                    row,
                })
            })
            .collect())
    }

    /// `import virtual`, after `postroom_directory::import::plan_import`
    /// checked it: all in one transaction, or nothing.
    pub async fn import_aliases(
        &self,
        actor: &Actor,
        source: &str,
        domains: &[(String, String)],
        aliases: &[postroom_store::directory::ImportedAlias],
    ) -> Result<()> {
        self.meta().import_aliases(domains, aliases).await?;
        self.record(
            actor,
            "import.virtual",
            source,
            "",
            format!("{} domains, {} aliases", domains.len(), aliases.len()),
        )
        .await;
        Ok(())
    }

    /// The directory the checks use (for `import virtual`'s plan).
    pub fn directory(&self) -> &postroom_directory::Directory {
        &self.dir
    }
}
