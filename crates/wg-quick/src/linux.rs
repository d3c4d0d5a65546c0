//! The facts the plans are built from, read from the running system: links, routes and rules
//! over rtnetlink, the WireGuard device over `wg_ipc::Ipc`, programs in PATH, resolvconf's
//! interface order, sysctls, and the output of `nft list tables` and `iptables-save`.
//!
//! A query that fails yields "nothing", as the reference's `$(…)` and `< <(…)` do.

use std::ffi::OsStr;
use std::fs;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use wg_config::quick::{QuickConfig, Table};
use wg_config::{Device, Endpoint};
use wg_ipc::rtnl::{self, RT_TABLE_MAIN};
use wg_ipc::Ipc;

use crate::plan::{Prefix, RouteFacts, TeardownFacts};

/// `command -v NAME` / `type -p NAME`: a name with a `/` is taken as a path, anything else is
/// looked up in PATH; the result must be an executable file.
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    fn executable(path: &Path) -> bool {
        fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    if name.is_empty() {
        return None;
    }
    if name.contains('/') {
        let path = PathBuf::from(name);
        return executable(&path).then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| {
            if dir.as_os_str().is_empty() {
                PathBuf::from(name)
            } else {
                dir.join(name)
            }
        })
        .find(|candidate| executable(candidate))
}

/// Whether the kernel has the WireGuard module loaded or built in.
pub(crate) fn kernel_module_present() -> bool {
    Path::new("/sys/module/wireguard").exists()
}

/// The device state, or `None` when `wg show` would fail.
pub(crate) fn device(interface: &str) -> Option<Device> {
    Ipc::new().get(OsStr::new(interface)).ok()
}

/// The device's fwmark as `get_fwmark` reads it: set and not `off`.
fn fwmark(device: Option<&Device>) -> Option<u32> {
    device.and_then(|d| d.fwmark).filter(|&mark| mark != 0)
}

/// The MTU a route offers: its own `mtu` metric, else its device's MTU.
fn route_mtu(route: &rtnl::Route) -> Option<u32> {
    route.mtu.or_else(|| {
        let link = rtnl::link_by_index(route.oif?).ok()??;
        Some(link.mtu)
    })
}

/// For each endpoint `wg show IF endpoints` lists in the numeric form the reference's pattern
/// accepts (no scope id), the MTU of the route to it.
pub(crate) fn endpoint_mtus(interface: &str) -> Vec<Option<u32>> {
    let Some(device) = device(interface) else {
        return Vec::new();
    };
    device
        .peers
        .iter()
        .filter_map(|peer| match &peer.endpoint {
            Some(Endpoint::Addr(SocketAddr::V4(addr))) => Some(std::net::IpAddr::V4(*addr.ip())),
            Some(Endpoint::Addr(SocketAddr::V6(addr))) if addr.scope_id() == 0 => {
                Some(std::net::IpAddr::V6(*addr.ip()))
            }
            _ => None,
        })
        .map(|addr| match rtnl::route_get(addr) {
            Ok(route) => route_mtu(&route),
            // `ip route get`'s stderr is not redirected in the reference.
            Err(e) => {
                crate::exec::stderr(format!("{e}\n").as_bytes());
                None
            }
        })
        .collect()
}

/// The MTU offered by the first line of `ip route show default` (IPv4, main table).
pub(crate) fn default_route_mtu() -> Option<u32> {
    let routes = rtnl::routes(false).ok()?;
    let route = routes
        .iter()
        .find(|r| r.table == RT_TABLE_MAIN && r.destination.is_none() && r.prefix_len == 0)?;
    route_mtu(route)
}

/// The prefix printed before the interface name in resolvconf record names: from the first
/// `NAME*` line of `/etc/resolvconf/interface-order`, unless resolvconf is a symlink (as to
/// resolvectl).
pub(crate) fn resolvconf_prefix() -> String {
    const ORDER: &str = "/etc/resolvconf/interface-order";
    if !Path::new(ORDER).is_file() {
        return String::new();
    }
    if find_program("resolvconf").is_some_and(|p| p.is_symlink()) {
        return String::new();
    }
    fs::read_to_string(ORDER)
        .map(|text| interface_order_prefix(&text))
        .unwrap_or_default()
}

