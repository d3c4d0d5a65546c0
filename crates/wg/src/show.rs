//! `wg show` (upstream `src/show.c`): the pretty form, the script forms (`wg show IF param`)
//! and `dump`, for one interface or all of them.
//!
//! Output is assembled in memory and written at the end. Only the pretty form goes through the
//! colour filter; script forms never contain escapes. Pretty output lists peers by latest
//! handshake, most recent first and never-handshaken peers last; ties keep backend order,
//! as glibc's stable `qsort` does. Script forms keep backend order.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wg_config::key::Key;
use wg_config::{Device, Peer};
use wg_ipc::Ipc;

use crate::output;
use crate::terminal::{Terminal, BOLD, CYAN, GREEN, RED, RESET, YELLOW};
use crate::Invocation;

/// The longest interface name, `IFNAMSIZ - 1`; longer names are cut when a device is read.
const IFNAME_MAX: usize = 15;

/// Entry point for `show`.
pub(crate) fn main(inv: &Invocation<'_>) -> u8 {
    let args = inv.args;
    if args.len() > 3 {
        return usage(inv);
    }
    let ipc = Ipc::new();
    let first = args.get(1).map(|a| a.as_bytes());
    let param = args.get(2);
    match first {
        None | Some(b"all") => show_all(inv, &ipc, param),
        Some(b"interfaces") => {
            if args.len() > 2 {
                return usage(inv);
            }
            let names = match ipc.list() {
                Ok(names) => names,
                Err(e) => return fail(format!("Unable to list interfaces: {e}\n").as_bytes()),
            };
            let mut out = Vec::new();
            for (i, name) in names.iter().enumerate() {
                out.extend_from_slice(name);
                out.push(if i + 1 < names.len() { b' ' } else { b'\n' });
            }
            output::stdout(&out)
        }
        Some(b"-h" | b"--help" | b"help") if args.len() == 2 => {
            usage(inv);
            0
        }
        Some(_) => {
            let interface = &args[1];
            let device = match ipc.get(interface) {
                Ok(mut device) => {
                    wg_ipc::resolve::name_endpoint_scopes(&mut device);
                    device
                }
                Err(e) => return fail(format!("Unable to access interface: {e}\n").as_bytes()),
            };
            let name = device_name(interface.as_bytes());
            let mut out = Vec::new();
            let status = match param {
                Some(param) => match script(
                    &device,
                    name,
                    param,
                    false,
                    &|| nat(&ipc, interface),
                    &mut out,
                ) {
                    Ok(()) => 0,
                    Err(()) => invalid_parameter(inv, param),
                },
                None => {
                    out = pretty(&device, name);
                    0
                }
            };
            status | output::stdout(&out)
        }
    }
}

/// `wg show` / `wg show all [param]`.
fn show_all(inv: &Invocation<'_>, ipc: &Ipc, param: Option<&OsString>) -> u8 {
    let names = match ipc.list() {
        Ok(names) => names,
        Err(e) => return fail(format!("Unable to list interfaces: {e}\n").as_bytes()),
    };
    // 1 if there is at least one interface, until one of them is shown.
    let mut status = u8::from(!names.is_empty());
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let device = match ipc.get(OsStr::from_bytes(name)) {
            Ok(mut device) => {
                wg_ipc::resolve::name_endpoint_scopes(&mut device);
                device
            }
            Err(e) => {
                let mut text = b"Unable to access interface ".to_vec();
                text.extend_from_slice(name);
                text.extend_from_slice(format!(": {e}\n").as_bytes());
                output::stderr(&text);
                continue;
            }
        };
        let name = device_name(name);
        match param {
            Some(param) => {
                let interface = OsStr::from_bytes(name);
                if script(
                    &device,
                    name,
                    param,
                    true,
                    &|| nat(ipc, interface),
                    &mut out,
                )
                .is_err()
                {
                    // Whatever was printed for earlier interfaces still goes out first.
                    let write = output::stdout(&out);
                    return invalid_parameter(inv, param) | write;
                }
            }
            None => {
                out.extend_from_slice(&pretty(&device, name));
                // The separating blank line depends on there being a next name, even if that
                // interface then fails to be read.
                if i + 1 < names.len() {
                    out.push(b'\n');
                }
            }
        }
        status = 0;
    }
    status | output::stdout(&out)
}

/// The name a device is shown under: the requested name, cut to `IFNAMSIZ - 1` bytes.
fn device_name(name: &[u8]) -> &[u8] {
    &name[..name.len().min(IFNAME_MAX)]
}

