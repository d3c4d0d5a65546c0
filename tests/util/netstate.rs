//! A snapshot of everything wg-quick can change in a [`Sandbox`], normalised for comparison.
//!
//! [`Snapshot::take`] runs one shell script inside the sandbox and keeps each section's text:
//!
//! | section        | command                                                          |
//! |----------------|------------------------------------------------------------------|
//! | `links`        | `ip -d link show` (links, flags, MTU, qdisc, link kind details)   |
//! | `addresses`    | `ip addr show`                                                   |
//! | `routes4`      | `ip -4 route show table all`                                     |
//! | `routes6`      | `ip -6 route show table all`                                     |
//! | `rules4`       | `ip -4 rule show`                                                |
//! | `rules6`       | `ip -6 rule show`                                                |
//! | `nft`          | `nft list ruleset` (iptables on Debian 12 is iptables-nft: included; a hidden nft is run from `/run/.wg-tests/bin`) |
//! | `iptables`     | `iptables-save`, `ip6tables-save` (shows the `-m comment` that nft hides) |
//! | `sysctl`       | `net.ipv4.conf.all.src_valid_mark`                               |
//! | `wireguard`    | `wg showconf IF` (reference `wg`) for each of `wg show interfaces` |
//! | `resolv.conf`  | `/etc/resolv.conf`                                               |
//! | `resolvconf`   | every file below `/run/resolvconf` (openresolv's state), with its content |
//!
//! Normalisation (applied to every section; nothing else is masked):
//!
//! * **ifindexes**: `12: wg0:` → `N: wg0:`, `veth0@if7` → `veth0@ifN`. The kernel hands them
//!   out per namespace; they say nothing about what a tool did.
//! * **Ethernet addresses**: `link/ether 6a:…` → `link/ether <mac>` (and its `brd`). Veths
//!   get random MACs.
//! * **IPv6 link-local addresses** (`fe80::…` with a host part, not the `fe80::/64` route):
//!   → `fe80::<ll>`. A WireGuard/TUN link gets a random one (addrgenmode random); veths derive
//!   theirs from the random MAC. They also appear in nft rules and local routes.
//!
//! * **TUN flags of a userspace device**: in `tun type tun pi on vnet_hdr off …` the values of
//!   `pi` and `vnet_hdr` → `<impl>`. They are how the daemon (wireguard-go, wg-tunnel) chose to
//!   talk to its TUN file descriptor, not something wg-quick sets; the kernel module's link has
//!   kind `wireguard` and no such line. (wireguard-go 0.0.20220316 uses `pi on`, wg-tunnel
//!   `pi off`.)
//!
//! * **Packet counters**: `counter packets N bytes M` (nft) → `counter`, `[N:M]`
//!   (iptables-save) → `[0:0]`; and iptables-save's `# Generated/Completed … on <date>` lines
//!   are dropped. Packets (handshake attempts) may or may not have passed.
//! * **Peer order** in the `wireguard` section: each device's `[Peer]` blocks are sorted and
//!   blank lines dropped. wireguard-go lists peers in Go map order, which is random.
//! * **Route order**: the route sections are sorted line by line. The kernel lists IPv6 routes
//!   in address order, so masked link-local `local fe80::…` routes would otherwise swap places
//!   at random; what matters is the set of routes.
//!
//! Key material is *not* masked: the tests feed the same config file (same keys) to both sides,
//! so keys must match. A random listen port (a config without `ListenPort`) is masked only when
//! the test asks ([`Snapshot::mask_listen_port`]).

use std::collections::BTreeMap;
use std::fmt;
use std::thread;
use std::time::{Duration, Instant};

use crate::invocation::line_diff;
use crate::sandbox::Sandbox;

/// Section names, in the order they are taken and printed.
pub const SECTIONS: &[&str] = &[
    "links",
    "addresses",
    "routes4",
    "routes6",
    "rules4",
    "rules6",
    "nft",
    "iptables",
    "sysctl",
    "wireguard",
    "resolv.conf",
    "resolvconf",
];

