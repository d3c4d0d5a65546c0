//! The pure half of wg-quick: which operations `up`, `down` and `save` perform, in which order,
//! and the `[#] …` trace line of each, computed from the parsed config and from facts about the
//! system gathered beforehand (`linux.rs`). Nothing here does I/O; `exec.rs` runs the plans.
//!
//! The order and the traces are those of upstream HEAD's `src/wg-quick/linux.bash`. `up` is
//! planned in three phases, because the reference queries the system between them: creation
//! (link, PreUp, config, addresses), the MTU (from the routes to the configured endpoints), and
//! the rest (DNS, routes, the full-tunnel rules and firewall, PostUp), which depends on the live
//! device (its allowed IPs and fwmark) and on the link being up.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use wg_config::ntop::Ntop;
use wg_config::quick::substitute_interface;
use wg_config::quick::{InterfaceAddress, Mtu, QuickConfig, Table};
use wg_ipc::rtnl::{Rule, RT_TABLE_MAIN};

/// The first table id tried for the full-tunnel routes.
const FIRST_TABLE: u32 = 51820;

/// A route prefix, printed as `wg show allowed-ips` and `ip` print it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prefix {
    /// The network address.
    pub(crate) addr: IpAddr,
    /// The prefix length.
    pub(crate) len: u8,
}

impl Prefix {
    /// Whether `self` contains `other` (the same family, no longer, and the same network).
    pub(crate) fn covers(&self, other: &Prefix) -> bool {
        fn masked(addr: IpAddr, len: u8) -> u128 {
            let (bits, width) = match addr {
                IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
                IpAddr::V6(v6) => (u128::from(v6), 128),
            };
            let len = u32::from(len).min(width);
            if len == 0 {
                0
            } else {
                bits >> (width - len)
            }
        }
        self.addr.is_ipv6() == other.addr.is_ipv6()
            && self.len <= other.len
            && masked(self.addr, self.len) == masked(other.addr, self.len)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ntop(self.addr), self.len)
    }
}

/// A routing table named by `Table =`: the text as written and the id it names (`None` for a
/// name missing from `rt_tables`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableRef {
    /// The text, as the trace prints it.
    pub(crate) text: String,
    /// The numeric id.
    pub(crate) id: Option<u32>,
}

/// One operation, with what it needs to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// `ip link add dev IF type wireguard`; if that fails, run `userspace IF` when given.
    AddLink {
        /// The userspace implementation to fall back to, as named (the trace prints the name).
        userspace: Option<String>,
    },
    /// A hook, run with bash.
    RunHook {
        /// The command, `%i` expanded.
        hook: String,
        /// Every hook of the same phase as written: the positional parameters the reference's
        /// `execute_hooks` function has while it evaluates one.
        phase: Vec<String>,
    },
    /// `wg addconf IF <(echo "$WG_CONFIG")`; holds `WG_CONFIG` with `echo`'s newline.
    AddConf(String),
    /// The `Relay` and `RelayPublicKey` extension keys, sent to wg-tunnel over UAPI (see
    /// wg-tunnel(8) NAT TRAVERSAL).
    SetRelay {
        /// `host:port`, as written.
        relay: String,
        /// The relay's public key, base64, as written (empty if missing).
        public_key: String,
    },
    /// `ip -4|-6 address add ADDR dev IF`.
    AddAddress(InterfaceAddress),
    /// `ip link set mtu MTU up dev IF`.
    SetMtuUp(Mtu),
    /// `resolvconf -a NAME -m 0 -x`, fed `input`.
    SetDns {
        /// The resolvconf record name: the interface-order prefix and the interface.
        name: String,
        /// `nameserver` lines and an optional `search` line.
        input: String,
    },
    /// `ip -4|-6 route add PREFIX dev IF [table T]`.
    AddRoute {
        /// The destination.
        prefix: Prefix,
        /// The table; `None` for the main table (no `table` word).
        table: Option<TableRef>,
    },
    /// `wg set IF fwmark N`.
    SetFwmark(u32),
    /// `ip -4|-6 rule add …`.
    AddRule {
        /// Whether it is an IPv6 rule.
        v6: bool,
        /// The rule.
        rule: Rule,
    },
    /// `sysctl -q net.ipv4.conf.all.src_valid_mark=1`.
    SetSrcValidMark,
    /// `nft -f <(echo -n "$nftcmd")`.
    Nft(String),
    /// `iptables-restore -n` or `ip6tables-restore -n`, fed `input`.
    IptablesRestore {
        /// `ip6tables-restore` rather than `iptables-restore`.
        v6: bool,
        /// The ruleset text.
        input: String,
    },
    /// `resolvconf -d NAME -f`.
    UnsetDns {
        /// The resolvconf record name.
        name: String,
    },
    /// `ip -4|-6 rule delete …`.
    DeleteRule {
        /// Whether it is an IPv6 rule.
        v6: bool,
        /// The attributes the deleted rule must match.
        rule: Rule,
    },
    /// `ip link delete dev IF`.
    DeleteLink,
}

