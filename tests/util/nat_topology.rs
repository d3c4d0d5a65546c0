//! A simulated Internet with NAT routers in network namespaces, for the NAT-traversal tests
//! (shared/spec/nat-traversal.md, "Test topology"). Every box is a [`Sandbox`]; nothing touches
//! the host's network.
//!
//! ```text
//!              Internet (sandbox with bridge br0, 203.0.113.0/24, no route anywhere else)
//!      ┌──────────────┬─────────────────┬───────────────────┬────────────────┐
//!   public host    Router (wan .1)    Router (wan .2)      Router isp (.3)   public host
//!   (.10 +.11)     NAT kind A         NAT kind B           CGN, LAN 100.64.0.0/10 (.20 relay)
//!                  LAN bridge         LAN bridge              │
//!                  10.1.0.1/24        10.2.0.1/24          Router home (wan 100.64.0.2)
//!                  hosts .2, .3 …     hosts .2 …           LAN 10.3.0.1/24, hosts .2 …
//! ```
//!
//! * [`Internet::new`] makes the bridge; [`Internet::public_host`] attaches a sandbox with one or
//!   more public addresses (no default route: the whole "Internet" is one on-link /24);
//!   [`Internet::router`] attaches a NAT router ([`Nat`] says which behaviour) with a LAN bridge
//!   `lan`; [`Router::host`] attaches a host behind it (default route via the router);
//!   [`Router::router`] attaches a router behind a router (CGNAT + home NAT).
//! * Routers: WAN interface `wan`, LAN bridge `lan`, `net.ipv4.ip_forward=1`, an nftables
//!   ruleset per [`Nat`] (see [`Nat::ruleset`]) with named counters `unsolicited` (new inbound
//!   UDP dropped, whether addressed to the router itself or to the LAN) and `udp_blocked`, read with [`Router::counter`]; [`Router::flush_conntrack`] is
//!   `conntrack -F` (NAT rebinding: every mapping is forgotten).
//! * Create and use the whole topology in one test thread (see [`Sandbox`]'s contract). Each
//!   test builds its own: the namespaces are anonymous, so tests run in parallel.

use std::cell::Cell;
use std::path::Path;

use crate::invocation::Invocation;
use crate::sandbox::Sandbox;

/// The simulated Internet's prefix (TEST-NET-3, RFC 5737: documentation only, never routed).
pub const INTERNET: &str = "203.0.113";

/// A router's NAT behaviour (RFC 4787 terms; the classic names in brackets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Nat {
    /// Endpoint-independent mapping, port-preserving, address- and port-dependent filtering
    /// ("port-restricted cone", the Linux default): `masquerade persistent` and a stateful
    /// forward filter.
    PortRestricted,
    /// Endpoint-independent mapping and filtering ("full cone"): port-restricted plus a static
    /// `dnat` of every inbound UDP port to the first host behind the router (`.2`), so anyone
    /// may send to a mapping; the mapping is port-preserving, so the mapped port is the host's.
    FullCone,
    /// Address- and port-dependent mapping with random ports ("symmetric", "hard"):
    /// `masquerade fully-random` and the stateful filter: every destination gets its own port.
    Symmetric,
    /// A port-restricted NAT that also drops every forwarded UDP datagram that does not come
    /// from or go to the given public address (the relay): UDP between the sides is blocked.
    UdpBlockedExcept(String),
}

