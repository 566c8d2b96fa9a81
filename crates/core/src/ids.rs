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
        let mut t = unix_micros;
        let mut time_part = [0u8; 12];
        for slot in time_part.iter_mut().rev() {
            *slot = ALPHABET[(t & 31) as usize];
            t >>= 5;
        }
        s.extend(time_part.iter().map(|&b| b as char));
        for _ in 0..8 {
            s.push(ALPHABET[rng.gen_range(0..32)] as char);
        }
        QueueId(s)
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
}
