use super::*;
use postroom_store::Store;

async fn setup() -> (tempfile::TempDir, Directory) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let db = store.meta_handle();
    let d = db.add_domain("abc.com", "abc.com", None).await.unwrap();
    db.add_domain("abc.net", "abc.net", Some("abc.com"))
        .await
        .unwrap();
    for user in ["dbrooks", "kent", "catchall"] {
        db.add_account(d.id, user, user, None, None).await.unwrap();
    }
    (dir, Directory::new(db, None))
}

fn addr(s: &str) -> Address {
    Address::parse(s, true).unwrap()
}

fn locals(l: &Lookup) -> Vec<String> {
    match l {
        Lookup::Found(r) => r
            .routes
            .iter()
            .map(|r| match r {
                Route::Local { address, .. } => address.clone(),
                Route::Remote { address } => format!("remote:{address}"),
                Route::Held { address, .. } => format!("held:{address}"),
            })
            .collect(),
        other => vec![format!("{other:?}")],
    }
}

#[tokio::test]
async fn mailbox_subaddress_domain_alias() {
    let (_t, d) = setup().await;
    assert_eq!(
        locals(&d.resolve(&addr("DBrooks@ABC.com")).await.unwrap()),
        ["dbrooks@abc.com"]
    );
    assert_eq!(
        locals(&d.resolve(&addr("dbrooks+news@abc.com")).await.unwrap()),
        ["dbrooks@abc.com"]
    );
    assert_eq!(
        locals(&d.resolve(&addr("kent@abc.net")).await.unwrap()),
        ["kent@abc.com"]
    );
    assert_eq!(d.resolve(&addr("nobody@abc.com")).await.unwrap(), Lookup::Unknown);
    assert_eq!(
        d.resolve(&addr("x@elsewhere.example")).await.unwrap(),
        Lookup::NotHosted
    );
}

#[tokio::test]
async fn lists_with_outside_members_and_dedup() {
    let (_t, d) = setup().await;
    let db = d.meta();
    let dom = db.domain("abc.com").await.unwrap().unwrap();
    let targets: Vec<String> = [
        "dbrooks@abc.com",
        "testman@example.com",
        "kent@abc.com",
        "team@abc.com",
    ]
    .map(String::from)
    .to_vec();
    db.add_alias_targets(dom.id, "dev", "dev", &targets)
        .await
        .unwrap();
    db.add_alias_targets(
        dom.id,
        "team",
        "team",
        &["kent@abc.com".into(), "dbrooks+x@abc.com".into()],
    )
    .await
    .unwrap();
    assert_eq!(
        locals(&d.resolve(&addr("dev@abc.com")).await.unwrap()),
        ["dbrooks@abc.com", "remote:testman@example.com", "kent@abc.com"]
    );
}

#[tokio::test]
async fn catch_all_comes_last_and_postmaster_reaches_admins() {
    let (_t, d) = setup().await;
    let db = d.meta();
    let dom = db.domain("abc.com").await.unwrap().unwrap();
    db.add_alias_targets(dom.id, "", "", &["catchall@abc.com".into()])
        .await
        .unwrap();
    assert_eq!(
        locals(&d.resolve(&addr("anything@abc.com")).await.unwrap()),
        ["catchall@abc.com"]
    );
    assert_eq!(
        locals(&d.resolve(&addr("kent@abc.com")).await.unwrap()),
        ["kent@abc.com"]
    );
    // No admin and no server.postmaster: nobody would ever read it, so it is
    // refused rather than held for ever.
    assert!(matches!(
        d.resolve(&addr("postmaster@abc.com")).await.unwrap(),
        Lookup::Unresolvable(_)
    ));
    let kent = db.account(dom.id, "kent").await.unwrap().unwrap();
    db.set_domain_admin(kent.id, true).await.unwrap();
    assert_eq!(
        locals(&d.resolve(&addr("Postmaster@abc.com")).await.unwrap()),
        ["kent@abc.com"]
    );
    assert_eq!(
        locals(&d.resolve(&addr("abuse@abc.com")).await.unwrap()),
        ["kent@abc.com"]
    );
}

#[tokio::test]
async fn expansions_with_nothing_deliverable_are_unresolvable() {
    let (_t, d) = setup().await;
    let db = d.meta();
    let dom = db.domain("abc.com").await.unwrap().unwrap();
    db.add_alias_targets(dom.id, "ghost", "ghost", &["nobody@abc.com".into()])
        .await
        .unwrap();
    db.add_alias_targets(dom.id, "bad", "bad", &["not an address".into()])
        .await
        .unwrap();
    assert_eq!(
        d.resolve(&addr("ghost@abc.com")).await.unwrap(),
        Lookup::Unresolvable("alias target does not exist".into())
    );
    assert!(matches!(
        d.resolve(&addr("bad@abc.com")).await.unwrap(),
        Lookup::Unresolvable(_)
    ));
    // One deliverable target is enough: the missing one is held.
    db.add_alias_targets(
        dom.id,
        "half",
        "half",
        &["nobody@abc.com".into(), "friend@elsewhere.example".into()],
    )
    .await
    .unwrap();
    assert_eq!(
        locals(&d.resolve(&addr("half@abc.com")).await.unwrap()),
        ["held:nobody@abc.com", "remote:friend@elsewhere.example"]
    );
    // Mailboxes forwarding to each other without copies deliver nowhere.
    let kent = db.account(dom.id, "kent").await.unwrap().unwrap();
    let dbrooks = db.account(dom.id, "dbrooks").await.unwrap().unwrap();
    db.set_forwarding(kent.id, &["dbrooks@abc.com".into()], false)
        .await
        .unwrap();
    db.set_forwarding(dbrooks.id, &["kent@abc.com".into()], false)
        .await
        .unwrap();
    assert!(matches!(
        d.resolve(&addr("kent@abc.com")).await.unwrap(),
        Lookup::Unresolvable(_)
    ));
}

