//! Where mail to an address goes. Lookup order (per domain): exact mailbox,
//! alias, the address with its subaddress (`+tag`) stripped, postmaster@ and
//! abuse@ to the domain's admins, then the catch-all. A mailbox with
//! forwarding adds its targets (and keeps its own copy unless told not to).
//! A gateway domain (`relay_to`) hosts no mailboxes: its listed recipients
//! are relayed to the customer's own server, others checked by a callout
//! there when the domain asks for it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use postroom_core::Address;
use postroom_store::directory::{AccountRow, DomainRow};
use postroom_store::{AccountId, DomainId, Hold, HoldReason, Metadata, Result};

/// Alias expansion depth limit.
pub const MAX_DEPTH: usize = 10;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// A hosted mailbox; `address` is its canonical address (for
    /// Delivered-To).
    Local {
        account_id: AccountId,
        address: String,
        enabled: bool,
    },
    /// An outside address (forwarding, list member, relay).
    Remote { address: String },
    /// Kept in the queue for the administrator, never dropped; `hold`
    /// says why (a typed reason, logged and kept in the store).
    Held { address: String, hold: Hold },
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolution {
    pub routes: Vec<Route>,
    /// The address named an account directly (not through an alias).
    pub direct_account: Option<AccountRow>,
    /// A gateway domain's recipient: relayed as it is (no SRS; the
    /// customer's server is the final destination).
    pub gateway: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The domain is not hosted here.
    NotHosted,
    /// Hosted domain, no such address.
    Unknown,
    Found(Resolution),
    /// The aliases form a cycle or nest deeper than [`MAX_DEPTH`].
    Loop(String),
    /// Hosted, but nothing in the expansion can take the mail: every
    /// target is missing or invalid, or postmaster@ has nobody to go to.
    /// Refused at RCPT (`550 5.1.1`) rather than held for ever, so that
    /// strangers cannot fill the queue with it.
    Unresolvable(String),
    /// A gateway domain's address that is not on its recipient list, and
    /// the domain verifies such addresses at its server (`relay_to`).
    Callout {
        relay_to: String,
    },
}

#[derive(Clone)]
pub struct Directory {
    db: Arc<dyn Metadata>,
    /// The provider's postmaster (config `server.postmaster`).
    postmaster: Option<Address>,
    /// Changes about to be saved, seen by lookups as if they were.
    pending: Option<Arc<Pending>>,
}

/// Domains and alias targets not saved yet, which lookups see as if they
/// were: `import virtual` checks every alias of a file for cycles against
/// the state the whole file would make, before its one transaction.
#[derive(Clone, Debug, Default)]
pub struct Pending {
    /// New domains, by canonical name; their ids are negative, so no
    /// stored row (account, alias) can belong to them.
    domains: HashMap<String, DomainRow>,
    /// Targets added to an alias (domain id, canonical local part).
    aliases: HashMap<(DomainId, String), Vec<String>>,
}

impl Pending {
    /// Records a new domain (not an alias domain, not a gateway).
    pub fn add_domain(&mut self, name: &str, display: &str) -> DomainRow {
        let next = DomainId(-(self.domains.len() as i64) - 1);
        self.domains
            .entry(name.to_string())
            .or_insert_with(|| DomainRow {
                id: next,
                name: name.to_string(),
                display: display.to_string(),
                alias_of: None,
                subaddress_separator: "+".into(),
                default_quota: None,
                relay_to: None,
                relay_verify: false,
            })
            .clone()
    }

    pub fn domain(&self, name: &str) -> Option<&DomainRow> {
        self.domains.get(name)
    }

    pub fn add_alias_targets(&mut self, domain_id: DomainId, local: &str, targets: &[String]) {
        let all = self.aliases.entry((domain_id, local.to_string())).or_default();
        for t in targets {
            if !all.iter().any(|x| x.eq_ignore_ascii_case(t)) {
                all.push(t.clone());
            }
        }
    }
}

struct Expansion {
    routes: Vec<Route>,
    accounts: HashSet<AccountId>,
    remotes: HashSet<String>,
    /// Aliases (and, when `strict`, forwarding mailboxes) being expanded —
    /// a repeat is a cycle.
    chain: Vec<Node>,
    /// Checking a change before it is saved: a mailbox whose forwarding
    /// leads back to itself is a cycle too. Resolving mail, such a cycle
    /// (made before this check existed) is ended by giving each mailbox
    /// one copy instead.
    strict: bool,
}

