//! The service against a real store in a temporary folder.

use std::sync::Arc;

use postroom_core::Secret;
use postroom_store::{CustomerCaps, Delivery, LocalDelivery, OutboundItem, Store, StoreError};

use crate::*;

fn cli() -> Actor {
    Actor::Cli {
        unix_user: "tester".into(),
    }
}

fn pw(p: &str) -> NewPassword {
    NewPassword::Plain(Secret::new(p.to_string()))
}

/// A cheap stored hash, so tests do not spend argon2's time on every
/// mailbox.
fn plain() -> NewPassword {
    NewPassword::Hash("{PLAIN}a-long-secret".into())
}

fn service() -> (tempfile::TempDir, AdminService) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let policy = Policy {
        hostname: "mail.provider.example".into(),
        ..Policy::default()
    };
    (dir, AdminService::for_store(store, policy))
}

async fn with_domain() -> (tempfile::TempDir, AdminService) {
    let (dir, s) = service();
    s.domain_add(&cli(), "abc.com", None, None, false).await.unwrap();
    (dir, s)
}

/// Queues one message from `sender` to `recipient`, held.
async fn queue(s: &AdminService, sender: &str, recipient: &str) -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let id = postroom_core::QueueId::generate(micros).to_string();
    let body = b"Subject: hi\r\n\r\nbody\r\n";
    s.store().blobs.put(&id, body).unwrap();
    s.store().blobs.sync().unwrap();
    s.store()
        .commit_delivery(Delivery {
            queue_id: id.clone(),
            blob_id: id.clone(),
            blob_size: body.len() as u64,
            received_at: 0,
            local: vec![],
            outbound: vec![OutboundItem {
                sender: sender.into(),
                recipient: recipient.into(),
                prefix: vec![],
                held: Some(postroom_store::Hold::remote(
                    postroom_store::HoldReason::Admin,
                    "test",
                )),
            }],
            released: Vec::new(),
        })
        .await
        .unwrap();
    id
}

