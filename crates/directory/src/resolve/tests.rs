use super::*;
use postroom_store::Store;

fn setup() -> (tempfile::TempDir, Directory) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let db = store.db.clone();
    let d = db.add_domain("abc.com", "abc.com", None).unwrap();
    db.add_domain("abc.net", "abc.net", Some("abc.com")).unwrap();
    for user in ["dbrooks", "kent", "catchall"] {
        db.add_account(d.id, user, user, None, None).unwrap();
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

#[test]
fn mailbox_subaddress_domain_alias() {
    let (_t, d) = setup();
    assert_eq!(
        locals(&d.resolve(&addr("DBrooks@ABC.com")).unwrap()),
        ["dbrooks@abc.com"]
    );
    assert_eq!(
        locals(&d.resolve(&addr("dbrooks+news@abc.com")).unwrap()),
        ["dbrooks@abc.com"]
    );
    assert_eq!(
        locals(&d.resolve(&addr("kent@abc.net")).unwrap()),
        ["kent@abc.com"]
    );
    assert_eq!(d.resolve(&addr("nobody@abc.com")).unwrap(), Lookup::Unknown);
    assert_eq!(
        d.resolve(&addr("x@elsewhere.example")).unwrap(),
        Lookup::NotHosted
    );
}

#[test]
fn lists_with_outside_members_and_dedup() {
    let (_t, d) = setup();
    let db = d.db().clone();
    let dom = db.domain("abc.com").unwrap().unwrap();
    let targets: Vec<String> = [
        "dbrooks@abc.com",
        "testman@example.com",
        "kent@abc.com",
        "team@abc.com",
    ]
    .map(String::from)
    .to_vec();
    db.add_alias_targets(dom.id, "dev", "dev", &targets).unwrap();
    db.add_alias_targets(
        dom.id,
        "team",
        "team",
        &["kent@abc.com".into(), "dbrooks+x@abc.com".into()],
    )
    .unwrap();
    assert_eq!(
        locals(&d.resolve(&addr("dev@abc.com")).unwrap()),
        ["dbrooks@abc.com", "remote:testman@example.com", "kent@abc.com"]
    );
}

#[test]
fn catch_all_comes_last_and_postmaster_reaches_admins() {
    let (_t, d) = setup();
    let db = d.db().clone();
    let dom = db.domain("abc.com").unwrap().unwrap();
    db.add_alias_targets(dom.id, "", "", &["catchall@abc.com".into()])
        .unwrap();
    assert_eq!(
        locals(&d.resolve(&addr("anything@abc.com")).unwrap()),
        ["catchall@abc.com"]
    );
    assert_eq!(
        locals(&d.resolve(&addr("kent@abc.com")).unwrap()),
        ["kent@abc.com"]
    );
    // No admin and no server.postmaster: nobody would ever read it, so it is
    // refused rather than held for ever.
    assert!(matches!(
        d.resolve(&addr("postmaster@abc.com")).unwrap(),
        Lookup::Unresolvable(_)
    ));
    let kent = db.account(dom.id, "kent").unwrap().unwrap();
    db.set_domain_admin(kent.id, true).unwrap();
    assert_eq!(
        locals(&d.resolve(&addr("Postmaster@abc.com")).unwrap()),
        ["kent@abc.com"]
    );
    assert_eq!(
        locals(&d.resolve(&addr("abuse@abc.com")).unwrap()),
        ["kent@abc.com"]
    );
}

#[test]
fn expansions_with_nothing_deliverable_are_unresolvable() {
    let (_t, d) = setup();
    let db = d.db().clone();
    let dom = db.domain("abc.com").unwrap().unwrap();
    db.add_alias_targets(dom.id, "ghost", "ghost", &["nobody@abc.com".into()])
        .unwrap();
    db.add_alias_targets(dom.id, "bad", "bad", &["not an address".into()])
        .unwrap();
    assert_eq!(
        d.resolve(&addr("ghost@abc.com")).unwrap(),
        Lookup::Unresolvable("alias target does not exist".into())
    );
    assert!(matches!(
        d.resolve(&addr("bad@abc.com")).unwrap(),
        Lookup::Unresolvable(_)
    ));
    // One deliverable target is enough: the missing one is held.
    db.add_alias_targets(
        dom.id,
        "half",
        "half",
        &["nobody@abc.com".into(), "friend@elsewhere.example".into()],
    )
    .unwrap();
    assert_eq!(
        locals(&d.resolve(&addr("half@abc.com")).unwrap()),
        ["held:nobody@abc.com", "remote:friend@elsewhere.example"]
    );
    // Mailboxes forwarding to each other without copies deliver nowhere.
    let kent = db.account(dom.id, "kent").unwrap().unwrap();
    let dbrooks = db.account(dom.id, "dbrooks").unwrap().unwrap();
    db.set_forwarding(kent.id, &["dbrooks@abc.com".into()], false)
        .unwrap();
    db.set_forwarding(dbrooks.id, &["kent@abc.com".into()], false)
        .unwrap();
    assert!(matches!(
        d.resolve(&addr("kent@abc.com")).unwrap(),
        Lookup::Unresolvable(_)
    ));
}

#[test]
fn postmaster_goes_to_server_postmaster_without_admins() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let db = store.db.clone();
    let d = db.add_domain("abc.com", "abc.com", None).unwrap();
    db.add_domain("provider.example", "provider.example", None)
        .unwrap();
    let p = db.domain("provider.example").unwrap().unwrap();
    db.add_account(p.id, "hostmaster", "hostmaster", None, None)
        .unwrap();
    let _ = d;
    let with_pm = Directory::new(db.clone(), Some(addr("hostmaster@provider.example")));
    assert_eq!(
        locals(&with_pm.resolve(&addr("postmaster@abc.com")).unwrap()),
        ["hostmaster@provider.example"]
    );
    // server.postmaster names a hosted address that does not exist.
    let dangling = Directory::new(db, Some(addr("nobody@provider.example")));
    assert!(matches!(
        dangling.resolve(&addr("abuse@abc.com")).unwrap(),
        Lookup::Unresolvable(_)
    ));
}

