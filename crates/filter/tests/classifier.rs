//! The classifier through its public face: tokenizing any bytes never
//! panics and stays bounded, a model below the minimum training does not
//! vote, training moves spam and ham apart, and storage failures are
//! answers (no vote while scoring, an error while training).

use std::sync::Arc;
use std::time::{Duration, Instant};

use postroom_config::FilterClassifierConfig;
use postroom_filter::classifier::{band, tokens, Classifier, Verdict, UNAVAILABLE, UNTRAINED};
use postroom_filter::{Chain, Deps, Envelope, Scan};
use postroom_store::backend::ClassifierMeta;
use postroom_store::faulty::FaultyMeta;
use postroom_store::Store;
use proptest::prelude::*;

fn config(min: u32) -> FilterClassifierConfig {
    FilterClassifierConfig {
        min_spam: min,
        min_ham: min,
        ..Default::default()
    }
}

fn spam(i: usize) -> Vec<u8> {
    format!(
        "From: Prize Desk <win{i}@lottery.example>\r\nSubject: You WON a free prize {i}\r\n\r\n\
         Claim your free prize now! Click http://claim{i}.lottery.example/win to collect cash, \
         viagra and cheap pills. Act now, limited offer, winner winner.\r\n"
    )
    .into_bytes()
}

fn ham(i: usize) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.org>\r\nSubject: Minutes of meeting {i}\r\n\r\n\
         Hello team, attached are the minutes of yesterday's meeting about the release \
         schedule. Please review the build failures before Thursday. Regards, Alice\r\n"
    )
    .into_bytes()
}

fn parse(raw: &[u8]) -> mail_parser::Message<'_> {
    mail_parser::MessageParser::default().parse(raw).unwrap()
}

async fn trained(c: &Classifier, n: usize) {
    let s: Vec<_> = (0..n).map(spam).collect();
    let h: Vec<_> = (0..n).map(ham).collect();
    c.train_raw(&s, true).await.unwrap();
    c.train_raw(&h, false).await.unwrap();
}

fn envelope() -> Envelope {
    Envelope::unauthenticated(
        "192.0.2.1".parse().unwrap(),
        "mail.example.com",
        None,
        Instant::now() + Duration::from_secs(5),
    )
}

async fn run(chain: &Chain, raw: &[u8]) -> postroom_filter::Report {
    let env = envelope();
    let message = parse(raw);
    chain
        .run(&Scan {
            envelope: &env,
            raw,
            message: &message,
        })
        .await
}

fn chain_with(c: Classifier) -> Chain {
    postroom_filter::chain(
        &Default::default(),
        &Deps {
            classifier: Some(Arc::new(c)),
            ..Default::default()
        },
    )
    .unwrap()
}

#[tokio::test]
async fn below_the_minimum_it_does_not_vote() {
    let c = Classifier::in_memory(&config(10));
    trained(&c, 9).await;
    let raw = spam(100);
    assert_eq!(c.classify(&parse(&raw)), Verdict::Untrained { spam: 9, ham: 9 });
    // Through the chain: a symbol that scores nothing and says why.
    let report = run(&chain_with(c), &raw).await;
    let s = report.symbols().find(|s| s.name == UNTRAINED).unwrap();
    assert_eq!(s.score, 0.0);
    // The classifier adds nothing (the header rules may score the
    // fixture's missing Date on their own).
    let classifier: f64 = report
        .checks
        .iter()
        .filter(|c| c.check == "classifier")
        .flat_map(|c| c.symbols.iter().map(|s| s.score))
        .sum();
    assert_eq!(classifier, 0.0);
}

#[tokio::test]
async fn trained_it_tells_spam_from_ham() {
    let c = Classifier::in_memory(&config(10));
    trained(&c, 20).await;
    let Verdict::Judged(s) = c.classify(&parse(&spam(99))) else {
        panic!()
    };
    let Verdict::Judged(h) = c.classify(&parse(&ham(99))) else {
        panic!()
    };
    assert!(s.probability > 0.99, "{s:?}");
    assert!(h.probability < 0.01, "{h:?}");
    assert!(band(s.probability).1 >= 6.0, "a sure spam goes to Junk");
    assert!(band(h.probability).1 < 0.0);
    let report = run(&chain_with(c), &spam(98)).await;
    assert!(report.score(false) >= 6.0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_failures_are_answers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (faulty, switch) = FaultyMeta::new(store.meta_handle());
    let meta: Arc<dyn ClassifierMeta> = Arc::new(faulty);
    // Never loaded: no vote, named in the report.
    switch.set(true);
    let c = Classifier::new(&config(1), Arc::clone(&meta));
    assert!(c.load().await.is_err());
    let Verdict::Unavailable(e) = c.classify(&parse(&spam(1))) else {
        panic!()
    };
    assert!(e.contains("injected"), "{e}");
    let unloaded = Classifier::new(&config(1), Arc::clone(&meta));
    assert!(unloaded.reload_if_changed().await.is_err());
    let report = run(&chain_with(unloaded), &spam(1)).await;
    let s = report.symbols().find(|s| s.name == UNAVAILABLE).unwrap();
    assert_eq!(s.score, 0.0);
    // Training while the store fails is an error and changes nothing.
    assert!(c.train_raw(&[spam(1)], true).await.is_err());
    assert_eq!(c.stats(), (0, 0, 0));
    // The store back: training is kept, and a second classifier (another
    // node) sees it on its next look.
    switch.set(false);
    c.load().await.unwrap();
    trained(&c, 3).await;
    let other = Classifier::new(&config(1), Arc::clone(&meta));
    assert!(other.reload_if_changed().await.unwrap());
    assert_eq!(other.stats(), c.stats());
    assert!(!other.reload_if_changed().await.unwrap(), "nothing new");
    assert!(
        !c.reload_if_changed().await.unwrap(),
        "its own training needs no reload"
    );
    c.train_raw(&[spam(7)], true).await.unwrap();
    assert!(other.reload_if_changed().await.unwrap());
    assert_eq!(other.stats().0, 4);
    // A reload that fails keeps the model it has.
    switch.set(true);
    assert!(other.reload_if_changed().await.is_err());
    assert!(matches!(other.classify(&parse(&spam(2))), Verdict::Judged(_)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_tokenize_without_panic(raw in proptest::collection::vec(any::<u8>(), 0..4096)) {
        if let Some(m) = mail_parser::MessageParser::default().parse(&raw[..]) {
            let t = tokens(&m);
            prop_assert!(t.len() <= postroom_filter::classifier::tokens::MAX_TOKENS);
        }
    }

    #[test]
    fn mail_like_text_tokenizes_without_panic(
        subject in "\\PC{0,80}",
        body in "(\\PC|[<>&=\"' \r\n]){0,2000}",
        html in any::<bool>(),
    ) {
        let raw = format!(
            "Subject: {subject}\r\nContent-Type: text/{}\r\n\r\n{body}",
            if html { "html" } else { "plain" }
        );
        if let Some(m) = mail_parser::MessageParser::default().parse(raw.as_bytes()) {
            let _ = tokens(&m);
        }
    }

    #[test]
    fn probabilities_stay_in_range(ps in proptest::collection::vec(0.0f64..=1.0, 0..400)) {
        let p = postroom_filter::classifier::model::chi_square_combined(ps.into_iter());
        prop_assert!((0.0..=1.0).contains(&p));
    }
}