/// Delivers one message into a mailbox's INBOX.
async fn deliver(s: &AdminService, address: &str) {
    let u = s.user_show(address).await.unwrap();
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let id = postroom_core::QueueId::generate(micros).to_string();
    let body = b"Subject: hi\r\n\r\nbody\r\n";
    s.store().blobs.put(&id, body).unwrap();
    s.store().blobs.sync().unwrap();
    s.store()
        .commit_delivery(Delivery {
            queue_id: id.clone(),
            blob_id: id,
            blob_size: body.len() as u64,
            received_at: 0,
            local: vec![LocalDelivery {
                account_id: u.account.id,
                folder: postroom_store::FolderTarget::Inbox,
                prefix: vec![],
                flags: 0,
                keywords: String::new(),
                internal_date: None,
                sent_copy_of: None,
            }],
            outbound: vec![],
            released: Vec::new(),
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn domain_rules() {
    let (_d, s) = service();
    let a = cli();
    assert!(matches!(
        s.domain_add(&a, "mail.provider.example", None, None, false).await,
        Err(AdminError::Invalid(_))
    ));
    s.domain_add(&a, "abc.com", None, None, false).await.unwrap();
    assert!(matches!(
        s.domain_add(&a, "ABC.com", None, None, false).await,
        Err(AdminError::AlreadyExists(_))
    ));
    let alias = s
        .domain_add(&a, "abc.net", Some("abc.com"), None, false)
        .await
        .unwrap();
    assert!(alias.alias_of.is_some());
    assert!(matches!(
        s.domain_add(&a, "abc.org", Some("abc.net"), None, false).await,
        Err(AdminError::Invalid(_))
    ));
    assert!(matches!(
        s.domain_add(&a, "abc.org", Some("missing.example"), None, false)
            .await,
        Err(AdminError::NotFound(_))
    ));
    assert!(matches!(
        s.domain_add(&a, "gw.example", None, Some("not a host:x"), false)
            .await,
        Err(AdminError::Invalid(_))
    ));
    let gw = s
        .domain_add(&a, "gw.example", None, Some("mail.gw.example:25"), true)
        .await
        .unwrap();
    assert_eq!(gw.relay_to.as_deref(), Some("mail.gw.example:25"));
    assert!(gw.relay_verify);
    // Mailboxes live in the target of an alias domain, never in a gateway.
    assert!(matches!(
        s.user_add(&a, "kent@abc.net", plain(), None, false).await,
        Err(AdminError::Invalid(_))
    ));
    assert!(matches!(
        s.user_add(&a, "kent@gw.example", plain(), None, false).await,
        Err(AdminError::Invalid(_))
    ));
    assert!(matches!(
        s.user_add(&a, "kent@nowhere.example", plain(), None, false).await,
        Err(AdminError::NotFound(_))
    ));
}

#[tokio::test]
async fn user_add_applies_the_password_policy_and_default_quota() {
    let (_d, s) = with_domain().await;
    let a = cli();
    s.domain_set(
        &a,
        "abc.com",
        DomainChange {
            default_quota: Some(Some(1 << 30)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let short = s.user_add(&a, "kent@abc.com", pw("short"), None, false).await;
    assert!(
        matches!(short, Err(AdminError::Invalid(ref m)) if m.contains("min_password_length")),
        "{short:?}"
    );
    assert!(matches!(
        s.user_add(
            &a,
            "kent@abc.com",
            NewPassword::Hash("md5:whatever".into()),
            None,
            false
        )
        .await,
        Err(AdminError::Invalid(_))
    ));
    let u = s
        .user_add(&a, "Kent@abc.com", pw("a-long-secret"), None, true)
        .await
        .unwrap();
    assert_eq!(u.address, "Kent@abc.com");
    assert_eq!(u.account.quota, Some(1 << 30));
    assert!(u.account.domain_admin);
    let hash = u.account.password_hash.unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(postroom_directory::password::verify(
        &hash,
        &Secret::new("a-long-secret".into())
    ));
    assert!(matches!(
        s.user_add(&a, "kent@abc.com", plain(), None, false).await,
        Err(AdminError::AlreadyExists(_))
    ));
    let q = s
        .user_add(&a, "ann@abc.com", plain(), Some(5 << 20), false)
        .await
        .unwrap();
    assert_eq!(q.account.quota, Some(5 << 20));
}

#[tokio::test]
async fn cycles_are_refused_through_aliases_and_forwarding() {
    let (_d, s) = with_domain().await;
    let a = cli();
    s.user_add(&a, "kent@abc.com", plain(), None, false)
        .await
        .unwrap();
    s.user_add(&a, "ann@abc.com", plain(), None, false).await.unwrap();
    s.alias_add(&a, "x@abc.com", "y").await.unwrap();
    let r = s.alias_add(&a, "y@abc.com", "x").await;
    assert!(
        matches!(r, Err(AdminError::Invalid(ref m)) if m.starts_with("refused")),
        "{r:?}"
    );
    s.user_forward(&a, "kent@abc.com", "ann", false).await.unwrap();
    let r = s.user_forward(&a, "ann@abc.com", "kent@abc.com", false).await;
    assert!(matches!(r, Err(AdminError::Invalid(_))), "{r:?}");
    // Through an alias: ann -> team -> kent -> ann.
    s.alias_add(&a, "team@abc.com", "kent").await.unwrap();
    assert!(s.user_forward(&a, "ann@abc.com", "team", false).await.is_err());
    // Off always works.
    assert!(s
        .user_forward(&a, "kent@abc.com", "", true)
        .await
        .unwrap()
        .is_empty());
    s.user_forward(&a, "ann@abc.com", "team", false).await.unwrap();
}

#[tokio::test]
async fn an_alias_on_a_mailbox_is_refused_and_the_other_way_round() {
    let (_d, s) = with_domain().await;
    let a = cli();
    s.user_add(&a, "kent@abc.com", plain(), None, false)
        .await
        .unwrap();
    let r = s.alias_add(&a, "KENT@abc.com", "ann@elsewhere.example").await;
    assert!(
        matches!(r, Err(AdminError::Conflict(ref m)) if m.contains("is a mailbox")),
        "{r:?}"
    );
    assert!(s.aliases(None).await.unwrap().is_empty());
    s.alias_add(&a, "sales@abc.com", "kent").await.unwrap();
    let r = s.user_add(&a, "sales@abc.com", plain(), None, false).await;
    assert!(
        matches!(r, Err(AdminError::Conflict(ref m)) if m.contains("is an alias")),
        "{r:?}"
    );
    let r = s.user_rename(&a, "kent@abc.com", "sales@abc.com").await;
    assert!(matches!(r, Err(AdminError::Conflict(_))), "{r:?}");
}

/// The version moves between the check and the write: the write is
/// refused, the check runs again against the new state and finds the
/// cycle the concurrent change made.
#[tokio::test]
async fn a_change_between_check_and_write_is_caught() {
    let (_d, mut s) = with_domain().await;
    let a = cli();
    s.user_add(&a, "kent@abc.com", plain(), None, false)
        .await
        .unwrap();
    let other = s.clone();
    let raced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = Arc::clone(&raced);
    s.race_with(Arc::new(move || {
        let other = other.clone();
        let count = Arc::clone(&count);
        Box::pin(async move {
            // Once: another admin makes b -> a while we are about to
            // save a -> b.
            if count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                other.alias_add(&cli(), "b@abc.com", "a").await.unwrap();
            }
        })
    }));
    let r = s.alias_add(&a, "a@abc.com", "b").await;
    assert!(
        matches!(r, Err(AdminError::Invalid(ref m)) if m.contains("refers back")),
        "{r:?}"
    );
    assert_eq!(raced.load(std::sync::atomic::Ordering::SeqCst), 1);
    let names: Vec<String> = s
        .aliases(None)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.address)
        .collect();
    assert_eq!(names, ["b@abc.com"]);

    // The same for forwarding: kent -> ann while ann -> kent is saved.
    s.user_add(&a, "ann@abc.com", plain(), None, false).await.unwrap();
    let mut s2 = s.clone();
    let other = s.clone();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    s2.race_with(Arc::new(move || {
        let other = other.clone();
        let count = Arc::clone(&count);
        Box::pin(async move {
            if count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                other
                    .user_forward(&cli(), "ann@abc.com", "kent", false)
                    .await
                    .unwrap();
            }
        })
    }));
    let r = s2.user_forward(&a, "kent@abc.com", "ann", false).await;
    assert!(matches!(r, Err(AdminError::Invalid(_))), "{r:?}");
    assert!(s
        .user_show("kent@abc.com")
        .await
        .unwrap()
        .account
        .forward_to
        .is_empty());

    // A concurrent change that makes no cycle costs one more round only.
    let mut s3 = s.clone();
    let other = s.clone();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    s3.race_with(Arc::new(move || {
        let other = other.clone();
        let count = Arc::clone(&count);
        Box::pin(async move {
            if count.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                other.alias_add(&cli(), "c@abc.com", "kent").await.unwrap();
            }
        })
    }));
    s3.alias_add(&a, "d@abc.com", "kent").await.unwrap();
}

#[tokio::test]
async fn a_stale_version_is_a_conflict_in_the_store() {
    let (_d, s) = with_domain().await;
    let meta = s.store().meta();
    let d = meta.domain("abc.com").await.unwrap().unwrap();
    let v = meta.directory_version().await.unwrap();
    meta.add_alias_targets_if(d.id, "a", "a", &["x@abc.com".into()], v)
        .await
        .unwrap();
    let r = meta
        .add_alias_targets_if(d.id, "b", "b", &["x@abc.com".into()], v)
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    // A login or a delivery does not move it; a rename does.
    let v = meta.directory_version().await.unwrap();
    let acct = meta.add_account(d.id, "k", "k", None, None).await.unwrap();
    let v2 = meta.directory_version().await.unwrap();
    assert!(v2 > v);
    meta.record_login(acct.id, 5).await.unwrap();
    meta.set_quota(acct.id, Some(5)).await.unwrap();
    assert_eq!(meta.directory_version().await.unwrap(), v2);
    let r = meta
        .set_forwarding_if(acct.id, &["x@abc.com".into()], true, v)
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    meta.set_forwarding_if(acct.id, &["x@abc.com".into()], true, v2)
        .await
        .unwrap();
}

#[tokio::test]
async fn every_change_is_audited_with_its_actor() {
    let (_d, s) = with_domain().await;
    let api = Actor::Api {
        login: "root@abc.com".into(),
        ip: "192.0.2.9".parse().unwrap(),
    };
    s.user_add(&api, "kent@abc.com", pw("a-long-secret"), None, false)
        .await
        .unwrap();
    s.alias_add(&cli(), "team@abc.com", "kent").await.unwrap();
    s.domain_add(&cli(), "other.example", None, None, false)
        .await
        .unwrap();
    let all = s.audit(None, None, 100).await.unwrap();
    let ops: Vec<&str> = all.iter().map(|r| r.entry.operation.as_str()).collect();
    assert_eq!(ops, ["domain.add", "alias.add", "user.add", "domain.add"]);
    let user = &all[2].entry;
    assert_eq!(user.actor, "api:root@abc.com");
    assert_eq!(user.origin, "192.0.2.9");
    assert_eq!(user.object, "kent@abc.com");
    assert!(!user.detail.contains("a-long-secret"));
    assert_eq!(all[1].entry.actor, "cli:tester");
    assert_eq!(all[1].entry.origin, "cli");
    let abc = s.audit(None, Some("ABC.com"), 100).await.unwrap();
    assert_eq!(abc.len(), 3);
    let kent = s.audit(Some("kent@abc.com"), None, 100).await.unwrap();
    assert_eq!(kent.len(), 1);
    assert_eq!(s.audit(None, None, 1).await.unwrap().len(), 1);
    // A refused change leaves no row.
    let _ = s.alias_add(&cli(), "kent@abc.com", "x@y.example").await;
    assert_eq!(s.audit(None, None, 100).await.unwrap().len(), 4);
}

#[tokio::test]
async fn domain_show_and_remove() {
    let (_d, s) = with_domain().await;
    let a = cli();
    s.domain_add(&a, "abc.net", Some("abc.com"), None, false)
        .await
        .unwrap();
    s.user_add(&a, "kent@abc.com", plain(), None, false)
        .await
        .unwrap();
    s.alias_add(&a, "team@abc.com", "kent").await.unwrap();
    deliver(&s, "kent@abc.com").await;
    let info = s.domain_show("abc.com").await.unwrap();
    assert_eq!(info.mailboxes, 1);
    assert_eq!(info.aliases.len(), 1);
    assert_eq!(info.alias_domains.len(), 1);
    assert_eq!(info.queued, 0);
    let q = queue(&s, "kent@abc.com", "far@remote.example").await;
    assert_eq!(s.domain_show("abc.com").await.unwrap().queued, 1);
    let r = s.domain_remove(&a, "abc.com", false).await;
    assert!(
        matches!(r, Err(AdminError::Conflict(ref m)) if m.contains("queued")),
        "{r:?}"
    );
    s.queue_delete(&a, &q).await.unwrap();
    let r = s.domain_remove(&a, "abc.com", false).await;
    assert!(
        matches!(r, Err(AdminError::Conflict(ref m)) if m.contains("mailboxes")),
        "{r:?}"
    );
    s.domain_remove(&a, "abc.com", true).await.unwrap();
    assert!(s.domains().await.unwrap().is_empty());
    assert!(s.users(None).await.unwrap().is_empty());
    assert!(s.aliases(None).await.unwrap().is_empty());
    // An empty domain goes without --force.
    s.domain_add(&a, "empty.example", None, None, false)
        .await
        .unwrap();
    s.domain_remove(&a, "empty.example", false).await.unwrap();
    assert!(matches!(
        s.domain_remove(&a, "empty.example", false).await,
        Err(AdminError::NotFound(_))
    ));
}

#[tokio::test]
async fn user_show_set_and_remove() {
    let (_d, s) = with_domain().await;
    let a = cli();
    s.user_add(&a, "kent@abc.com", plain(), None, false)
        .await
        .unwrap();
    deliver(&s, "kent@abc.com").await;
    let u = s.user_show("KENT@abc.com").await.unwrap();
    assert_eq!(u.messages, 1);
    assert!(u.usage > 0);
    assert_eq!(u.account.last_login, None);
    let u = s.user_set_quota(&a, "kent@abc.com", Some(1 << 20)).await.unwrap();
    assert_eq!(u.account.quota, Some(1 << 20));
    let u = s.user_set_quota(&a, "kent@abc.com", None).await.unwrap();
    assert_eq!(u.account.quota, None);

    // Removal: disabled at once, mail kept until the grace period ends.
    let Removal::Scheduled(at) = s.user_remove(&a, "kent@abc.com", false).await.unwrap() else {
        panic!("not scheduled");
    };
    assert!(at >= now() + REMOVAL_GRACE_SECS - 5);
    let u = s.user_show("kent@abc.com").await.unwrap();
    assert!(!u.account.enabled);
    assert_eq!(u.account.delete_after, Some(at));
    assert!(matches!(
        s.user_set_enabled(&a, "kent@abc.com", true).await,
        Err(AdminError::Conflict(_))
    ));
    assert!(s.purge_removed(at - 1).await.unwrap().is_empty());
    assert_eq!(s.purge_removed(at).await.unwrap(), ["kent@abc.com"]);
    assert!(matches!(
        s.user_show("kent@abc.com").await,
        Err(AdminError::NotFound(_))
    ));
    assert_eq!(s.audit(None, None, 1).await.unwrap()[0].entry.actor, "system");

    // --now deletes at once; the address can be used again.
    s.user_add(&a, "kent@abc.com", plain(), None, false)
        .await
        .unwrap();
    deliver(&s, "kent@abc.com").await;
    assert_eq!(
        s.user_remove(&a, "kent@abc.com", true).await.unwrap(),
        Removal::Now
    );
    assert!(s.users(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn rename_keeps_folders_and_uids() {
    let (_d, s) = with_domain().await;
    let a = cli();
    s.domain_add(&a, "xyz.example", None, None, false).await.unwrap();
    s.user_add(&a, "kent@abc.com", plain(), None, false)
        .await
        .unwrap();
    deliver(&s, "kent@abc.com").await;
    let before = s.user_show("kent@abc.com").await.unwrap();
    let meta = s.store().meta();
    let inbox = meta
        .find_folder(before.account.id, "INBOX")
        .await
        .unwrap()
        .unwrap();
    let uids: Vec<_> = meta
        .messages(inbox.id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    let after = s
        .user_rename(&a, "kent@abc.com", "Clark@xyz.example")
        .await
        .unwrap();
    assert_eq!(after.address, "Clark@xyz.example");
    assert_eq!(after.account.id, before.account.id);
    let inbox2 = meta
        .find_folder(after.account.id, "INBOX")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inbox2.uidvalidity, inbox.uidvalidity);
    let uids2: Vec<_> = meta
        .messages(inbox2.id)
        .await
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(uids, uids2);
    assert!(matches!(
        s.user_show("kent@abc.com").await,
        Err(AdminError::NotFound(_))
    ));
    s.user_add(&a, "ann@xyz.example", plain(), None, false)
        .await
        .unwrap();
    assert!(matches!(
        s.user_rename(&a, "clark@xyz.example", "ann@xyz.example").await,
        Err(AdminError::AlreadyExists(_))
    ));
    assert!(matches!(
        s.user_rename(&a, "clark@xyz.example", "x@nowhere.example").await,
        Err(AdminError::NotFound(_))
    ));
}

#[tokio::test]
async fn list_members_are_added_and_removed() {
    let (_d, s) = with_domain().await;
    let a = cli();
    assert!(matches!(
        s.alias_members_add(&a, "team@abc.com", "kent").await,
        Err(AdminError::NotFound(_))
    ));
    s.alias_add(&a, "team@abc.com", "kent,ann").await.unwrap();
    let t = s
        .alias_members_add(&a, "team@abc.com", "bob@outside.example")
        .await
        .unwrap();
    assert_eq!(
        t.row.targets,
        ["kent@abc.com", "ann@abc.com", "bob@outside.example"]
    );
    let r = s.alias_members_remove(&a, "team@abc.com", "nobody").await;
    assert!(matches!(r, Err(AdminError::NotFound(_))), "{r:?}");
    let t = s
        .alias_members_remove(&a, "team@abc.com", "KENT@abc.com,ann")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.row.targets, ["bob@outside.example"]);
    // The last member gone, the list goes.
    assert!(s
        .alias_members_remove(&a, "team@abc.com", "bob@outside.example")
        .await
        .unwrap()
        .is_none());
    assert!(s.aliases(None).await.unwrap().is_empty());
}

#[tokio::test]
async fn queue_hold_release_delete() {
    let (_d, s) = with_domain().await;
    let a = cli();
    assert!(matches!(
        s.queue_hold(&a, "nosuchid").await,
        Err(AdminError::NotFound(_))
    ));
    let q = queue(&s, "kent@abc.com", "far@remote.example").await;
    assert_eq!(s.queue_release(&a, &q).await.unwrap(), 1);
    assert_eq!(s.queue_list().await.unwrap()[0].state, "queued");
    assert_eq!(s.queue_hold(&a, &q).await.unwrap(), 1);
    assert_eq!(s.queue_list().await.unwrap()[0].state, "held");
    let (rows, head) = s.queue_show(&q).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(head, b"Subject: hi\r\n");
    assert_eq!(s.queue_delete(&a, &q).await.unwrap(), 1);
    assert!(s.queue_list().await.unwrap().is_empty());
    assert!(matches!(
        s.queue_delete(&a, &q).await,
        Err(AdminError::NotFound(_))
    ));
}

#[tokio::test]
async fn dkim_generate_makes_two_keys_once_a_day() {
    let (_d, s) = with_domain().await;
    let (d, keys) = s.dkim_generate(&cli(), "abc.com").await.unwrap();
    assert_eq!(keys.len(), 2);
    let algs: Vec<&str> = keys.iter().map(|k| k.algorithm.as_str()).collect();
    assert!(algs.contains(&"rsa-sha256") && algs.contains(&"ed25519-sha256"));
    let txt = txt_record(
        &keys[0].selector,
        &d.name,
        &keys[0].algorithm,
        &keys[0].public_key,
    );
    assert!(txt.contains("._domainkey.abc.com. IN TXT \"v=DKIM1;"), "{txt}");
    assert!(matches!(
        s.dkim_generate(&cli(), "abc.com").await,
        Err(AdminError::AlreadyExists(_))
    ));
}

#[test]
fn sizes_and_quotas() {
    assert_eq!(parse_size("2G").unwrap(), 2 << 30);
    assert_eq!(parse_size("500m").unwrap(), 500 << 20);
    assert!(parse_size("0").is_err());
    assert!(parse_size("-1").is_err());
    assert!(parse_size("99999999999T").is_err());
    assert_eq!(parse_quota("none").unwrap(), None);
    assert_eq!(parse_quota("1K").unwrap(), Some(1024));
}

#[test]
fn times_print_in_utc() {
    assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(format_utc(1_796_676_600), "2026-12-07 20:50:00 UTC");
    assert_eq!(format_utc(i64::MAX), format!("@{}", i64::MAX));
}

#[tokio::test]
async fn a_rename_that_would_close_a_forwarding_loop_is_refused() {
    let (_d, s) = with_domain().await;
    let a = cli();
    s.user_add(&a, "kent@abc.com", plain(), None, false)
        .await
        .unwrap();
    // team -> clark, who does not exist yet; kent forwards to team.
    s.alias_add(&a, "team@abc.com", "clark").await.unwrap();
    s.user_forward(&a, "kent@abc.com", "team", false).await.unwrap();
    let r = s.user_rename(&a, "kent@abc.com", "clark@abc.com").await;
    assert!(
        matches!(r, Err(AdminError::Invalid(ref m)) if m.contains("refused")),
        "{r:?}"
    );
    assert_eq!(s.user_show("kent@abc.com").await.unwrap().address, "kent@abc.com");
    assert!(matches!(
        s.user_show("clark@abc.com").await,
        Err(AdminError::NotFound(_))
    ));
    // Without the forwarding, the same rename is fine.
    s.user_forward(&a, "kent@abc.com", "", true).await.unwrap();
    s.user_rename(&a, "kent@abc.com", "clark@abc.com").await.unwrap();
}

#[test]
fn errors_map_to_http_statuses() {
    assert_eq!(AdminError::NotFound("x".into()).http_status(), 404);
    assert_eq!(AdminError::AlreadyExists("x".into()).http_status(), 409);
    assert_eq!(AdminError::Conflict("x".into()).http_status(), 409);
    assert_eq!(AdminError::Invalid("x".into()).http_status(), 422);
    assert_eq!(AdminError::Forbidden("x".into()).http_status(), 403);
    let e: AdminError = StoreError::Unavailable.into();
    assert_eq!(e.http_status(), 503);
    let e: AdminError = StoreError::Conflict("moved").into();
    assert_eq!(e.http_status(), 409);
}

#[tokio::test]
async fn sizes_and_counts_are_limited() {
    let (_d, s) = with_domain().await;
    let a = cli();
    let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
    assert!(matches!(
        s.user_add(&a, "kent@abc.com", pw(&long), None, false).await,
        Err(AdminError::Invalid(_))
    ));
    let many: Vec<String> = (0..=MAX_TARGETS).map(|i| format!("m{i}")).collect();
    assert!(matches!(
        s.alias_add(&a, "big@abc.com", &many.join(",")).await,
        Err(AdminError::Invalid(_))
    ));
    // A big list is fine; its audit row is cut.
    s.alias_add(&a, "big@abc.com", &many[..2000].join(","))
        .await
        .unwrap();
    let row = &s.audit(Some("big@abc.com"), None, 1).await.unwrap()[0];
    assert!(row.entry.detail.len() <= MAX_AUDIT_DETAIL + 3);
    assert!(row.entry.detail.ends_with('…'));
}

/// The messages of a mailbox's folder, as bytes.
async fn folder_bytes(s: &AdminService, address: &str, folder: &str) -> Vec<Vec<u8>> {
    let u = s.user_show(address).await.unwrap();
    let meta = s.store().meta();
    let f = meta.find_folder(u.account.id, folder).await.unwrap().unwrap();
    let mut out = Vec::new();
    for m in meta.messages(f.id).await.unwrap() {
        out.push(s.store().message_bytes(&m).unwrap());
    }
    out
}

#[tokio::test]
async fn releasing_a_held_item_for_an_address_now_local_delivers_it_here() {
    let (_d, s) = with_domain().await;
    let a = cli();
    // Held because carol@ did not exist (a list member, say).
    let q = queue(&s, "kent@outside.example", "carol@abc.com").await;
    assert_eq!(
        s.queue_list().await.unwrap()[0].hold_reason,
        Some(postroom_store::HoldReason::Admin)
    );
    // Still nowhere to go: refused, still held, nothing queued for MX.
    assert!(matches!(
        s.queue_release(&a, &q).await,
        Err(AdminError::Conflict(_))
    ));
    assert_eq!(s.queue_list().await.unwrap()[0].state, "held");
    s.user_add(&a, "carol@abc.com", plain(), None, false)
        .await
        .unwrap();
    assert_eq!(s.queue_release(&a, &q).await.unwrap(), 1);
    // Delivered into her INBOX, with the lines of a final delivery, and
    // no outbound row left to send it out by MX.
    assert!(s.queue_list().await.unwrap().is_empty());
    assert_eq!(
        folder_bytes(&s, "carol@abc.com", "INBOX").await,
        [b"Return-Path: <kent@outside.example>\r\nDelivered-To: carol@abc.com\r\nSubject: hi\r\n\r\nbody\r\n".to_vec()]
    );
    assert!(matches!(
        s.queue_release(&a, &q).await,
        Err(AdminError::NotFound(_))
    ));
}

#[tokio::test]
async fn releasing_a_quarantined_local_copy_puts_it_into_its_mailbox() {
    let (_d, s) = with_domain().await;
    let a = cli();
    s.user_add(&a, "kent@abc.com", plain(), None, false)
        .await
        .unwrap();
    let kent = s.user_show("kent@abc.com").await.unwrap().account.id;
    let id = postroom_core::QueueId::generate(1).to_string();
    let body = b"Subject: quarantined\r\n\r\nbody\r\n";
    s.store().blobs.put(&id, body).unwrap();
    let held = |folder| OutboundItem {
        sender: "x@outside.example".into(),
        recipient: "kent@abc.com".into(),
        prefix: b"Delivered-To: kent@abc.com\r\n".to_vec(),
        held: Some(postroom_store::Hold {
            reason: postroom_store::HoldReason::Quarantine,
            detail: "quarantine: test".into(),
            local: Some(postroom_store::HeldLocal {
                account_id: kent,
                folder,
            }),
        }),
    };
    s.store()
        .commit_delivery(Delivery {
            queue_id: id.clone(),
            blob_id: id.clone(),
            blob_size: body.len() as u64,
            received_at: 0,
            local: vec![],
            outbound: vec![held(postroom_store::FolderTarget::Inbox)],
            released: Vec::new(),
        })
        .await
        .unwrap();
    let rows = s.queue_list().await.unwrap();
    assert_eq!(rows[0].hold_reason, Some(postroom_store::HoldReason::Quarantine));
    assert_eq!(rows[0].held_for.as_ref().unwrap().account_id, kent);
    // Never queued for MX: retry and a plain state change leave it held.
    assert!(s.queue_retry(&a, &id).await.is_err());
    assert_eq!(s.queue_list().await.unwrap()[0].state, "held");
    assert_eq!(s.queue_release(&a, &id).await.unwrap(), 1);
    assert!(s.queue_list().await.unwrap().is_empty());
    let inbox = folder_bytes(&s, "kent@abc.com", "INBOX").await;
    assert_eq!(
        inbox,
        [b"Delivered-To: kent@abc.com\r\nSubject: quarantined\r\n\r\nbody\r\n".to_vec()]
    );
}

#[tokio::test]
async fn provider_admins_are_added_listed_and_removed_from_the_cli_only() {
    let (_dir, s) = service();
    let api = Actor::Api {
        login: "boss@provider.example".into(),
        ip: "192.0.2.7".parse().unwrap(),
    };
    // A console session cannot make itself a lasting provider admin.
    let e = s
        .provider_admin_add(&api, "new@provider.example", plain())
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 403, "{e}");
    let e = s
        .provider_admin_add(&cli(), "boss@provider.example", pw("short"))
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 422, "{e}");
    let a = s
        .provider_admin_add(&cli(), "Boss@Provider.example", plain())
        .await
        .unwrap();
    assert_eq!(a.address, "boss@provider.example");
    let e = s
        .provider_admin_add(&cli(), "boss@provider.example", plain())
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 409, "{e}");
    assert!(s.provider_admin("BOSS@provider.example").await.unwrap().is_some());
    assert!(s.provider_admin("not an address").await.unwrap().is_none());
    s.provider_admin_passwd(&cli(), "boss@provider.example", plain())
        .await
        .unwrap();
    s.provider_admin_remove(&cli(), "boss@provider.example")
        .await
        .unwrap();
    let e = s
        .provider_admin_remove(&cli(), "boss@provider.example")
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 404, "{e}");
    assert!(s.provider_admins().await.unwrap().is_empty());
    let ops: Vec<String> = s
        .audit(None, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.entry.operation)
        .collect();
    assert_eq!(ops, ["admin.remove", "admin.passwd", "admin.add"]);
}

