//! `postroom check smtp HOST[:PORT]`: the seed's "SMTP connection test",
//! with failures explained in plain words.

use std::net::SocketAddr;
use std::time::Duration;

use super::{CmdResult, Context};

const TIMEOUT: Duration = Duration::from_secs(10);

fn split_target(target: &str) -> (String, u16) {
    if let Ok(sa) = target.parse::<SocketAddr>() {
        return (sa.ip().to_string(), sa.port());
    }
    match target.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h.trim_matches(['[', ']']).to_string(), port),
            Err(_) => (target.to_string(), 25),
        },
        _ => (target.trim_matches(['[', ']']).to_string(), 25),
    }
}

pub fn smtp(ctx: &Context, target: &str) -> CmdResult {
    let cfg = ctx.config()?;
    let (host, port) = split_target(target);
    // Our side first: the name we greet with decides whether the queue
    // delivers at all.
    let helo = &cfg.server.hostname;
    if postroom_core::Domain::parse(helo).is_ok_and(|d| d.is_fully_qualified()) {
        println!("our HELO name: {helo}");
    } else {
        println!(
            "our HELO name: {helo} -- NOT a fully qualified public name: remote delivery is held \
             (local delivery, IMAP and POP3 go on) until server.hostname is the name this server's \
             IP address resolves to"
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        // The configured resolvers, as the queue uses them (an address needs none).
        let resolver = postroom_queue::dns::MxResolver::new(
            cfg.dns.enabled,
            &cfg.dns.resolvers,
            Duration::from_secs(cfg.dns.timeout_secs),
        )?;
        let addrs: Vec<SocketAddr> = match resolver.host_addrs(&host).await {
            Ok(ips) => ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect(),
            Err(e) => {
                return Err(format!(
                    "{host} does not resolve to an address ({}): check the name and its DNS records",
                    e.0
                ))
            }
        };
        let mut last = String::new();
        for addr in addrs {
            println!("connecting to {host} [{}] port {port} ...", addr.ip());
            match postroom_queue::client::probe(addr, &cfg.server.hostname, &host, TIMEOUT).await {
                Ok(p) => {
                    println!("banner:   {}", p.banner);
                    for l in &p.ehlo {
                        println!("EHLO:     {l}");
                    }
                    match (&p.tls, &p.tls_error) {
                        (Some((version, fp, names)), _) => {
                            println!("STARTTLS: yes, {version}");
                            println!("certificate SHA-256: {fp}");
                            println!(
                                "certificate {} {host}",
                                if *names { "is valid for" } else { "does NOT name" }
                            );
                        }
                        (None, Some(e)) => println!("STARTTLS: offered but failed: {e}"),
                        (None, None) => println!("STARTTLS: not offered (mail to this server travels unencrypted)"),
                    }
                    println!("result: the server answers and accepts connections");
                    return Ok(());
                }
                Err(e) => {
                    let why = if e.contains("refused") {
                        "nothing listens there (connection refused): is the mail server running, and is the port open in its firewall?"
                    } else if e.contains("timeout") {
                        "no answer within 10 seconds: a firewall probably drops the connection (many ISPs block port 25)"
                    } else {
                        "the connection failed"
                    };
                    println!("  {why} [{e}]");
                    last = format!("{host}:{port}: {why}");
                }
            }
        }
        Err(last)
    })
}