impl Nat {
    /// The nftables ruleset of a router with this behaviour whose LAN is `lan_base.0/…` and
    /// whose first host is `lan_base.2`.
    pub fn ruleset(&self, lan_base: &str) -> String {
        let masquerade = match self {
            Nat::Symmetric => "masquerade fully-random",
            _ => "masquerade persistent",
        };
        let dnat = match self {
            Nat::FullCone => format!("iifname \"wan\" udp dport 1024-65535 dnat to {lan_base}.2"),
            _ => String::new(),
        };
        let block = match self {
            Nat::UdpBlockedExcept(allowed) => format!(
                "meta l4proto udp ip saddr != {allowed} ip daddr != {allowed} \
                 counter name udp_blocked drop"
            ),
            _ => String::new(),
        };
        format!(
            "flush ruleset
table ip nat {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        {dnat}
    }}
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname \"wan\" {masquerade}
    }}
}}
table ip filter {{
    counter unsolicited {{ }}
    counter udp_blocked {{ }}
    chain input {{
        type filter hook input priority filter; policy accept;
        ct state established,related accept
        iifname \"wan\" meta l4proto udp counter name unsolicited drop
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        {block}
        ct state established,related accept
        iifname \"wan\" ct status dnat accept
        iifname \"wan\" counter name unsolicited drop
    }}
}}
"
        )
    }
}

/// A bridge a veth is plugged into: in `owner`, named `bridge`; the attached side gets its
/// addresses with `prefix` and a default route via `gateway` if given.
struct Segment<'a> {
    owner: &'a Sandbox,
    bridge: &'a str,
    prefix: u8,
    gateway: Option<&'a str>,
}

impl Segment<'_> {
    /// Attaches `ns` with a veth: `port` on the bridge side, `ifname` in `ns` with `ips`.
    fn attach(&self, port: &str, ns: &Sandbox, ifname: &str, ips: &[&str]) {
        self.owner.veth(port, ns, ifname);
        self.owner
            .ip(&format!("link set {port} master {}", self.bridge));
        for ip in ips {
            ns.ip(&format!("addr add {ip}/{} dev {ifname}", self.prefix));
        }
        if let Some(gw) = self.gateway {
            ns.ip(&format!("route add default via {gw}"));
        }
    }
}

fn bridge(ns: &Sandbox, name: &str) {
    ns.ip(&format!("link add {name} type bridge"));
    ns.ip(&format!("link set {name} up"));
}

/// The simulated Internet: a sandbox holding the bridge `br0` everything public hangs off.
#[derive(Debug)]
pub struct Internet {
    /// The sandbox holding `br0` (it has no address of its own).
    pub ns: Sandbox,
    ports: Cell<u32>,
}

impl Default for Internet {
    fn default() -> Self {
        Internet::new()
    }
}

impl Internet {
    /// Creates the Internet's bridge.
    pub fn new() -> Internet {
        let ns = Sandbox::new();
        bridge(&ns, "br0");
        Internet {
            ns,
            ports: Cell::new(0),
        }
    }

    fn next_port(&self) -> String {
        let n = self.ports.get();
        self.ports.set(n + 1);
        format!("p{n}")
    }

    /// A public host with the given addresses (last octets in [`INTERNET`], e.g. `[10, 11]`)
    /// on its interface `eth0`.
    pub fn public_host(&self, octets: &[u8]) -> Sandbox {
        let ns = Sandbox::new();
        let ips: Vec<String> = octets.iter().map(|o| format!("{INTERNET}.{o}")).collect();
        let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
        Segment {
            owner: &self.ns,
            bridge: "br0",
            prefix: 24,
            gateway: None,
        }
        .attach(&self.next_port(), &ns, "eth0", &ips);
        ns
    }

    /// A NAT router with WAN address `INTERNET.wan_octet` and LAN `lan_base.1/24`.
    pub fn router(&self, wan_octet: u8, lan_base: &str, nat: Nat) -> Router {
        let wan_ip = format!("{INTERNET}.{wan_octet}");
        let ns = Sandbox::new();
        Segment {
            owner: &self.ns,
            bridge: "br0",
            prefix: 24,
            gateway: None,
        }
        .attach(&self.next_port(), &ns, "wan", &[&wan_ip]);
        Router::setup(ns, wan_ip, lan_base, 24, nat)
    }