#[tokio::test]
async fn mailbox_pages_are_sorted_searched_and_counted() {
    let (_dir, s) = with_domain().await;
    for name in ["carol", "alice", "bob", "alfred"] {
        s.user_add(&cli(), &format!("{name}@abc.com"), plain(), None, false)
            .await
            .unwrap();
    }
    let (total, page) = s.users_page("abc.com", "", 1, 2).await.unwrap();
    let names: Vec<&str> = page.iter().map(|u| u.address.as_str()).collect();
    assert_eq!((total, names), (4, vec!["alice@abc.com", "bob@abc.com"]));
    let (total, page) = s.users_page("abc.com", "AL", 0, 50).await.unwrap();
    assert_eq!((total, page.len()), (2, 2));
    let (total, page) = s.users_page("abc.com", "", 10, 50).await.unwrap();
    assert_eq!((total, page.len()), (4, 0));
}

#[tokio::test]
async fn api_tokens_are_shown_once_stored_hashed_and_expire() {
    let (_dir, s) = with_domain().await;
    s.user_add(&cli(), "kent@abc.com", plain(), None, true)
        .await
        .unwrap();
    s.user_add(&cli(), "plain@abc.com", plain(), None, false)
        .await
        .unwrap();
    s.provider_admin_add(&cli(), "boss@provider.example", plain())
        .await
        .unwrap();
    let e = s
        .api_token_create(&cli(), "plain@abc.com", false, 30, &[])
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 422, "{e}");
    let e = s
        .api_token_create(&cli(), "nobody@abc.com", false, 30, &[])
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 422, "{e}");
    let e = s
        .api_token_create(&cli(), "kent@abc.com", false, 0, &[])
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 422, "{e}");
    let e = s
        .api_token_create(&cli(), "kent@abc.com", false, 30, &["10.0.0.0/99".into()])
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 422, "{e}");
    let api = Actor::Api {
        login: "boss@provider.example".into(),
        ip: "192.0.2.7".parse().unwrap(),
    };
    let e = s
        .api_token_create(&api, "kent@abc.com", false, 30, &[])
        .await
        .unwrap_err();
    assert_eq!(e.http_status(), 403, "{e}");

    let (row, token) = s
        .api_token_create(&cli(), "Kent@abc.com", true, 30, &[])
        .await
        .unwrap();
    assert!(token.starts_with(TOKEN_PREFIX) && token.len() > 40);
    assert_eq!(row.login, "kent@abc.com");
    assert_ne!(row.digest, token);
    assert!(!row.digest.contains(&token[4..]));
    assert_eq!(s.api_token_check(&token).await.unwrap(), Some(row.clone()));
    assert_eq!(s.api_token_check("prt_wrong").await.unwrap(), None);
    s.api_token_create(&cli(), "boss@provider.example", false, 1, &[])
        .await
        .unwrap();
    assert_eq!(
        s.api_tokens(Some("kent@abc.com")).await.unwrap(),
        vec![row.clone()]
    );
    assert_eq!(s.api_tokens(None).await.unwrap().len(), 2);
    // An expired token is refused.
    let expired = "prt_expired-token-for-the-test";
    s.store()
        .meta()
        .add_api_token(&postroom_store::NewApiToken {
            digest: token_digest(expired),
            login: "kent@abc.com".into(),
            read_only: false,
            allow_from: String::new(),
            expires: now() - 1,
        })
        .await
        .unwrap();
    assert_eq!(s.api_token_check(expired).await.unwrap(), None);
    s.api_token_revoke(&cli(), row.id).await.unwrap();
    assert_eq!(s.api_token_check(&token).await.unwrap(), None);
    assert_eq!(
        s.api_token_revoke(&cli(), row.id)
            .await
            .unwrap_err()
            .http_status(),
        404
    );
    let audit = s.audit(Some("kent@abc.com"), None, 10).await.unwrap();
    assert!(audit.iter().all(|r| !r.entry.detail.contains(&token[4..])));
    assert_eq!(audit[0].entry.operation, "token.revoke");
}