const SCRIPT: &str = r#"
s() { printf '\n@@@ %s\n' "$1"; }
s links;       ip -d link show
s addresses;   ip addr show
s routes4;     ip -4 route show table all
s routes6;     ip -6 route show table all
s rules4;      ip -4 rule show
s rules6;      ip -6 rule show
s nft;         if [ -x /run/.wg-tests/bin/nft ]; then /run/.wg-tests/bin/nft list ruleset 2>&1; else nft list ruleset 2>&1; fi
s iptables;    for t in iptables-save ip6tables-save; do echo "--- $t"; $t 2>&1 | grep -v '^#'; done
s sysctl;      printf 'net.ipv4.conf.all.src_valid_mark = %s\n' "$(cat /proc/sys/net/ipv4/conf/all/src_valid_mark)"
s wireguard;   for i in $(/usr/bin/wg show interfaces); do echo "--- $i"; /usr/bin/wg showconf "$i"; done
s resolv.conf; cat /etc/resolv.conf 2>&1
s resolvconf;  if [ -d /run/resolvconf ]; then find /run/resolvconf -type f | LC_ALL=C sort | while read -r f; do echo "--- $f"; cat "$f"; done; fi
"#;

/// The normalised state of one sandbox (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub struct Snapshot {
    sections: BTreeMap<&'static str, String>,
}

/// How long [`Snapshot::take`] waits for the state to settle.
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(10);

impl Snapshot {
    /// Takes a snapshot of `sandbox` once the state has settled: no IPv6 address `tentative`,
    /// no link without carrier (a veth's carrier comes up asynchronously, up to a second
    /// later), and two snapshots in a row equal (kernel-generated routes appear
    /// asynchronously). Panics if a command fails or the state does not settle within
    /// [`SETTLE_DEADLINE`].
    pub fn take(sandbox: &Sandbox) -> Snapshot {
        let start = Instant::now();
        let mut last = Snapshot::take_once(sandbox);
        loop {
            thread::sleep(Duration::from_millis(20));
            let next = Snapshot::take_once(sandbox);
            if next == last && !next.in_transition() {
                return next;
            }
            assert!(
                start.elapsed() < SETTLE_DEADLINE,
                "sandbox {}: state did not settle within {SETTLE_DEADLINE:?}:\n{next:?}",
                sandbox.pid()
            );
            last = next;
        }
    }

    fn in_transition(&self) -> bool {
        let addrs = self.section("addresses");
        addrs.contains(" tentative ") || addrs.contains("NO-CARRIER")
    }

    /// Takes a snapshot of `sandbox` right now (see [`Snapshot::take`]).
    pub fn take_once(sandbox: &Sandbox) -> Snapshot {
        let out = sandbox.sh(SCRIPT).stdout_str();
        let mut sections = BTreeMap::new();
        let mut current: Option<&'static str> = None;
        let mut text = String::new();
        for line in out.lines() {
            if let Some(name) = line.strip_prefix("@@@ ") {
                if let Some(cur) = current.take() {
                    sections.insert(cur, normalise_section(cur, text.trim_end()));
                }
                current = Some(
                    SECTIONS
                        .iter()
                        .copied()
                        .find(|s| *s == name)
                        .unwrap_or_else(|| panic!("unknown snapshot section {name}")),
                );
                text.clear();
            } else if current.is_some() {
                text += line;
                text.push('\n');
            }
        }
        if let Some(cur) = current {
            sections.insert(cur, normalise_section(cur, text.trim_end()));
        }
        assert_eq!(
            sections.len(),
            SECTIONS.len(),
            "snapshot script output lacks sections:\n{out}"
        );
        Snapshot { sections }
    }

    /// One section's normalised text.
    pub fn section(&self, name: &str) -> &str {
        self.sections
            .get(name)
            .unwrap_or_else(|| panic!("no snapshot section {name}"))
    }