/// The prefix named by the first `NAME*` line of an interface-order file (`NAME.`), or empty.
fn interface_order_prefix(text: &str) -> String {
    text.lines()
        .map(|line| line.trim_matches([' ', '\t']))
        .find_map(|line| {
            let name = line.strip_suffix('*')?;
            let valid =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            valid.then(|| format!("{name}."))
        })
        .unwrap_or_default()
}

/// The numeric id of a `Table =` value: a number, or a name from `rt_tables`.
pub(crate) fn table_id(table: &Table) -> Option<u32> {
    let text = match table {
        Table::Id(id) => return Some(*id),
        Table::Auto | Table::Off => return None,
        Table::Name(name) => name.as_str(),
    };
    match text {
        "unspec" => return Some(0),
        "default" => return Some(253),
        "main" => return Some(254),
        "local" => return Some(255),
        _ => {}
    }
    let mut files = vec![PathBuf::from("/etc/iproute2/rt_tables")];
    for dir in [
        "/etc/iproute2/rt_tables.d",
        "/usr/share/iproute2/rt_tables.d",
    ] {
        if let Ok(entries) = fs::read_dir(dir) {
            let mut more: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "conf"))
                .collect();
            more.sort();
            files.extend(more);
        }
    }
    files.push(PathBuf::from("/usr/share/iproute2/rt_tables"));
    files
        .iter()
        .find_map(|file| rt_tables_lookup(&fs::read_to_string(file).ok()?, text))
        .or_else(|| c_unsigned(text))
}

/// `strtoul(text, &end, 0)` over the whole text (decimal, `0` octal, `0x` hex), as iproute2
/// reads a table number.
fn c_unsigned(text: &str) -> Option<u32> {
    let (radix, digits) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => (16, hex),
        None if text.len() > 1 && text.starts_with('0') => (8, &text[1..]),
        None => (10, text),
    };
    u32::from_str_radix(digits, radix)
        .ok()
        .filter(|_| !digits.starts_with(['+', '-']))
}

/// The id an `rt_tables` file gives the table `name`.
fn rt_tables_lookup(contents: &str, name: &str) -> Option<u32> {
    contents.lines().find_map(|line| {
        let line = line.split('#').next()?;
        let mut words = line.split_whitespace();
        let id = words.next()?;
        if words.next()? != name {
            return None;
        }
        match id.strip_prefix("0x") {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => id.parse().ok(),
        }
    })
}