fn usage(inv: &Invocation<'_>) -> u8 {
    let mut text = b"Usage: ".to_vec();
    text.extend_from_slice(inv.prog);
    text.push(b' ');
    text.extend_from_slice(inv.args[0].as_bytes());
    text.extend_from_slice(
        b" { <interface> | all | interfaces } [public-key | private-key | listen-port | fwmark | peers | preshared-keys | endpoints | allowed-ips | latest-handshakes | transfer | persistent-keepalive | dump]\n",
    );
    output::stderr(&text);
    1
}

fn invalid_parameter(inv: &Invocation<'_>, param: &OsStr) -> u8 {
    let mut text = b"Invalid parameter: `".to_vec();
    text.extend_from_slice(param.as_bytes());
    text.extend_from_slice(b"'\n");
    output::stderr(&text);
    usage(inv)
}

fn fail(message: &[u8]) -> u8 {
    output::stderr(message);
    1
}

/// A key in base64, or `(none)`. A present all-zero key is printed: a daemon that reports
/// `private_key=000…` gets it shown, as the reference does.
fn maybe_key<K: Key>(key: Option<&K>) -> String {
    key.map_or_else(|| "(none)".to_owned(), Key::to_base64)
}

/// A secret for the pretty form: hidden unless `WG_HIDE_KEYS=never`.
fn masked_key<K: Key>(key: &K) -> String {
    match std::env::var_os("WG_HIDE_KEYS") {
        Some(v) if v == "never" => key.to_base64(),
        _ => "(hidden)".to_owned(),
    }
}

fn endpoint(peer: &Peer) -> Option<String> {
    peer.endpoint.as_ref().map(ToString::to_string)
}

fn fwmark(device: &Device) -> String {
    match device.fwmark.unwrap_or(0) {
        0 => "off".to_owned(),
        mark => format!("{mark:#x}"),
    }
}

fn handshake_secs(peer: &Peer) -> u64 {
    peer.last_handshake.map_or(0, |t| t.as_secs())
}

/// One script-form parameter (`wg show IF param`); `Err` for an unknown parameter.
/// The NAT-traversal status of an interface (empty where there is none: a kernel device, a
/// daemon without the extension).
fn nat(ipc: &Ipc, interface: &OsStr) -> Vec<(String, String)> {
    ipc.get_nat(interface).unwrap_or_default()
}

/// `wg show IF paths` (an extension of ours, wg-tunnel(8) NAT TRAVERSAL): per peer, its path
/// (`direct`, `lan`, `relay`, `none` while traversal has found none, `static` for a peer that
/// is not traversed), where it leads, and since when (a Unix time, 0 if unknown).
fn paths(device: &Device, nat: &[(String, String)]) -> Vec<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let relay = nat
        .iter()
        .find(|(k, _)| k == "relay")
        .map(|(_, v)| v.clone());
    let mut lines = Vec::new();
    for peer in &device.peers {
        let hex = peer.public_key.to_hex();
        let mut fields = nat
            .iter()
            .skip_while(|(k, v)| !(k == "public_key" && *v == hex))
            .skip(1)
            .take_while(|(k, _)| k != "public_key");
        let (mut path, mut endpoint, mut age) = (None, None, None);
        for (key, value) in fields.by_ref() {
            match key.as_str() {
                "path" => path = Some(value.clone()),
                "path_endpoint" => endpoint = Some(value.clone()),
                "path_age" => age = value.parse::<u64>().ok(),
                _ => {}
            }
        }
        let line = match path {
            Some(path) => {
                let to = match path.as_str() {
                    "relay" => relay.clone(),
                    _ => endpoint,
                };
                format!(
                    "{}\t{path}\t{}\t{}",
                    peer.public_key,
                    to.unwrap_or_else(|| "(none)".to_owned()),
                    age.map_or(0, |a| now.saturating_sub(a))
                )
            }
            None => format!(
                "{}\tstatic\t{}\t0",
                peer.public_key,
                self::endpoint(peer).unwrap_or_else(|| "(none)".to_owned())
            ),
        };
        lines.push(line);
    }
    lines
}

