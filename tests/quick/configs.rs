//! The wg-quick config corpus shared by the reference, differential and failure tests.
//!
//! Every case is a config text (with deterministic keys from [`Keys`]) plus a setup script run
//! in the sandbox first (veth "uplink" links and routes, so that automatic MTU and endpoint
//! routes have something to look at). Nothing leaves the sandbox: the uplink's veth peer is
//! in the same sandbox, and endpoints are documentation addresses (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
//! 2001:db8::/32) routed, at most, into that veth.

use wg_tests::PrivateEtc;

use super::{Keys, QuickBox};

/// One config of the corpus.
pub(crate) struct Case {
    /// Short name, also the test-failure label.
    pub(crate) name: &'static str,
    /// Interface name (the config file is `<ifname>.conf`).
    pub(crate) ifname: &'static str,
    /// The config file's text.
    pub(crate) config: String,
    /// `sh` script run in the sandbox before `up` (may be empty).
    pub(crate) setup: &'static str,
    /// Whether the config leaves the listen port to the device (random): masked in snapshots.
    pub(crate) random_port: bool,
    /// Whether `up` installs an IPv4 default route through the tunnel (so `src_valid_mark`
    /// stays 1 after `down`).
    pub(crate) full_tunnel_v4: bool,
    /// Content for `/etc/resolvconf/interface-order` (wg-quick's DNS interface prefix).
    pub(crate) interface_order: Option<&'static str>,
    /// Whether `nft` is hidden (wg-quick then uses iptables-restore for the full tunnel).
    pub(crate) without_nft: bool,
}

impl Case {
    /// A fresh sandbox for this case (openresolv, and the interface-order file if any).
    pub(crate) fn quickbox(&self) -> QuickBox {
        let mut etc = PrivateEtc::with_resolvconf();
        if let Some(order) = self.interface_order {
            etc = etc.interface_order(order);
        }
        if self.without_nft {
            etc = etc.without_nft();
        }
        QuickBox::with_etc(etc)
    }
}

/// An uplink: one end of a veth pair that stays inside the sandbox (no dummy module here), with
/// addresses and default routes, MTU 1460 (so the automatic MTU is 1380, not the no-route 1420).
const UPLINK: &str = "ip link add uplink0 type veth peer name uplink1
ip link set uplink1 up
ip link set uplink0 mtu 1460 up
ip addr add 198.51.100.2/24 dev uplink0
ip -6 addr add 2001:db8:1::2/64 dev uplink0 nodad
ip route add default via 198.51.100.1 dev uplink0
ip -6 route add default via 2001:db8:1::1 dev uplink0";

/// A NAT'd server: several peers, fixed port, iptables MASQUERADE and FORWARD in PostUp
/// (undone in PostDown), automatic MTU from the default route.
pub(crate) fn nat_server() -> Case {
    let mut k = Keys::new(1);
    let (key, p1, p2, psk) = (k.private(), k.public(), k.public(), k.psk());
    Case {
        name: "nat_server",
        ifname: "wg0",
        config: format!(
            "# a NAT'd server\n\
             [Interface]\n\
             Address = 10.66.0.1/24, fd66::1/64\n\
             ListenPort = 51820\n\
             PrivateKey = {key}\n\
             PostUp = iptables -t nat -A POSTROUTING -o uplink0 -j MASQUERADE; iptables -A FORWARD -i %i -j ACCEPT\n\
             PostUp = ip6tables -A FORWARD -i %i -j ACCEPT\n\
             PostDown = iptables -t nat -D POSTROUTING -o uplink0 -j MASQUERADE; iptables -D FORWARD -i %i -j ACCEPT\n\
             PostDown = ip6tables -D FORWARD -i %i -j ACCEPT\n\
             \n\
             [Peer]\n\
             # laptop\n\
             PublicKey = {p1}\n\
             AllowedIPs = 10.66.0.2/32, fd66::2/128\n\
             \n\
             [Peer]\n\
             PublicKey = {p2}\n\
             PresharedKey = {psk}\n\
             AllowedIPs = 10.66.0.3/32\n"
        ),
        setup: NAT_SETUP,
        random_port: false,
        full_tunnel_v4: false,
        interface_order: None,
        without_nft: false,
    }
}

