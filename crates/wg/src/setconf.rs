//! `wg setconf`, `addconf` and `syncconf` (upstream `src/setconf.c`): read a wg(8)
//! configuration file line by line, then send it as one delta.
//!
//! * `setconf` replaces everything: a missing private key, port or fwmark is reset, all peers
//!   are replaced, and each `[Peer]` replaces its allowed IPs ([`for_setconf`]).
//! * `addconf` sends only what the file mentions, adding or updating peers.
//! * `syncconf` is `setconf` that keeps the sessions of peers present in both the file and the
//!   device: when both have peers it reads the device, drops `replace_peers`, and removes the
//!   device's other peers explicitly ([`sync`]), with HEAD's reset of a preshared key or
//!   keepalive that the file no longer mentions.
//!
//! The file is read with `getline` semantics (any line length, a NUL ends the line's text), so
//! `/dev/stdin` and process substitutions work and a bad line stops reading at once. Endpoints
//! are resolved as their lines are read, and warnings are printed as they arise, in the
//! reference's order.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;

use wg_config::value::strip_c_space;
use wg_config::{for_setconf, zero_key, ConfigError, Device, Key, Parser, Peer};
use wg_ipc::Ipc;

use crate::output;
use crate::set::{errno, interface_name, latin1, modify, resolve_endpoint, unlatin1, Failure};
use crate::Invocation;

/// Entry point for `setconf`, `addconf` and `syncconf` (told apart by `args[0]`).
pub(crate) fn main(inv: &Invocation<'_>) -> u8 {
    let subcommand = inv.args[0].as_bytes();
    if inv.args.len() != 3 {
        let mut text = b"Usage: ".to_vec();
        text.extend_from_slice(inv.prog);
        text.push(b' ');
        text.extend_from_slice(subcommand);
        text.extend_from_slice(b" <interface> <configuration filename>\n");
        output::stderr(&text);
        return 1;
    }
    let file = match File::open(&inv.args[2]) {
        Ok(file) => file,
        Err(e) => {
            output::stderr(format!("fopen: {}\n", output::strerror(errno(&e))).as_bytes());
            return 1;
        }
    };
    let Some(parsed) = read_config(BufReader::new(file)) else {
        return 1;
    };
    let interface = interface_name(&inv.args[1]);
    let delta = match subcommand {
        b"addconf" => parsed,
        b"syncconf" => {
            let file = for_setconf(parsed);
            if file.peers.is_empty() {
                file
            } else {
                match Ipc::new().get(interface) {
                    Ok(runtime) => sync(file, &runtime),
                    Err(e) => {
                        let text =
                            format!("Unable to retrieve current interface configuration: {e}\n");
                        output::stderr(text.as_bytes());
                        return 1;
                    }
                }
            }
        }
        _ => for_setconf(parsed),
    };
    modify(interface, &delta)
}

/// `wg addconf INTERFACE FILE` where the file's contents are `text`: what `wg-quick` runs as
/// `wg addconf IF <(echo "$WG_CONFIG")`. Diagnostics are printed as `wg addconf` prints them;
/// returns its exit status.
pub fn addconf_text(interface: &std::ffi::OsStr, text: &[u8]) -> u8 {
    match read_config(text) {
        Some(parsed) => modify(interface_name(interface), &parsed),
        None => 1,
    }
}

/// Parses a configuration file, printing diagnostics as the reference does; `None` after an
/// error (already reported).
fn read_config(mut input: impl BufRead) -> Option<Device> {
    let mut parser = Parser::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // getline failing ends the loop in the reference too; what was read still counts.
            Err(_) => break,
        }
        // The reference handles the line as a C string: a NUL ends it.
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let text = latin1(&buf[..end]);
        if let Err(failure) = feed(&mut parser, &text) {
            failure.report();
            if matches!(failure, Failure::Parse(_)) {
                output::stderr(b"Configuration parsing error\n");
            }
            return None;
        }
    }
    match parser.finish() {
        Ok(device) => Some(device),
        Err(e) => {
            output::stderr(&unlatin1(&format!("{e}\nInvalid configuration\n")));
            None
        }
    }
}

/// Feeds one line, prints its warnings, and resolves the endpoint it set, if any.
fn feed(parser: &mut Parser, text: &str) -> Result<(), Failure> {
    let result = parser.line(text);
    for warning in parser.take_warnings() {
        output::stderr(&unlatin1(&format!("{warning}\n")));
    }
    match result {
        // `resolve_endpoint` checks WG_ENDPOINT_RESOLUTION_RETRIES before reporting the
        // malformed value, as the reference's parse_endpoint does.
        Err(ConfigError::Endpoint(e)) => resolve_endpoint(&endpoint_value(text), Err(e)).map(drop),
        Err(e) => Err(Failure::parse(e)),
        Ok(()) => {
            if let Some(endpoint) = parser.line_endpoint_mut() {
                *endpoint = resolve_endpoint(&endpoint_value(text), Ok(endpoint.clone()))?;
            }
            Ok(())
        }
    }
}