fn script(
    device: &Device,
    name: &[u8],
    param: &OsStr,
    with_interface: bool,
    nat: &dyn Fn() -> Vec<(String, String)>,
    out: &mut Vec<u8>,
) -> Result<(), ()> {
    let line = |out: &mut Vec<u8>, text: String| {
        if with_interface {
            out.extend_from_slice(name);
            out.push(b'\t');
        }
        out.extend_from_slice(text.as_bytes());
        out.push(b'\n');
    };
    let peers = &device.peers;
    match param.as_bytes() {
        b"public-key" => line(out, maybe_key(device.public_key().as_ref())),
        b"private-key" => line(out, maybe_key(device.private_key.as_ref())),
        b"listen-port" => line(out, device.listen_port.unwrap_or(0).to_string()),
        b"fwmark" => line(out, fwmark(device)),
        b"peers" => peers
            .iter()
            .for_each(|p| line(out, p.public_key.to_base64())),
        b"preshared-keys" => peers.iter().for_each(|p| {
            line(
                out,
                format!("{}\t{}", p.public_key, maybe_key(p.preshared_key.as_ref())),
            )
        }),
        b"endpoints" => peers.iter().for_each(|p| {
            let ep = endpoint(p).unwrap_or_else(|| "(none)".to_owned());
            line(out, format!("{}\t{ep}", p.public_key))
        }),
        b"allowed-ips" => peers
            .iter()
            .for_each(|p| line(out, format!("{}\t{}", p.public_key, allowed_ips(p, " ")))),
        b"latest-handshakes" => peers
            .iter()
            .for_each(|p| line(out, format!("{}\t{}", p.public_key, handshake_secs(p)))),
        b"transfer" => peers.iter().for_each(|p| {
            line(
                out,
                format!("{}\t{}\t{}", p.public_key, p.rx_bytes, p.tx_bytes),
            )
        }),
        b"paths" => paths(device, &nat()).into_iter().for_each(|l| line(out, l)),
        b"persistent-keepalive" => peers
            .iter()
            .for_each(|p| line(out, format!("{}\t{}", p.public_key, keepalive(p)))),
        b"dump" => {
            line(
                out,
                format!(
                    "{}\t{}\t{}\t{}",
                    maybe_key(device.private_key.as_ref()),
                    maybe_key(device.public_key().as_ref()),
                    device.listen_port.unwrap_or(0),
                    fwmark(device)
                ),
            );
            for p in peers {
                line(
                    out,
                    format!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        p.public_key,
                        maybe_key(p.preshared_key.as_ref()),
                        endpoint(p).unwrap_or_else(|| "(none)".to_owned()),
                        allowed_ips(p, ","),
                        handshake_secs(p),
                        p.rx_bytes,
                        p.tx_bytes,
                        keepalive(p)
                    ),
                );
            }
        }
        _ => return Err(()),
    }
    Ok(())
}

fn allowed_ips(peer: &Peer, separator: &str) -> String {
    if peer.allowed_ips.is_empty() {
        return "(none)".to_owned();
    }
    let items: Vec<String> = peer.allowed_ips.iter().map(ToString::to_string).collect();
    items.join(separator)
}

fn keepalive(peer: &Peer) -> String {
    match peer.persistent_keepalive.unwrap_or(0) {
        0 => "off".to_owned(),
        n => n.to_string(),
    }
}

/// The pretty form of one device.
fn pretty(device: &Device, name: &[u8]) -> Vec<u8> {
    let mut t = Terminal::from_env();
    let print = |t: &mut Terminal, s: String| t.print(s.as_bytes());
    t.print(RESET.as_bytes());
    let mut head = format!("{GREEN}{BOLD}interface{RESET}: {GREEN}").into_bytes();
    head.extend_from_slice(name);
    head.extend_from_slice(format!("{RESET}\n").as_bytes());
    t.print(&head);
    if let Some(public) = device.public_key() {
        print(&mut t, format!("  {BOLD}public key{RESET}: {public}\n"));
    }
    if let Some(private) = &device.private_key {
        print(
            &mut t,
            format!("  {BOLD}private key{RESET}: {}\n", masked_key(private)),
        );
    }
    if let Some(port) = device.listen_port.filter(|&p| p != 0) {
        print(&mut t, format!("  {BOLD}listening port{RESET}: {port}\n"));
    }
    if let Some(mark) = device.fwmark.filter(|&m| m != 0) {
        print(&mut t, format!("  {BOLD}fwmark{RESET}: {mark:#x}\n"));
    }
    let mut peers: Vec<&Peer> = device.peers.iter().collect();
    if !peers.is_empty() {
        // Most recent handshake first; never-handshaken peers last; stable for ties.
        peers.sort_by(|a, b| match (a.last_handshake, b.last_handshake) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(_), None) => std::cmp::Ordering::Less,
            (Some(a), Some(b)) => b.cmp(&a),
        });
        t.print(b"\n");
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    for (i, peer) in peers.iter().enumerate() {
        print(
            &mut t,
            format!(
                "{YELLOW}{BOLD}peer{RESET}: {YELLOW}{}{RESET}\n",
                peer.public_key
            ),
        );
        if let Some(psk) = peer.preshared_key.as_ref().filter(|k| !k.is_zero()) {
            print(
                &mut t,
                format!("  {BOLD}preshared key{RESET}: {}\n", masked_key(psk)),
            );
        }
        if let Some(ep) = endpoint(peer) {
            print(&mut t, format!("  {BOLD}endpoint{RESET}: {ep}\n"));
        }
        print(&mut t, format!("  {BOLD}allowed ips{RESET}: "));
        if peer.allowed_ips.is_empty() {
            t.print(b"(none)\n");
        }
        for (j, ip) in peer.allowed_ips.iter().enumerate() {
            let end = if j + 1 < peer.allowed_ips.len() {
                ", "
            } else {
                "\n"
            };
            let addr = wg_config::ntop::Ntop(ip.addr);
            print(&mut t, format!("{addr}{CYAN}/{RESET}{}{end}", ip.cidr));
        }
        let secs = handshake_secs(peer);
        if secs != 0 {
            print(
                &mut t,
                format!("  {BOLD}latest handshake{RESET}: {}\n", ago(secs, now)),
            );
        }
        if peer.rx_bytes != 0 || peer.tx_bytes != 0 {
            print(&mut t, format!("  {BOLD}transfer{RESET}: "));
            print(&mut t, format!("{} received, ", bytes(peer.rx_bytes)));
            print(&mut t, format!("{} sent\n", bytes(peer.tx_bytes)));
        }
        if let Some(every) = peer.persistent_keepalive.filter(|&k| k != 0) {
            let every = pretty_time(u64::from(every));
            print(
                &mut t,
                format!("  {BOLD}persistent keepalive{RESET}: every {every}\n"),
            );
        }
        if i + 1 < peers.len() {
            t.print(b"\n");
        }
    }
    t.into_bytes()
}

