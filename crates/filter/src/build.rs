//! The chain as the configuration asks for it. Each module says which
//! checks it adds; this file only puts them in order.

use postroom_config::FilterConfig;

use crate::chain::Chain;
use crate::{attachments, clamav, classifier, html, links, rules, sender};

/// What the checks need from the running server. Each check adds the
/// handles it needs (a DNS resolver, the classifier's storage, ...).
#[derive(Clone, Debug, Default)]
pub struct Deps {
    /// `[server] hostname`: a HELO naming it is forged.
    pub hostname: String,
    /// The server's own addresses (the listeners' IPs): a HELO address
    /// literal naming one is forged.
    pub addresses: Vec<std::net::IpAddr>,
    /// The resolver `[dns]` describes (`postroom_queue::dns::MxResolver::
    /// resolver`, the one the queue and the gateway use); `None` when
    /// `dns.enabled = false`: the sender checks then look nothing up.
    pub dns: Option<hickory_resolver::TokioResolver>,
    /// `[smtp] trusted_networks`: this provider's own relays, whose mail
    /// skips the sender checks as a logged-in user's does.
    pub trusted_networks: postroom_core::IpNetList,
    /// The statistical classifier, its model loaded from the store; the
    /// server also hands it to the trainers (IMAP moves, the report
    /// address). `None`: no classifier check.
    pub classifier: Option<std::sync::Arc<crate::classifier::Classifier>>,
    /// `postroom filter check`: scoring files offline, so no check may
    /// reach the network (no DNS, no clamd); such checks leave themselves
    /// out of the chain.
    pub offline: bool,
}

/// The chain `[filter]` describes; a configuration error (an unreadable
/// blocklist file, a bad clamd address) is named.
pub fn chain(config: &FilterConfig, deps: &Deps) -> Result<Chain, String> {
    let mut checks = Vec::new();
    checks.extend(sender::checks(&config.sender, &config.policy, deps)?);
    checks.extend(rules::checks(deps)?);
    let lists = links::Lists::load(&config.links)?;
    checks.extend(links::checks(&config.links, &lists, deps)?);
    checks.extend(html::checks(&config.html, deps)?);
    checks.extend(attachments::checks(&config.attachments, deps)?);
    checks.extend(clamav::checks(&config.clamav, deps)?);
    checks.extend(classifier::checks(&config.classifier, deps)?);
    let mut chain = Chain::new(checks, config.scores.clone());
    if let Some(rewriter) = html::rewriter(&config.html, &config.links, &lists, deps)? {
        chain = chain.with_rewriter(rewriter);
    }
    Ok(chain)
}
