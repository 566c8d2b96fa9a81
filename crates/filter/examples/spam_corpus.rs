//! The classifier on the SpamAssassin public corpus (`bench/filter-accuracy`
//! runs it): each class split by sorted file name, even positions train,
//! odd positions test; spam recall and ham false positives at the default
//! thresholds (junk at 6), and messages per second on the test half, of
//! the classifier's check alone and of the whole chain `[filter]` builds
//! by default (parse included), on one thread.
//!
//! `--validate` splits the training half the same way again (its even
//! positions train, its odd ones test) and never reads the test half:
//! what the bands and constants were chosen on.
//!
//! Usage: spam_corpus CORPUS_DATA_DIR [--validate] [--runs N]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postroom_config::FilterConfig;
use postroom_filter::classifier::{band, tokens, without_mbox_line, Classifier, Verdict};
use postroom_filter::{Deps, Envelope, Scan, Thresholds};

fn files(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(dir)
        .expect("corpus data folder")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    dirs.sort();
    for d in dirs {
        for e in std::fs::read_dir(&d)
            .expect("class folder")
            .filter_map(|e| e.ok())
        {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "txt") {
                out.push(p);
            }
        }
    }
    // Sorted by name within the class: "easy-ham-1/00001.…" before
    // "easy-ham-2/…" before "hard-ham-1/…".
    out.sort_by_key(|p| {
        let d = p
            .parent()
            .and_then(|d| d.file_name())
            .map(|d| d.to_string_lossy().into_owned());
        (d, p.file_name().map(|n| n.to_os_string()))
    });
    out
}

fn halves(v: Vec<PathBuf>) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut even = Vec::new();
    let mut odd = Vec::new();
    for (i, p) in v.into_iter().enumerate() {
        if i % 2 == 0 {
            even.push(p)
        } else {
            odd.push(p)
        }
    }
    (even, odd)
}

/// As the message would arrive over SMTP: without the mbox `From `
/// line the corpus' files start with.
fn read(paths: &[PathBuf]) -> Vec<Vec<u8>> {
    paths
        .iter()
        .map(|p| without_mbox_line(&std::fs::read(p).expect("message")).to_vec())
        .collect()
}

