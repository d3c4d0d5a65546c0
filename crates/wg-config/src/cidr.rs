//! Allowed IPs: one prefix ([`AllowedIp`]) and the comma-separated list parser shared by the
//! config file's `AllowedIPs` and `wg set … allowed-ips`.
//!
//! Item syntax follows wireguard-tools `parse_allowedips` at upstream HEAD: `[+|-]ip[/cidr]`.
//! An IP containing `:` is IPv6, anything else must be a strict dotted-quad IPv4 address;
//! `/cidr` must be decimal and at most 32 or 128; a missing `/cidr` means a host route. A
//! prefix with bits set past the mask is accepted with a [`Warning`] (the kernel and
//! wireguard-go store the [`AllowedIp::masked`] form). The warnings are returned as values:
//! printing them is the binary's job.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::value::{parse_decimal, strip_c_space};

/// A non-fatal diagnostic from parsing, printed by the reference on stderr.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Warning {
    /// An allowed IP had bits set past its prefix length; holds the item as written
    /// (`ip/cidr`, without any `+`/`-`).
    NonzeroHostPart(String),
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::NonzeroHostPart(item) => {
                write!(f, "Warning: AllowedIP has nonzero host part: {item}")
            }
        }
    }
}

/// An allowed-IPs item that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AllowedIpError {
    /// The address part was not an IPv6 address (when it has a `:`) or a dotted-quad IPv4
    /// address; holds the address part.
    #[error("Unable to parse IP address: `{0}'")]
    Address(String),
    /// The `/cidr` part was not a decimal number within range; holds the whole item (without
    /// any `+`/`-`).
    #[error("AllowedIP is not in the correct format: `{0}'")]
    Format(String),
}

/// One allowed-IP prefix of a peer.
///
/// In a configuration delta, `remove` asks to remove the prefix from this peer (a `-` item,
/// upstream HEAD); in a device state it is always `false`. `addr` may have bits set past
/// `cidr` as parsed; the kernel and wireguard-go store [`AllowedIp::masked`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AllowedIp {
    /// The network address.
    pub addr: IpAddr,
    /// The prefix length: at most 32 for IPv4, 128 for IPv6.
    pub cidr: u8,
    /// In a delta: remove this prefix from the peer instead of adding it.
    pub remove: bool,
}

impl AllowedIp {
    /// A prefix to add. `None` if `cidr` is longer than the address.
    pub fn new(addr: IpAddr, cidr: u8) -> Option<AllowedIp> {
        (cidr <= max_cidr(addr)).then_some(AllowedIp {
            addr,
            cidr,
            remove: false,
        })
    }

    /// The same prefix with the bits past `cidr` cleared (`10.0.0.5/8` becomes `10.0.0.0/8`).
    pub fn masked(&self) -> AllowedIp {
        let addr = match self.addr {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.cidr)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.cidr))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        };
        AllowedIp { addr, ..*self }
    }

    /// Whether `addr` has bits set past `cidr`.
    pub fn has_host_bits(&self) -> bool {
        self.masked().addr != self.addr
    }

    /// Whether `ip` falls inside this prefix (always false across address families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let probe = AllowedIp { addr: ip, ..*self };
        self.addr.is_ipv4() == ip.is_ipv4() && probe.masked().addr == self.masked().addr
    }

    /// The identity of the prefix regardless of host bits and the remove flag: what the
    /// kernel's allowed-IPs table is keyed by.
    pub fn prefix(&self) -> (IpAddr, u8) {
        (self.masked().addr, self.cidr)
    }
}

/// The longest prefix length for the address family of `addr`.
pub fn max_cidr(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// Parses one item without a `+`/`-` prefix, returning it and any warning.
fn parse_item(entry: &str) -> Result<(AllowedIp, Option<Warning>), AllowedIpError> {
    let (ip, mask) = match entry.split_once('/') {
        Some((ip, mask)) => (ip, Some(mask)),
        None => (entry, None),
    };
    // Like inet_pton: a `:` selects IPv6; IPv4 must be four decimal octets.
    let addr = if ip.contains(':') {
        ip.parse::<Ipv6Addr>().map(IpAddr::V6)
    } else {
        ip.parse::<Ipv4Addr>().map(IpAddr::V4)
    }
    .map_err(|_| AllowedIpError::Address(ip.to_owned()))?;
    let cidr = match mask {
        None => max_cidr(addr),
        Some(mask) => parse_decimal(mask)
            .and_then(|n| u8::try_from(n).ok())
            .filter(|&n| n <= max_cidr(addr))
            .ok_or_else(|| AllowedIpError::Format(entry.to_owned()))?,
    };
    let item = AllowedIp {
        addr,
        cidr,
        remove: false,
    };
    // Without a mask the prefix is a full host route, so there can be no host bits.
    let warning = item
        .has_host_bits()
        .then(|| Warning::NonzeroHostPart(entry.to_owned()));
    Ok((item, warning))
}

impl FromStr for AllowedIp {
    type Err = AllowedIpError;

    /// Parses one item, `[+|-]ip[/cidr]`. Host bits are kept (see [`AllowedIp::masked`]);
    /// use [`parse_allowed_ips`] to also get the warning.
    fn from_str(s: &str) -> Result<Self, AllowedIpError> {
        let (remove, entry) = split_sign(s);
        parse_item(entry).map(|(item, _)| AllowedIp { remove, ..item })
    }
}

impl fmt::Display for AllowedIp {
    /// `ip/cidr`, preceded by `-` for a removal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.remove { "-" } else { "" };
        write!(f, "{sign}{}/{}", crate::ntop::Ntop(self.addr), self.cidr)
    }
}