#[tokio::test]
async fn postmaster_goes_to_server_postmaster_without_admins() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let db = store.meta_handle();
    let d = db.add_domain("abc.com", "abc.com", None).await.unwrap();
    db.add_domain("provider.example", "provider.example", None)
        .await
        .unwrap();
    let p = db.domain("provider.example").await.unwrap().unwrap();
    db.add_account(p.id, "hostmaster", "hostmaster", None, None)
        .await
        .unwrap();
    let _ = d;
    let with_pm = Directory::new(db.clone(), Some(addr("hostmaster@provider.example")));
    assert_eq!(
        locals(&with_pm.resolve(&addr("postmaster@abc.com")).await.unwrap()),
        ["hostmaster@provider.example"]
    );
    // server.postmaster names a hosted address that does not exist.
    let dangling = Directory::new(db, Some(addr("nobody@provider.example")));
    assert!(matches!(
        dangling.resolve(&addr("abuse@abc.com")).await.unwrap(),
        Lookup::Unresolvable(_)
    ));
}

#[tokio::test]
async fn forwarding_cycles_are_refused_before_saving() {
    let (_t, d) = setup().await;
    let db = d.meta();
    let dom = db.domain("abc.com").await.unwrap().unwrap();
    let kent = db.account(dom.id, "kent").await.unwrap().unwrap();
    let dbrooks = db.account(dom.id, "dbrooks").await.unwrap().unwrap();
    // f1 -> f2 is fine; f2 -> f1 then closes the circle, with or without
    // copies kept.
    assert_eq!(
        d.check_targets(Origin::Forward { account: &kent }, &["dbrooks@abc.com".into()])
            .await
            .unwrap(),
        None
    );
    db.set_forwarding(kent.id, &["dbrooks@abc.com".into()], true)
        .await
        .unwrap();
    let why = d
        .check_targets(Origin::Forward { account: &dbrooks }, &["kent@abc.com".into()])
        .await
        .unwrap();
    assert!(why.is_some_and(|w| w.contains("leads back")));
    // Through an alias: team -> dbrooks, kent forwards to team.
    db.set_forwarding(kent.id, &[], true).await.unwrap();
    db.add_alias_targets(dom.id, "team", "team", &["kent@abc.com".into()])
        .await
        .unwrap();
    assert!(d
        .check_targets(Origin::Forward { account: &kent }, &["team@abc.com".into()])
        .await
        .unwrap()
        .is_some());
    // A mailbox reached twice on different branches is not a cycle.
    db.set_forwarding(dbrooks.id, &["catchall@abc.com".into()], true)
        .await
        .unwrap();
    assert_eq!(
        d.check_targets(
            Origin::Forward { account: &kent },
            &["dbrooks@abc.com".into(), "catchall@abc.com".into()]
        )
        .await
        .unwrap(),
        None
    );
}

#[tokio::test]
async fn cycles_and_depth_are_refused() {
    let (_t, d) = setup().await;
    let db = d.meta();
    let dom = db.domain("abc.com").await.unwrap().unwrap();
    db.add_alias_targets(dom.id, "a", "a", &["b@abc.com".into()])
        .await
        .unwrap();
    assert!(d
        .check_alias(&dom, "b", &["a@abc.com".into()])
        .await
        .unwrap()
        .is_some());
    assert!(d
        .check_alias(&dom, "b", &["kent@abc.com".into()])
        .await
        .unwrap()
        .is_none());
    db.add_alias_targets(dom.id, "b", "b", &["a@abc.com".into()])
        .await
        .unwrap();
    assert!(matches!(
        d.resolve(&addr("a@abc.com")).await.unwrap(),
        Lookup::Loop(_)
    ));
    for i in 0..12 {
        db.add_alias_targets(dom.id, &format!("n{i}"), "n", &[format!("n{}@abc.com", i + 1)])
            .await
            .unwrap();
    }
    db.add_alias_targets(dom.id, "n12", "n", &["kent@abc.com".into()])
        .await
        .unwrap();
    assert!(matches!(
        d.resolve(&addr("n0@abc.com")).await.unwrap(),
        Lookup::Loop(_)
    ));
    assert_eq!(
        locals(&d.resolve(&addr("n5@abc.com")).await.unwrap()),
        ["kent@abc.com"]
    );
}