/// What has to be undone if a later step of `up` fails. The reference's rollback is `del_if`,
/// which undoes these in its own fixed order ([`plan_del_if`]); everything else an `up` step
/// creates (addresses, routes) disappears with the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Undo {
    /// The link exists: delete it.
    Link,
    /// The resolvconf record exists: delete it.
    Dns,
    /// Firewall rules exist: remove them.
    Firewall,
    /// Policy rules exist: `del_if` finds and deletes them.
    Rules,
}

impl Op {
    /// What undoes this operation once it has succeeded.
    pub(crate) fn undo(&self) -> Option<Undo> {
        match self {
            Op::AddLink { .. } => Some(Undo::Link),
            Op::SetDns { .. } => Some(Undo::Dns),
            Op::Nft(_) | Op::IptablesRestore { .. } => Some(Undo::Firewall),
            Op::AddRule { .. } => Some(Undo::Rules),
            _ => None,
        }
    }

    /// The command the reference runs for this operation, as its `[#]` trace shows it
    /// (process substitutions appear as bash names them, `/dev/fd/63`).
    pub(crate) fn trace(&self, interface: &str) -> String {
        let proto = |v6: bool| if v6 { "-6" } else { "-4" };
        match self {
            Op::AddLink { .. } => format!("ip link add dev {interface} type wireguard"),
            Op::RunHook { hook, .. } => hook.clone(),
            Op::AddConf(_) => format!("wg addconf {interface} /dev/fd/63"),
            Op::SetRelay { relay, .. } => format!("relay {interface} {relay}"),
            Op::AddAddress(address) => format!(
                "ip {} address add {address} dev {interface}",
                proto(address.is_ipv6())
            ),
            Op::SetMtuUp(mtu) => format!("ip link set mtu {mtu} up dev {interface}"),
            Op::SetDns { name, .. } => format!("resolvconf -a {name} -m 0 -x"),
            Op::AddRoute { prefix, table } => {
                let mut text = format!(
                    "ip {} route add {prefix} dev {interface}",
                    proto(prefix.addr.is_ipv6())
                );
                if let Some(table) = table {
                    text.push_str(" table ");
                    text.push_str(&table.text);
                }
                text
            }
            Op::SetFwmark(mark) => format!("wg set {interface} fwmark {mark}"),
            Op::AddRule { v6, rule } => format!("ip {} rule add {}", proto(*v6), rule_words(rule)),
            Op::SetSrcValidMark => "sysctl -q net.ipv4.conf.all.src_valid_mark=1".to_owned(),
            Op::Nft(_) => "nft -f /dev/fd/63".to_owned(),
            Op::IptablesRestore { v6, .. } => {
                format!("{}-restore -n", if *v6 { "ip6tables" } else { "iptables" })
            }
            Op::UnsetDns { name } => format!("resolvconf -d {name} -f"),
            Op::DeleteRule { v6, rule } => {
                format!("ip {} rule delete {}", proto(*v6), rule_words(rule))
            }
            Op::DeleteLink => format!("ip link delete dev {interface}"),
        }
    }
}

/// The `ip rule` words for a rule wg-quick adds or deletes.
fn rule_words(rule: &Rule) -> String {
    let mut words = String::new();
    if let Some(mark) = rule.fwmark {
        if rule.invert {
            words.push_str("not ");
        }
        words.push_str(&format!("fwmark {mark} "));
    }
    if rule.table == RT_TABLE_MAIN {
        words.push_str("table main");
    } else {
        words.push_str(&format!("table {}", rule.table));
    }
    if let Some(len) = rule.suppress_prefixlen {
        words.push_str(&format!(" suppress_prefixlength {len}"));
    }
    words
}

/// One step of a plan: an operation, and whether its failure is ignored (`|| true`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Step {
    /// The operation.
    pub(crate) op: Op,
    /// The reference ignores this step's failure.
    pub(crate) tolerant: bool,
}

impl From<Op> for Step {
    fn from(op: Op) -> Step {
        Step {
            op,
            tolerant: false,
        }
    }
}

fn hooks<'h>(interface: &str, hooks: &'h [String]) -> impl Iterator<Item = Step> + 'h {
    let interface = interface.to_owned();
    hooks.iter().map(move |hook| {
        Op::RunHook {
            hook: substitute_interface(hook, &interface),
            phase: hooks.to_vec(),
        }
        .into()
    })
}