/// Splits a leading `+` or `-` off an item: `(is_removal, rest)`.
fn split_sign(s: &str) -> (bool, &str) {
    if let Some(rest) = s.strip_prefix('-') {
        (true, rest)
    } else {
        (false, s.strip_prefix('+').unwrap_or(s))
    }
}

/// The result of parsing one allowed-IPs list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllowedIpList {
    /// The items in order, `remove` set on `-` items.
    pub items: Vec<AllowedIp>,
    /// Whether the peer's allowed IPs are replaced: true unless some item had a `+`/`-`
    /// prefix, which makes the list incremental. The caller sets the peer entry's flag to this
    /// value, so with several lists for one entry the last one decides, as upstream.
    pub replace: bool,
    /// Items with host bits set, in order.
    pub warnings: Vec<Warning>,
}

/// Parses a comma-separated allowed-IPs list as written (the config file has already deleted
/// all whitespace). An empty value is an empty list that replaces: "remove all".
pub fn parse_allowed_ips(value: &str) -> Result<AllowedIpList, AllowedIpError> {
    let mut list = AllowedIpList::default();
    parse_allowed_ips_into(value, &mut list).map(|()| list)
}

/// [`parse_allowed_ips`] item by item into `list`: sets `list.replace` (true unless an item
/// has a `+`/`-` prefix), then appends each item and its warning. On an error `list` keeps what
/// was parsed before the failing item; the reference prints each warning as it parses the
/// item, so those warnings come out *before* the error message.
pub fn parse_allowed_ips_into(value: &str, list: &mut AllowedIpList) -> Result<(), AllowedIpError> {
    list.replace = true;
    if value.is_empty() {
        return Ok(());
    }
    for raw in value.split(',') {
        if raw.starts_with(['+', '-']) {
            list.replace = false;
        }
        let (remove, entry) = split_sign(raw);
        let (item, warning) = parse_item(entry)?;
        list.items.push(AllowedIp { remove, ..item });
        list.warnings.extend(warning);
    }
    Ok(())
}