/// The uplink, plus the iptables tables and chains the NAT hooks use, created (by adding and
/// deleting a rule) before the start snapshot: iptables (iptables-nft on Debian 12) creates a
/// table and its base chain with the first rule and never removes them, so without this the
/// state after `down` would hold empty `nat`/`filter` tables that were not there before.
const NAT_SETUP: &str = "ip link add uplink0 type veth peer name uplink1
ip link set uplink1 up
ip link set uplink0 mtu 1460 up
ip addr add 198.51.100.2/24 dev uplink0
ip -6 addr add 2001:db8:1::2/64 dev uplink0 nodad
ip route add default via 198.51.100.1 dev uplink0
ip -6 route add default via 2001:db8:1::1 dev uplink0
iptables -t nat -A POSTROUTING -j RETURN && iptables -t nat -D POSTROUTING -j RETURN
iptables -A FORWARD -j RETURN && iptables -D FORWARD -j RETURN
ip6tables -A FORWARD -j RETURN && ip6tables -D FORWARD -j RETURN";

/// A full-tunnel road-warrior client: `0.0.0.0/0, ::/0`, DNS servers and search domains, MTU.
pub(crate) fn road_warrior() -> Case {
    let mut k = Keys::new(2);
    let (key, server, psk) = (k.private(), k.public(), k.psk());
    Case {
        name: "road_warrior",
        ifname: "wg0",
        config: format!(
            "[Interface]\n\
             PrivateKey = {key}\n\
             Address = 10.7.0.2/32, fd07::2/128\n\
             DNS = 10.7.0.1, fd07::1, corp.example, example.com\n\
             MTU = 1380\n\
             \n\
             [Peer]\n\
             PublicKey = {server}\n\
             PresharedKey = {psk}\n\
             Endpoint = 203.0.113.1:51820\n\
             AllowedIPs = 0.0.0.0/0, ::/0\n\
             PersistentKeepalive = 25\n"
        ),
        setup: UPLINK,
        random_port: true,
        full_tunnel_v4: true,
        interface_order: None,
        without_nft: false,
    }
}

/// Site-to-site: subnets on both families behind two peers with endpoints reachable through
/// the uplink (both endpoint routes have MTU 1460, so the largest and the smallest agree).
pub(crate) fn site_to_site() -> Case {
    let mut k = Keys::new(3);
    let (key, a, b) = (k.private(), k.public(), k.public());
    Case {
        name: "site_to_site",
        ifname: "s2s",
        config: format!(
            "[Interface]\n\
             PrivateKey = {key}\n\
             ListenPort = 51001\n\
             Address = 10.10.0.1/24\n\
             \n\
             [Peer]\n\
             PublicKey = {a}\n\
             Endpoint = 198.51.100.10:51820\n\
             AllowedIPs = 10.20.0.0/16, 10.21.0.0/24, 10.10.0.2/32\n\
             \n\
             [Peer]\n\
             PublicKey = {b}\n\
             Endpoint = [2001:db8:1::10]:51820\n\
             AllowedIPs = 172.16.0.0/12, fd20::/48, 10.10.0.3/32\n"
        ),
        setup: UPLINK,
        random_port: false,
        full_tunnel_v4: false,
        interface_order: None,
        without_nft: false,
    }
}

/// `Table = off`: a default route in AllowedIPs but no routes, rules or firewall at all.
pub(crate) fn table_off() -> Case {
    let mut k = Keys::new(4);
    let (key, peer) = (k.private(), k.public());
    Case {
        name: "table_off",
        ifname: "wg0",
        config: format!(
            "[Interface]\n\
             PrivateKey = {key}\n\
             Address = 10.30.0.2/24\n\
             Table = off\n\
             \n\
             [Peer]\n\
             PublicKey = {peer}\n\
             AllowedIPs = 0.0.0.0/0, 10.31.0.0/16\n"
        ),
        setup: "",
        random_port: true,
        full_tunnel_v4: false,
        interface_order: None,
        without_nft: false,
    }
}

/// `Table = 1234`: every route, the default ones included, goes to table 1234, no rules.
pub(crate) fn table_1234() -> Case {
    let mut k = Keys::new(5);
    let (key, peer) = (k.private(), k.public());
    Case {
        name: "table_1234",
        ifname: "wg0",
        config: format!(
            "[Interface]\n\
             PrivateKey = {key}\n\
             Address = 10.40.0.2/24, fd40::2/64\n\
             Table = 1234\n\
             \n\
             [Peer]\n\
             PublicKey = {peer}\n\
             AllowedIPs = 0.0.0.0/0, 10.41.0.0/16, ::/0\n"
        ),
        setup: "",
        random_port: true,
        full_tunnel_v4: false,
        interface_order: None,
        without_nft: false,
    }
}

/// Several Address lines, one with a list, one without a prefix length.
pub(crate) fn multi_address() -> Case {
    let mut k = Keys::new(6);
    let (key, peer) = (k.private(), k.public());
    Case {
        name: "multi_address",
        ifname: "wg7",
        config: format!(
            "[Interface]\n\
             PrivateKey = {key}\n\
             Address = 10.1.0.1/24\n\
             Address = 10.2.0.1/16,fd01::1/64\n\
             address = 192.168.77.1\n\
             ListenPort = 51007\n\
             \n\
             [Peer]\n\
             PublicKey = {peer}\n\
             AllowedIPs = 10.3.0.0/16\n"
        ),
        setup: "",
        random_port: false,
        full_tunnel_v4: false,
        interface_order: None,
        without_nft: false,
    }
}