    /// A carrier-grade NAT (port-restricted behaviour) on the Internet at `INTERNET.wan_octet`
    /// whose "LAN" is the shared address space 100.64.0.0/10 (RFC 6598): `100.64.0.1`, customers
    /// from `100.64.0.2`.
    pub fn carrier(&self, wan_octet: u8) -> Router {
        let wan_ip = format!("{INTERNET}.{wan_octet}");
        let ns = Sandbox::new();
        Segment {
            owner: &self.ns,
            bridge: "br0",
            prefix: 24,
            gateway: None,
        }
        .attach(&self.next_port(), &ns, "wan", &[&wan_ip]);
        Router::setup(ns, wan_ip, "100.64.0", 10, Nat::PortRestricted)
    }
}

/// A NAT router: WAN interface `wan`, LAN bridge `lan` at `lan_base.1`.
#[derive(Debug)]
pub struct Router {
    /// The router's sandbox.
    pub ns: Sandbox,
    /// Its public-side (WAN) address.
    pub wan_ip: String,
    /// First three octets of its LAN (`10.1.0`): the router is `.1`, hosts `.2`, `.3`, ….
    pub lan_base: String,
    /// Its NAT behaviour.
    pub nat: Nat,
    prefix: u8,
    hosts: Cell<u8>,
}

impl Router {
    fn setup(ns: Sandbox, wan_ip: String, lan_base: &str, prefix: u8, nat: Nat) -> Router {
        bridge(&ns, "lan");
        ns.ip(&format!("addr add {lan_base}.1/{prefix} dev lan"));
        ns.sh("sysctl -qw net.ipv4.ip_forward=1");
        let out = Invocation::new(["-f", "-"])
            .arg0("nft")
            .stdin(nat.ruleset(lan_base))
            .in_sandbox(&ns)
            .run(Path::new("/usr/sbin/nft"));
        out.assert_code(0, &format!("nft -f - ({nat:?})"));
        Router {
            ns,
            wan_ip,
            lan_base: lan_base.to_owned(),
            nat,
            prefix,
            hosts: Cell::new(0),
        }
    }

    /// A host behind this router: interface `eth0` at the next free LAN address (`.2`, `.3`,
    /// …), default route via the router. Returns the sandbox and its address.
    pub fn host(&self) -> (Sandbox, String) {
        let n = self.hosts.get();
        self.hosts.set(n + 1);
        let ip = format!("{}.{}", self.lan_base, n + 2);
        let ns = Sandbox::new();
        let gw = format!("{}.1", self.lan_base);
        Segment {
            owner: &self.ns,
            bridge: "lan",
            prefix: self.prefix,
            gateway: Some(&gw),
        }
        .attach(&format!("h{n}"), &ns, "eth0", &[&ip]);
        (ns, ip)
    }

    /// A router behind this one (a home NAT behind a carrier-grade NAT): its WAN address is
    /// this router's next free LAN address, its own LAN `lan_base.1/24`.
    pub fn router(&self, lan_base: &str, nat: Nat) -> Router {
        let n = self.hosts.get();
        self.hosts.set(n + 1);
        let wan_ip = format!("{}.{}", self.lan_base, n + 2);
        let ns = Sandbox::new();
        let gw = format!("{}.1", self.lan_base);
        Segment {
            owner: &self.ns,
            bridge: "lan",
            prefix: self.prefix,
            gateway: Some(&gw),
        }
        .attach(&format!("h{n}"), &ns, "wan", &[&wan_ip]);
        Router::setup(ns, wan_ip, lan_base, 24, nat)
    }

    /// `conntrack -F` in the router: every NAT mapping and filter state is forgotten.
    pub fn flush_conntrack(&self) {
        let out = self.ns.run("/usr/sbin/conntrack", &["-F"]);
        out.assert_code(
            0,
            "conntrack -F (install the `conntrack` package; scripts/test.sh does)",
        );
    }

    /// The packet count of the named nftables counter (`unsolicited` or `udp_blocked`).
    pub fn counter(&self, name: &str) -> u64 {
        let out = self
            .ns
            .run("/usr/sbin/nft", &["list", "counter", "ip", "filter", name]);
        out.assert_code(0, &format!("nft list counter ip filter {name}"));
        let text = out.stdout_str();
        let mut words = text.split_whitespace();
        while let Some(w) = words.next() {
            if w == "packets" {
                if let Some(n) = words.next().and_then(|n| n.parse().ok()) {
                    return n;
                }
            }
        }
        panic!("no packet count in:\n{text}")
    }

