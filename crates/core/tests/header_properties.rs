//! Property tests for reading one header field from a raw message (the
//! Sent-copy Message-ID, the Bcc list): no input panics, and a field
//! written into the header section is found again, unfolded.
//!
//! Fixed seed; `PROPTEST_CASES=N` and `PROPTEST_RNG_SEED=S` override.

use postroom_core::header::{header_section, header_value};
use proptest::prelude::*;
use proptest::test_runner::{RngAlgorithm, RngSeed};

fn config(cases: u32) -> ProptestConfig {
    let env = ProptestConfig::default();
    ProptestConfig {
        cases: if std::env::var_os("PROPTEST_CASES").is_some() {
            env.cases
        } else {
            cases
        },
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: match env.rng_seed {
            RngSeed::Random => RngSeed::Fixed(0x4865_6164_6572),
            fixed => fixed,
        },
        failure_persistence: None,
        ..env
    }
}

/// Header-ish bytes: field names, colons, folds, CR/LF in any order.
fn messy_message() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            Just(b"\r\n".to_vec()),
            Just(b"\r\n ".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b":".to_vec()),
            Just(b"Message-ID".to_vec()),
            Just(b"\r\n\r\n".to_vec()),
            prop::collection::vec(any::<u8>(), 0..8),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn never_panics(m in messy_message(), name in "[A-Za-z-]{0,12}") {
        let head = header_section(&m);
        prop_assert!(head.len() <= m.len());
        if let Some(v) = header_value(&m, &name) {
            prop_assert_eq!(v.trim(), v.as_str());
        }
    }

    #[test]
    fn finds_a_written_field(
        before in prop::collection::vec("[A-Z][a-z]{1,8}: [ -~]{0,20}", 0..5),
        value in "<[a-z0-9.]{1,20}@[a-z.]{1,12}>",
        fold in any::<bool>(),
        body in "[ -~\r\n]{0,40}",
    ) {
        prop_assume!(!before.iter().any(|l| l.to_ascii_lowercase().starts_with("message-id:")));
        let mut m = before.join("\r\n");
        if !m.is_empty() {
            m.push_str("\r\n");
        }
        m.push_str(if fold { "message-id:\r\n " } else { "Message-ID: " });
        m.push_str(&value);
        m.push_str("\r\n\r\n");
        m.push_str(&body);
        prop_assert_eq!(header_value(m.as_bytes(), "Message-ID"), Some(value));
    }
}
