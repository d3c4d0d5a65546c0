//! The cryptokey routing table (whitepaper §2): a longest-prefix-match map from IP prefixes
//! to peers.
//!
//! Outgoing packets are routed to the peer whose allowed IPs best match the destination;
//! incoming decrypted packets are accepted only if the peer that sent them is the best match
//! for their source. There is one path-compressed binary trie per address family (the shape
//! of wireguard-go's `allowedips.go`): every node stores a masked prefix, nodes with one child
//! and no value are collapsed away, so a lookup visits at most one node per distinct prefix
//! length on the path. Keys are left-aligned in a `u128` so both families share the code.
//! Inserting a prefix that is already present moves it to the new peer, as in the kernel.

use std::net::IpAddr;

/// A prefix as a left-aligned 128-bit key and a length in bits.
type Key = u128;

struct Node<V> {
    /// The prefix, with every bit past `len` zero.
    key: Key,
    len: u8,
    value: Option<V>,
    children: [Option<Box<Node<V>>>; 2],
}

/// One trie per family, mapping prefixes to values of type `V` (the tunnel uses peer ids).
pub struct AllowedIps<V> {
    v4: Option<Box<Node<V>>>,
    v6: Option<Box<Node<V>>>,
}

impl<V> Default for AllowedIps<V> {
    fn default() -> Self {
        AllowedIps { v4: None, v6: None }
    }
}

impl<V> core::fmt::Debug for AllowedIps<V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("AllowedIps").finish_non_exhaustive()
    }
}

/// The left-aligned key and maximum prefix length of an address.
fn key_of(addr: IpAddr) -> (Key, u8) {
    match addr {
        IpAddr::V4(a) => (u128::from(u32::from(a)) << 96, 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

/// The address of a left-aligned key in the family of `width`.
fn addr_of(key: Key, width: u8) -> IpAddr {
    if width == 32 {
        IpAddr::from(((key >> 96) as u32).to_be_bytes())
    } else {
        IpAddr::from(key.to_be_bytes())
    }
}

/// `key` with every bit from position `len` on cleared.
fn mask(key: Key, len: u8) -> Key {
    if len == 0 {
        0
    } else {
        key & (u128::MAX << (128 - u32::from(len)))
    }
}

/// Bit `i` of `key`, counting from the most significant; `i < 128`.
fn bit(key: Key, i: u8) -> usize {
    ((key >> (127 - u32::from(i))) & 1) as usize
}

/// The length of the common prefix of `a` and `b`, capped at `max`.
fn common_len(a: Key, b: Key, max: u8) -> u8 {
    // leading_zeros of a u128 is at most 128, which fits u8.
    ((a ^ b).leading_zeros() as u8).min(max)
}

impl<V: Copy + PartialEq> AllowedIps<V> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn root_mut(&mut self, width: u8) -> &mut Option<Box<Node<V>>> {
        if width == 32 {
            &mut self.v4
        } else {
            &mut self.v6
        }
    }

    /// Maps `addr/cidr` (host bits ignored, `cidr` capped at the family width) to `value`,
    /// returning the value it replaced.
    pub fn insert(&mut self, addr: IpAddr, cidr: u8, value: V) -> Option<V> {
        let (key, width) = key_of(addr);
        let len = cidr.min(width);
        insert(self.root_mut(width), mask(key, len), len, value)
    }

    /// Removes exactly `addr/cidr`, returning its value.
    pub fn remove(&mut self, addr: IpAddr, cidr: u8) -> Option<V> {
        let (key, width) = key_of(addr);
        let len = cidr.min(width);
        remove(self.root_mut(width), mask(key, len), len)
    }

    /// Removes every prefix that maps to `value`.
    pub fn remove_value(&mut self, value: V) {
        retain(&mut self.v4, &mut |v| *v != value);
        retain(&mut self.v6, &mut |v| *v != value);
    }

    /// The value of the longest prefix containing `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Option<V> {
        let (key, width) = key_of(addr);
        let mut node = if width == 32 { &self.v4 } else { &self.v6 }.as_deref();
        let mut best = None;
        while let Some(n) = node {
            if common_len(n.key, key, n.len) < n.len {
                break;
            }
            if n.value.is_some() {
                best = n.value;
            }
            if n.len == width {
                break;
            }
            node = n.children[bit(key, n.len)].as_deref();
        }
        best
    }

    /// Every `(address, cidr)` that maps to `value`, in address order per family (IPv4 first).
    pub fn iter_value(&self, value: V) -> impl Iterator<Item = (IpAddr, u8)> + '_ {
        let mut out = Vec::new();
        for (root, width) in [(&self.v4, 32), (&self.v6, 128)] {
            walk(root.as_deref(), &mut |n| {
                if n.value == Some(value) {
                    out.push((addr_of(n.key, width), n.len));
                }
            });
        }
        out.into_iter()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.v4.is_none() && self.v6.is_none()
    }
}