    /// The UDP mappings conntrack holds, one line each (`conntrack -L -p udp`), for messages.
    pub fn conntrack(&self) -> String {
        let out = self.ns.run("/usr/sbin/conntrack", &["-L", "-p", "udp"]);
        out.stdout_str()
    }
}

/// The NAT tests' probe tool (`tests/bin/nat.rs`, built by `cargo build --workspace --bins`).
pub fn nat_tool() -> std::path::PathBuf {
    crate::bins::cargo_bin("wg-tests-nat")
}

/// A UDP endpoint in a sandbox (`wg-tests-nat agent`): sends what the test tells it to, from one
/// socket, and reports every datagram it receives with its source as seen after the NATs.
#[derive(Debug)]
pub struct Agent {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
    what: String,
}

impl Agent {
    /// Starts an agent bound to `bind` (`ip:port`) inside `ns`; with `reflect`, it answers every
    /// datagram with `seen FROM` (a mapping reflector, as STUN).
    pub fn start(ns: &Sandbox, bind: &str, reflect: bool) -> Agent {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut cmd = ns.command(nat_tool());
        cmd.args(["agent", bind]);
        if reflect {
            cmd.arg("--reflect");
        }
        cmd.env_clear()
            .env("PATH", crate::invocation::PATH)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        crate::sandbox::die_with_parent(&mut cmd);
        let what = format!("agent {bind} in sandbox {}", ns.pid());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let agent = Agent {
            child,
            stdin,
            lines,
            what,
        };
        let first = agent.next_line(std::time::Duration::from_secs(10));
        assert_eq!(first.as_deref(), Some("listening"), "{}", agent.what);
        agent
    }

    fn next_line(&self, timeout: std::time::Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Sends one datagram `text` (no spaces needed, but allowed) to `dest`.
    pub fn send(&mut self, dest: &str, text: &str) {
        use std::io::Write;
        writeln!(self.stdin, "send {dest} {text}")
            .and_then(|()| self.stdin.flush())
            .unwrap_or_else(|e| panic!("{}: write command: {e}", self.what));
    }

    /// The next received datagram as `(source, text)`, or `None` if none arrives within
    /// `timeout`.
    pub fn recv(&self, timeout: std::time::Duration) -> Option<(String, String)> {
        let line = self.next_line(timeout)?;
        let (from, text) = line.split_once(' ').unwrap_or((&line, ""));
        Some((from.to_owned(), text.to_owned()))
    }

    /// Receives until a datagram whose text is `text` arrives (panics after `timeout`);
    /// returns it with everything received before it.
    pub fn recv_until(&self, text: &str, timeout: std::time::Duration) -> Vec<(String, String)> {
        let deadline = std::time::Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.recv(left) {
                Some(d) => {
                    let done = d.1 == text;
                    got.push(d);
                    if done {
                        return got;
                    }
                }
                None => panic!("{}: no `{text}` within {timeout:?}; got {got:?}", self.what),
            }
        }
    }

    /// This agent's public mapping as `reflector` (an agent started with `reflect`) sees it:
    /// sends `probe` to it until a `seen MAPPING` reply comes back from it (up to 5 tries, a
    /// second apart), and returns MAPPING (`ip:port`). Other datagrams met meanwhile are
    /// returned too.
    pub fn mapping(&mut self, reflector: &str) -> (String, Vec<(String, String)>) {
        let mut other = Vec::new();
        for _ in 0..5 {
            self.send(reflector, "probe");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let Some((from, text)) = self.recv(left) else {
                    break;
                };
                match text.strip_prefix("seen ") {
                    Some(mapped) if from == reflector => return (mapped.to_owned(), other),
                    _ => other.push((from, text)),
                }
            }
        }
        panic!(
            "{}: no reply from reflector {reflector}; got {other:?}",
            self.what
        )
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