/// Phase one of `up`: the link, PreUp hooks, the config, the addresses (`add_if`,
/// `execute_hooks PRE_UP`, `set_config`, `add_addr`).
pub(crate) fn plan_create(
    interface: &str,
    config: &QuickConfig,
    userspace: Option<String>,
) -> Vec<Step> {
    let mut steps = vec![Op::AddLink { userspace }.into()];
    steps.extend(hooks(interface, &config.pre_up));
    steps.push(Op::AddConf(format!("{}\n", config.wg_config)).into());
    if config.relay.is_some() || config.relay_public_key.is_some() {
        steps.push(
            Op::SetRelay {
                relay: config.relay.clone().unwrap_or_default(),
                public_key: config.relay_public_key.clone().unwrap_or_default(),
            }
            .into(),
        );
    }
    steps.extend(
        config
            .addresses
            .iter()
            .map(|address| Op::AddAddress(address.clone()).into()),
    );
    steps
}

/// Phase two of `up` (`set_mtu_up`): the MTU as set, or else the smallest MTU of the routes to
/// the endpoints (each `None` when the route has none to offer), else that of the default
/// route, else 1500; minus 80 for the worst-case IPv6 overhead.
pub(crate) fn plan_mtu(
    config: &QuickConfig,
    endpoint_mtus: &[Option<u32>],
    default_route_mtu: impl FnOnce() -> Option<u32>,
) -> Vec<Step> {
    const NONE: u32 = i32::MAX as u32;
    if let Some(mtu) = &config.mtu {
        return vec![Op::SetMtuUp(mtu.clone()).into()];
    }
    let mut mtu = NONE;
    for candidate in endpoint_mtus.iter().flatten() {
        mtu = mtu.min(*candidate);
    }
    if mtu == NONE {
        if let Some(candidate) = default_route_mtu() {
            mtu = mtu.min(candidate);
        }
    }
    if mtu == 0 || mtu >= NONE {
        mtu = 1500;
    }
    vec![Op::SetMtuUp(Mtu::from(mtu.saturating_sub(80))).into()]
}

/// What phase three of `up` needs to know about the system, gathered after the link is up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RouteFacts {
    /// The device's allowed IPs, as `wg show IF allowed-ips` lists them.
    pub(crate) allowed_ips: Vec<Prefix>,
    /// The device's fwmark, if set and non-zero.
    pub(crate) fwmark: Option<u32>,
    /// The main-table routes through the interface (`ip route show dev IF`).
    pub(crate) device_routes: Vec<Prefix>,
    /// Every table that holds an IPv4 or IPv6 route.
    pub(crate) used_tables: BTreeSet<u32>,
    /// The interface's IPv4 addresses, in kernel order.
    pub(crate) addresses_v4: Vec<IpAddr>,
    /// The interface's IPv6 addresses, in kernel order.
    pub(crate) addresses_v6: Vec<IpAddr>,
    /// `net.ipv4.conf.all.src_valid_mark` is already 1.
    pub(crate) src_valid_mark: bool,
    /// `nft` is in PATH (else the iptables-restore fallback is used).
    pub(crate) have_nft: bool,
    /// The resolvconf interface-order prefix (`tun.` or empty).
    pub(crate) resolvconf_prefix: String,
    /// The id of the `Table =` value, if it names one.
    pub(crate) table_id: Option<u32>,
}

/// The `Table =` value, when it sends routes to an explicit table (not empty, `auto`, `off`).
fn explicit_table(config: &QuickConfig) -> Option<&Table> {
    config
        .table
        .as_ref()
        .filter(|table| !matches!(table, Table::Auto | Table::Off))
}

/// The allowed IPs in the order `sort -nr -k 2 -t /` puts them: longest prefix first, ties in
/// reverse byte order of the text (sort's last-resort comparison, reversed by `-r`).
pub(crate) fn sort_routes(list: &[Prefix]) -> Vec<Prefix> {
    let mut sorted = list.to_vec();
    sorted.sort_by(|a, b| {
        b.len
            .cmp(&a.len)
            .then_with(|| b.to_string().cmp(&a.to_string()))
    });
    sorted
}

/// The resolvconf input of `set_dns`.
fn resolvconf_input(config: &QuickConfig) -> String {
    let mut input: String = config
        .dns
        .iter()
        .map(|server| format!("nameserver {server}\n"))
        .collect();
    if !config.dns_search.is_empty() {
        input.push_str(&format!("search {}\n", config.dns_search.join(" ")));
    }
    input
}

