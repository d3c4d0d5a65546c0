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

use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::GenlMessage;
use netlink_sys::protocols::{NETLINK_GENERIC, NETLINK_ROUTE};
use wg_config::{Device, Endpoint};

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

/// The names of every link of kind "wireguard", in kernel order: an `RTM_GETLINK` dump read
/// as the reference reads it. Names are bytes (Linux allows any but `/`, `:` and whitespace,
/// so a link named in another encoding must not break the listing), and a dump interrupted
/// because links changed meanwhile (`NLM_F_DUMP_INTR`) counts with what arrived before.
pub(crate) fn list() -> io::Result<Vec<Vec<u8>>> {
    const RTM_GETLINK: u16 = libc::RTM_GETLINK;
    const IFINFOMSG_LEN: usize = 16;
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_DUMP) as u16;
    let mut request = Vec::with_capacity(16 + IFINFOMSG_LEN);
    request.extend_from_slice(&((16 + IFINFOMSG_LEN) as u32).to_ne_bytes());
    request.extend_from_slice(&RTM_GETLINK.to_ne_bytes());
    request.extend_from_slice(&flags.to_ne_bytes());
    request.extend_from_slice(&[0; 8 + IFINFOMSG_LEN]); // seq, port; AF_UNSPEC, all zero

    let mut names = Vec::new();
    let mut socket = RawSocket::open(NETLINK_ROUTE)?;
    let result = socket.transact(&mut request, |payload| {
        if let Some(name) = wireguard_link_name(payload.get(IFINFOMSG_LEN..).unwrap_or_default()) {
            names.push(name);
        }
        Ok(())
    });
    match result {
        Err(e) if e.raw_os_error() != Some(libc::EINTR) => Err(e),
        _ => Ok(names),
    }
}

/// The name of the link described by the attributes of an `RTM_NEWLINK` message, if it is of
/// kind "wireguard".
fn wireguard_link_name(attrs: &[u8]) -> Option<Vec<u8>> {
    const IFLA_IFNAME: u16 = libc::IFLA_IFNAME;
    const IFLA_LINKINFO: u16 = libc::IFLA_LINKINFO;
    const IFLA_INFO_KIND: u16 = libc::IFLA_INFO_KIND;
    // A C string attribute: the bytes before the first NUL.
    let c_str = |payload: &[u8]| {
        payload
            .split(|&b| b == 0)
            .next()
            .unwrap_or_default()
            .to_vec()
    };
    let mut name = None;
    let mut wireguard = false;
    for attr in nla::Attrs::new(attrs) {
        match attr.kind {
            IFLA_IFNAME => name = Some(c_str(attr.payload)),
            IFLA_LINKINFO => {
                wireguard |= attr.nested().any(|info| {
                    info.kind == IFLA_INFO_KIND && c_str(info.payload) == FAMILY_NAME.as_bytes()
                });
            }
            _ => {}
        }
    }
    name.filter(|_| wireguard)
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
    fn test_wireguard_link_name() {
        let attr = |kind: u16, payload: &[u8]| {
            let mut out = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
            out.extend_from_slice(&kind.to_ne_bytes());
            out.extend_from_slice(payload);
            out.resize((out.len() + 3) & !3, 0);
            out
        };
        let info = |kind: &[u8]| {
            attr(
                libc::IFLA_LINKINFO | 1 << 15,
                &attr(libc::IFLA_INFO_KIND, kind),
            )
        };
        let name = attr(libc::IFLA_IFNAME, b"wg\xff0\0");
        let link = [name.clone(), attr(4, &[0; 4]), info(b"wireguard\0")].concat();
        assert_eq!(wireguard_link_name(&link), Some(b"wg\xff0".to_vec()));
        assert_eq!(
            wireguard_link_name(&[name.clone(), info(b"veth\0")].concat()),
            None
        );
        assert_eq!(wireguard_link_name(&[info(b"wireguard\0")].concat()), None);
        assert_eq!(
            wireguard_link_name(&[name, info(b"wireguard2\0")].concat()),
            None
        );
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