/// `1 year, 2 days, 1 hour, 5 minutes, 1 second`: the non-zero parts, singular when 1.
fn pretty_time(mut left: u64) -> String {
    const UNITS: [(&str, u64); 5] = [
        ("year", 365 * 86400),
        ("day", 86400),
        ("hour", 3600),
        ("minute", 60),
        ("second", 1),
    ];
    let mut parts = Vec::new();
    for (unit, size) in UNITS {
        let n = left / size;
        left %= size;
        if n != 0 {
            let plural = if n == 1 { "" } else { "s" };
            parts.push(format!("{n} {CYAN}{unit}{plural}{RESET}"));
        }
    }
    parts.join(", ")
}

/// How long ago a handshake at `secs` was, seen at `now`.
fn ago(secs: u64, now: u64) -> String {
    match now.cmp(&secs) {
        std::cmp::Ordering::Equal => "Now".to_owned(),
        std::cmp::Ordering::Less => {
            format!("({RED}System clock wound backward; connection problems may ensue.{RESET})")
        }
        std::cmp::Ordering::Greater => format!("{} ago", pretty_time(now - secs)),
    }
}

/// A byte count with a binary unit, as `%u B` or `%.2f KiB` … `TiB`.
fn bytes(b: u64) -> String {
    const KIB: u64 = 1024;
    // The divisions mirror the reference's double arithmetic, so rounding matches.
    let (value, unit) = match b {
        b if b < KIB => return format!("{b} {CYAN}B{RESET}"),
        b if b < KIB.pow(2) => (b as f64 / 1024.0, "KiB"),
        b if b < KIB.pow(3) => (b as f64 / (1024.0 * 1024.0), "MiB"),
        b if b < KIB.pow(4) => (b as f64 / (1024.0 * 1024.0 * 1024.0), "GiB"),
        b => (b as f64 / (1024.0 * 1024.0 * 1024.0) / 1024.0, "TiB"),
    };
    format!("{value:.2} {CYAN}{unit}{RESET}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(s: &str) -> String {
        s.replace(CYAN, "").replace(RESET, "").replace(RED, "")
    }

    #[test]
    fn test_pretty_time() {
        assert_eq!(plain(&pretty_time(65)), "1 minute, 5 seconds");
        assert_eq!(
            plain(&pretty_time(65535)),
            "18 hours, 12 minutes, 15 seconds"
        );
        assert_eq!(
            plain(&pretty_time(365 * 86400 + 86400 + 3600 + 60 + 1)),
            "1 year, 1 day, 1 hour, 1 minute, 1 second"
        );
        assert_eq!(plain(&ago(100, 100)), "Now");
        assert_eq!(
            plain(&ago(101, 100)),
            "(System clock wound backward; connection problems may ensue.)"
        );
        assert_eq!(plain(&ago(40, 100)), "1 minute ago");
    }

    #[test]
    fn test_bytes() {
        let cases = [
            (1023, "1023 B"),
            (3881, "3.79 KiB"),
            (1 << 20, "1.00 MiB"),
            (5_000_000, "4.77 MiB"),
            (1 << 30, "1.00 GiB"),
            (1 << 40, "1.00 TiB"),
        ];
        for (n, text) in cases {
            assert_eq!(plain(&bytes(n)), text);
        }
    }
}
