//! Sequence sets (RFC 9051 9, sequence-set) resolved against a selected
//! mailbox: message numbers to indices, UID sets to the UIDs present.

use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};

use postroom_store::{ModSeq, Uid};

use crate::selected::Selected;

/// A mod-sequence from a command (SEARCH MODSEQ, CHANGEDSINCE,
/// UNCHANGEDSINCE, QRESYNC) as the store's. RFC 7162 7 allows 63 bits,
/// but the parser takes any u64: a larger value is clamped, not wrapped (a
/// cast made 18446744073709551615 into -1, so `SEARCH MODSEQ` with it
/// matched every message). No stored mod-sequence reaches i64::MAX, so the
/// clamped comparison answers as the exact one would.
pub fn modseq_arg(v: u64) -> ModSeq {
    ModSeq(i64::try_from(v).unwrap_or(i64::MAX))
}

/// Whether `n` is in `set`, `*` standing for `max` (RFC 9051 9: `*` is the
/// largest number in use, and `a:b` is the same range as `b:a`).
pub fn set_contains(set: &SequenceSet, n: i64, max: i64) -> bool {
    ranges(set, max).any(|(lo, hi)| lo <= n && n <= hi)
}

/// The set's ranges as (low, high), `*` standing for `max`; a range is
/// taken in either order (RFC 9051 9).
fn ranges(set: &SequenceSet, max: i64) -> impl Iterator<Item = (i64, i64)> + '_ {
    let value = move |s: &SeqOrUid| match s {
        SeqOrUid::Asterisk => max,
        SeqOrUid::Value(v) => i64::from(v.get()),
    };
    set.0.as_ref().iter().map(move |seq| match seq {
        Sequence::Single(s) => (value(s), value(s)),
        Sequence::Range(a, b) => {
            let (a, b) = (value(a), value(b));
            (a.min(b), a.max(b))
        }
    })
}

/// Whether every number of a message-number set names a message (`count`
/// of them; `*` needs at least one).
pub fn set_within(set: &SequenceSet, count: i64) -> bool {
    let ok = |s: &SeqOrUid| match s {
        SeqOrUid::Asterisk => count > 0,
        SeqOrUid::Value(v) => i64::from(v.get()) <= count,
    };
    set.0.as_ref().iter().all(|seq| match seq {
        Sequence::Single(s) => ok(s),
        Sequence::Range(a, b) => ok(a) && ok(b),
    })
}

/// Message numbers to indices (0-based, ascending, no duplicates). `None`
/// if a number is beyond the mailbox (the caller answers BAD, RFC 9051
/// 7.1.3).
pub fn resolve_seq(set: &SequenceSet, count: usize) -> Option<Vec<usize>> {
    let value = |s: &SeqOrUid| -> Option<usize> {
        match s {
            SeqOrUid::Asterisk => (count > 0).then_some(count),
            SeqOrUid::Value(n) => {
                let n = n.get() as usize;
                (n <= count).then_some(n)
            }
        }
    };
    let mut out = Vec::new();
    for seq in set.0.as_ref() {
        match seq {
            Sequence::Single(s) => out.push(value(s)? - 1),
            Sequence::Range(a, b) => {
                let (a, b) = (value(a)?, value(b)?);
                let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
                out.extend((lo..=hi).map(|n| n - 1));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// Indices (in the selected list) of the messages whose UIDs are in the
/// set, ascending: [`resolve_uid`] without looking each UID up again.
pub fn resolve_uid_indices(set: &SequenceSet, sel: &Selected) -> Vec<usize> {
    let msgs = sel.msgs();
    let max = msgs.last().map_or(0, |m| m.uid.as_i64());
    let mut out = Vec::new();
    for (lo, hi) in ranges(set, max) {
        let start = msgs.partition_point(|m| m.uid.as_i64() < lo);
        let end = msgs.partition_point(|m| m.uid.as_i64() <= hi);
        out.extend(start..end.max(start));
    }
    if set.0.as_ref().len() > 1 {
        out.sort_unstable();
        out.dedup();
    }
    out
}

/// UIDs of the set that exist in the mailbox, ascending. `*` is the highest
/// UID present; a range is taken in either order (RFC 9051 9).
pub fn resolve_uid(set: &SequenceSet, sel: &Selected) -> Vec<Uid> {
    let max = sel.msgs().last().map_or(0, |m| m.uid.as_i64());
    let mut out = Vec::new();
    for (lo, hi) in ranges(set, max) {
        let start = sel.msgs().partition_point(|m| m.uid.as_i64() < lo);
        out.extend(
            sel.msgs()[start..]
                .iter()
                .take_while(|m| m.uid.as_i64() <= hi)
                .map(|m| m.uid),
        );
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod membership_tests {
    use super::*;

    /// Membership without expanding agrees with the expanded set.
    #[test]
    fn set_contains_agrees_with_resolve_seq() {
        for text in ["1", "*", "1:*", "*:2", "2,4:6,9:*", "3:1,7", "5:5,1"] {
            let set = SequenceSet::try_from(text).unwrap();
            for count in 0..12usize {
                let expanded = resolve_seq(&set, count);
                for n in 1..=count as i64 {
                    let by_ranges = set_within(&set, count as i64) && set_contains(&set, n, count as i64);
                    let by_list = expanded.as_ref().is_some_and(|v| v.contains(&((n - 1) as usize)));
                    assert_eq!(by_ranges, by_list, "{text} count {count} n {n}");
                }
            }
        }
    }
}