impl Expansion {
    fn new(chain: Vec<Node>, strict: bool) -> Self {
        Expansion {
            routes: Vec::new(),
            accounts: HashSet::new(),
            remotes: HashSet::new(),
            chain,
            strict,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    /// An alias: (domain id, local part; empty for the catch-all).
    Alias(DomainId, String),
    /// A mailbox's forwarding.
    Forward(AccountId),
}

/// What a set of targets is about to be saved for, in
/// [`Directory::check_targets`].
#[derive(Clone, Copy, Debug)]
pub enum Origin<'a> {
    /// The alias `local` of `domain` (empty `local`: the catch-all).
    Alias { domain: &'a DomainRow, local: &'a str },
    /// The forwarding of the mailbox `account`.
    Forward { account: &'a AccountRow },
}

enum Step {
    Found,
    NotFound,
}

#[derive(Debug)]
enum ExpandError {
    Store(postroom_store::StoreError),
    Loop(String),
}

type ExpandFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::result::Result<(), ExpandError>> + Send + 'a>>;

impl From<postroom_store::StoreError> for ExpandError {
    fn from(e: postroom_store::StoreError) -> Self {
        ExpandError::Store(e)
    }
}

impl Directory {
    pub fn new(db: Arc<dyn Metadata>, postmaster: Option<Address>) -> Self {
        Directory {
            db,
            postmaster,
            pending: None,
        }
    }

    /// This directory as it will be once `pending` is saved.
    pub fn with_pending(&self, pending: Pending) -> Self {
        Directory {
            pending: Some(Arc::new(pending)),
            ..self.clone()
        }
    }

    /// A domain row by canonical name, pending ones included.
    pub async fn domain(&self, name: &str) -> Result<Option<DomainRow>> {
        if let Some(d) = self.pending.as_ref().and_then(|p| p.domain(name)) {
            return Ok(Some(d.clone()));
        }
        self.db.domain(name).await
    }

    /// An alias's targets, stored and pending; `None` when there is no
    /// such alias.
    pub async fn alias_targets(&self, domain_id: DomainId, local: &str) -> Result<Option<Vec<String>>> {
        let mut targets = self.db.alias(domain_id, local).await?.map(|a| a.targets);
        if let Some(more) = self
            .pending
            .as_ref()
            .and_then(|p| p.aliases.get(&(domain_id, local.to_string())))
        {
            let all = targets.get_or_insert_with(Vec::new);
            for t in more {
                if !all.iter().any(|x| x.eq_ignore_ascii_case(t)) {
                    all.push(t.clone());
                }
            }
        }
        Ok(targets)
    }

    /// The back end this directory reads.
    pub fn meta(&self) -> &dyn Metadata {
        &*self.db
    }

    /// The hosted domain an address belongs to, following domain aliases.
    pub async fn hosted_domain(&self, domain: &str) -> Result<Option<DomainRow>> {
        let Some(d) = self.domain(domain).await? else {
            return Ok(None);
        };
        match d.alias_of {
            Some(target) => self.db.domain_by_id(target).await,
            None => Ok(Some(d)),
        }
    }

    pub async fn resolve(&self, addr: &Address) -> Result<Lookup> {
        let Some(domain) = self.hosted_domain(addr.domain().canonical()).await? else {
            return Ok(Lookup::NotHosted);
        };
        if let Some(relay_to) = &domain.relay_to {
            return self.resolve_gateway(&domain, relay_to, addr).await;
        }
        let direct = self.db.account(domain.id, addr.local_canonical()).await?;
        let mut x = Expansion::new(Vec::new(), false);
        // `direct` is also where lookup starts: read once (one query less
        // per RCPT, a round trip on PostgreSQL).
        match self
            .lookup_known(&domain, addr.local_canonical(), 0, &mut x, Some(direct.clone()))
            .await
        {
            Ok(Step::Found) => {
                // Held routes wait for the administrator; when nothing else
                // is left, nothing would ever deliver the message.
                if let Some(why) = unresolvable(&x.routes) {
                    return Ok(Lookup::Unresolvable(why));
                }
                Ok(Lookup::Found(Resolution {
                    routes: x.routes,
                    direct_account: direct,
                    gateway: false,
                }))
            }
            Ok(Step::NotFound) => Ok(Lookup::Unknown),
            Err(ExpandError::Loop(why)) => Ok(Lookup::Loop(why)),
            Err(ExpandError::Store(e)) => Err(e),
        }
    }

    /// A gateway domain: the recipient list decides, with postmaster@ and
    /// abuse@ always accepted (RFC 5321 4.5.1, RFC 2142); what the list
    /// does not name is unknown, or verified by a callout.
    async fn resolve_gateway(&self, domain: &DomainRow, relay_to: &str, addr: &Address) -> Result<Lookup> {
        let local = addr.local_canonical();
        let sep = domain.subaddress_separator.as_str();
        let base = match local.split_once(sep) {
            Some((b, _)) if !sep.is_empty() && !b.is_empty() => b,
            _ => local,
        };
        let listed = local == "postmaster"
            || local == "abuse"
            || self.db.is_relay_recipient(domain.id, local).await?
            || self.db.is_relay_recipient(domain.id, base).await?;
        if listed {
            return Ok(Lookup::Found(Resolution {
                routes: vec![Route::Remote {
                    address: gateway_address(addr),
                }],
                direct_account: None,
                gateway: true,
            }));
        }
        if domain.relay_verify {
            return Ok(Lookup::Callout {
                relay_to: relay_to.to_string(),
            });
        }
        Ok(Lookup::Unknown)
    }

    /// Whether the account `account_id` may send as `addr`: its own address
    /// (in any of its domain's aliases, with any subaddress), or an alias
    /// whose only target is the account. Catch-alls and lists with several
    /// members do not count (a domain admin grants those).
    pub async fn may_send_as(&self, account_id: AccountId, addr: &Address) -> Result<bool> {
        let Some(domain) = self.hosted_domain(addr.domain().canonical()).await? else {
            return Ok(false);
        };
        let local = addr.local_canonical();
        let mut candidates = vec![local.to_string()];
        let sep = domain.subaddress_separator.as_str();
        if !sep.is_empty() {
            if let Some((base, _)) = local.split_once(sep) {
                if !base.is_empty() {
                    candidates.push(base.to_string());
                }
            }
        }
        for name in candidates {
            if let Some(a) = self.db.account(domain.id, &name).await? {
                return Ok(a.id == account_id);
            }
            if let Some(targets) = self.alias_targets(domain.id, &name).await? {
                if let [only] = targets.as_slice() {
                    if let Ok(target) = Address::parse(only, true) {
                        if let Some(d) = self.hosted_domain(target.domain().canonical()).await? {
                            if let Some(a) = self.db.account(d.id, target.local_canonical()).await? {
                                return Ok(a.id == account_id);
                            }
                        }
                    }
                }
                return Ok(false);
            }
        }
        Ok(false)
    }

    /// The bare `<Postmaster>` recipient (RFC 5321 4.1.1.3).
    pub async fn resolve_postmaster(&self) -> Result<Resolution> {
        if let Some(pm) = &self.postmaster {
            match self.resolve(pm).await? {
                Lookup::Found(r) => return Ok(r),
                Lookup::NotHosted => {
                    return Ok(Resolution {
                        routes: vec![Route::Remote {
                            address: pm.canonical(),
                        }],
                        direct_account: None,
                        gateway: false,
                    })
                }
                Lookup::Unknown | Lookup::Loop(_) | Lookup::Unresolvable(_) | Lookup::Callout { .. } => {}
            }
        }
        Ok(Resolution {
            routes: vec![Route::Held {
                address: "postmaster".into(),
                hold: Hold::remote(
                    HoldReason::NoPostmaster,
                    "no postmaster address configured (server.postmaster)",
                ),
            }],
            direct_account: None,
            gateway: false,
        })
    }

    /// Checks that an alias with these targets would expand without a cycle
    /// (used before saving it).
    pub async fn check_alias(
        &self,
        domain: &DomainRow,
        local: &str,
        targets: &[String],
    ) -> Result<Option<String>> {
        self.check_targets(Origin::Alias { domain, local }, targets).await
    }

    /// The one cycle check for a change about to be saved, an alias's
    /// targets or a mailbox's forwarding: `Some(why)` when the targets lead
    /// back to `origin` through aliases or forwarding, or nest deeper than
    /// [`MAX_DEPTH`].
    pub async fn check_targets(&self, origin: Origin<'_>, targets: &[String]) -> Result<Option<String>> {
        let start = match origin {
            Origin::Alias { domain, local } => Node::Alias(domain.id, local.to_string()),
            Origin::Forward { account } => Node::Forward(account.id),
        };
        let mut x = Expansion::new(vec![start], true);
        match self.expand_targets(targets, 1, &mut x).await {
            Ok(()) => Ok(None),
            Err(ExpandError::Loop(why)) => Ok(Some(why)),
            Err(ExpandError::Store(e)) => Err(e),
        }
    }

    async fn lookup(
        &self,
        domain: &DomainRow,
        local: &str,
        depth: usize,
        x: &mut Expansion,
    ) -> std::result::Result<Step, ExpandError> {
        self.lookup_known(domain, local, depth, x, None).await
    }

    /// [`lookup`](Self::lookup), with the mailbox `local` names when the
    /// caller has just read it (`Some(None)`: there is none).
    async fn lookup_known(
        &self,
        domain: &DomainRow,
        local: &str,
        depth: usize,
        x: &mut Expansion,
        known: Option<Option<AccountRow>>,
    ) -> std::result::Result<Step, ExpandError> {
        let acct = match known {
            Some(a) => a,
            None => self.db.account(domain.id, local).await?,
        };
        if let Some(acct) = acct {
            self.push_account(x, &acct, domain, depth).await?;
            return Ok(Step::Found);
        }
        if self.expand_alias(domain, local, depth, x).await? {
            return Ok(Step::Found);
        }
        let sep = domain.subaddress_separator.as_str();
        if !sep.is_empty() {
            if let Some((base, _tag)) = local.split_once(sep) {
                if !base.is_empty() {
                    if let Some(acct) = self.db.account(domain.id, base).await? {
                        self.push_account(x, &acct, domain, depth).await?;
                        return Ok(Step::Found);
                    }
                    if self.expand_alias(domain, base, depth, x).await? {
                        return Ok(Step::Found);
                    }
                }
            }
        }
        // RFC 5321 4.5.1 (postmaster) and RFC 2142 (abuse): always accepted,
        // to the domain's admins when nothing more specific exists.
        if local == "postmaster" || local == "abuse" {
            let admins: Vec<AccountRow> = self
                .db
                .accounts(Some(domain.id))
                .await?
                .into_iter()
                .filter(|a| a.domain_admin)
                .collect();
            if !admins.is_empty() {
                for a in &admins {
                    self.push_account(x, a, domain, depth).await?;
                }
                return Ok(Step::Found);
            }
            if let Some(pm) = self.postmaster.clone() {
                let is_self = pm.domain().canonical() == domain.name && pm.local_canonical() == local;
                if !is_self {
                    self.expand_targets(&[pm.canonical()], depth + 1, x).await?;
                    return Ok(Step::Found);
                }
            }
            x.routes.push(Route::Held {
                address: format!("{local}@{}", domain.name),
                hold: Hold::remote(
                    HoldReason::NoPostmaster,
                    "the domain has no admin and server.postmaster is not set",
                ),
            });
            return Ok(Step::Found);
        }
        if self.expand_alias(domain, "", depth, x).await? {
            return Ok(Step::Found);
        }
        Ok(Step::NotFound)
    }

    /// Expands the alias `local` of `domain` if it exists.
    async fn expand_alias(
        &self,
        domain: &DomainRow,
        local: &str,
        depth: usize,
        x: &mut Expansion,
    ) -> std::result::Result<bool, ExpandError> {
        let key = Node::Alias(domain.id, local.to_string());
        let name = if local.is_empty() {
            format!("@{}", domain.name)
        } else {
            format!("{local}@{}", domain.name)
        };
        // Checked before the lookup, so an alias about to be saved (see
        // `check_alias`) counts too.
        if x.chain.contains(&key) {
            return Err(ExpandError::Loop(format!("alias {name} refers back to itself")));
        }
        let Some(targets) = self.alias_targets(domain.id, local).await? else {
            return Ok(false);
        };
        if depth >= MAX_DEPTH {
            return Err(ExpandError::Loop(format!(
                "aliases nest deeper than {MAX_DEPTH} at {name}"
            )));
        }
        x.chain.push(key);
        let r = self.expand_targets(&targets, depth + 1, x).await;
        x.chain.pop();
        r.map(|()| true)
    }

    /// A mailbox reached: its own copy unless it forwards without keeping
    /// one, and its forwarding targets.
    async fn push_account(
        &self,
        x: &mut Expansion,
        acct: &AccountRow,
        domain: &DomainRow,
        depth: usize,
    ) -> std::result::Result<(), ExpandError> {
        if x.strict && x.chain.contains(&Node::Forward(acct.id)) {
            return Err(ExpandError::Loop(format!(
                "forwarding of {}@{} leads back to itself",
                acct.local, domain.name
            )));
        }
        // The same mailbox reached twice gets one copy (and this also ends
        // forwarding cycles between mailboxes made before they were checked).
        if !x.accounts.insert(acct.id) {
            return Ok(());
        }
        if acct.forward_to.is_empty() || acct.forward_keep {
            x.routes.push(Route::Local {
                account_id: acct.id,
                address: format!("{}@{}", acct.local, domain.name),
                enabled: acct.enabled,
            });
        }
        if !acct.forward_to.is_empty() {
            if depth >= MAX_DEPTH {
                return Err(ExpandError::Loop(format!(
                    "forwarding nests deeper than {MAX_DEPTH} at {}@{}",
                    acct.local, domain.name
                )));
            }
            if x.strict {
                x.chain.push(Node::Forward(acct.id));
            }
            let r = self.expand_targets(&acct.forward_to, depth + 1, x).await;
            if x.strict {
                x.chain.pop();
            }
            r?;
        }
        Ok(())
    }

    /// Boxed: expansion recurses (targets -> lookup -> alias or
    /// forwarding -> targets), and a recursive future needs a fixed size.
    fn expand_targets<'a>(
        &'a self,
        targets: &'a [String],
        depth: usize,
        x: &'a mut Expansion,
    ) -> ExpandFuture<'a> {
        Box::pin(async move {
            for t in targets {
                let Ok(addr) = Address::parse(t, true) else {
                    x.routes.push(Route::Held {
                        address: t.clone(),
                        hold: Hold::remote(HoldReason::UnknownMember, "alias target is not a valid address"),
                    });
                    continue;
                };
                match self.hosted_domain(addr.domain().canonical()).await? {
                    None => {
                        let canonical = addr.to_string();
                        if x.remotes.insert(addr.canonical()) {
                            x.routes.push(Route::Remote { address: canonical });
                        }
                    }
                    Some(domain) => {
                        if let Step::NotFound = self.lookup(&domain, addr.local_canonical(), depth, x).await?
                        {
                            x.routes.push(Route::Held {
                                address: addr.canonical(),
                                hold: Hold::remote(HoldReason::UnknownMember, "alias target does not exist"),
                            });
                        }
                    }
                }
            }
            Ok(())
        })
    }
}

/// Why nothing can deliver to these routes: none at all (mailboxes that
/// forward to each other without keeping copies), or only held ones.
fn unresolvable(routes: &[Route]) -> Option<String> {
    if routes.is_empty() {
        return Some("forwarding goes round in a circle without keeping a copy".into());
    }
    let mut held = Vec::new();
    for r in routes {
        match r {
            Route::Held { hold, .. } => held.push(hold.detail.as_str()),
            Route::Local { .. } | Route::Remote { .. } => return None,
        }
    }
    held.first().map(|r| r.to_string())
}

/// A gateway recipient as it is relayed: the local part as written (the
/// customer's server decides what it means), the domain in its canonical
/// form, which is how the queue finds the domain's `relay_to`.
pub fn gateway_address(addr: &Address) -> String {
    format!("{}@{}", addr.local_display(), addr.domain().canonical())
}

#[cfg(test)]
mod tests;