/// IPv6 only: a v6 full tunnel (policy routing and nft on ip6 only, no sysctl) and v6 DNS.
pub(crate) fn ipv6_only() -> Case {
    let mut k = Keys::new(7);
    let (key, peer) = (k.private(), k.public());
    Case {
        name: "ipv6_only",
        ifname: "wg6",
        config: format!(
            "[Interface]\n\
             PrivateKey = {key}\n\
             Address = fd42::2/64\n\
             DNS = fd42::53\n\
             \n\
             [Peer]\n\
             PublicKey = {peer}\n\
             Endpoint = [2001:db8:1::42]:51820\n\
             AllowedIPs = ::/0\n"
        ),
        setup: UPLINK,
        random_port: true,
        full_tunnel_v4: false,
        interface_order: None,
        without_nft: false,
    }
}

/// SaveConfig with DNS, MTU, Table and hooks (the file is rewritten by `down`).
pub(crate) fn save_config() -> Case {
    let mut k = Keys::new(8);
    let (key, peer) = (k.private(), k.public());
    Case {
        name: "save_config",
        ifname: "wg0",
        config: format!(
            "[Interface]\n\
             PrivateKey = {key}\n\
             ListenPort = 51008\n\
             Address = 10.80.0.1/24\n\
             DNS = 10.80.0.53, save.example\n\
             MTU = 1400\n\
             Table = auto\n\
             SaveConfig = true\n\
             PreUp = true\n\
             PostUp = echo up %i > /dev/null\n\
             PreDown = true\n\
             PostDown = echo down %i > /dev/null\n\
             \n\
             [Peer]\n\
             PublicKey = {peer}\n\
             AllowedIPs = 10.81.0.0/16\n"
        ),
        setup: "",
        random_port: false,
        full_tunnel_v4: false,
        interface_order: None,
        without_nft: false,
    }
}

/// DNS with Debian resolvconf's `/etc/resolvconf/interface-order` present: wg-quick registers
/// the servers as `tun.dnsp` (the first `NAME*` line gives the prefix `NAME.`).
pub(crate) fn dns_prefix() -> Case {
    let mut k = Keys::new(9);
    let (key, peer) = (k.private(), k.public());
    Case {
        name: "dns_prefix",
        ifname: "dnsp",
        config: format!(
            "[Interface]\n\
             PrivateKey = {key}\n\
             ListenPort = 51009\n\
             Address = 10.90.0.2/24\n\
             DNS = 10.90.0.53,10.90.0.54 , search.example\n\
             \n\
             [Peer]\n\
             PublicKey = {peer}\n\
             AllowedIPs = 10.91.0.0/16\n"
        ),
        setup: "",
        random_port: false,
        full_tunnel_v4: false,
        interface_order: Some("# interface order\nlo.inet*\ntun*\nwg*\n"),
        without_nft: false,
    }
}

/// The uplink, plus iptables' raw and mangle tables (IPv4 and IPv6) created before the start
/// snapshot, for the same reason as [`NAT_SETUP`]: the rules wg-quick adds with
/// iptables-restore and deletes on `down` would otherwise leave empty tables behind.
const IPTABLES_SETUP: &str = "ip link add uplink0 type veth peer name uplink1
ip link set uplink1 up
ip link set uplink0 mtu 1460 up
ip addr add 198.51.100.2/24 dev uplink0
ip -6 addr add 2001:db8:1::2/64 dev uplink0 nodad
ip route add default via 198.51.100.1 dev uplink0
ip -6 route add default via 2001:db8:1::1 dev uplink0
for t in iptables ip6tables; do
  $t -t raw -A PREROUTING -j RETURN && $t -t raw -D PREROUTING -j RETURN
  $t -t mangle -A PREROUTING -j RETURN && $t -t mangle -D PREROUTING -j RETURN
  $t -t mangle -A POSTROUTING -j RETURN && $t -t mangle -D POSTROUTING -j RETURN
done";

/// The road warrior without `nft` in PATH: the full-tunnel firewall goes through
/// `iptables-restore -n` / `ip6tables-restore -n`, and `down` deletes the commented rules.
pub(crate) fn road_warrior_iptables() -> Case {
    Case {
        name: "road_warrior_iptables",
        setup: IPTABLES_SETUP,
        without_nft: true,
        ..road_warrior()
    }
}

