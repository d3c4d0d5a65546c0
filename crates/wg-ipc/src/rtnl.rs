//! rtnetlink operations on links, addresses, routes and rules: what `wg-quick` would otherwise
//! do by running `ip`. Each request is built like the one iproute2 6.x sends for the equivalent
//! `ip` command (named in each function's doc), so the kernel state that results is the same.
//!
//! Requests are blocking, one socket each. The socket asks for extended ACKs, so a failure
//! carries the kernel's explanation where it gives one; [`RtnlError`]'s `Display` is what `ip`
//! prints for it (`Error: …` or `RTNETLINK answers: …`).

use std::fmt;
use std::io;
use std::net::IpAddr;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope, RouteType,
};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::protocols::NETLINK_ROUTE;
use netlink_sys::{Socket, SocketAddr};

/// `NLM_F_ACK_TLVS` in an error message's header: TLVs follow the echoed request header.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLMSGERR_ATTR_MSG`: the extended ACK's text.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// The size of `struct nlmsghdr`, which a capped error message echoes.
const NLMSG_HDRLEN: usize = 16;
/// `RTAX_MTU`, the MTU's bit in the `RTAX_LOCK` mask.
const RTAX_MTU: u32 = 2;
/// The main routing table.
pub const RT_TABLE_MAIN: u32 = 254;

/// A failed rtnetlink request: the errno and the kernel's extended ACK message, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtnlError {
    /// The errno, positive.
    pub errno: i32,
    /// The kernel's explanation (`NLMSGERR_ATTR_MSG`), if it sent one.
    pub message: Option<String>,
}

impl RtnlError {
    fn io(e: io::Error) -> RtnlError {
        RtnlError {
            errno: e.raw_os_error().unwrap_or(libc::EIO),
            message: None,
        }
    }
}

impl fmt::Display for RtnlError {
    /// The text `ip` prints: `Error: <message>.` or `RTNETLINK answers: <strerror>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(message) => {
                let dot = if message.ends_with('.') { "" } else { "." };
                write!(f, "Error: {message}{dot}")
            }
            None => {
                let text = io::Error::from_raw_os_error(self.errno).to_string();
                let cut = text.rfind(" (os error ").unwrap_or(text.len());
                write!(f, "RTNETLINK answers: {}", &text[..cut])
            }
        }
    }
}

impl std::error::Error for RtnlError {}

/// Sends one request and collects the inner messages of the reply (every part of a dump).
fn request(
    payload: RouteNetlinkMessage,
    flags: u16,
) -> Result<Vec<RouteNetlinkMessage>, RtnlError> {
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(RtnlError::io)?;
    socket.bind_auto().map_err(RtnlError::io)?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(RtnlError::io)?;
    // Best effort: older kernels simply send no messages.
    let _ = socket.set_ext_ack(true);
    let _ = socket.set_cap_ack(true);

    let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
    let mut message = NetlinkMessage::new(
        NetlinkHeader::default(),
        NetlinkPayload::InnerMessage(payload),
    );
    message.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    message.header.sequence_number = 1;
    message.finalize();
    let mut tx = vec![0u8; message.buffer_len()];
    message.serialize(&mut tx);
    socket.send(&tx, 0).map_err(RtnlError::io)?;

    let mut replies = Vec::new();
    let mut rx = vec![0u8; 1 << 18];
    loop {
        let len = socket.recv(&mut &mut rx[..], 0).map_err(RtnlError::io)?;
        let mut offset = 0;
        while offset < len {
            let message = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[offset..len])
                .map_err(|_| RtnlError::io(io::Error::from_raw_os_error(libc::EPROTO)))?;
            let length = message.header.length as usize;
            let header_flags = message.header.flags;
            match message.payload {
                NetlinkPayload::Done(_) => return Ok(replies),
                NetlinkPayload::Error(e) => match e.code {
                    None if !dump => return Ok(replies),
                    None => {}
                    Some(code) => {
                        let message = if header_flags & NLM_F_ACK_TLVS != 0 {
                            extack_message(e.header.get(NLMSG_HDRLEN..).unwrap_or_default())
                        } else {
                            None
                        };
                        return Err(RtnlError {
                            errno: code.get().abs(),
                            message,
                        });
                    }
                },
                NetlinkPayload::InnerMessage(inner) => replies.push(inner),
                _ => {}
            }
            if length == 0 {
                break;
            }
            offset += (length + 3) & !3;
        }
    }
}