fn allowed_ips(device: Option<&Device>) -> Vec<Prefix> {
    device
        .map(|d| {
            d.peers
                .iter()
                .flat_map(|p| &p.allowed_ips)
                .map(|ip| Prefix {
                    addr: ip.addr,
                    len: ip.cidr,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// What `plan_routes` needs, read after the link is up.
pub(crate) fn route_facts(interface: &str, config: &QuickConfig) -> RouteFacts {
    let device = device(interface);
    let index = rtnl::link(interface).ok().flatten().map(|l| l.index);
    let mut facts = RouteFacts {
        allowed_ips: allowed_ips(device.as_ref()),
        fwmark: fwmark(device.as_ref()),
        src_valid_mark: fs::read_to_string("/proc/sys/net/ipv4/conf/all/src_valid_mark")
            .is_ok_and(|v| v.trim() == "1"),
        have_nft: find_program("nft").is_some(),
        resolvconf_prefix: resolvconf_prefix(),
        table_id: config.table.as_ref().and_then(table_id),
        ..RouteFacts::default()
    };
    for v6 in [false, true] {
        for route in rtnl::routes(v6).unwrap_or_default() {
            facts.used_tables.insert(route.table);
            if route.table == RT_TABLE_MAIN && index.is_some() && route.oif == index {
                let unspecified = if v6 {
                    std::net::Ipv6Addr::UNSPECIFIED.into()
                } else {
                    std::net::Ipv4Addr::UNSPECIFIED.into()
                };
                facts.device_routes.push(Prefix {
                    addr: route.destination.unwrap_or(unspecified),
                    len: route.prefix_len,
                });
            }
        }
        if let Some(index) = index {
            let addresses = rtnl::addresses(index, Some(v6)).unwrap_or_default();
            let list = addresses.into_iter().map(|a| a.addr).collect();
            if v6 {
                facts.addresses_v6 = list;
            } else {
                facts.addresses_v4 = list;
            }
        }
    }
    facts
}

/// The output of a command, if it ran and succeeded; stderr is discarded.
pub(crate) fn output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// What `plan_del_if` and `plan_down` need.
pub(crate) fn teardown_facts(
    interface: &str,
    config: &QuickConfig,
    have_dns: bool,
    have_firewall: bool,
) -> TeardownFacts {
    // `get_fwmark` runs `wg show IF fwmark` only for an automatic table, and its error shows.
    let device = if matches!(config.table, None | Some(Table::Auto)) {
        match Ipc::new().get(OsStr::new(interface)) {
            Ok(device) => Some(device),
            Err(e) => {
                crate::exec::stderr(format!("Unable to access interface: {e}\n").as_bytes());
                None
            }
        }
    } else {
        None
    };
    let iptables_save = find_program("iptables").map(|_| {
        (
            output("iptables-save", &[]).unwrap_or_default(),
            output("ip6tables-save", &[]).unwrap_or_default(),
        )
    });
    TeardownFacts {
        have_dns,
        have_firewall,
        fwmark: fwmark(device.as_ref()),
        has_default_route: allowed_ips(device.as_ref()).iter().any(|p| p.len == 0),
        rules_v4: rtnl::rules(false).unwrap_or_default(),
        rules_v6: rtnl::rules(true).unwrap_or_default(),
        nft_tables: find_program("nft")
            .map(|_| output("nft", &["list", "tables"]).unwrap_or_default()),
        iptables_save,
        resolvconf_prefix: resolvconf_prefix(),
    }
}

/// The nameservers resolvconf holds for `name` (`resolvconf -l`, else Debian's record file).
pub(crate) fn saved_nameservers(name: &str) -> Vec<String> {
    let text = output("resolvconf", &["-l", name])
        .or_else(|| fs::read_to_string(format!("/etc/resolvconf/run/interface/{name}")).ok());
    nameservers(&text.unwrap_or_default())
}

/// The `nameserver X` lines of a resolv.conf fragment, as `save_config`'s pattern takes them.
fn nameservers(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let server = line.strip_prefix("nameserver ")?;
            let valid = !server.is_empty()
                && server
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_=+:%.-".contains(&b));
            valid.then(|| server.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_interface_order_prefix() {
        let debian =
            "# comment\nlo.inet6\nlo.inet\nlo.@(dnsmasq|pdnsd)\nlo.!(pdns|pdns-recursor)\nlo\n\
                      tun*\ntap*\nhso*\nem+([0-9])?(_+([0-9]))*\n";
        assert_eq!(interface_order_prefix(debian), "tun.");
        assert_eq!(interface_order_prefix("  wg-x*  \n"), "wg-x.");
        assert_eq!(interface_order_prefix("a_b*\n*\nlo\n"), "");
    }

    #[test]
    fn test_rt_tables_lookup() {
        let text = "255\tlocal\n254 main # x\n0x10  vpn\n# 7 old\n1234 wg\n";
        assert_eq!(rt_tables_lookup(text, "vpn"), Some(16));
        assert_eq!(rt_tables_lookup(text, "wg"), Some(1234));
        assert_eq!(rt_tables_lookup(text, "old"), None);
        assert_eq!(table_id(&Table::Name("main".into())), Some(254));
        assert_eq!(table_id(&Table::Name("01234".into())), Some(0o1234));
        assert_eq!(table_id(&Table::Id(7)), Some(7));
        assert_eq!(table_id(&Table::Name("0x10".into())), Some(16));
        assert_eq!(table_id(&Table::Name("010".into())), Some(8));
        assert_eq!(table_id(&Table::Name("no-such-table".into())), None);
        assert_eq!(table_id(&Table::Off), None);
    }

    #[test]
    fn test_nameservers() {
        let text = "# resolv.conf from wg0\nnameserver 10.0.0.1\nnameserver fe80::1%wg0\n\
                    nameserver  bad\nsearch example.com\nnameserver a b\n";
        assert_eq!(nameservers(text), ["10.0.0.1", "fe80::1%wg0"]);
    }

    #[test]
    fn test_find_program() {
        assert!(find_program("sh").is_some() || find_program("/bin/sh").is_some());
        assert_eq!(find_program("/no/such/program"), None);
        assert_eq!(find_program(""), None);
    }
}