fn leaf<V>(key: Key, len: u8, value: V) -> Box<Node<V>> {
    Box::new(Node {
        key,
        len,
        value: Some(value),
        children: [None, None],
    })
}

fn insert<V>(slot: &mut Option<Box<Node<V>>>, key: Key, len: u8, value: V) -> Option<V> {
    let Some(node) = slot else {
        *slot = Some(leaf(key, len, value));
        return None;
    };
    let common = common_len(node.key, key, node.len.min(len));
    if common == node.len && common == len {
        // The same prefix: replace its value.
        return node.value.replace(value);
    }
    if common == node.len {
        // The node's prefix contains the new one: descend.
        return insert(&mut node.children[bit(key, node.len)], key, len, value);
    }
    // The new prefix contains the node's, or they diverge: splice in above the node.
    // `slot` is Some (matched above), so take() yields the node.
    let old = slot.take().expect("occupied slot");
    let mut top = if common == len {
        leaf(key, len, value)
    } else {
        let mut glue = Box::new(Node {
            key: mask(key, common),
            len: common,
            value: None,
            children: [None, None],
        });
        glue.children[bit(key, common)] = Some(leaf(key, len, value));
        glue
    };
    let side = bit(old.key, common);
    top.children[side] = Some(old);
    *slot = Some(top);
    None
}

fn remove<V>(slot: &mut Option<Box<Node<V>>>, key: Key, len: u8) -> Option<V> {
    let node = slot.as_mut()?;
    if common_len(node.key, key, node.len.min(len)) < node.len || node.len > len {
        return None;
    }
    let removed = if node.len == len {
        node.value.take()
    } else {
        remove(&mut node.children[bit(key, node.len)], key, len)
    };
    compact(slot);
    removed
}

/// Drops a value-less node with no children, and replaces a value-less node with one child
/// by that child, keeping the trie path-compressed.
fn compact<V>(slot: &mut Option<Box<Node<V>>>) {
    let Some(node) = slot else { return };
    if node.value.is_some() {
        return;
    }
    match (node.children[0].take(), node.children[1].take()) {
        (None, None) => *slot = None,
        (Some(only), None) | (None, Some(only)) => *slot = Some(only),
        (a, b) => node.children = [a, b],
    }
}

fn retain<V>(slot: &mut Option<Box<Node<V>>>, keep: &mut impl FnMut(&V) -> bool) {
    let Some(node) = slot else { return };
    if node.value.as_ref().is_some_and(|v| !keep(v)) {
        node.value = None;
    }
    for child in &mut node.children {
        retain(child, keep);
    }
    compact(slot);
}