/// The `NLMSGERR_ATTR_MSG` string among the TLVs of an extended ACK.
fn extack_message(mut tlvs: &[u8]) -> Option<String> {
    while tlvs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([tlvs[0], tlvs[1]]));
        let kind = u16::from_ne_bytes([tlvs[2], tlvs[3]]) & 0x3fff;
        if len < 4 || len > tlvs.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let value = &tlvs[4..len];
            let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
            return Some(String::from_utf8_lossy(&value[..end]).into_owned());
        }
        tlvs = tlvs.get((len + 3) & !3..).unwrap_or_default();
    }
    None
}

/// What wg-quick needs to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The interface index.
    pub index: u32,
    /// The MTU.
    pub mtu: u32,
}

fn link_from(message: &LinkMessage) -> Link {
    let mtu = message
        .attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Mtu(mtu) => Some(*mtu),
            _ => None,
        })
        .unwrap_or(0);
    Link {
        index: message.header.index,
        mtu,
    }
}

fn get_link(message: LinkMessage) -> Result<Option<Link>, RtnlError> {
    match request(RouteNetlinkMessage::GetLink(message), 0) {
        Ok(replies) => Ok(replies.iter().find_map(|reply| match reply {
            RouteNetlinkMessage::NewLink(link) => Some(link_from(link)),
            _ => None,
        })),
        Err(e) if e.errno == libc::ENODEV => Ok(None),
        Err(e) => Err(e),
    }
}

/// The link named `name` (`ip link show dev NAME`); `None` if there is none.
pub fn link(name: &str) -> Result<Option<Link>, RtnlError> {
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(name.to_owned()));
    get_link(message)
}

/// The link with index `index`; `None` if there is none.
pub fn link_by_index(index: u32) -> Result<Option<Link>, RtnlError> {
    let mut message = LinkMessage::default();
    message.header.index = index;
    get_link(message)
}

/// `ip link add dev NAME type KIND`.
pub fn link_add(name: &str, kind: &str) -> Result<(), RtnlError> {
    let kind = match kind {
        "wireguard" => InfoKind::Wireguard,
        other => InfoKind::Other(other.to_owned()),
    };
    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(name.to_owned()));
    message
        .attributes
        .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind)]));
    request(
        RouteNetlinkMessage::NewLink(message),
        NLM_F_CREATE | NLM_F_EXCL,
    )
    .map(drop)
}

/// `ip link delete dev NAME`, for the link's index.
pub fn link_delete(index: u32) -> Result<(), RtnlError> {
    let mut message = LinkMessage::default();
    message.header.index = index;
    request(RouteNetlinkMessage::DelLink(message), 0).map(drop)
}

/// `ip link set mtu MTU up dev NAME`, for the link's index.
pub fn link_set_mtu_up(index: u32, mtu: u32) -> Result<(), RtnlError> {
    let mut message = LinkMessage::default();
    message.header.index = index;
    message.header.flags = LinkFlags::Up;
    message.header.change_mask = LinkFlags::Up;
    message.attributes.push(LinkAttribute::Mtu(mtu));
    request(RouteNetlinkMessage::NewLink(message), 0).map(drop)
}

fn family(v6: bool) -> AddressFamily {
    if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

/// An address on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address {
    /// The local address (`IFA_LOCAL`, else `IFA_ADDRESS`).
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix_len: u8,
}

