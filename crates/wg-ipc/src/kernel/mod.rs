//! The kernel backend: the generic netlink family "wireguard" for devices and rtnetlink for
//! enumerating links of kind "wireguard" (wireguard-tools `src/ipc-linux.h`).
//!
//! The message codec lives in [`device`] (over the attribute codec [`nla`]), without I/O; this
//! module owns the sockets. A missing module is reported as the reference does, with
//! `EPROTONOSUPPORT` ("Protocol not supported") from the family lookup; a missing interface is
//! the kernel's `ENODEV`, a link of another kind its `EOPNOTSUPP`.

mod device;
mod nla;

use std::borrow::Cow;
use std::ffi::CString;
use std::io;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use wg_config::{Device, Endpoint};

use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::GenlMessage;
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::protocols::{NETLINK_GENERIC, NETLINK_ROUTE};

use crate::netlink::{self, RawSocket};

/// The generic netlink family name of WireGuard.
const FAMILY_NAME: &str = "wireguard";

/// Resolves the "wireguard" generic netlink family id. A kernel without the module answers
/// `ENOENT`, which the reference maps to `EPROTONOSUPPORT`.
pub(crate) fn family_id() -> io::Result<u16> {
    let request = GenlMessage::from_payload(GenlCtrl {
        cmd: GenlCtrlCmd::GetFamily,
        nlas: vec![GenlCtrlAttrs::FamilyName(FAMILY_NAME.to_owned())],
    });
    let replies = netlink::request(NETLINK_GENERIC, request, false).map_err(|e| {
        if e.raw_os_error() == Some(libc::ENOENT) {
            io::Error::from_raw_os_error(libc::EPROTONOSUPPORT)
        } else {
            e
        }
    })?;
    replies
        .iter()
        .flat_map(|reply| &reply.payload.nlas)
        .find_map(|nla| match nla {
            GenlCtrlAttrs::FamilyId(id) => Some(*id),
            _ => None,
        })
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EPROTONOSUPPORT))
}

/// The names of every link of kind "wireguard", in kernel order.
pub(crate) fn list() -> io::Result<Vec<Vec<u8>>> {
    let request = RouteNetlinkMessage::GetLink(LinkMessage::default());
    let replies = netlink::request(NETLINK_ROUTE, request, true)?;
    let mut names = Vec::new();
    for reply in replies {
        let RouteNetlinkMessage::NewLink(link) = reply else {
            continue;
        };
        let is_wireguard = link.attributes.iter().any(|attr| match attr {
            LinkAttribute::LinkInfo(infos) => infos
                .iter()
                .any(|info| matches!(info, LinkInfo::Kind(InfoKind::Wireguard))),
            _ => false,
        });
        let name = link.attributes.iter().find_map(|attr| match attr {
            LinkAttribute::IfName(name) => Some(name.clone().into_bytes()),
            _ => None,
        });
        if let (true, Some(name)) = (is_wireguard, name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Reads the state of the kernel interface `interface` (shorter than `IFNAMSIZ`, checked by
/// the caller) with a `WG_CMD_GET_DEVICE` dump. A dump interrupted because the device changed
/// under it (`NLM_F_DUMP_INTR`) is started again from scratch, as the reference does.
pub(crate) fn get(interface: &[u8]) -> io::Result<Device> {
    loop {
        let family = family_id()?;
        let mut socket = RawSocket::open(NETLINK_GENERIC)?;
        let mut request = device::get_request(family, interface);
        let mut parser = device::DumpParser::new();
        let result = socket.transact(&mut request, |payload| {
            let attrs = payload.get(nla::GENL_HDRLEN..).unwrap_or_default();
            parser
                .message(attrs)
                .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
        });
        match result {
            Ok(()) => return Ok(parser.finish()),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Applies the delta `device` to the kernel interface `interface` with as many
/// `WG_CMD_SET_DEVICE` messages as it takes (see [`device::set_messages`]), each sent after the
/// previous one is acknowledged. A failure stops there: what was sent before stays applied,
/// as with the reference.
pub(crate) fn set(interface: &[u8], device: &Device) -> io::Result<()> {
    let family = family_id()?;
    let device = with_scope_indices(device);
    let messages = device::set_messages(family, interface, &device, message_budget())
        .map_err(|e| io::Error::from_raw_os_error(e.errno()))?;
    let mut socket = RawSocket::open(NETLINK_GENERIC)?;
    for mut message in messages {
        socket.transact(&mut message, |_| Ok(()))?;
    }
    Ok(())
}

/// The reference's message size, libmnl's `mnl_ideal_socket_buffer_size`: the page size, at
/// most 8192 bytes.
fn message_budget() -> usize {
    // SAFETY: sysconf only reads a configuration value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).unwrap_or(4096).clamp(1024, 8192)
}

/// The delta with every endpoint of the form `fe80::1%eth0` (how resolution leaves a scoped
/// link-local address) turned into a socket address with that interface's index, which is what
/// the reference's `getaddrinfo` puts in its `sockaddr_in6`.
fn with_scope_indices(device: &Device) -> Cow<'_, Device> {
    let scoped = |peer: &wg_config::Peer| matches!(peer.endpoint, Some(Endpoint::Host { .. }));
    if !device.peers.iter().any(scoped) {
        return Cow::Borrowed(device);
    }
    let mut device = device.clone();
    for peer in &mut device.peers {
        let Some(Endpoint::Host { host, port }) = &peer.endpoint else {
            continue;
        };
        let Some((ip, scope)) = host.split_once('%') else {
            continue;
        };
        let Ok(ip) = ip.parse::<Ipv6Addr>() else {
            continue;
        };
        let index = interface_index(scope);
        peer.endpoint = Some(Endpoint::Addr(SocketAddr::V6(SocketAddrV6::new(
            ip, *port, 0, index,
        ))));
    }
    Cow::Owned(device)
}

/// `if_nametoindex`: 0 when there is no such interface.
fn interface_index(name: &str) -> u32 {
    let Ok(name) = CString::new(name) else {
        return 0;
    };
    // SAFETY: name is a valid NUL-terminated string for the duration of the call.
    unsafe { libc::if_nametoindex(name.as_ptr()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_list_runs_unprivileged() {
        // RTM_GETLINK works for everyone; this host has no WireGuard links of its own that the
        // test could rely on, so only success is asserted.
        list().expect("rtnetlink link dump");
    }

    #[test]
    fn test_family_lookup_maps_missing_module() {
        // Either the module is loaded (an id) or it is not (EPROTONOSUPPORT); nothing else.
        match family_id() {
            Ok(_) => {}
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPROTONOSUPPORT), "{e}"),
        }
    }
}