    /// Replaces the value of every `ListenPort = N` line (for configs without a fixed port,
    /// where the device picks a random one).
    pub fn mask_listen_port(mut self) -> Self {
        let wg = self
            .sections
            .get_mut("wireguard")
            .expect("wireguard section");
        *wg = wg
            .lines()
            .map(|l| {
                if l.starts_with("ListenPort = ") {
                    "ListenPort = <random>".to_owned()
                } else {
                    l.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        self
    }

    /// Sets one section's text (already normalised), e.g. to accept a documented difference.
    pub fn with_section(mut self, name: &'static str, text: &str) -> Self {
        assert!(SECTIONS.contains(&name), "no snapshot section {name}");
        self.sections.insert(name, text.to_owned());
        self
    }

    /// `None` if equal, else a per-section line diff (`-` = `self`, `+` = `other`).
    pub fn diff(&self, other: &Snapshot) -> Option<String> {
        let mut report = String::new();
        for name in SECTIONS {
            let (a, b) = (self.section(name), other.section(name));
            if a != b {
                report += &format!(
                    "section {name}:\n{}",
                    line_diff(format!("{a}\n").as_bytes(), format!("{b}\n").as_bytes())
                );
            }
        }
        (!report.is_empty()).then_some(report)
    }

    /// Panics with the per-section diff unless `self == other`. `what` names the comparison;
    /// `left`/`right` name the two sides in the diff.
    pub fn assert_eq(&self, other: &Snapshot, what: &str, left: &str, right: &str) {
        if let Some(d) = self.diff(other) {
            panic!("{what}: snapshots differ (- {left}, + {right}):\n{d}");
        }
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for name in SECTIONS {
            writeln!(f, "@@@ {name}\n{}", self.section(name))?;
        }
        Ok(())
    }
}

/// [`normalise`], then sorts the route sections' lines and each device's peers.
fn normalise_section(name: &str, text: &str) -> String {
    let text = normalise(text);
    if name.starts_with("routes") {
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        lines.join("\n")
    } else if name == "wireguard" {
        sort_peers(&text)
    } else {
        text
    }
}

/// In `wg showconf` output (several devices, each after a `--- IF` line), sorts each
/// device's `[Peer]` blocks.
fn sort_peers(text: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut peers: Vec<String> = Vec::new();
    let flush = |out: &mut Vec<String>, peers: &mut Vec<String>| {
        peers.sort();
        out.append(peers);
    };
    for line in text.lines() {
        if line.starts_with("--- ") {
            flush(&mut out, &mut peers);
            out.push(format!("{line}\n"));
        } else if line == "[Peer]" {
            peers.push(String::from("[Peer]\n"));
        } else if let Some(peer) = peers.last_mut() {
            *peer += line;
            peer.push('\n');
        } else {
            out.push(format!("{line}\n"));
        }
    }
    flush(&mut out, &mut peers);
    // Blank separator lines travel with the peer before them: normalise them away.
    let joined: String = out.concat();
    joined
        .lines()
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A wg(8) config text (`wg showconf`, a file written by `wg-quick save`) with its `[Peer]`
/// blocks sorted, since wireguard-go lists peers in random order. Everything else, blank lines
/// included, is kept: blocks are cut at each `\n[Peer]\n`, trimmed of trailing newlines,
/// sorted, and joined with one blank line, and the text's own ending is kept.
pub fn sort_peer_blocks(text: &str) -> String {
    let body = text.trim_end_matches('\n');
    let ending = &text[body.len()..];
    let mut parts = body.split("\n[Peer]\n");
    let head = parts.next().unwrap_or("").trim_end_matches('\n');
    let mut peers: Vec<&str> = parts.map(|p| p.trim_end_matches('\n')).collect();
    if peers.is_empty() {
        return text.to_owned();
    }
    peers.sort_unstable();
    let mut out = head.to_owned();
    for p in peers {
        out += "\n\n[Peer]\n";
        out += p;
    }
    out + ending
}

/// Applies the masks listed in the module docs.
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        out += &normalise_line(line);
        out.push('\n');
    }
    out.truncate(out.trim_end().len());
    out
}

fn normalise_line(line: &str) -> String {
    // "12: wg0: <...>" (ip link / ip addr headers): the ifindex.
    let mut line = line.to_owned();
    if let Some((idx, rest)) = line.split_once(": ") {
        if !idx.is_empty() && idx.bytes().all(|b| b.is_ascii_digit()) && !line.starts_with(' ') {
            // Rule lines ("32766:\tfrom all") use a tab, so they never match ": ".
            line = format!("N: {rest}");
        }
    }
    // nft counters: "counter packets 3 bytes 180" → "counter".
    while let Some(at) = line.find("counter packets ") {
        let rest = &line[at + "counter packets ".len()..];
        let mut it = rest.splitn(4, ' ');
        let (n, b, m) = (it.next(), it.next(), it.next());
        if b == Some("bytes") && n.is_some_and(|n| n.bytes().all(|c| c.is_ascii_digit())) {
            let m = m.unwrap_or("");
            let tail = &rest[n.map_or(0, str::len) + " bytes ".len() + m.len()..];
            line = format!("{}counter{tail}", &line[..at]);
        } else {
            break;
        }
    }
    let mut words: Vec<String> = line.split(' ').map(mask_word).collect();
    // "tun type tun pi on vnet_hdr off …": the userspace implementation's TUN flags.
    if line.trim_start().starts_with("tun type tun ") {
        for i in 1..words.len() {
            if matches!(words[i - 1].as_str(), "pi" | "vnet_hdr") {
                words[i] = "<impl>".to_owned();
            }
        }
    }
    words.join(" ")
}

fn mask_word(word: &str) -> String {
    // iptables-save counters "[12:3456]".
    if let Some(inner) = word.strip_prefix('[').and_then(|w| w.strip_suffix(']')) {
        if let Some((a, b)) = inner.split_once(':') {
            if !a.is_empty()
                && !b.is_empty()
                && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
            {
                return "[0:0]".to_owned();
            }
        }
    }
    // "veth0@if7:" → "veth0@ifN:"
    if let Some(at) = word.find("@if") {
        let tail = &word[at + 3..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            return format!("{}@ifN{}", &word[..at], &tail[digits..]);
        }
    }
    if is_mac(word) {
        return if word == "ff:ff:ff:ff:ff:ff" {
            word.to_owned()
        } else {
            "<mac>".to_owned()
        };
    }
    if let Some(ll) = link_local(word) {
        return ll;
    }
    word.to_owned()
}

fn is_mac(word: &str) -> bool {
    word.len() == 17
        && word
            .split(':')
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `fe80::1234:…` (optionally with `/64` or a trailing separator) → `fe80::<ll>…`; the
/// `fe80::/64` network itself is left alone.
fn link_local(word: &str) -> Option<String> {
    let lower = word.to_ascii_lowercase();
    if !lower.starts_with("fe80::") {
        return None;
    }
    let end = lower[6..]
        .find(|c: char| !(c.is_ascii_hexdigit() || c == ':'))
        .map_or(lower.len(), |i| i + 6);
    if end == 6 {
        return None; // "fe80::/64"
    }
    Some(format!("fe80::<ll>{}", &word[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_blocks_sort() {
        assert_eq!(
            sort_peer_blocks("[Interface]\nA = 1\n\n[Peer]\nB = 2\n\n[Peer]\nA = 3\n"),
            "[Interface]\nA = 1\n\n[Peer]\nA = 3\n\n[Peer]\nB = 2\n"
        );
        assert_eq!(sort_peer_blocks("[Interface]\n"), "[Interface]\n");
    }

    #[test]
    fn masks() {
        assert_eq!(
            normalise("12: veth0@if7: <BROADCAST> mtu 1500\n    link/ether 6a:01:02:03:04:05 brd ff:ff:ff:ff:ff:ff"),
            "N: veth0@ifN: <BROADCAST> mtu 1500\n    link/ether <mac> brd ff:ff:ff:ff:ff:ff"
        );
        assert_eq!(
            normalise("    inet6 fe80::854f:44a2:6acf:25b2/64 scope link stable-privacy"),
            "    inet6 fe80::<ll>/64 scope link stable-privacy"
        );
        assert_eq!(
            normalise("fe80::/64 dev wg0 proto kernel metric 256 pref medium"),
            "fe80::/64 dev wg0 proto kernel metric 256 pref medium"
        );
        assert_eq!(
            normalise("    tun type tun pi on vnet_hdr off persist off"),
            "    tun type tun pi <impl> vnet_hdr <impl> persist off"
        );
        assert_eq!(
            normalise("\t\tmeta l4proto udp  counter packets 12 bytes 1200 meta mark set ct mark"),
            "\t\tmeta l4proto udp  counter meta mark set ct mark"
        );
        assert_eq!(
            normalise(":PREROUTING ACCEPT [12:345]"),
            ":PREROUTING ACCEPT [0:0]"
        );
        assert_eq!(
            normalise("32766:\tfrom all lookup main"),
            "32766:\tfrom all lookup main"
        );
    }
}