/// The filter's administration (issue #10): whitelists are kept under the
/// primary domain and the canonical mailbox, whatever was typed; a
/// domain's policy is checked against the server's thresholds.
#[tokio::test]
async fn whitelists_and_domain_filter_policy() {
    let (_d, s) = with_domain().await;
    s.domain_add(&cli(), "abc.net", Some("abc.com"), None, false)
        .await
        .unwrap();
    s.user_add(&cli(), "Kent@abc.com", plain(), None, false)
        .await
        .unwrap();
    assert_eq!(
        s.whitelist_add(&cli(), "ABC.net", "Friend.Example")
            .await
            .unwrap(),
        ("abc.com".to_string(), "friend.example".to_string())
    );
    assert_eq!(
        s.whitelist_add(&cli(), "kent@abc.net", "a@b.example")
            .await
            .unwrap()
            .0,
        "kent@abc.com"
    );
    assert!(matches!(
        s.whitelist_add(&cli(), "abc.com", "friend.example").await,
        Err(AdminError::AlreadyExists(_))
    ));
    for bad in ["", "a b.example", "@x.example", "<a@b.example>"] {
        assert!(
            matches!(
                s.whitelist_add(&cli(), "abc.com", bad).await,
                Err(AdminError::Invalid(_))
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        s.whitelist_add(&cli(), "nobody@abc.com", "x.example").await,
        Err(AdminError::NotFound(_))
    ));
    assert_eq!(s.whitelist_list(Some("abc.com")).await.unwrap().len(), 2);
    assert_eq!(s.whitelist_list(Some("kent@abc.com")).await.unwrap().len(), 1);
    s.whitelist_remove(&cli(), "abc.com", "friend.example")
        .await
        .unwrap();
    assert_eq!(s.whitelist_list(None).await.unwrap().len(), 1);

    let defaults = postroom_filter::Thresholds::default();
    let change = postroom_filter::DomainPolicy {
        junk_at: Some(4.0),
        cleaned: Some(false),
        ..Default::default()
    };
    let p = s
        .filter_policy_set(&cli(), "abc.net", change, false, &defaults)
        .await
        .unwrap();
    assert_eq!((p.junk_at, p.cleaned), (Some(4.0), Some(false)));
    assert_eq!(
        s.filter_policy("abc.com").await.unwrap(),
        ("abc.com".to_string(), p)
    );
    let bad = postroom_filter::DomainPolicy {
        quarantine_at: Some(30.0),
        ..Default::default()
    };
    assert!(matches!(
        s.filter_policy_set(&cli(), "abc.com", bad, false, &defaults)
            .await,
        Err(AdminError::Invalid(_))
    ));
    let reset = s
        .filter_policy_set(&cli(), "abc.com", Default::default(), true, &defaults)
        .await
        .unwrap();
    assert_eq!(reset, Default::default());
    assert_eq!(
        s.store().meta().filter_domain_settings("abc.com").await.unwrap(),
        None
    );
}

// ---------------------------------------------------------------------
// Customers and their caps (issue #11)

fn caps(
    domains: Option<i64>,
    mailboxes: Option<i64>,
    aliases: Option<i64>,
    storage: Option<i64>,
) -> CustomerCaps {
    CustomerCaps {
        max_domains: domains,
        max_mailboxes: mailboxes,
        max_aliases: aliases,
        max_storage: storage,
    }
}

fn cap_reached<T: std::fmt::Debug>(r: Result<T>, cap: &str) {
    match r {
        Err(AdminError::CapReached(m)) => assert!(m.contains(cap), "{m} does not name the {cap} cap"),
        other => panic!("expected the {cap} cap, got {other:?}"),
    }
}

/// A customer "acme" owning abc.com, with these caps.
async fn customer_with(c: CustomerCaps) -> (tempfile::TempDir, AdminService) {
    let (dir, s) = with_domain().await;
    s.customer_add(&cli(), "Acme", c).await.unwrap();
    s.customer_set(
        &cli(),
        "acme",
        CustomerChange {
            add_domains: vec!["abc.com".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    (dir, s)
}

#[tokio::test]
async fn mailbox_cap_refuses_the_next_mailbox() {
    let (_d, s) = customer_with(caps(None, Some(2), None, None)).await;
    s.user_add(&cli(), "a@abc.com", plain(), None, false)
        .await
        .unwrap();
    s.user_add(&cli(), "b@abc.com", plain(), None, false)
        .await
        .unwrap();
    cap_reached(
        s.user_add(&cli(), "c@abc.com", plain(), None, false).await,
        "mailboxes",
    );
    assert_eq!(AdminError::CapReached(String::new()).http_status(), 409);
    // Nothing was made, and a domain with no customer has no cap.
    assert!(s.user_show("c@abc.com").await.is_err());
    s.domain_add(&cli(), "free.example", None, None, false)
        .await
        .unwrap();
    for i in 0..3 {
        s.user_add(&cli(), &format!("u{i}@free.example"), plain(), None, false)
            .await
            .unwrap();
    }
    // A raised cap lets the next one in.
    s.customer_set(
        &cli(),
        "acme",
        CustomerChange {
            max_mailboxes: Some(Some(3)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    s.user_add(&cli(), "c@abc.com", plain(), None, false)
        .await
        .unwrap();
    assert_eq!(s.customer_show("acme").await.unwrap().usage.mailboxes, 3);
}

#[tokio::test]
async fn alias_cap_counts_new_aliases_only() {
    let (_d, s) = customer_with(caps(None, None, Some(1), None)).await;
    s.alias_add(&cli(), "sales@abc.com", "x@remote.example")
        .await
        .unwrap();
    // More targets on the same alias add no alias.
    s.alias_add(&cli(), "sales@abc.com", "y@remote.example")
        .await
        .unwrap();
    cap_reached(
        s.alias_add(&cli(), "info@abc.com", "x@remote.example").await,
        "aliases",
    );
}

#[tokio::test]
async fn domain_cap_covers_new_given_and_alias_domains() {
    let (_d, s) = customer_with(caps(Some(2), None, None, None)).await;
    s.domain_add_for(&cli(), "two.example", None, None, false, Some("acme"))
        .await
        .unwrap();
    assert_eq!(s.domain_owner("two.example").await.unwrap().unwrap().name, "acme");
    cap_reached(
        s.domain_add_for(&cli(), "three.example", None, None, false, Some("acme"))
            .await,
        "domains",
    );
    assert!(s.domain_owner("three.example").await.is_err(), "not made");
    // An alias domain belongs to its target's customer, and counts.
    cap_reached(
        s.domain_add(&cli(), "abc.net", Some("abc.com"), None, false)
            .await,
        "domains",
    );
    s.domain_add(&cli(), "other.example", None, None, false)
        .await
        .unwrap();
    cap_reached(
        s.customer_set(
            &cli(),
            "acme",
            CustomerChange {
                add_domains: vec!["other.example".into()],
                ..Default::default()
            },
        )
        .await,
        "domains",
    );
    assert_eq!(s.domain_owner("other.example").await.unwrap(), None);
}

#[tokio::test]
async fn storage_cap_is_the_sum_of_quotas() {
    let (_d, s) = customer_with(caps(None, None, None, Some(3 << 30))).await;
    // No quota at all is unlimited: refused under a storage cap.
    cap_reached(
        s.user_add(&cli(), "a@abc.com", plain(), None, false).await,
        "storage",
    );
    s.user_add(&cli(), "a@abc.com", plain(), Some(2 << 30), false)
        .await
        .unwrap();
    cap_reached(
        s.user_add(&cli(), "b@abc.com", plain(), Some(2 << 30), false)
            .await,
        "storage",
    );
    s.user_add(&cli(), "b@abc.com", plain(), Some(1 << 30), false)
        .await
        .unwrap();
    // Raising a quota past the cap is refused; lowering is always allowed.
    cap_reached(
        s.user_set_quota(&cli(), "b@abc.com", Some(2 << 30)).await,
        "storage",
    );
    cap_reached(s.user_set_quota(&cli(), "b@abc.com", None).await, "storage");
    s.user_set_quota(&cli(), "a@abc.com", Some(1 << 30))
        .await
        .unwrap();
    s.user_set_quota(&cli(), "b@abc.com", Some(2 << 30))
        .await
        .unwrap();
    assert_eq!(s.customer_show("acme").await.unwrap().usage.storage, 3 << 30);
}

#[tokio::test]
async fn customers_own_domains_one_at_a_time() {
    let (_d, s) = customer_with(CustomerCaps::default()).await;
    assert!(matches!(
        s.customer_add(&cli(), "ACME", CustomerCaps::default()).await,
        Err(AdminError::AlreadyExists(_))
    ));
    assert!(matches!(
        s.customer_add(&cli(), "bad name", CustomerCaps::default()).await,
        Err(AdminError::Invalid(_))
    ));
    assert!(matches!(
        s.customer_add(&cli(), "neg", caps(Some(-1), None, None, None))
            .await,
        Err(AdminError::Invalid(_))
    ));
    s.customer_add(&cli(), "globex", CustomerCaps::default())
        .await
        .unwrap();
    let give = |d: &str| CustomerChange {
        add_domains: vec![d.into()],
        ..Default::default()
    };
    assert!(matches!(
        s.customer_set(&cli(), "globex", give("abc.com")).await,
        Err(AdminError::Conflict(_))
    ));
    assert!(matches!(
        s.customer_remove(&cli(), "acme").await,
        Err(AdminError::Conflict(_))
    ));
    s.customer_set(
        &cli(),
        "acme",
        CustomerChange {
            remove_domains: vec!["abc.com".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    s.customer_set(&cli(), "globex", give("abc.com")).await.unwrap();
    s.customer_remove(&cli(), "acme").await.unwrap();
    let names: Vec<String> = s
        .customers()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.row.name)
        .collect();
    assert_eq!(names, ["globex"]);
    let audit = s.audit(Some("globex"), None, 10).await.unwrap();
    assert!(audit
        .iter()
        .any(|r| r.entry.operation == "customer.set" && r.entry.detail.contains("+abc.com")));
}

// ---------------------------------------------------------------------
// Domain admins' permissions (issue #11)

/// abc.com with `boss` (a domain admin with quotas and quarantine) and
/// `kent`; other.example with `eve`, a domain admin with every flag.
async fn admins() -> (tempfile::TempDir, AdminService, Grantor, Grantor) {
    let (dir, s) = with_domain().await;
    s.domain_add(&cli(), "other.example", None, None, false)
        .await
        .unwrap();
    for a in [
        "boss@abc.com",
        "kent@abc.com",
        "eve@other.example",
        "bob@other.example",
    ] {
        s.user_add(&cli(), a, plain(), None, false).await.unwrap();
    }
    let given = Permissions::QUOTAS.0 | Permissions::QUARANTINE.0;
    s.user_set_role(
        &cli(),
        Grantor::Provider,
        "boss@abc.com",
        true,
        Permissions(given),
    )
    .await
    .unwrap();
    s.user_set_role(
        &cli(),
        Grantor::Provider,
        "eve@other.example",
        true,
        Permissions::parse("all").unwrap(),
    )
    .await
    .unwrap();
    let id = |a: &str| {
        let s = s.clone();
        let a = a.to_string();
        async move { s.user_show(&a).await.unwrap().account.id }
    };
    let boss = Grantor::DomainAdmin {
        account: id("boss@abc.com").await,
    };
    let eve = Grantor::DomainAdmin {
        account: id("eve@other.example").await,
    };
    (dir, s, boss, eve)
}

fn forbidden<T: std::fmt::Debug>(r: Result<T>) -> String {
    match r {
        Err(AdminError::Forbidden(m)) => m,
        other => panic!("expected Forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn nobody_grants_a_permission_they_do_not_hold() {
    let (_d, s, boss, _) = admins().await;
    // Within its own flags: allowed.
    let set = s
        .user_set_role(&cli(), boss, "kent@abc.com", true, Permissions::QUOTAS)
        .await
        .unwrap();
    assert_eq!(set, Permissions::QUOTAS);
    assert_eq!(
        s.admin_permissions("kent@abc.com").await.unwrap(),
        Permissions::QUOTAS
    );
    // Beyond them: refused, naming what it lacks, and nothing changes.
    let m = forbidden(
        s.user_set_role(
            &cli(),
            boss,
            "kent@abc.com",
            true,
            Permissions::parse("quotas,gateway").unwrap(),
        )
        .await,
    );
    assert!(m.contains("gateway") && !m.contains("quotas"), "{m}");
    assert_eq!(
        s.admin_permissions("kent@abc.com").await.unwrap(),
        Permissions::QUOTAS
    );
    // A permission boss lacks is the provider's to give.
    s.user_set_role(
        &cli(),
        Grantor::Provider,
        "kent@abc.com",
        true,
        Permissions::GATEWAY,
    )
    .await
    .unwrap();
    // ... and then boss may not change kent's role at all.
    forbidden(
        s.user_set_role(&cli(), boss, "kent@abc.com", false, Permissions::default())
            .await,
    );
    assert!(s.user_show("kent@abc.com").await.unwrap().account.domain_admin);
}

#[tokio::test]
async fn nobody_raises_their_own_role() {
    let (_d, s, boss, _) = admins().await;
    let m = forbidden(
        s.user_set_role(
            &cli(),
            boss,
            "boss@abc.com",
            true,
            Permissions::parse("quotas").unwrap(),
        )
        .await,
    );
    assert!(m.contains("own"), "{m}");
    forbidden(
        s.user_set_role(
            &cli(),
            boss,
            "boss@abc.com",
            true,
            Permissions::parse("all").unwrap(),
        )
        .await,
    );
    assert_eq!(
        s.admin_permissions("boss@abc.com").await.unwrap(),
        Permissions(Permissions::QUOTAS.0 | Permissions::QUARANTINE.0)
    );
    // A removed role takes its permissions with it.
    s.user_set_admin(&cli(), "boss@abc.com", false).await.unwrap();
    forbidden(s.require_permission(boss, Permissions::QUOTAS).await);
    s.user_set_admin(&cli(), "boss@abc.com", true).await.unwrap();
    assert_eq!(
        s.admin_permissions("boss@abc.com").await.unwrap(),
        Permissions::default()
    );
}

#[tokio::test]
async fn a_domain_admin_reaches_only_its_own_domain() {
    let (_d, s, boss, eve) = admins().await;
    // eve holds every flag, but abc.com is not hers: as if not there.
    assert!(matches!(
        s.user_set_role(&cli(), eve, "kent@abc.com", true, Permissions::default())
            .await,
        Err(AdminError::NotFound(_))
    ));
    assert!(matches!(
        s.user_set_role(&cli(), boss, "bob@other.example", true, Permissions::default())
            .await,
        Err(AdminError::NotFound(_))
    ));
    assert!(
        !s.user_show("bob@other.example")
            .await
            .unwrap()
            .account
            .domain_admin
    );
}

#[tokio::test]
async fn permissions_are_read_from_the_store_at_each_use() {
    let (_d, s, boss, _) = admins().await;
    s.require_permission(boss, Permissions::QUOTAS).await.unwrap();
    s.require_permission(Grantor::Provider, Permissions::GATEWAY)
        .await
        .unwrap();
    let m = forbidden(s.require_permission(boss, Permissions::FORWARD_OUTSIDE).await);
    assert!(m.contains("forward-outside"), "{m}");
    // Taken away by the provider: refused at once.
    s.user_set_role(
        &cli(),
        Grantor::Provider,
        "boss@abc.com",
        true,
        Permissions::default(),
    )
    .await
    .unwrap();
    forbidden(s.require_permission(boss, Permissions::QUOTAS).await);
    assert!(matches!(
        Permissions::parse("quotas,root"),
        Err(AdminError::Invalid(_))
    ));
    assert_eq!(Permissions::parse("none").unwrap(), Permissions::default());
    assert_eq!(
        Permissions::parse("Quotas, gateway").unwrap().to_string(),
        "quotas,gateway"
    );
}

#[tokio::test]
async fn manage_this_domain_is_a_separate_audited_permission() {
    let (_d, s) = with_domain().await;
    s.provider_admin_add(&cli(), "staff@provider.example", plain())
        .await
        .unwrap();
    let api = Actor::Api {
        login: "staff@provider.example".into(),
        ip: "192.0.2.7".parse().unwrap(),
    };
    // A provider admin without it is refused, and may not give it itself.
    forbidden(
        s.provider_act_as(&api, "staff@provider.example", Some("abc.com"))
            .await,
    );
    forbidden(
        s.provider_admin_set_manage_domains(&api, "staff@provider.example", true)
            .await,
    );
    s.provider_admin_set_manage_domains(&cli(), "staff@provider.example", true)
        .await
        .unwrap();
    let d = s
        .provider_act_as(&api, "staff@provider.example", Some("abc.com"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.name, "abc.com");
    let rows = s.audit(None, Some("abc.com"), 10).await.unwrap();
    let row = rows
        .iter()
        .find(|r| r.entry.operation == "domain.act-as")
        .unwrap();
    assert_eq!(row.entry.actor, "api:staff@provider.example");
    assert_eq!(row.entry.origin, "192.0.2.7");
    assert!(row.at > 0);
    s.provider_admin_set_manage_domains(&cli(), "staff@provider.example", false)
        .await
        .unwrap();
    forbidden(
        s.provider_act_as(&api, "staff@provider.example", Some("abc.com"))
            .await,
    );
}