/// A small builder for the extra cases below: one peer, `[Interface]` lines and peer lines.
fn simple(
    name: &'static str,
    ifname: &'static str,
    seed: u64,
    interface: &str,
    peer: &str,
    setup: &'static str,
) -> Case {
    let mut k = Keys::new(seed);
    let (key, pk) = (k.private(), k.public());
    Case {
        name,
        ifname,
        config: format!(
            "[Interface]\nPrivateKey = {key}\n{interface}\n[Peer]\nPublicKey = {pk}\n{peer}"
        ),
        setup,
        random_port: !interface.contains("ListenPort"),
        full_tunnel_v4: false,
        interface_order: None,
        without_nft: false,
    }
}

/// Full tunnel while table 51820 already holds a route: wg-quick takes 51821.
pub(crate) fn table_busy() -> Case {
    Case {
        full_tunnel_v4: true,
        ..simple(
            "table_busy",
            "wg0",
            10,
            "Address = 10.11.0.2/24\n",
            "Endpoint = 198.51.100.11:51820\nAllowedIPs = 0.0.0.0/0\n",
            "ip link add uplink0 type veth peer name uplink1
ip link set uplink1 up
ip link set uplink0 up
ip addr add 198.51.100.2/24 dev uplink0
ip route add 10.250.0.0/24 dev uplink0 table 51820",
        )
    }
}

/// Full tunnel with a FwMark in the file: the mark doubles as the table id, no `wg set fwmark`.
pub(crate) fn fwmark_full_tunnel() -> Case {
    Case {
        full_tunnel_v4: true,
        ..simple(
            "fwmark_full_tunnel",
            "wgf",
            11,
            "Address = 10.12.0.2/24, fd12::2/64\nFwMark = 0x1234\nListenPort = 51012\n",
            "AllowedIPs = 0.0.0.0/0, ::/0\n",
            "",
        )
    }
}

/// An endpoint given as a host name (`localhost`, from /etc/hosts): automatic MTU from the
/// loopback route (65536 - 80).
pub(crate) fn hostname_endpoint() -> Case {
    simple(
        "hostname_endpoint",
        "wgl",
        12,
        "Address = 10.13.0.2/24\n",
        "Endpoint = localhost:51999\nAllowedIPs = 10.13.1.0/24\n",
        "",
    )
}

/// DNS with search domains only: no nameserver, so no resolvconf at all.
pub(crate) fn dns_search_only() -> Case {
    simple(
        "dns_search_only",
        "wgd",
        13,
        "Address = 10.14.0.2/24\nDNS = only.example, second.example\nListenPort = 51014\n",
        "AllowedIPs = 10.14.1.0/24\n",
        "",
    )
}

/// `Table = main` (a name from rt_tables): routes, the default included, go to the main table.
pub(crate) fn table_main() -> Case {
    simple(
        "table_main",
        "wg0",
        14,
        "Address = 10.15.0.2/24\nTable = main\n",
        "AllowedIPs = 0.0.0.0/0, 10.16.0.0/16\n",
        "",
    )
}

/// No endpoints: the automatic MTU comes from the default route's own `mtu` attribute.
pub(crate) fn default_route_mtu() -> Case {
    simple(
        "default_route_mtu",
        "wg0",
        15,
        "Address = 10.17.0.2/24\n",
        "AllowedIPs = 10.17.1.0/24\n",
        "ip link add uplink0 type veth peer name uplink1
ip link set uplink1 up
ip link set uplink0 up
ip addr add 198.51.100.2/24 dev uplink0
ip route add default via 198.51.100.1 dev uplink0 mtu 1400",
    )
}

/// The split default (`0.0.0.0/1, 128.0.0.0/1`), overlapping prefixes, and an allowed IP
/// inside the interface's own subnet (no route: `ip route show … match` finds the kernel's).
pub(crate) fn split_overlap() -> Case {
    simple(
        "split_overlap",
        "wg0",
        16,
        "Address = 10.0.5.1/24\n",
        "AllowedIPs = 0.0.0.0/1, 128.0.0.0/1, 10.0.0.0/8, 10.1.0.0/16, 10.0.5.7/32, ::/1, 8000::/1\n",
        "",
    )
}

/// The whole corpus.
pub(crate) fn all() -> Vec<Case> {
    vec![
        nat_server(),
        road_warrior(),
        site_to_site(),
        table_off(),
        table_1234(),
        multi_address(),
        ipv6_only(),
        save_config(),
        dns_prefix(),
        road_warrior_iptables(),
        table_busy(),
        fwmark_full_tunnel(),
        hostname_endpoint(),
        dns_search_only(),
        table_main(),
        default_route_mtu(),
        split_overlap(),
    ]
}