/// Parses a `wg set … allowed-ips` argument: all whitespace is deleted first, so
/// `"10.0.0.0/8, 10.1.0.0 /16"` works, and `""` means "replace with nothing".
pub fn parse_allowed_ips_arg(arg: &str) -> Result<AllowedIpList, AllowedIpError> {
    parse_allowed_ips(&strip_c_space(arg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> AllowedIp {
        s.parse().unwrap()
    }

    #[test]
    fn test_parse_item() {
        assert_eq!(
            ip("10.0.0.0/8"),
            AllowedIp::new("10.0.0.0".parse().unwrap(), 8).unwrap()
        );
        assert_eq!(ip("10.0.0.1").cidr, 32);
        assert_eq!(ip("fd00::1").cidr, 128);
        assert_eq!(ip("::/0").cidr, 0);
        assert_eq!(ip("10.0.0.0/08").cidr, 8);
        assert!(ip("-10.0.0.0/8").remove);
        assert!(!ip("+10.0.0.0/8").remove);
        let err = |s: &str| s.parse::<AllowedIp>().unwrap_err().to_string();
        assert_eq!(
            err("10.0.0.256"),
            "Unable to parse IP address: `10.0.0.256'"
        );
        assert_eq!(err("10.0.0"), "Unable to parse IP address: `10.0.0'");
        // Like glibc's inet_pton, an octet with a leading zero is refused.
        assert_eq!(err("010.0.0.1"), "Unable to parse IP address: `010.0.0.1'");
        assert_eq!(err("10.0.0/8"), "Unable to parse IP address: `10.0.0'");
        assert_eq!(err(""), "Unable to parse IP address: `'");
        assert_eq!(
            err("fe80::1%lo"),
            "Unable to parse IP address: `fe80::1%lo'"
        );
        assert_eq!(err("+-10.0.0.0"), "Unable to parse IP address: `-10.0.0.0'");
        assert_eq!(
            err("10.0.0.0/33"),
            "AllowedIP is not in the correct format: `10.0.0.0/33'"
        );
        assert_eq!(
            err("10.0.0.0/"),
            "AllowedIP is not in the correct format: `10.0.0.0/'"
        );
        assert_eq!(
            err("10.0.0.0/+8"),
            "AllowedIP is not in the correct format: `10.0.0.0/+8'"
        );
        assert_eq!(
            err("10.0.0.0/8/8"),
            "AllowedIP is not in the correct format: `10.0.0.0/8/8'"
        );
        assert_eq!(
            err("fe80::1/129"),
            "AllowedIP is not in the correct format: `fe80::1/129'"
        );
        assert_eq!(
            err("-fe80::1/129"),
            "AllowedIP is not in the correct format: `fe80::1/129'"
        );
    }

    #[test]
    fn test_masked() {
        assert_eq!(ip("10.0.0.5/8").masked().to_string(), "10.0.0.0/8");
        assert_eq!(ip("2001:DB8::1/32").masked().to_string(), "2001:db8::/32");
        assert_eq!(ip("10.0.0.5/0").masked().to_string(), "0.0.0.0/0");
        assert_eq!(ip("10.0.0.5/32").masked().to_string(), "10.0.0.5/32");
        assert_eq!(ip("ffff::1/127").masked().to_string(), "ffff::/127");
        assert!(ip("10.0.0.1/24").has_host_bits());
        assert!(!ip("10.0.0.0/24").has_host_bits());
        assert!(ip("10.0.0.0/8").contains("10.255.0.1".parse().unwrap()));
        assert!(!ip("10.0.0.0/8").contains("11.0.0.1".parse().unwrap()));
        assert!(!ip("::/0").contains("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn test_list() {
        let list = parse_allowed_ips("10.192.122.3/32,10.192.124.1/24").unwrap();
        assert!(list.replace);
        assert_eq!(
            list.items,
            vec![ip("10.192.122.3/32"), ip("10.192.124.1/24")]
        );
        assert_eq!(
            list.warnings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["Warning: AllowedIP has nonzero host part: 10.192.124.1/24"]
        );

        let list = parse_allowed_ips("10.0.0.0/8,-10.1.0.0/16,+fd00::/64").unwrap();
        assert!(!list.replace, "any prefix makes the list incremental");
        assert_eq!(
            list.items,
            vec![ip("10.0.0.0/8"), ip("-10.1.0.0/16"), ip("fd00::/64")]
        );

        let empty = parse_allowed_ips("").unwrap();
        assert!(empty.replace && empty.items.is_empty());
        assert_eq!(
            parse_allowed_ips("10.0.0.0/8,").unwrap_err().to_string(),
            "Unable to parse IP address: `'"
        );

        let arg = parse_allowed_ips_arg("10.0.0.0/8, 10.1.0.0 /16").unwrap();
        assert_eq!(arg.items, vec![ip("10.0.0.0/8"), ip("10.1.0.0/16")]);
        let none = parse_allowed_ips_arg(" ").unwrap();
        assert!(none.replace && none.items.is_empty());
    }

    #[test]
    fn test_list_into_keeps_warnings_before_error() {
        let mut list = AllowedIpList::default();
        let err = parse_allowed_ips_into("10.0.0.1/24,+fd00::1/64,10.0.0.256", &mut list);
        assert_eq!(
            err.unwrap_err().to_string(),
            "Unable to parse IP address: `10.0.0.256'"
        );
        let warnings: Vec<String> = list.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            [
                "Warning: AllowedIP has nonzero host part: 10.0.0.1/24",
                "Warning: AllowedIP has nonzero host part: fd00::1/64",
            ]
        );
        assert_eq!(list.items.len(), 2);
        assert!(!list.replace);
    }

    proptest! {
        #![proptest_config(ProptestConfig { rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed), cases: 1024, ..ProptestConfig::default() })]

        #[test]
        fn prop_display_round_trips(addr in any::<IpAddr>(), cidr in any::<u8>(), remove in any::<bool>()) {
            let cidr = cidr % (max_cidr(addr) + 1);
            let item = AllowedIp { addr, cidr, remove };
            prop_assert_eq!(item.to_string().parse::<AllowedIp>(), Ok(item));
            let masked = item.masked();
            prop_assert!(!masked.has_host_bits());
            prop_assert_eq!(masked.masked(), masked);
            prop_assert!(item.contains(addr));
        }
    }
}