#[test]
fn forwarding_cycles_are_refused_before_saving() {
    let (_t, d) = setup();
    let db = d.db().clone();
    let dom = db.domain("abc.com").unwrap().unwrap();
    let kent = db.account(dom.id, "kent").unwrap().unwrap();
    let dbrooks = db.account(dom.id, "dbrooks").unwrap().unwrap();
    // f1 -> f2 is fine; f2 -> f1 then closes the circle, with or without
    // copies kept.
    assert_eq!(
        d.check_targets(Origin::Forward { account: &kent }, &["dbrooks@abc.com".into()])
            .unwrap(),
        None
    );
    db.set_forwarding(kent.id, &["dbrooks@abc.com".into()], true)
        .unwrap();
    let why = d
        .check_targets(Origin::Forward { account: &dbrooks }, &["kent@abc.com".into()])
        .unwrap();
    assert!(why.is_some_and(|w| w.contains("leads back")));
    // Through an alias: team -> dbrooks, kent forwards to team.
    db.set_forwarding(kent.id, &[], true).unwrap();
    db.add_alias_targets(dom.id, "team", "team", &["kent@abc.com".into()])
        .unwrap();
    assert!(d
        .check_targets(Origin::Forward { account: &kent }, &["team@abc.com".into()])
        .unwrap()
        .is_some());
    // A mailbox reached twice on different branches is not a cycle.
    db.set_forwarding(dbrooks.id, &["catchall@abc.com".into()], true)
        .unwrap();
    assert_eq!(
        d.check_targets(
            Origin::Forward { account: &kent },
            &["dbrooks@abc.com".into(), "catchall@abc.com".into()]
        )
        .unwrap(),
        None
    );
}

#[test]
fn cycles_and_depth_are_refused() {
    let (_t, d) = setup();
    let db = d.db().clone();
    let dom = db.domain("abc.com").unwrap().unwrap();
    db.add_alias_targets(dom.id, "a", "a", &["b@abc.com".into()])
        .unwrap();
    assert!(d.check_alias(&dom, "b", &["a@abc.com".into()]).unwrap().is_some());
    assert!(d
        .check_alias(&dom, "b", &["kent@abc.com".into()])
        .unwrap()
        .is_none());
    db.add_alias_targets(dom.id, "b", "b", &["a@abc.com".into()])
        .unwrap();
    assert!(matches!(d.resolve(&addr("a@abc.com")).unwrap(), Lookup::Loop(_)));
    for i in 0..12 {
        db.add_alias_targets(dom.id, &format!("n{i}"), "n", &[format!("n{}@abc.com", i + 1)])
            .unwrap();
    }
    db.add_alias_targets(dom.id, "n12", "n", &["kent@abc.com".into()])
        .unwrap();
    assert!(matches!(d.resolve(&addr("n0@abc.com")).unwrap(), Lookup::Loop(_)));
    assert_eq!(locals(&d.resolve(&addr("n5@abc.com")).unwrap()), ["kent@abc.com"]);
}