fn walk<V>(node: Option<&Node<V>>, f: &mut impl FnMut(&Node<V>)) {
    if let Some(n) = node {
        f(n);
        walk(n.children[0].as_deref(), f);
        walk(n.children[1].as_deref(), f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::RngCore;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn test_longest_prefix_match() {
        let mut t = AllowedIps::new();
        t.insert(ip("10.0.0.0"), 8, 1);
        t.insert(ip("10.1.0.0"), 16, 2);
        t.insert(ip("10.1.2.3"), 32, 3);
        t.insert(ip("0.0.0.0"), 0, 4);
        t.insert(ip("fd00::"), 8, 5);
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(3));
        assert_eq!(t.lookup(ip("10.1.2.4")), Some(2));
        assert_eq!(t.lookup(ip("10.2.0.0")), Some(1));
        assert_eq!(t.lookup(ip("192.168.0.1")), Some(4));
        assert_eq!(t.lookup(ip("fd12::1")), Some(5));
        assert_eq!(t.lookup(ip("fe80::1")), None, "families are separate");
        assert_eq!(t.lookup(ip("::ffff:10.1.2.3")), None, "v4-mapped is v6");
    }

    #[test]
    fn test_host_bits_ignored_and_replace() {
        let mut t = AllowedIps::new();
        assert_eq!(t.insert(ip("192.168.7.9"), 24, 1), None);
        assert_eq!(t.insert(ip("192.168.7.0"), 24, 2), Some(1));
        assert_eq!(
            t.iter_value(2).collect::<Vec<_>>(),
            vec![(ip("192.168.7.0"), 24)]
        );
        assert_eq!(t.iter_value(1).count(), 0);
    }

    #[test]
    fn test_remove_and_compaction() {
        let mut t = AllowedIps::new();
        t.insert(ip("10.0.0.0"), 24, 1);
        t.insert(ip("10.0.1.0"), 24, 2);
        t.insert(ip("2001:db8::"), 32, 1);
        assert_eq!(
            t.remove(ip("10.0.0.0"), 16),
            None,
            "only exact prefixes are removed"
        );
        assert_eq!(t.remove(ip("10.0.0.0"), 24), Some(1));
        assert_eq!(t.lookup(ip("10.0.0.1")), None);
        assert_eq!(t.lookup(ip("10.0.1.1")), Some(2));
        // After removing the other v4 prefix the glue node must be gone too.
        t.remove(ip("10.0.1.0"), 24);
        assert!(t.v4.is_none());
        t.remove_value(1);
        assert!(t.is_empty());
    }

    #[test]
    fn test_iter_by_value() {
        let mut t = AllowedIps::new();
        t.insert(ip("10.0.0.0"), 8, 7);
        t.insert(ip("fd00::1"), 128, 7);
        t.insert(ip("10.9.0.0"), 16, 8);
        t.insert(ip("1.2.3.4"), 32, 7);
        let got: Vec<_> = t.iter_value(7).collect();
        assert_eq!(
            got,
            vec![
                (ip("1.2.3.4"), 32),
                (ip("10.0.0.0"), 8),
                (ip("fd00::1"), 128)
            ]
        );
    }

    /// Linear-scan model: the longest matching prefix among a list.
    struct Model(Vec<(IpAddr, u8, u32)>);

    impl Model {
        fn contains(net: IpAddr, cidr: u8, addr: IpAddr) -> bool {
            let ((a, wa), (b, wb)) = (key_of(net), key_of(addr));
            wa == wb && mask(a, cidr) == mask(b, cidr)
        }
        fn normalize(addr: IpAddr, cidr: u8) -> IpAddr {
            let (k, w) = key_of(addr);
            addr_of(mask(k, cidr), w)
        }
        fn insert(&mut self, addr: IpAddr, cidr: u8, v: u32) {
            let addr = Self::normalize(addr, cidr);
            self.0.retain(|(a, c, _)| !(*a == addr && *c == cidr));
            self.0.push((addr, cidr, v));
        }
        fn remove(&mut self, addr: IpAddr, cidr: u8) {
            let addr = Self::normalize(addr, cidr);
            self.0.retain(|(a, c, _)| !(*a == addr && *c == cidr));
        }
        fn lookup(&self, addr: IpAddr) -> Option<u32> {
            self.0
                .iter()
                .filter(|(a, c, _)| Self::contains(*a, *c, addr))
                .max_by_key(|(_, c, _)| *c)
                .map(|(_, _, v)| *v)
        }
    }

    fn random_addr(rng: &mut impl RngCore, v6: bool) -> IpAddr {
        // Few distinct high bits, so that prefixes overlap a lot.
        if v6 {
            let hi = u128::from(rng.next_u32() % 8) << 120;
            let lo = (u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())) >> 8;
            IpAddr::V6(Ipv6Addr::from(hi | lo))
        } else {
            IpAddr::V4(Ipv4Addr::from(
                (rng.next_u32() % 16) << 28 | rng.next_u32() >> 4,
            ))
        }
    }

    // Differential test against a linear scan, with random inserts, removals, removal by value
    // and lookups from fixed seeds.
    #[test]
    fn test_differential_against_linear_scan() {
        for seed in 0..4 {
            let mut rng = crate::tests::fixed_rng(100 + seed);
            let mut trie = AllowedIps::new();
            let mut model = Model(Vec::new());
            let mut inserted = Vec::new();
            for step in 0..4000 {
                let v6 = rng.next_u32() % 2 == 0;
                let width = if v6 { 128 } else { 32 };
                match rng.next_u32() % 10 {
                    0..=3 => {
                        let addr = random_addr(&mut rng, v6);
                        let cidr = (rng.next_u32() % (width + 1)) as u8;
                        let v = rng.next_u32() % 20;
                        trie.insert(addr, cidr, v);
                        model.insert(addr, cidr, v);
                        inserted.push((addr, cidr));
                    }
                    4 if !inserted.is_empty() => {
                        let (addr, cidr) = inserted[rng.next_u32() as usize % inserted.len()];
                        trie.remove(addr, cidr);
                        model.remove(addr, cidr);
                    }
                    5 if step % 50 == 0 => {
                        let v = rng.next_u32() % 20;
                        trie.remove_value(v);
                        model.0.retain(|(_, _, x)| *x != v);
                    }
                    _ => {
                        let addr = random_addr(&mut rng, v6);
                        assert_eq!(
                            trie.lookup(addr),
                            model.lookup(addr),
                            "seed {seed} step {step} {addr}"
                        );
                    }
                }
            }
            for v in 0..20 {
                let mut got: Vec<_> = trie.iter_value(v).collect();
                let mut want: Vec<_> = model
                    .0
                    .iter()
                    .filter(|e| e.2 == v)
                    .map(|e| (e.0, e.1))
                    .collect();
                got.sort();
                want.sort();
                assert_eq!(got, want);
            }
        }
    }
}