fn envelope() -> Envelope {
    Envelope::unauthenticated(
        "192.0.2.1".parse().unwrap(),
        "mail.example.com",
        Some("a@example.com"),
        std::time::Instant::now() + Duration::from_secs(3600),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(
        args.get(1)
            .expect("usage: spam_corpus CORPUS_DATA_DIR [--validate] [--runs N]"),
    );
    let validate = args.iter().any(|a| a == "--validate");
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let (mut spam_train, mut spam_test) = halves(files(&dir, "spam"));
    let ham: Vec<PathBuf> = files(&dir, "easy-ham")
        .into_iter()
        .chain(files(&dir, "hard-ham"))
        .collect();
    let (mut ham_train, mut ham_test) = halves(ham);
    if validate {
        (spam_train, spam_test) = halves(spam_train);
        (ham_train, ham_test) = halves(ham_train);
    }
    println!(
        "{}: train {} spam + {} ham, test {} spam + {} ham",
        if validate {
            "validation (training half split again)"
        } else {
            "test half"
        },
        spam_train.len(),
        ham_train.len(),
        spam_test.len(),
        ham_test.len()
    );
    let config = FilterConfig::default();
    let classifier = Arc::new(Classifier::in_memory(&config.classifier));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t0 = Instant::now();
    rt.block_on(async {
        classifier.train_raw(&read(&spam_train), true).await.unwrap();
        classifier.train_raw(&read(&ham_train), false).await.unwrap();
    });
    let (s, h, n) = classifier.stats();
    println!(
        "trained {s} spam, {h} ham, {n} tokens in {:.2} s",
        t0.elapsed().as_secs_f64()
    );

    let thresholds = Thresholds::default();
    let deps = Deps {
        hostname: "mx.provider.example".into(),
        classifier: Some(Arc::clone(&classifier)),
        offline: true,
        ..Default::default()
    };
    let chain = postroom_filter::chain(&config, &deps).expect("the default chain");
    let spam_msgs = read(&spam_test);
    let ham_msgs = read(&ham_test);
    let env = envelope();

    // Accuracy through the whole chain at the default thresholds.
    let mut caught = 0;
    let mut fps = Vec::new();
    let mut missed_probs = Vec::new();
    let mut by_band = std::collections::BTreeMap::new();
    for (class, msgs, paths) in [("spam", &spam_msgs, &spam_test), ("ham", &ham_msgs, &ham_test)] {
        for (raw, path) in msgs.iter().zip(paths.iter()) {
            let message = mail_parser::MessageParser::default()
                .parse(&raw[..])
                .unwrap_or_default();
            let scan = Scan {
                envelope: &env,
                raw,
                message: &message,
            };
            let report = rt.block_on(chain.run(&scan));
            let action = thresholds.decide(&report, false);
            let junked = action != postroom_filter::Action::Deliver;
            let p = match classifier.classify(&message) {
                Verdict::Judged(j) => j.probability,
                _ => 0.5,
            };
            *by_band.entry((class, band(p).0)).or_insert(0) += 1;
            if class == "spam" {
                if junked {
                    caught += 1;
                } else {
                    missed_probs.push(p);
                    if std::env::var_os("SHOW_MISSED").is_some() {
                        println!("  missed: {} ({p:.4})", path.display());
                    }
                }
            } else if junked {
                fps.push((path.clone(), p, report.score(false)));
            }
        }
    }
    println!(
        "spam recall {:.2}% ({caught}/{}), ham false positives {:.2}% ({}/{})",
        100.0 * caught as f64 / spam_msgs.len() as f64,
        spam_msgs.len(),
        100.0 * fps.len() as f64 / ham_msgs.len() as f64,
        fps.len(),
        ham_msgs.len()
    );
    for (p, prob, score) in &fps {
        println!(
            "  false positive: {} (probability {prob:.5}, score {score})",
            p.display()
        );
    }
    let mut bands = std::collections::BTreeMap::new();
    for p in &missed_probs {
        *bands.entry(band(*p).0).or_insert(0) += 1;
    }
    println!("  missed spam by band: {bands:?}");
    println!("  every message by class and band: {by_band:?}");

    // Throughput on the test half, one thread.
    let all: Vec<&Vec<u8>> = spam_msgs.iter().chain(ham_msgs.iter()).collect();
    for run in 1..=runs {
        let t = Instant::now();
        let mut judged = 0usize;
        for raw in &all {
            let message = mail_parser::MessageParser::default()
                .parse(&raw[..])
                .unwrap_or_default();
            let toks = tokens(&message);
            if let Verdict::Judged(_) = classifier.classify_tokens(toks.as_slice()) {
                judged += 1;
            }
        }
        let with_parse = t.elapsed();
        let parsed: Vec<_> = all
            .iter()
            .map(|raw| {
                mail_parser::MessageParser::default()
                    .parse(&raw[..])
                    .unwrap_or_default()
            })
            .collect();
        let t = Instant::now();
        for m in &parsed {
            std::hint::black_box(classifier.classify(m));
        }
        let alone = t.elapsed();
        drop(parsed);
        let t = Instant::now();
        for raw in &all {
            let message = mail_parser::MessageParser::default()
                .parse(&raw[..])
                .unwrap_or_default();
            let scan = Scan {
                envelope: &env,
                raw,
                message: &message,
            };
            std::hint::black_box(rt.block_on(chain.run(&scan)));
        }
        let whole = t.elapsed();
        let rate = |d: Duration| all.len() as f64 / d.as_secs_f64();
        println!(
            "run {run}: classifier check {:.0} msg/s ({:.1} µs/msg), parse+classifier {:.0} msg/s, whole chain with parse {:.0} msg/s ({judged} judged)",
            rate(alone),
            alone.as_secs_f64() * 1e6 / all.len() as f64,
            rate(with_parse),
            rate(whole),
        );
    }
}
