//! Gateway domains at RCPT time: a recipient the domain's list does not
//! name is accepted only when the customer's own server (`relay_to`) says
//! it would take it. Answers are cached in the store, so a burst of mail
//! (or a dictionary attack) costs the customer's server one question per
//! address and cache period.

use std::net::SocketAddr;
use std::time::Duration;

use postroom_core::Address;
use postroom_directory::{Lookup, Resolution, Route};
use postroom_queue::callout::{callout, CalloutAnswer};
use postroom_queue::dns::split_host_port;
use postroom_smtp::Reply;

use crate::mx::MxPipeline;

/// An address the customer's server accepted is trusted this long.
const ACCEPTED_TTL_SECS: i64 = 24 * 3600;
/// A refused one is refused this long (a mailbox created there meanwhile
/// is reachable within the hour).
const REFUSED_TTL_SECS: i64 = 3600;
const CALLOUT_TIMEOUT: Duration = Duration::from_secs(30);

fn unavailable(why: &str) -> Reply {
    // RFC 3463 4.4.3: the next hop could not be asked; the sender retries.
    Reply::new(
        451,
        "4.4.3",
        format!("Recipient verification failed, try again later: {why}"),
    )
}

impl MxPipeline {
    /// `Found` (relay it), `Unknown`, or a temporary refusal when the
    /// customer's server cannot be asked.
    pub(crate) async fn verify_gateway_recipient(
        &self,
        addr: &Address,
        relay_to: &str,
    ) -> Result<Lookup, Reply> {
        let key = addr.canonical();
        let found = || {
            Lookup::Found(Resolution {
                routes: vec![Route::Remote {
                    address: postroom_directory::resolve::gateway_address(addr),
                }],
                direct_account: None,
                gateway: true,
            })
        };
        match self.store.meta().cached_callout(&key, ACCEPTED_TTL_SECS).await {
            Ok(Some((true, _))) => return Ok(found()),
            Ok(Some((false, _))) => {
                if let Ok(Some((false, _))) = self.store.meta().cached_callout(&key, REFUSED_TTL_SECS).await {
                    return Ok(Lookup::Unknown);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "reading the callout cache failed"),
        }
        let Some((host, port)) = split_host_port(relay_to) else {
            return Err(unavailable(&format!("relay_to {relay_to} is not host:port")));
        };
        let ips = match &self.sender_dns {
            Some(dns) => dns.host_addrs(&host).await.map_err(|e| unavailable(&e.0))?,
            None => match host.parse() {
                Ok(ip) => vec![ip],
                Err(_) => return Err(unavailable("DNS lookups are turned off")),
            },
        };
        let mut last = String::from("no address");
        for ip in ips {
            let answer = callout(SocketAddr::new(ip, port), &self.hostname, &key, CALLOUT_TIMEOUT).await;
            tracing::info!(target: "smtp", recipient = %key, relay = %relay_to, answer = ?answer, "callout");
            match answer {
                CalloutAnswer::Accepted => {
                    // Only a cache: a failed write costs a callout later.
                    let _ = self.store.meta().remember_callout(&key, true, "").await;
                    return Ok(found());
                }
                CalloutAnswer::Refused(r) => {
                    let _ = self
                        .store
                        .meta()
                        .remember_callout(&key, false, &r.to_string())
                        .await;
                    return Ok(Lookup::Unknown);
                }
                CalloutAnswer::Unavailable(why) => last = why,
            }
        }
        Err(unavailable(&last))
    }
}