/// Phase three of `up`: `set_dns`, `add_route` for every allowed IP (with `add_default` for
/// the `/0` ones), and the PostUp hooks.
pub(crate) fn plan_routes(interface: &str, config: &QuickConfig, facts: &RouteFacts) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    if !config.dns.is_empty() {
        steps.push(
            Op::SetDns {
                name: format!("{}{interface}", facts.resolvconf_prefix),
                input: resolvconf_input(config),
            }
            .into(),
        );
    }
    let mut fwmark = facts.fwmark;
    if config.table != Some(Table::Off) {
        for prefix in sort_routes(&facts.allowed_ips) {
            if let Some(table) = explicit_table(config) {
                let table = TableRef {
                    text: table.to_string(),
                    id: facts.table_id,
                };
                steps.push(
                    Op::AddRoute {
                        prefix,
                        table: Some(table),
                    }
                    .into(),
                );
            } else if prefix.len == 0 {
                add_default(interface, prefix, facts, &mut fwmark, &mut steps);
            } else if !facts.device_routes.iter().any(|r| r.covers(&prefix)) {
                steps.push(
                    Op::AddRoute {
                        prefix,
                        table: None,
                    }
                    .into(),
                );
            }
        }
    }
    steps.extend(hooks(interface, &config.post_up));
    steps
}

/// `add_default`: policy routing for a `/0` allowed IP, and the firewall rules that keep
/// packets addressed to the tunnel from arriving through other interfaces.
fn add_default(
    interface: &str,
    prefix: Prefix,
    facts: &RouteFacts,
    fwmark: &mut Option<u32>,
    steps: &mut Vec<Step>,
) {
    let table = match *fwmark {
        Some(mark) => mark,
        None => {
            let mut table = FIRST_TABLE;
            while facts.used_tables.contains(&table) {
                table += 1;
            }
            steps.push(Op::SetFwmark(table).into());
            *fwmark = Some(table);
            table
        }
    };
    let v6 = prefix.addr.is_ipv6();
    let not_fwmark = Rule {
        table,
        fwmark: Some(table),
        invert: true,
        ..Rule::default()
    };
    steps.push(
        Op::AddRule {
            v6,
            rule: not_fwmark,
        }
        .into(),
    );
    steps.push(
        Op::AddRule {
            v6,
            rule: suppress_rule(),
        }
        .into(),
    );
    steps.push(
        Op::AddRoute {
            prefix,
            table: Some(TableRef {
                text: table.to_string(),
                id: Some(table),
            }),
        }
        .into(),
    );
    if !v6 && !facts.src_valid_mark {
        steps.push(Op::SetSrcValidMark.into());
    }
    let addresses = if v6 {
        &facts.addresses_v6
    } else {
        &facts.addresses_v4
    };
    steps.push(
        if facts.have_nft {
            Op::Nft(nft_rules(interface, v6, addresses, table))
        } else {
            Op::IptablesRestore {
                v6,
                input: iptables_rules(interface, addresses, table),
            }
        }
        .into(),
    );
}

/// `table main suppress_prefixlength 0`.
fn suppress_rule() -> Rule {
    Rule {
        table: RT_TABLE_MAIN,
        suppress_prefixlen: Some(0),
        ..Rule::default()
    }
}

/// The nft script of `add_default` for one family.
fn nft_rules(interface: &str, v6: bool, addresses: &[IpAddr], table: u32) -> String {
    let pf = if v6 { "ip6" } else { "ip" };
    let name = format!("wg-quick-{interface}");
    let mut text = format!("add table {pf} {name}\n");
    for (chain, hook, priority) in [
        ("preraw", "prerouting", -300),
        ("premangle", "prerouting", -150),
        ("postmangle", "postrouting", -150),
    ] {
        text.push_str(&format!(
            "add chain {pf} {name} {chain} {{ type filter hook {hook} priority {priority}; }}\n"
        ));
    }
    for address in addresses {
        text.push_str(&format!(
            "add rule {pf} {name} preraw iifname != \"{interface}\" {pf} daddr {} fib saddr type != local drop\n",
            Ntop(*address)
        ));
    }
    // The trailing spaces are the reference's.
    text.push_str(&format!(
        "add rule {pf} {name} postmangle meta l4proto udp mark {table} ct mark set mark \n"
    ));
    text.push_str(&format!(
        "add rule {pf} {name} premangle meta l4proto udp meta mark set ct mark \n"
    ));
    text
}

/// The comment that marks wg-quick's iptables rules for `interface`.
fn iptables_marker(interface: &str) -> String {
    format!("-m comment --comment \"wg-quick(8) rule for {interface}\"")
}

/// The iptables-restore input of `add_default` for one family.
fn iptables_rules(interface: &str, addresses: &[IpAddr], table: u32) -> String {
    let marker = iptables_marker(interface);
    let mut text = String::from("*raw\n");
    for address in addresses {
        text.push_str(&format!(
            "-I PREROUTING ! -i {interface} -d {} -m addrtype ! --src-type LOCAL -j DROP {marker}\n",
            Ntop(*address)
        ));
    }
    text.push_str(&format!(
        "COMMIT\n*mangle\n-I POSTROUTING -m mark --mark {table} -p udp -j CONNMARK --save-mark {marker}\n\
         -I PREROUTING -p udp -j CONNMARK --restore-mark {marker}\nCOMMIT\n"
    ));
    text
}

