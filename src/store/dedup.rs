//! The idempotency-key window: the last [`DEDUP_KEYS`] keys stored, each with the id
//! it was stored under.
//!
//! A key is held as a 128-bit hash (two independently seeded 64-bit hashes): no
//! allocation per key, and with 100,000 keys held a new event is mistaken for a
//! resend less often than once in 10^33.
//!
//! Two generations take turns: keys go into the current one; once it has taken
//! [`DEDUP_KEYS`], it becomes the previous one and the old previous one is emptied
//! to take the next keys. Each key carries its ordinal (how many keys came before
//! it), and one in the previous generation counts only while it is among the last
//! [`DEDUP_KEYS`]: the same window as forgetting the oldest key one by one, without
//! a lookup per forgotten key.
//!
//! Every publish of a keyed event looks its key up in both generations, and nearly
//! every key is new, so what a lookup touches decides the cost. A generation is a
//! table of 4-byte slots (1 MiB, at most 38 % full, so a miss ends after one or two
//! slots, and both tables fit the writer core's L2 cache) pointing into a list of
//! the keys in the order they came; a slot keeps 15 bits of the hash, so only one
//! probe in 32,768 reads the list for a key that is not there.

use foldhash::quality::SeedableRandomState;

/// How many idempotency keys the hub remembers (SPEC §1).
pub const DEDUP_KEYS: usize = 100_000;

/// Slots per generation: a power of two, at least 2.6 per key.
const SLOTS: usize = (DEDUP_KEYS * 5 / 2).next_power_of_two();
const INDEX_BITS: u32 = 17;
const _: () = assert!(DEDUP_KEYS < 1 << INDEX_BITS, "a slot holds index + 1");

pub(super) struct Dedup {
    seeds: [SeedableRandomState; 2],
    gens: [Generation; 2],
    /// Which of `gens` takes new keys.
    cur: usize,
    /// The ordinal the next key gets.
    next: u64,
}

struct Generation {
    /// Open addressing with linear probing. 0 is empty; otherwise the top 15 bits
    /// are the key's fingerprint and the low [`INDEX_BITS`] its index in `keys`,
    /// plus one.
    slots: Box<[u32]>,
    /// Hash and id of each key, in the order they came: index = ordinal - `from`.
    keys: Vec<([u64; 2], u64)>,
    /// The ordinal of `keys[0]`.
    from: u64,
}

impl Generation {
    fn new(from: u64) -> Generation {
        Generation {
            slots: vec![0; SLOTS].into_boxed_slice(),
            keys: Vec::with_capacity(DEDUP_KEYS),
            from,
        }
    }

    fn fingerprint(h: [u64; 2]) -> u32 {
        ((h[1] >> (64 - (32 - INDEX_BITS))) as u32) << INDEX_BITS
    }

    /// Where the probe for `h` starts.
    fn home(h: [u64; 2]) -> usize {
        h[0] as usize & (SLOTS - 1)
    }

    /// The slot holding `h`, or the empty slot where it would go.
    fn probe(&self, h: [u64; 2]) -> (usize, Option<usize>) {
        let i = Self::home(h);
        self.probe_from(h, i, self.slots[i])
    }

    /// [`Self::probe`], given what the home slot `i` holds (read earlier).
    fn probe_from(&self, h: [u64; 2], mut i: usize, mut s: u32) -> (usize, Option<usize>) {
        let fp = Self::fingerprint(h);
        loop {
            if s == 0 {
                return (i, None);
            }
            if s & !((1 << INDEX_BITS) - 1) == fp {
                let k = (s & ((1 << INDEX_BITS) - 1)) as usize - 1;
                if self.keys[k].0 == h {
                    return (i, Some(k));
                }
            }
            i = (i + 1) & (SLOTS - 1);
            s = self.slots[i];
        }
    }

    /// Id and ordinal of the key found by a probe.
    fn found(&self, k: Option<usize>) -> Option<(u64, u64)> {
        k.map(|k| (self.keys[k].1, self.from + k as u64))
    }

    /// Adds `h` (or moves it to this newer id and ordinal).
    fn insert(&mut self, h: [u64; 2], id: u64) {
        let (slot, _) = self.probe(h);
        self.slots[slot] = Self::fingerprint(h) | (self.keys.len() as u32 + 1);
        self.keys.push((h, id));
    }

    fn clear(&mut self, from: u64) {
        self.slots.fill(0);
        self.keys.clear();
        self.from = from;
    }
}

impl Dedup {
    /// Both generations sized from the start: nothing grows on the write path.
    pub(super) fn new() -> Dedup {
        Dedup {
            seeds: seeds(),
            gens: [Generation::new(0), Generation::new(0)],
            cur: 0,
            next: 0,
        }
    }

    /// The key's 128-bit hash, as two words (16 bytes without u128's alignment).
    pub(super) fn hash(&self, key: &str) -> [u64; 2] {
        use std::hash::BuildHasher;
        let [a, b] = &self.seeds;
        [a.hash_one(key), b.hash_one(key)]
    }

    /// The id stored under this key, if it is among the last [`DEDUP_KEYS`].
    #[cfg(test)]
    pub(super) fn get(&self, h: [u64; 2]) -> Option<u64> {
        self.get_many(&[h])[0]
    }

