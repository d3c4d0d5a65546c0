//! The kernel backend: the generic netlink family "wireguard" for devices and rtnetlink for
//! enumerating links of kind "wireguard" (wireguard-tools `src/ipc-linux.h`).
//!
//! Getting and setting devices over netlink comes with the kernel-backend work; today this
//! module resolves the family, so a missing module is reported with the reference's
//! `EPROTONOSUPPORT` ("Protocol not supported"), and it lists kernel WireGuard links.

use std::io;

use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::GenlMessage;
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::protocols::{NETLINK_GENERIC, NETLINK_ROUTE};

use crate::netlink;

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

/// Reads a kernel device. Until the netlink device codec lands, a present module answers
/// `EOPNOTSUPP` rather than a wrong state.
pub(crate) fn unsupported() -> io::Result<()> {
    family_id()?;
    Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
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