/// What tearing an interface down needs to know, gathered before the link is deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TeardownFacts {
    /// This run set the DNS (rollback of `up`).
    pub(crate) have_dns: bool,
    /// This run set firewall rules (rollback of `up`).
    pub(crate) have_firewall: bool,
    /// The device's fwmark, if set and non-zero.
    pub(crate) fwmark: Option<u32>,
    /// Some allowed IP of the device is a `/0`.
    pub(crate) has_default_route: bool,
    /// The IPv4 rules.
    pub(crate) rules_v4: Vec<Rule>,
    /// The IPv6 rules.
    pub(crate) rules_v6: Vec<Rule>,
    /// `nft list tables`, if `nft` is in PATH.
    pub(crate) nft_tables: Option<String>,
    /// `iptables-save` and `ip6tables-save`, if `iptables` is in PATH.
    pub(crate) iptables_save: Option<(String, String)>,
    /// The resolvconf interface-order prefix.
    pub(crate) resolvconf_prefix: String,
}

/// `del_if`: undo this run's DNS and firewall, delete the full-tunnel rules, delete the link.
pub(crate) fn plan_del_if(
    interface: &str,
    config: &QuickConfig,
    facts: &TeardownFacts,
) -> Vec<Step> {
    let mut steps = Vec::new();
    if facts.have_dns {
        steps.extend(plan_unset_dns(interface, config, facts, false));
    }
    if facts.have_firewall {
        steps.extend(plan_remove_firewall(interface, facts, false));
    }
    let auto = matches!(config.table, None | Some(Table::Auto));
    if let (true, Some(table), true) = (auto, facts.fwmark, facts.has_default_route) {
        for (v6, rules) in [(false, &facts.rules_v4), (true, &facts.rules_v6)] {
            let lookups = rules.iter().filter(|r| r.table == table).count();
            steps.extend((0..lookups).map(|_| {
                Step::from(Op::DeleteRule {
                    v6,
                    rule: Rule {
                        table,
                        ..Rule::default()
                    },
                })
            }));
            let suppressing = rules
                .iter()
                .filter(|r| {
                    r.table == RT_TABLE_MAIN && r.suppress_prefixlen == Some(0) && !r.has_source
                })
                .count();
            steps.extend((0..suppressing).map(|_| {
                Step::from(Op::DeleteRule {
                    v6,
                    rule: suppress_rule(),
                })
            }));
        }
    }
    steps.push(Op::DeleteLink.into());
    steps
}

/// `unset_dns`: only when the config has nameservers.
fn plan_unset_dns(
    interface: &str,
    config: &QuickConfig,
    facts: &TeardownFacts,
    tolerant: bool,
) -> Vec<Step> {
    if config.dns.is_empty() {
        return Vec::new();
    }
    vec![Step {
        op: Op::UnsetDns {
            name: format!("{}{interface}", facts.resolvconf_prefix),
        },
        tolerant,
    }]
}

/// `remove_firewall`: delete the interface's nft tables, and its marked iptables rules.
fn plan_remove_firewall(interface: &str, facts: &TeardownFacts, tolerant: bool) -> Vec<Step> {
    let mut steps = Vec::new();
    if let Some(tables) = &facts.nft_tables {
        let suffix = format!(" wg-quick-{interface}");
        let script: String = tables
            .lines()
            .map(|line| line.trim_matches([' ', '\t']))
            .filter(|line| line.ends_with(&suffix))
            .map(|table| format!("delete {table}\n"))
            .collect();
        if !script.is_empty() {
            steps.push(Step {
                op: Op::Nft(script),
                tolerant,
            });
        }
    }
    if let Some((v4, v6)) = &facts.iptables_save {
        let marker = iptables_marker(interface);
        for (v6, saved) in [(false, v4), (true, v6)] {
            let mut input = String::new();
            let mut found = false;
            for line in saved.lines().map(|line| line.trim_matches([' ', '\t'])) {
                let ours = line.starts_with("-A ") && line.contains(&marker);
                if !(line.starts_with('*') || line == "COMMIT" || ours) {
                    continue;
                }
                match line.strip_prefix("-A") {
                    Some(rest) => {
                        found = true;
                        input.push_str("-D");
                        input.push_str(rest);
                    }
                    None => input.push_str(line),
                }
                input.push('\n');
            }
            if found {
                steps.push(Step {
                    op: Op::IptablesRestore { v6, input },
                    tolerant,
                });
            }
        }
    }
    steps
}

/// `cmd_down` after PreDown and SaveConfig: `del_if`, `unset_dns || true`,
/// `remove_firewall || true`, then the PostDown hooks.
pub(crate) fn plan_down(interface: &str, config: &QuickConfig, facts: &TeardownFacts) -> Vec<Step> {
    let mut steps = plan_del_if(interface, config, facts);
    steps.extend(plan_unset_dns(interface, config, facts, true));
    steps.extend(plan_remove_firewall(interface, facts, true));
    steps.extend(hooks(interface, &config.post_down));
    steps
}