/// The addresses of the link `index` in kernel order (`ip -o addr show dev NAME`): every
/// family when `v6` is `None`, IPv4 first, as a dump of all families returns them.
pub fn addresses(index: u32, v6: Option<bool>) -> Result<Vec<Address>, RtnlError> {
    let mut message = AddressMessage::default();
    message.header.family = v6.map_or(AddressFamily::Unspec, family);
    let replies = request(RouteNetlinkMessage::GetAddress(message), NLM_F_DUMP)?;
    let mut list = Vec::new();
    for reply in replies {
        let RouteNetlinkMessage::NewAddress(address) = reply else {
            continue;
        };
        if address.header.index != index {
            continue;
        }
        let find = |local: bool| {
            address.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) if local => Some(*ip),
                AddressAttribute::Address(ip) if !local => Some(*ip),
                _ => None,
            })
        };
        if let Some(addr) = find(true).or_else(|| find(false)) {
            list.push(Address {
                addr,
                prefix_len: address.header.prefix_len,
            });
        }
    }
    Ok(list)
}

/// `ip -4|-6 address add ADDR[/PREFIX] dev NAME`; without a prefix, a host prefix.
pub fn address_add(index: u32, addr: IpAddr, prefix_len: Option<u8>) -> Result<(), RtnlError> {
    let mut message = AddressMessage::default();
    message.header.family = family(addr.is_ipv6());
    message.header.prefix_len = prefix_len.unwrap_or(if addr.is_ipv6() { 128 } else { 32 });
    message.header.index = index;
    // iproute2 gives loopback addresses host scope and everything else universe scope.
    if addr.is_loopback() {
        message.header.scope = netlink_packet_route::address::AddressScope::Host;
    }
    message.attributes.push(AddressAttribute::Local(addr));
    message.attributes.push(AddressAttribute::Address(addr));
    request(
        RouteNetlinkMessage::NewAddress(message),
        NLM_F_CREATE | NLM_F_EXCL,
    )
    .map(drop)
}

/// A route, as much of it as wg-quick looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The table id (`RTA_TABLE`, else the header's).
    pub table: u32,
    /// The destination; `None` for a default route.
    pub destination: Option<IpAddr>,
    /// The destination prefix length.
    pub prefix_len: u8,
    /// The output interface.
    pub oif: Option<u32>,
    /// The MTU metric (`mtu N` in `ip route` output), if any and not locked.
    pub mtu: Option<u32>,
    /// Whether it is a unicast route (`ip route show` lists other types with a type word).
    pub unicast: bool,
}

fn route_from(message: &RouteMessage) -> Route {
    let mut route = Route {
        table: u32::from(message.header.table),
        destination: None,
        prefix_len: message.header.destination_prefix_length,
        oif: None,
        mtu: None,
        unicast: message.header.kind == RouteType::Unicast,
    };
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Table(table) => route.table = *table,
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                route.destination = Some(IpAddr::V4(*ip))
            }
            RouteAttribute::Destination(RouteAddress::Inet6(ip)) => {
                route.destination = Some(IpAddr::V6(*ip))
            }
            RouteAttribute::Oif(oif) => route.oif = Some(*oif),
            RouteAttribute::Metrics(metrics) => {
                // A locked MTU is printed `mtu lock N`, which wg-quick's `mtu N` pattern
                // does not match: leave it out, as the reference does.
                let locked = metrics
                    .iter()
                    .any(|m| matches!(m, RouteMetric::Lock(mask) if mask & (1 << RTAX_MTU) != 0));
                for metric in metrics {
                    if let RouteMetric::Mtu(mtu) = metric {
                        route.mtu = (!locked).then_some(*mtu);
                    }
                }
            }
            _ => {}
        }
    }
    route
}