/// The value of an `Endpoint = …` line as the reference quotes it: comment and whitespace
/// removed, after the 9 characters of `Endpoint=`.
fn endpoint_value(text: &str) -> String {
    let uncommented = text.split('#').next().unwrap_or_default();
    let stripped = strip_c_space(uncommented);
    stripped
        .get("Endpoint=".len()..)
        .unwrap_or_default()
        .to_owned()
}

/// Turns the `setconf` delta `file` into the `syncconf` delta for a device whose state is
/// `runtime` (upstream HEAD `sync_conf`).
///
/// Without runtime peers the delta is `file` unchanged. Otherwise `replace_peers` is dropped
/// and every runtime peer missing from the file gets a `remove` entry; the entries are
/// prepended one by one while walking the runtime keys in sorted order, so they come out in
/// reverse sorted order. For a runtime peer that the file keeps, the first file entry with its
/// key resets a preshared key or a persistent keepalive that the runtime has and the entry
/// does not mention (all-zero key, interval 0).
fn sync(mut file: Device, runtime: &Device) -> Device {
    if runtime.peers.is_empty() {
        return file;
    }
    file.replace_peers = false;
    // (key bytes, from the file, index): sorted like the reference's qsort by (memcmp of the
    // keys, runtime before file). The sort is stable, so duplicate file entries keep file
    // order, as glibc's merge-sort qsort does.
    let mut entries: Vec<([u8; 32], bool, usize)> = file
        .peers
        .iter()
        .enumerate()
        .map(|(i, p)| (*p.public_key.as_bytes(), true, i))
        .chain(
            runtime
                .peers
                .iter()
                .enumerate()
                .map(|(i, p)| (*p.public_key.as_bytes(), false, i)),
        )
        .collect();
    entries.sort_by_key(|&(key, from_file, _)| (key, from_file));
    let mut removals = Vec::new();
    for (i, &(key, from_file, index)) in entries.iter().enumerate() {
        if from_file {
            continue;
        }
        let theirs = &runtime.peers[index];
        match entries.get(i + 1) {
            Some(&(next, true, kept)) if next == key => {
                let ours = &mut file.peers[kept];
                if theirs.preshared_key.as_ref().is_some_and(|k| !k.is_zero())
                    && ours.preshared_key.is_none()
                {
                    ours.preshared_key = Some(zero_key());
                }
                if theirs.persistent_keepalive.is_some_and(|k| k != 0)
                    && ours.persistent_keepalive.is_none()
                {
                    ours.persistent_keepalive = Some(0);
                }
            }
            _ => removals.push(Peer {
                remove: true,
                ..Peer::new(theirs.public_key)
            }),
        }
    }
    removals.reverse();
    removals.append(&mut file.peers);
    file.peers = removals;
    file
}

#[cfg(test)]
mod tests {
    use super::*;
    use wg_config::{PresharedKey, PublicKey};

    fn key(n: u8) -> PublicKey {
        PublicKey::from_bytes([n; 32])
    }

    fn listed(device: &Device) -> Vec<(u8, bool)> {
        device
            .peers
            .iter()
            .map(|p| (p.public_key.as_bytes()[0], p.remove))
            .collect()
    }

    #[test]
    fn test_sync_removals_and_resets() {
        let psk = PresharedKey::from_bytes([9; 32]);
        let file = for_setconf(Device {
            peers: vec![Peer::new(key(3)), Peer::new(key(5)), Peer::new(key(3))],
            ..Device::default()
        });
        let runtime = Device {
            peers: vec![
                Peer::new(key(4)),
                Peer {
                    preshared_key: Some(psk),
                    persistent_keepalive: Some(25),
                    ..Peer::new(key(3))
                },
                Peer::new(key(1)),
                Peer::new(key(9)),
            ],
            ..Device::default()
        };
        let delta = sync(file.clone(), &runtime);
        assert!(!delta.replace_peers);
        assert_eq!(
            listed(&delta),
            [
                (9, true),
                (4, true),
                (1, true),
                (3, false),
                (5, false),
                (3, false)
            ]
        );
        let reset = &delta.peers[3];
        assert!(reset.preshared_key.as_ref().is_some_and(Key::is_zero));
        assert_eq!(reset.persistent_keepalive, Some(0));
        // Only the first file entry for the key is reset.
        assert_eq!(delta.peers[5].preshared_key, None);
        assert_eq!(delta.peers[5].persistent_keepalive, None);

        // No runtime peers: exactly setconf.
        assert_eq!(sync(file.clone(), &Device::default()), file);
    }

    #[test]
    fn test_read_config_cuts_at_nul_and_resolves() {
        let text = b"[Peer]\nPublicKey=JIu8MrLtS2H2A0g7JpdOXlDNI8E6WAXYvsKnEJL+aks=\0junk\n\
                     Endpoint = [fe80::1%1]:5 # comment\n";
        let device = read_config(&text[..]).unwrap();
        assert_eq!(
            device.peers[0].endpoint.as_ref().map(ToString::to_string),
            Some("[fe80::1%lo]:5".into())
        );
        assert_eq!(endpoint_value(" End point = [::1]:5 # x\n"), "[::1]:5");
    }
}