    /// The ids stored under these keys (None: not among the last [`DEDUP_KEYS`]).
    ///
    /// Nearly every lookup is a cache miss on its home slot. They are read first,
    /// in a pass of independent loads the CPU overlaps, and the probes follow; a
    /// loop that probed key after key would wait for one miss after the other.
    pub(super) fn get_many(&self, hashes: &[[u64; 2]]) -> Vec<Option<u64>> {
        let (cur, prev) = (&self.gens[self.cur], &self.gens[1 - self.cur]);
        let homes: Vec<[u32; 2]> = hashes
            .iter()
            .map(|&h| {
                let i = Generation::home(h);
                [cur.slots[i], prev.slots[i]]
            })
            .collect();
        // Everything in the current generation is in the window; in the previous
        // one, the newer part.
        let oldest = self.next.saturating_sub(DEDUP_KEYS as u64);
        hashes
            .iter()
            .zip(homes)
            .map(|(&h, [c, p])| {
                let i = Generation::home(h);
                if let Some((id, _)) = cur.found(cur.probe_from(h, i, c).1) {
                    return Some(id);
                }
                match prev.found(prev.probe_from(h, i, p).1) {
                    Some((id, ord)) if ord >= oldest => Some(id),
                    _ => None,
                }
            })
            .collect()
    }

    pub(super) fn insert(&mut self, h: [u64; 2], id: u64) {
        if self.gens[self.cur].keys.len() >= DEDUP_KEYS {
            self.cur = 1 - self.cur;
            self.gens[self.cur].clear(self.next);
        }
        self.gens[self.cur].insert(h, id);
        self.next += 1;
    }
}

/// Two hash states with independent random seeds (the shared part drawn once per
/// process).
fn seeds() -> [SeedableRandomState; 2] {
    use foldhash::SharedSeed;
    static SHARED: std::sync::OnceLock<[SharedSeed; 2]> = std::sync::OnceLock::new();
    let [a, b] = SHARED.get_or_init(|| {
        [
            SharedSeed::from_u64(fastrand::u64(..)),
            SharedSeed::from_u64(fastrand::u64(..)),
        ]
    });
    [
        SeedableRandomState::with_seed(fastrand::u64(..), a),
        SeedableRandomState::with_seed(fastrand::u64(..), b),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Exactly the last DEDUP_KEYS keys are remembered, across the turns of the two
    /// generations: checked against a plain model (a queue of the last keys) over
    /// three turns, with keys stored again (a log may hold a key twice, far apart,
    /// and reopening inserts both) and keys that come back after leaving the window.
    #[test]
    fn dedup_remembers_exactly_the_last_keys() {
        let mut d = Dedup::new();
        let mut model: VecDeque<([u64; 2], u64)> = VecDeque::new();
        let remembered = |m: &VecDeque<([u64; 2], u64)>, h: [u64; 2]| {
            m.iter().rev().find(|(k, _)| *k == h).map(|&(_, id)| id)
        };
        let n = 3 * DEDUP_KEYS + 17;
        let key = |i: usize| {
            // Every 7th key repeats one from 1.5 windows back (out of the window),
            // every 11th one from 10 keys back (still in it).
            if i.is_multiple_of(7) && i > 3 * DEDUP_KEYS / 2 {
                i - 3 * DEDUP_KEYS / 2
            } else if i.is_multiple_of(11) && i > 10 {
                i - 10
            } else {
                i
            }
        };
        for i in 0..n {
            let h = d.hash(&format!("k{}", key(i)));
            let id = i as u64 + 1;
            d.insert(h, id);
            model.push_back((h, id));
            if model.len() > DEDUP_KEYS {
                model.pop_front();
            }
            if i % 997 == 0 || i % DEDUP_KEYS < 3 || i % DEDUP_KEYS > DEDUP_KEYS - 3 {
                for back in [0, 1, 10, DEDUP_KEYS - 1, DEDUP_KEYS, DEDUP_KEYS + 1] {
                    let Some(j) = i.checked_sub(back) else {
                        continue;
                    };
                    let h = d.hash(&format!("k{}", key(j)));
                    assert_eq!(d.get(h), remembered(&model, h), "i={i} back={back}");
                }
            }
        }
        assert_eq!(d.get(d.hash("never")), None);
    }

    /// Hashes that share their slot and their fingerprint are still told apart by
    /// the whole hash (such a pair is one in 2^33 for real keys; built here).
    #[test]
    fn same_slot_and_fingerprint_are_told_apart() {
        let mut d = Dedup::new();
        let a = [5, 1 << 63];
        let b = [5 + SLOTS as u64, (1 << 63) | 1];
        assert_eq!(
            Generation::fingerprint(a),
            Generation::fingerprint(b),
            "built to collide"
        );
        d.insert(a, 10);
        assert_eq!(d.get(b), None);
        d.insert(b, 11);
        assert_eq!((d.get(a), d.get(b)), (Some(10), Some(11)));
        d.insert(a, 12);
        assert_eq!((d.get(a), d.get(b)), (Some(12), Some(11)));
    }
}