#[tokio::test]
async fn who_may_send_as_what() {
    let (_t, d) = setup().await;
    let db = d.meta();
    let dom = db.domain("abc.com").await.unwrap().unwrap();
    let kent = db.account(dom.id, "kent").await.unwrap().unwrap();
    db.add_alias_targets(dom.id, "sales", "sales", &["kent@abc.com".into()])
        .await
        .unwrap();
    db.add_alias_targets(
        dom.id,
        "team",
        "team",
        &["kent@abc.com".into(), "dbrooks@abc.com".into()],
    )
    .await
    .unwrap();
    db.add_alias_targets(dom.id, "", "", &["kent@abc.com".into()])
        .await
        .unwrap();
    assert!(d.may_send_as(kent.id, &addr("kent@abc.com")).await.unwrap());
    assert!(d.may_send_as(kent.id, &addr("Kent+news@ABC.com")).await.unwrap());
    assert!(d.may_send_as(kent.id, &addr("kent@abc.net")).await.unwrap());
    assert!(d.may_send_as(kent.id, &addr("sales@abc.com")).await.unwrap());
    assert!(!d.may_send_as(kent.id, &addr("team@abc.com")).await.unwrap());
    assert!(!d.may_send_as(kent.id, &addr("dbrooks@abc.com")).await.unwrap());
    assert!(!d.may_send_as(kent.id, &addr("random@abc.com")).await.unwrap()); // the catch-all does not make it theirs
    assert!(!d
        .may_send_as(kent.id, &addr("kent@elsewhere.example"))
        .await
        .unwrap());
}

#[tokio::test]
async fn mailbox_forwarding_with_and_without_a_copy() {
    let (_t, d) = setup().await;
    let db = d.meta();
    let dom = db.domain("abc.com").await.unwrap().unwrap();
    let kent = db.account(dom.id, "kent").await.unwrap().unwrap();
    db.set_forwarding(kent.id, &["kent@home.example".into()], true)
        .await
        .unwrap();
    assert_eq!(
        locals(&d.resolve(&addr("kent@abc.com")).await.unwrap()),
        ["kent@abc.com", "remote:kent@home.example"]
    );
    db.set_forwarding(
        kent.id,
        &["kent@home.example".into(), "dbrooks@abc.com".into()],
        false,
    )
    .await
    .unwrap();
    assert_eq!(
        locals(&d.resolve(&addr("kent+x@abc.net")).await.unwrap()),
        ["remote:kent@home.example", "dbrooks@abc.com"]
    );
    // Two mailboxes forwarding to each other without copies: nothing
    // loops forever, and nobody gets a copy (the MX refuses it as a loop).
    let db_ = db.account(dom.id, "dbrooks").await.unwrap().unwrap();
    db.set_forwarding(db_.id, &["kent@abc.com".into()], false)
        .await
        .unwrap();
    assert_eq!(
        locals(&d.resolve(&addr("kent@abc.com")).await.unwrap()),
        ["remote:kent@home.example"]
    );
    db.set_forwarding(kent.id, &[], true).await.unwrap();
    assert_eq!(
        locals(&d.resolve(&addr("dbrooks@abc.com")).await.unwrap()),
        ["kent@abc.com"]
    );
}

#[tokio::test]
async fn gateway_domains_relay_listed_recipients() {
    let (_t, d) = setup().await;
    let db = d.meta();
    let gw = db.add_domain("gw.example", "gw.example", None).await.unwrap();
    db.set_domain_relay(gw.id, Some("mail.gw.example:2525"), false)
        .await
        .unwrap();
    db.add_relay_recipients(gw.id, &["sales".into()]).await.unwrap();
    match d.resolve(&addr("Sales+x@GW.example")).await.unwrap() {
        Lookup::Found(r) => {
            assert!(r.gateway);
            assert_eq!(
                r.routes,
                [Route::Remote {
                    address: "Sales+x@gw.example".into()
                }]
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        d.resolve(&addr("postmaster@gw.example")).await.unwrap(),
        Lookup::Found(_)
    ));
    assert_eq!(
        d.resolve(&addr("nobody@gw.example")).await.unwrap(),
        Lookup::Unknown
    );
    db.set_domain_relay(gw.id, Some("mail.gw.example:2525"), true)
        .await
        .unwrap();
    assert_eq!(
        d.resolve(&addr("nobody@gw.example")).await.unwrap(),
        Lookup::Callout {
            relay_to: "mail.gw.example:2525".into()
        }
    );
}

/// RCPT to a mailbox reads the domain and the mailbox once each: on
/// PostgreSQL each read is a round trip, and the mailbox was read twice
/// (once for the quota, once to route) before 2026-12.
#[tokio::test]
async fn a_mailbox_is_resolved_with_two_reads() {
    let (_t, d) = setup().await;
    let (counted, switch) = postroom_store::faulty::FaultyMeta::new(Arc::clone(&d.db));
    let d = Directory::new(Arc::new(counted), None);
    let before = switch.calls();
    let l = d.resolve(&addr("kent@abc.com")).await.unwrap();
    assert_eq!(locals(&l), vec!["kent@abc.com"]);
    assert_eq!(switch.calls() - before, 2);
}