/// Every route of one family, all tables (`ip -4|-6 route show table all`).
pub fn routes(v6: bool) -> Result<Vec<Route>, RtnlError> {
    let mut message = RouteMessage::default();
    message.header.address_family = family(v6);
    let replies = request(RouteNetlinkMessage::GetRoute(message), NLM_F_DUMP)?;
    Ok(replies
        .iter()
        .filter_map(|reply| match reply {
            RouteNetlinkMessage::NewRoute(route) => Some(route_from(route)),
            _ => None,
        })
        .collect())
}

/// `ip route get ADDR`: the route the kernel would use.
pub fn route_get(addr: IpAddr) -> Result<Route, RtnlError> {
    let mut message = RouteMessage::default();
    message.header.address_family = family(addr.is_ipv6());
    message.header.destination_prefix_length = if addr.is_ipv6() { 128 } else { 32 };
    message
        .attributes
        .push(RouteAttribute::Destination(addr.into()));
    let replies = request(RouteNetlinkMessage::GetRoute(message), 0)?;
    replies
        .iter()
        .find_map(|reply| match reply {
            RouteNetlinkMessage::NewRoute(route) => Some(route_from(route)),
            _ => None,
        })
        .ok_or(RtnlError {
            errno: libc::ENETUNREACH,
            message: None,
        })
}

/// Puts a table id in the header when it fits, else in `RTA_TABLE`/`FRA_TABLE`, as iproute2.
fn split_table(table: u32) -> (u8, bool) {
    match u8::try_from(table) {
        Ok(small) => (small, false),
        Err(_) => (RouteHeader::RT_TABLE_UNSPEC, true),
    }
}

/// `ip -4|-6 route add DST/PREFIX dev NAME [table TABLE]`.
pub fn route_add(
    destination: IpAddr,
    prefix_len: u8,
    oif: u32,
    table: u32,
) -> Result<(), RtnlError> {
    let mut message = RouteMessage::default();
    let header = &mut message.header;
    header.address_family = family(destination.is_ipv6());
    header.destination_prefix_length = prefix_len;
    header.protocol = RouteProtocol::Boot;
    header.kind = RouteType::Unicast;
    // A device route without a gateway is link-scoped for IPv4; IPv6 ignores the scope.
    header.scope = if destination.is_ipv6() {
        RouteScope::Universe
    } else {
        RouteScope::Link
    };
    let (small, attribute) = split_table(table);
    header.table = small;
    if attribute {
        message.attributes.push(RouteAttribute::Table(table));
    }
    message
        .attributes
        .push(RouteAttribute::Destination(destination.into()));
    message.attributes.push(RouteAttribute::Oif(oif));
    request(
        RouteNetlinkMessage::NewRoute(message),
        NLM_F_CREATE | NLM_F_EXCL,
    )
    .map(drop)
}

/// A policy routing rule, as much of it as wg-quick adds, deletes and looks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    /// The table looked up.
    pub table: u32,
    /// `fwmark N` (with `not`: [`Rule::invert`]).
    pub fwmark: Option<u32>,
    /// `not`.
    pub invert: bool,
    /// `suppress_prefixlength N`.
    pub suppress_prefixlen: Option<u32>,
    /// Whether the rule has a source prefix (`from` something other than `all`).
    pub has_source: bool,
}

fn rule_message(v6: bool, rule: &Rule) -> RuleMessage {
    let mut message = RuleMessage::default();
    message.header.family = family(v6);
    let (small, attribute) = split_table(rule.table);
    message.header.table = small;
    if attribute {
        message.attributes.push(RuleAttribute::Table(rule.table));
    }
    if rule.invert {
        message.header.flags = RuleFlags::Invert;
    }
    if let Some(mark) = rule.fwmark {
        message.attributes.push(RuleAttribute::FwMark(mark));
    }
    if let Some(len) = rule.suppress_prefixlen {
        message
            .attributes
            .push(RuleAttribute::SuppressPrefixLen(len));
    }
    message
}

