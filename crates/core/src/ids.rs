use std::fmt;

use rand::Rng;

/// The id of one accepted SMTP transaction. It is named in the `250` reply,
/// in the `Received:` header and in the log line, so "why was my mail
/// rejected / where is it" can be answered from any one of them.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(String);

const ALPHABET: &[u8; 32] = b"0123456789BCDFGHJKLMNPQRSTVWXYZb";

impl QueueId {
    /// Twelve characters of time (seconds and microseconds, so ids sort by
    /// arrival) and eight random ones (so two nodes never collide).
    pub fn generate(unix_micros: u64) -> Self {
        let mut rng = rand::thread_rng();
        let mut s = String::with_capacity(20);
        s.push_str(&Self::time_prefix(unix_micros));
        for _ in 0..8 {
            s.push(ALPHABET[rng.gen_range(0..32)] as char);
        }
        QueueId(s)
    }

    /// The twelve time characters every id generated at `unix_micros`
    /// begins with. The alphabet is in ASCII order, so an id generated
    /// earlier sorts before this prefix and one generated then or later
    /// after it.
    pub fn time_prefix(unix_micros: u64) -> String {
        let mut t = unix_micros;
        let mut time_part = [0u8; 12];
        for slot in time_part.iter_mut().rev() {
            *slot = ALPHABET[(t & 31) as usize];
            t >>= 5;
        }
        time_part.iter().map(|&b| b as char).collect()
    }

    /// Accepts only strings this type could have generated, so an id read
    /// back from a file name or the CLI can be used in a path safely.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() == 20 && s.bytes().all(|b| ALPHABET.contains(&b)) {
            Some(QueueId(s.to_string()))
        } else {
            None
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_parse_back() {
        let a = QueueId::generate(1_000_000);
        let b = QueueId::generate(2_000_000);
        assert!(a < b);
        assert_eq!(QueueId::parse(a.as_str()), Some(a));
        assert!(QueueId::parse("../etc/passwd00000000").is_none());
    }

    #[test]
    fn time_prefix_separates_earlier_ids_from_later_ones() {
        let bound = QueueId::time_prefix(1_700_000_000_000_000);
        let earlier = QueueId::generate(1_699_999_999_999_999);
        let same = QueueId::generate(1_700_000_000_000_000);
        let later = QueueId::generate(1_700_000_000_000_001);
        assert!(earlier.as_str() < bound.as_str());
        assert!(same.as_str().starts_with(&bound) && same.as_str() > bound.as_str());
        assert!(later.as_str() > bound.as_str());
    }
}
