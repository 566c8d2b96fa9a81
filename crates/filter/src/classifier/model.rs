//! The model in memory and its arithmetic: Robinson's token probability
//! and Fisher's chi-square combining (as SpamBayes; SpamAssassin's Bayes
//! does the same). Pure: no I/O, no clock.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Tokens are hashes already ([`super::tokens`] ends with an avalanche
/// step): the map uses them as they are.
#[derive(Default)]
pub struct Identity(u64);

impl Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub type TokenMap = HashMap<u64, Counts, BuildHasherDefault<Identity>>;

/// In how many trained spam and ham messages a token was seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub spam: u32,
    pub ham: u32,
}

/// Robinson's strength of the prior for a rare token, and the prior
/// itself: SpamBayes' defaults (`unknown_word_strength` 0.45,
/// `unknown_word_prob` 0.5), which also did best on a split of the
/// training half (bench/RESULTS.md).
const PRIOR_STRENGTH: f64 = 0.45;
const PRIOR: f64 = 0.5;
/// Tokens closer to 0.5 than this say nothing and are left out
/// (SpamBayes' `minimum_prob_strength`).
const MIN_STRENGTH: f64 = 0.1;
/// The most telling tokens used per message (SpamBayes' 150).
pub const MAX_CLUES: usize = 150;

/// The whole model.
#[derive(Default)]
pub struct Model {
    pub spam: u64,
    pub ham: u64,
    pub tokens: TokenMap,
}

/// A message's spam probability, and how many tokens decided it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Judgement {
    pub probability: f64,
    pub clues: usize,
}

impl Model {
    /// Robinson's f(w): the token's spam ratio among messages, pulled
    /// towards [`PRIOR`] while it has been seen in few.
    fn token_probability(&self, c: Counts) -> f64 {
        let ns = self.spam.max(1) as f64;
        let nh = self.ham.max(1) as f64;
        let s = (c.spam as f64).min(ns);
        let h = (c.ham as f64).min(nh);
        let sr = s / ns;
        let hr = h / nh;
        let p = if sr + hr == 0.0 { PRIOR } else { sr / (sr + hr) };
        let n = s + h;
        (PRIOR_STRENGTH * PRIOR + n * p) / (PRIOR_STRENGTH + n)
    }

    /// The spam probability of a message with these (distinct) tokens.
    pub fn judge(&self, tokens: &[u64]) -> Judgement {
        let mut clues: Vec<(f64, f64)> = Vec::with_capacity(tokens.len().min(2048));
        for t in tokens {
            if let Some(&c) = self.tokens.get(t) {
                let p = self.token_probability(c);
                let strength = (p - 0.5).abs();
                if strength >= MIN_STRENGTH {
                    clues.push((strength, p));
                }
            }
        }
        if clues.len() > MAX_CLUES {
            clues.select_nth_unstable_by(MAX_CLUES, |a, b| b.0.total_cmp(&a.0));
            clues.truncate(MAX_CLUES);
        }
        Judgement {
            probability: chi_square_combined(clues.iter().map(|c| c.1)),
            clues: clues.len(),
        }
    }

    pub fn add(&mut self, token: u64, spam: i64, ham: i64) {
        let c = self.tokens.entry(token).or_default();
        c.spam = clamp(c.spam as i64 + spam);
        c.ham = clamp(c.ham as i64 + ham);
        if c.spam == 0 && c.ham == 0 {
            self.tokens.remove(&token);
        }
    }
}

fn clamp(n: i64) -> u32 {
    n.clamp(0, u32::MAX as i64) as u32
}

/// Fisher's method both ways: how unlikely the probabilities are if
/// the message were ham (S) and if it were spam (H), combined as
/// (1 + S - H) / 2. With no clues, 0.5.
pub fn chi_square_combined(ps: impl Iterator<Item = f64>) -> f64 {
    let (mut ln_p, mut ln_q, mut n) = (0.0f64, 0.0f64, 0usize);
    for p in ps {
        let p = p.clamp(1e-9, 1.0 - 1e-9);
        ln_p += p.ln();
        ln_q += (1.0 - p).ln();
        n += 1;
    }
    if n == 0 {
        return 0.5;
    }
    let s = 1.0 - chi2q(-2.0 * ln_q, 2 * n);
    let h = 1.0 - chi2q(-2.0 * ln_p, 2 * n);
    ((1.0 + s - h) / 2.0).clamp(0.0, 1.0)
}

/// P(chi-square with `v` (even) degrees of freedom >= x2).
fn chi2q(x2: f64, v: usize) -> f64 {
    let m = x2 / 2.0;
    let mut term = (-m).exp();
    let mut sum = term;
    for i in 1..v / 2 {
        term *= m / i as f64;
        sum += term;
    }
    sum.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi_square_extremes() {
        assert_eq!(chi_square_combined(std::iter::empty()), 0.5);
        assert!(chi_square_combined([0.99; 20].into_iter()) > 0.99);
        assert!(chi_square_combined([0.01; 20].into_iter()) < 0.01);
        let mixed = chi_square_combined([0.99, 0.01].into_iter());
        assert!((mixed - 0.5).abs() < 0.01, "{mixed}");
    }

    #[test]
    fn rare_tokens_lean_to_the_prior() {
        let mut m = Model {
            spam: 100,
            ham: 100,
            ..Default::default()
        };
        m.add(1, 1, 0);
        m.add(2, 50, 0);
        let rare = m.token_probability(m.tokens[&1]);
        let common = m.token_probability(m.tokens[&2]);
        assert!(rare < common && rare > 0.5 && common > 0.99);
        m.add(2, -60, 0);
        assert!(!m.tokens.contains_key(&2), "a token counted nowhere is gone");
    }
}