/// `ip -4|-6 rule add [not fwmark N] table T [suppress_prefixlength L]`. Like iproute2, this
/// does not ask for exclusivity: the same rule can be added twice.
pub fn rule_add(v6: bool, rule: &Rule) -> Result<(), RtnlError> {
    let mut message = rule_message(v6, rule);
    message.header.action = RuleAction::ToTable;
    request(RouteNetlinkMessage::NewRule(message), NLM_F_CREATE).map(drop)
}

/// `ip -4|-6 rule delete table T [suppress_prefixlength L]`: the kernel deletes the first rule
/// that matches the given attributes.
pub fn rule_delete(v6: bool, rule: &Rule) -> Result<(), RtnlError> {
    request(RouteNetlinkMessage::DelRule(rule_message(v6, rule)), 0).map(drop)
}

/// Every rule of one family (`ip -4|-6 rule show`).
pub fn rules(v6: bool) -> Result<Vec<Rule>, RtnlError> {
    let mut message = RuleMessage::default();
    message.header.family = family(v6);
    let replies = request(RouteNetlinkMessage::GetRule(message), NLM_F_DUMP)?;
    let mut list = Vec::new();
    for reply in replies {
        let RouteNetlinkMessage::NewRule(message) = reply else {
            continue;
        };
        let mut rule = Rule {
            table: u32::from(message.header.table),
            invert: message.header.flags.contains(RuleFlags::Invert),
            has_source: message.header.src_len != 0,
            ..Rule::default()
        };
        for attribute in &message.attributes {
            match attribute {
                RuleAttribute::Table(table) => rule.table = *table,
                RuleAttribute::FwMark(mark) => rule.fwmark = Some(*mark),
                // The kernel reports "no suppression" as -1.
                RuleAttribute::SuppressPrefixLen(len) if *len != u32::MAX => {
                    rule.suppress_prefixlen = Some(*len)
                }
                _ => {}
            }
        }
        list.push(rule);
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_error_text() {
        let plain = RtnlError {
            errno: libc::EEXIST,
            message: None,
        };
        assert_eq!(plain.to_string(), "RTNETLINK answers: File exists");
        let extack = RtnlError {
            errno: libc::EOPNOTSUPP,
            message: Some("Unknown device type".into()),
        };
        assert_eq!(extack.to_string(), "Error: Unknown device type.");
    }

    #[test]
    fn test_extack_message() {
        // NLMSGERR_ATTR_MSG "abc\0" padded, after an unrelated TLV of type 3.
        let tlvs = [
            8, 0, 3, 0, 1, 2, 3, 4, //
            8, 0, 1, 0, b'a', b'b', b'c', 0,
        ];
        assert_eq!(extack_message(&tlvs), Some("abc".into()));
        assert_eq!(extack_message(&tlvs[..8]), None);
        assert_eq!(extack_message(&[2, 0, 1]), None);
    }

    #[test]
    fn test_route_mtu_lock() {
        let mut message = RouteMessage::default();
        message.attributes.push(RouteAttribute::Metrics(vec![
            RouteMetric::Lock(1 << RTAX_MTU),
            RouteMetric::Mtu(1400),
        ]));
        assert_eq!(route_from(&message).mtu, None);
        message.attributes = vec![RouteAttribute::Metrics(vec![RouteMetric::Mtu(1300)])];
        assert_eq!(route_from(&message).mtu, Some(1300));
    }

    #[test]
    fn test_queries_run_unprivileged() {
        // Dumps work for everyone; lo exists in every namespace.
        let lo = link("lo").unwrap().expect("lo exists");
        assert_eq!(lo, link_by_index(lo.index).unwrap().unwrap());
        assert_eq!(link("no-such-link-x").unwrap(), None);
        routes(false).unwrap();
        rules(false).unwrap();
        addresses(lo.index, None).unwrap();
    }
}