/// PreDown hooks.
pub(crate) fn plan_pre_down(interface: &str, config: &QuickConfig) -> Vec<Step> {
    hooks(interface, &config.pre_down).collect()
}

/// The file `save_config` writes: a new `[Interface]` header (the live addresses and
/// nameservers, the MTU if the file sets one, Table, SaveConfig and the hooks, verbatim) in
/// place of the first `[Interface]` line of `wg showconf`.
pub(crate) fn saved_config(
    config: &QuickConfig,
    addresses: &[String],
    nameservers: &[String],
    mtu: Option<u32>,
    showconf: &str,
) -> String {
    let mut header = String::from("[Interface]\n");
    for address in addresses {
        header.push_str(&format!("Address = {address}\n"));
    }
    for server in nameservers {
        header.push_str(&format!("DNS = {server}\n"));
    }
    if let (Some(_), Some(mtu)) = (&config.mtu, mtu) {
        header.push_str(&format!("MTU = {mtu}\n"));
    }
    if let Some(table) = &config.table {
        header.push_str(&format!("Table = {table}\n"));
    }
    if config.save_config {
        header.push_str("SaveConfig = true\n");
    }
    for (key, hooks) in [
        ("PreUp", &config.pre_up),
        ("PostUp", &config.post_up),
        ("PreDown", &config.pre_down),
        ("PostDown", &config.post_down),
    ] {
        for hook in hooks {
            header.push_str(&format!("{key} = {hook}\n"));
        }
    }
    // `$(…)` drops the trailing newlines and `echo` adds one back.
    let text = showconf.replacen("[Interface]\n", &header, 1);
    format!("{}\n", text.trim_end_matches('\n'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wg_config::QuickParser;

    fn prefix(text: &str) -> Prefix {
        let (addr, len) = text.split_once('/').unwrap();
        Prefix {
            addr: addr.parse().unwrap(),
            len: len.parse().unwrap(),
        }
    }

    fn traces(steps: &[Step]) -> Vec<String> {
        steps.iter().map(|s| s.op.trace("wg0")).collect()
    }

    const ROAD_WARRIOR: &str = "\
[Interface]
PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
Address = 10.0.0.2/24, fd00::2/64
DNS = 10.0.0.1, example.com
PreUp = echo pre %i
PostUp = echo post %i # kept

[Peer]
PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
AllowedIPs = 0.0.0.0/0, ::/0
Endpoint = 192.0.2.1:51820
";

    #[test]
    fn test_plan_create() {
        let config = QuickParser::parse_str(ROAD_WARRIOR).unwrap();
        let steps = plan_create("wg0", &config, Some("wg-tunnel".into()));
        assert_eq!(
            traces(&steps),
            [
                "ip link add dev wg0 type wireguard",
                "echo pre wg0",
                "wg addconf wg0 /dev/fd/63",
                "ip -4 address add 10.0.0.2/24 dev wg0",
                "ip -6 address add fd00::2/64 dev wg0",
            ]
        );
        let Op::AddConf(text) = &steps[2].op else {
            panic!("addconf expected")
        };
        assert!(text.starts_with("[Interface]\nPrivateKey = "));
        assert!(text.ends_with("Endpoint = 192.0.2.1:51820\n\n"));
    }

    #[test]
    fn test_plan_mtu() {
        let auto = QuickConfig::default();
        let mtu = |endpoints: &[Option<u32>], default: Option<u32>| {
            traces(&plan_mtu(&auto, endpoints, || default))
        };
        assert_eq!(mtu(&[], None), ["ip link set mtu 1420 up dev wg0"]);
        assert_eq!(
            mtu(&[Some(9000), None, Some(1400)], Some(1280)),
            ["ip link set mtu 1320 up dev wg0"]
        );
        assert_eq!(
            mtu(&[None], Some(1280)),
            ["ip link set mtu 1200 up dev wg0"]
        );
        let set = QuickConfig {
            mtu: Some(Mtu::from(1234)),
            ..QuickConfig::default()
        };
        assert_eq!(
            traces(&plan_mtu(&set, &[Some(1)], || None)),
            ["ip link set mtu 1234 up dev wg0"]
        );
    }

    #[test]
    fn test_sort_routes() {
        let list: Vec<Prefix> = [
            "10.0.0.0/24",
            "0.0.0.0/0",
            "::/0",
            "192.168.1.0/24",
            "10.1.0.0/16",
            "fd00::/64",
        ]
        .map(prefix)
        .to_vec();
        let sorted: Vec<String> = sort_routes(&list).iter().map(ToString::to_string).collect();
        assert_eq!(
            sorted,
            [
                "fd00::/64",
                "192.168.1.0/24",
                "10.0.0.0/24",
                "10.1.0.0/16",
                "::/0",
                "0.0.0.0/0"
            ]
        );
    }

    #[test]
    fn test_plan_routes_full_tunnel() {
        let config = QuickParser::parse_str(ROAD_WARRIOR).unwrap();
        let facts = RouteFacts {
            allowed_ips: vec![prefix("0.0.0.0/0"), prefix("::/0")],
            used_tables: [51820].into(),
            addresses_v4: vec!["10.0.0.2".parse().unwrap()],
            addresses_v6: vec!["fd00::2".parse().unwrap(), "fe80::1".parse().unwrap()],
            have_nft: true,
            resolvconf_prefix: "tun.".into(),
            ..RouteFacts::default()
        };
        let steps = plan_routes("wg0", &config, &facts);
        assert_eq!(
            traces(&steps),
            [
                "resolvconf -a tun.wg0 -m 0 -x",
                "wg set wg0 fwmark 51821",
                "ip -6 rule add not fwmark 51821 table 51821",
                "ip -6 rule add table main suppress_prefixlength 0",
                "ip -6 route add ::/0 dev wg0 table 51821",
                "nft -f /dev/fd/63",
                "ip -4 rule add not fwmark 51821 table 51821",
                "ip -4 rule add table main suppress_prefixlength 0",
                "ip -4 route add 0.0.0.0/0 dev wg0 table 51821",
                "sysctl -q net.ipv4.conf.all.src_valid_mark=1",
                "nft -f /dev/fd/63",
                "echo post wg0 # kept",
            ]
        );
        let Op::SetDns { input, .. } = &steps[0].op else {
            panic!()
        };
        assert_eq!(input, "nameserver 10.0.0.1\nsearch example.com\n");
        let Op::Nft(v6) = &steps[5].op else { panic!() };
        assert_eq!(
            v6,
            "add table ip6 wg-quick-wg0\n\
             add chain ip6 wg-quick-wg0 preraw { type filter hook prerouting priority -300; }\n\
             add chain ip6 wg-quick-wg0 premangle { type filter hook prerouting priority -150; }\n\
             add chain ip6 wg-quick-wg0 postmangle { type filter hook postrouting priority -150; }\n\
             add rule ip6 wg-quick-wg0 preraw iifname != \"wg0\" ip6 daddr fd00::2 fib saddr type != local drop\n\
             add rule ip6 wg-quick-wg0 preraw iifname != \"wg0\" ip6 daddr fe80::1 fib saddr type != local drop\n\
             add rule ip6 wg-quick-wg0 postmangle meta l4proto udp mark 51821 ct mark set mark \n\
             add rule ip6 wg-quick-wg0 premangle meta l4proto udp meta mark set ct mark \n"
        );
        assert_eq!(steps[3].op.undo(), Some(Undo::Rules));
        assert_eq!(steps[5].op.undo(), Some(Undo::Firewall));

        // An existing fwmark is the table; iptables when there is no nft; sysctl already set.
        let facts = RouteFacts {
            allowed_ips: vec![prefix("0.0.0.0/0")],
            fwmark: Some(1234),
            addresses_v4: vec!["10.0.0.2".parse().unwrap()],
            src_valid_mark: true,
            ..RouteFacts::default()
        };
        let steps = plan_routes("wg0", &QuickConfig::default(), &facts);
        assert_eq!(
            traces(&steps),
            [
                "ip -4 rule add not fwmark 1234 table 1234",
                "ip -4 rule add table main suppress_prefixlength 0",
                "ip -4 route add 0.0.0.0/0 dev wg0 table 1234",
                "iptables-restore -n",
            ]
        );
        let Op::IptablesRestore { input, .. } = &steps[3].op else {
            panic!()
        };
        assert_eq!(
            input,
            "*raw\n\
             -I PREROUTING ! -i wg0 -d 10.0.0.2 -m addrtype ! --src-type LOCAL -j DROP -m comment --comment \"wg-quick(8) rule for wg0\"\n\
             COMMIT\n*mangle\n\
             -I POSTROUTING -m mark --mark 1234 -p udp -j CONNMARK --save-mark -m comment --comment \"wg-quick(8) rule for wg0\"\n\
             -I PREROUTING -p udp -j CONNMARK --restore-mark -m comment --comment \"wg-quick(8) rule for wg0\"\n\
             COMMIT\n"
        );
    }

    #[test]
    fn test_plan_routes_tables() {
        let facts = RouteFacts {
            allowed_ips: vec![
                prefix("10.0.0.0/24"),
                prefix("10.0.0.5/32"),
                prefix("0.0.0.0/0"),
            ],
            device_routes: vec![prefix("10.0.0.0/24")],
            table_id: Some(1234),
            ..RouteFacts::default()
        };
        let with = |table: &str| {
            let config =
                QuickParser::parse_str(&format!("[Interface]\nTable = {table}\n")).unwrap();
            traces(&plan_routes("wg0", &config, &facts))
        };
        assert!(with("off").is_empty());
        assert_eq!(
            with("1234"),
            [
                "ip -4 route add 10.0.0.5/32 dev wg0 table 1234",
                "ip -4 route add 10.0.0.0/24 dev wg0 table 1234",
                "ip -4 route add 0.0.0.0/0 dev wg0 table 1234",
            ]
        );
        // The connected /24 covers both the /24 and the /32: only the default is added.
        assert_eq!(
            with("auto")[..2],
            [
                "wg set wg0 fwmark 51820",
                "ip -4 rule add not fwmark 51820 table 51820"
            ]
        );
        assert!(prefix("10.0.0.0/24").covers(&prefix("10.0.0.5/32")));
        assert!(!prefix("10.0.0.0/24").covers(&prefix("10.0.0.0/16")));
        assert!(!prefix("::/0").covers(&prefix("10.0.0.0/16")));
        assert!(prefix("0.0.0.0/0").covers(&prefix("10.0.0.0/16")));
    }

    #[test]
    fn test_plan_teardown() {
        let config = QuickParser::parse_str(ROAD_WARRIOR).unwrap();
        let suppress = Rule {
            table: RT_TABLE_MAIN,
            suppress_prefixlen: Some(0),
            ..Rule::default()
        };
        let facts = TeardownFacts {
            fwmark: Some(51820),
            has_default_route: true,
            rules_v4: vec![
                Rule {
                    table: RT_TABLE_MAIN,
                    ..Rule::default()
                },
                Rule {
                    table: 51820,
                    fwmark: Some(51820),
                    invert: true,
                    ..Rule::default()
                },
                suppress.clone(),
            ],
            rules_v6: vec![suppress],
            nft_tables: Some("table ip wg-quick-wg0\ntable ip other\ntable ip6 wg-quick-wg0\n".into()),
            iptables_save: Some((
                "*raw\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j X -m comment --comment \"wg-quick(8) rule for wg0\"\n-A PREROUTING -j Y\nCOMMIT\n".into(),
                "*raw\nCOMMIT\n".into(),
            )),
            resolvconf_prefix: String::new(),
            ..TeardownFacts::default()
        };
        let steps = plan_down("wg0", &config, &facts);
        assert_eq!(
            traces(&steps),
            [
                "ip -4 rule delete table 51820",
                "ip -4 rule delete table main suppress_prefixlength 0",
                "ip -6 rule delete table main suppress_prefixlength 0",
                "ip link delete dev wg0",
                "resolvconf -d wg0 -f",
                "nft -f /dev/fd/63",
                "iptables-restore -n",
            ]
        );
        assert!(steps[4].tolerant && !steps[3].tolerant);
        assert_eq!(
            steps[5].op,
            Op::Nft("delete table ip wg-quick-wg0\ndelete table ip6 wg-quick-wg0\n".into())
        );
        let Op::IptablesRestore { input, .. } = &steps[6].op else {
            panic!()
        };
        assert_eq!(
            input,
            "*raw\n-D PREROUTING -j X -m comment --comment \"wg-quick(8) rule for wg0\"\nCOMMIT\n"
        );
        // Rollback of an `up` that set DNS and firewall: those first, then as above.
        let rollback = TeardownFacts {
            have_dns: true,
            have_firewall: true,
            nft_tables: Some("table ip wg-quick-wg0\n".into()),
            ..TeardownFacts::default()
        };
        assert_eq!(
            traces(&plan_del_if("wg0", &config, &rollback)),
            [
                "resolvconf -d wg0 -f",
                "nft -f /dev/fd/63",
                "ip link delete dev wg0"
            ]
        );
    }

    #[test]
    fn test_saved_config() {
        let config = QuickParser::parse_str(
            "[Interface]\nAddress = 10.0.0.1/24\nMTU = 1400\nTable = off\nSaveConfig = true\n\
             PostUp = a 2>&1 # x\nPreDown = b\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n",
        )
        .unwrap();
        let showconf = "[Interface]\nListenPort = 1\nPrivateKey = k\n\n[Peer]\nPublicKey = p\n\n";
        assert_eq!(
            saved_config(
                &config,
                &["10.0.0.1/24".into(), "fe80::1/64".into()],
                &["1.1.1.1".into()],
                Some(1380),
                showconf
            ),
            "[Interface]\nAddress = 10.0.0.1/24\nAddress = fe80::1/64\nDNS = 1.1.1.1\nMTU = 1380\n\
             Table = off\nSaveConfig = true\nPostUp = a 2>&1 # x\nPreDown = b\nListenPort = 1\n\
             PrivateKey = k\n\n[Peer]\nPublicKey = p\n"
        );
    }
}