#[test]
fn who_may_send_as_what() {
    let (_t, d) = setup();
    let db = d.db().clone();
    let dom = db.domain("abc.com").unwrap().unwrap();
    let kent = db.account(dom.id, "kent").unwrap().unwrap();
    db.add_alias_targets(dom.id, "sales", "sales", &["kent@abc.com".into()])
        .unwrap();
    db.add_alias_targets(
        dom.id,
        "team",
        "team",
        &["kent@abc.com".into(), "dbrooks@abc.com".into()],
    )
    .unwrap();
    db.add_alias_targets(dom.id, "", "", &["kent@abc.com".into()])
        .unwrap();
    let may = |a: &str| d.may_send_as(kent.id, &addr(a)).unwrap();
    assert!(may("kent@abc.com"));
    assert!(may("Kent+news@ABC.com"));
    assert!(may("kent@abc.net"));
    assert!(may("sales@abc.com"));
    assert!(!may("team@abc.com"));
    assert!(!may("dbrooks@abc.com"));
    assert!(!may("random@abc.com")); // the catch-all does not make it theirs
    assert!(!may("kent@elsewhere.example"));
}

#[test]
fn mailbox_forwarding_with_and_without_a_copy() {
    let (_t, d) = setup();
    let db = d.db().clone();
    let dom = db.domain("abc.com").unwrap().unwrap();
    let kent = db.account(dom.id, "kent").unwrap().unwrap();
    db.set_forwarding(kent.id, &["kent@home.example".into()], true)
        .unwrap();
    assert_eq!(
        locals(&d.resolve(&addr("kent@abc.com")).unwrap()),
        ["kent@abc.com", "remote:kent@home.example"]
    );
    db.set_forwarding(
        kent.id,
        &["kent@home.example".into(), "dbrooks@abc.com".into()],
        false,
    )
    .unwrap();
    assert_eq!(
        locals(&d.resolve(&addr("kent+x@abc.net")).unwrap()),
        ["remote:kent@home.example", "dbrooks@abc.com"]
    );
    // Two mailboxes forwarding to each other without copies: nothing
    // loops forever, and nobody gets a copy (the MX refuses it as a loop).
    let db_ = db.account(dom.id, "dbrooks").unwrap().unwrap();
    db.set_forwarding(db_.id, &["kent@abc.com".into()], false)
        .unwrap();
    assert_eq!(
        locals(&d.resolve(&addr("kent@abc.com")).unwrap()),
        ["remote:kent@home.example"]
    );
    db.set_forwarding(kent.id, &[], true).unwrap();
    assert_eq!(
        locals(&d.resolve(&addr("dbrooks@abc.com")).unwrap()),
        ["kent@abc.com"]
    );
}

#[test]
fn gateway_domains_relay_listed_recipients() {
    let (_t, d) = setup();
    let db = d.db().clone();
    let gw = db.add_domain("gw.example", "gw.example", None).unwrap();
    db.set_domain_relay(gw.id, Some("mail.gw.example:2525"), false)
        .unwrap();
    db.add_relay_recipients(gw.id, &["sales".into()]).unwrap();
    match d.resolve(&addr("Sales+x@GW.example")).unwrap() {
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
        d.resolve(&addr("postmaster@gw.example")).unwrap(),
        Lookup::Found(_)
    ));
    assert_eq!(d.resolve(&addr("nobody@gw.example")).unwrap(), Lookup::Unknown);
    db.set_domain_relay(gw.id, Some("mail.gw.example:2525"), true)
        .unwrap();
    assert_eq!(
        d.resolve(&addr("nobody@gw.example")).unwrap(),
        Lookup::Callout {
            relay_to: "mail.gw.example:2525".into()
        }
    );
}
