//! `wg set` (upstream `src/set.c`, with `config_read_cmd` and the value parsers of
//! `src/config.c`): the command line becomes one delta [`Device`], sent in one request.
//!
//! The words are consumed left to right. Device options (`listen-port`, `fwmark`,
//! `private-key`) count only before the first `peer`; peer options need a `peer` before them;
//! anything else, or an option without its value, is `Invalid argument: <word>`. The whole
//! command line is parsed, key files read and endpoints resolved, before any I/O with the
//! device, so an error means nothing is sent.
//!
//! Diagnostics are printed as the reference prints them, in the order it does: warnings and
//! resolution retries as they happen, then at most one error. Arguments need not be UTF-8, so
//! values are handled as Latin-1 text ([`latin1`]) and messages turned back into the exact bytes
//! ([`unlatin1`]). The helpers here are shared with `setconf` (upstream both use `config.c`).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use wg_config::cidr::{parse_allowed_ips_into, AllowedIpList};
use wg_config::key::KEY_B64_LEN;
use wg_config::value::{is_c_space, strip_c_space};
use wg_config::{
    Device, Endpoint, EndpointError, Fwmark, Keepalive, Key, ListenPort, Peer, PresharedKey,
    PrivateKey, PublicKey,
};
use wg_ipc::resolve::{self, ResolveError, Retries};
use wg_ipc::Ipc;
use zeroize::{Zeroize, Zeroizing};

use crate::output;
use crate::Invocation;

/// The usage line, after `Usage: <prog> <subcommand>` (HEAD's, with `[+|-]` allowed-ips).
const USAGE: &str = " <interface> [listen-port <port>] [fwmark <mark>] [private-key <file path>] \
[peer <base64 public key> [remove] [preshared-key <file path>] [endpoint <ip>:<port>] \
[persistent-keepalive <interval seconds>] \
[allowed-ips [+|-]<ip1>/<cidr1>[,[+|-]<ip2>/<cidr2>]...] ]...\n";

/// IFNAMSIZ - 1: the reference copies at most this many bytes of the interface name.
const IFNAME_MAX: usize = 15;

/// Entry point for `set`.
pub(crate) fn main(inv: &Invocation<'_>) -> u8 {
    if inv.args.len() < 3 {
        let mut text = b"Usage: ".to_vec();
        text.extend_from_slice(inv.prog);
        text.push(b' ');
        text.extend_from_slice(inv.args[0].as_bytes());
        text.extend_from_slice(USAGE.as_bytes());
        output::stderr(&text);
        return 1;
    }
    let device = match parse_args(&inv.args[2..]) {
        Ok(device) => device,
        Err(failure) => {
            failure.report();
            return 1;
        }
    };
    modify(interface_name(&inv.args[1]), &device)
}

/// Sends `device` to `interface`: 0, or 1 after `Unable to modify interface: <strerror>`.
pub(crate) fn modify(interface: &OsStr, device: &Device) -> u8 {
    match Ipc::new().set(interface, device) {
        Ok(()) => 0,
        Err(e) => {
            output::stderr(format!("Unable to modify interface: {e}\n").as_bytes());
            1
        }
    }
}

/// The interface name as the reference uses it: cut to [`IFNAME_MAX`] bytes (`strncpy` into a
/// `char[IFNAMSIZ]`).
pub(crate) fn interface_name(arg: &OsStr) -> &OsStr {
    let bytes = arg.as_bytes();
    OsStr::from_bytes(&bytes[..bytes.len().min(IFNAME_MAX)])
}

/// A diagnostic that ends the command, in the reference's words.
#[derive(Debug)]
pub(crate) enum Failure {
    /// A value or argument could not be used; `setconf` follows it with
    /// `Configuration parsing error`.
    Parse(Vec<u8>),
    /// The reference calls `exit(1)` right after printing this (a bad
    /// `WG_ENDPOINT_RESOLUTION_RETRIES`): nothing else is printed.
    Exit(Vec<u8>),
}

impl Failure {
    /// A parse failure whose message is `text` (Latin-1, see [`unlatin1`]) plus a newline.
    pub(crate) fn parse(text: impl std::fmt::Display) -> Failure {
        Failure::Parse(line(text))
    }

    /// Prints the message.
    pub(crate) fn report(&self) {
        match self {
            Failure::Parse(text) | Failure::Exit(text) => output::stderr(text),
        }
    }
}

/// `text` as the bytes it stands for (Latin-1, see [`unlatin1`]), with a newline.
fn line(text: impl std::fmt::Display) -> Vec<u8> {
    let mut bytes = unlatin1(&text.to_string());
    bytes.push(b'\n');
    bytes
}

/// Decodes bytes as Latin-1: every byte becomes the char with the same value, so any byte
/// string (argv, a config line) can go through the `&str` parsers and come back exactly with
/// [`unlatin1`]. Valid values are ASCII, so only echoed text in messages is affected.
pub(crate) fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// The inverse of [`latin1`] (chars above U+00FF, which [`latin1`] never makes, become `?`).
pub(crate) fn unlatin1(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}

/// Parses the words after the interface name (`config_read_cmd`).
fn parse_args(args: &[OsString]) -> Result<Device, Failure> {
    let mut device = Device::default();
    let mut i = 0;
    while i < args.len() {
        let word = args[i].as_bytes();
        let value = args.get(i + 1);
        let text = || latin1(value.map_or(&[][..], |v| v.as_bytes()));
        let in_peer = !device.peers.is_empty();
        let mut consumed = 2;
        match (word, value) {
            (b"listen-port", Some(_)) if !in_peer => {
                let port: ListenPort = text().parse().map_err(Failure::parse)?;
                device.listen_port = Some(port.0);
            }
            (b"fwmark", Some(_)) if !in_peer => {
                let mark: Fwmark = text().parse().map_err(Failure::parse)?;
                device.fwmark = Some(mark.0);
            }
            (b"private-key", Some(path)) if !in_peer => {
                device.private_key = Some(read_key_file::<PrivateKey>(path)?);
            }
            (b"peer", Some(_)) => {
                let key = PublicKey::from_base64(&text()).map_err(Failure::parse)?;
                device.peers.push(Peer::new(key));
            }
            (b"remove", _) if in_peer => {
                last(&mut device).remove = true;
                consumed = 1;
            }
            (b"endpoint", Some(_)) if in_peer => {
                let value = text();
                let endpoint = resolve_endpoint(&value, value.parse())?;
                last(&mut device).endpoint = Some(endpoint);
            }
            (b"allowed-ips", Some(_)) if in_peer => {
                let mut list = AllowedIpList::default();
                let parsed = parse_allowed_ips_into(&strip_c_space(&text()), &mut list);
                print_warnings(&list);
                parsed.map_err(Failure::parse)?;
                let peer = last(&mut device);
                peer.replace_allowed_ips = list.replace;
                peer.allowed_ips.extend(list.items);
            }
            (b"persistent-keepalive", Some(_)) if in_peer => {
                let interval: Keepalive = text().parse().map_err(Failure::parse)?;
                last(&mut device).persistent_keepalive = Some(interval.0);
            }
            (b"preshared-key", Some(path)) if in_peer => {
                last(&mut device).preshared_key = Some(read_key_file::<PresharedKey>(path)?);
            }
            _ => {
                let mut text = b"Invalid argument: ".to_vec();
                text.extend_from_slice(word);
                text.push(b'\n');
                return Err(Failure::Parse(text));
            }
        }
        i += consumed;
    }
    Ok(device)
}

/// The peer entry being built; only called once a `peer` word has been seen.
fn last(device: &mut Device) -> &mut Peer {
    // The match arms that call this are guarded by `in_peer`.
    device.peers.last_mut().expect("a peer entry exists")
}

/// Prints the `Warning: AllowedIP has nonzero host part: …` lines of a parsed list.
pub(crate) fn print_warnings(list: &AllowedIpList) {
    for warning in &list.warnings {
        output::stderr(&line(warning));
    }
}

/// Resolves an endpoint value as the reference's `parse_endpoint` does: it reads
/// `WG_ENDPOINT_RESOLUTION_RETRIES` first (for any value, even an empty or malformed one, and
/// a bad setting ends the program), then reports a malformed value, then resolves with retries,
/// printing a notice and sleeping before each retry.
pub(crate) fn resolve_endpoint(
    value: &str,
    parsed: Result<Endpoint, EndpointError>,
) -> Result<Endpoint, Failure> {
    let retries = Retries::from_env().map_err(|e| Failure::Exit(line(e)))?;
    let endpoint = parsed.map_err(Failure::parse)?;
    let mut wait = |error: &ResolveError, delay: Duration| {
        output::stderr(&line(resolve::retry_message(error, delay)));
        std::thread::sleep(delay);
    };
    resolve::resolve_endpoint(&endpoint, value, retries, &mut wait).map_err(Failure::parse)
}

/// Reads a key file as the reference's `parse_keyfile` does: exactly 44 bytes, then only
/// whitespace; an empty file is the all-zero key (removal).
fn read_key_file<K: Key>(path: &OsStr) -> Result<K, Failure> {
    let file = File::open(path)
        .map_err(|e| Failure::parse(format!("fopen: {}", output::strerror(errno(&e)))))?;
    let mut reader = BufReader::new(file);
    let mut text = Zeroizing::new([0u8; KEY_B64_LEN]);
    let (filled, failed) = read_full(&mut reader, &mut text[..]);
    if filled < KEY_B64_LEN {
        // fread came up short: only a clean end of an empty file means "no key".
        if filled == 0 && !failed {
            return Ok(K::from_bytes([0; 32]));
        }
        return Err(Failure::parse("Invalid length key in key file"));
    }
    let mut byte = [0u8; 1];
    loop {
        match reader.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if is_c_space(char::from(byte[0])) => {}
            Ok(_) => {
                let mut message = b"Found trailing character in key file: `".to_vec();
                message.extend_from_slice(&[byte[0], b'\'', b'\n']);
                return Err(Failure::Parse(message));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(Failure::parse(format!(
                    "getc: {}",
                    output::strerror(errno(&e))
                )))
            }
        }
    }
    // The reference decodes the buffer as a C string: a NUL ends it early (and so fails).
    let len = text.iter().position(|&b| b == 0).unwrap_or(KEY_B64_LEN);
    let mut base64 = latin1(&text[..len]);
    let key = K::from_base64(&base64).map_err(|e| Failure::parse(&e));
    base64.zeroize();
    key
}

/// Reads until `buf` is full, the end of input, or an error: (bytes read, whether an error
/// stopped it).
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> (usize, bool) {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return (filled, false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return (filled, true),
        }
    }
    (filled, false)
}

/// The errno of an I/O error (EIO if it has none).
pub(crate) fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn error(words: &[&str]) -> String {
        match parse_args(&args(words)).unwrap_err() {
            Failure::Parse(text) | Failure::Exit(text) => String::from_utf8(text).unwrap(),
        }
    }

    const KEY: &str = "JIu8MrLtS2H2A0g7JpdOXlDNI8E6WAXYvsKnEJL+aks=";

    #[test]
    fn test_grammar() {
        let device = parse_args(&args(&[
            "listen-port",
            "1",
            "fwmark",
            "off",
            "peer",
            KEY,
            "remove",
            "peer",
            KEY,
            "allowed-ips",
            "+10.0.0.0/8",
            "allowed-ips",
            "10.1.0.0/16,\t-fd00::/64",
            "persistent-keepalive",
            "25",
            "endpoint",
            "[::1]:5",
        ]))
        .unwrap();
        assert_eq!((device.listen_port, device.fwmark), (Some(1), Some(0)));
        assert_eq!(device.peers.len(), 2);
        assert!(device.peers[0].remove);
        let peer = &device.peers[1];
        assert!(!peer.replace_allowed_ips, "the last list had a prefix");
        assert_eq!(peer.allowed_ips.len(), 3);
        assert_eq!(peer.persistent_keepalive, Some(25));
        assert_eq!(peer.endpoint, Some("[::1]:5".parse().unwrap()));
        assert!(
            parse_args(&args(&["peer", KEY, "allowed-ips", ""]))
                .unwrap()
                .peers[0]
                .replace_allowed_ips
        );
    }

    #[test]
    fn test_invalid_arguments() {
        assert_eq!(error(&["remove"]), "Invalid argument: remove\n");
        assert_eq!(error(&["peer"]), "Invalid argument: peer\n");
        assert_eq!(error(&["bogus", "1"]), "Invalid argument: bogus\n");
        assert_eq!(
            error(&["peer", KEY, "listen-port", "1"]),
            "Invalid argument: listen-port\n"
        );
        assert_eq!(
            error(&["peer", KEY, "endpoint"]),
            "Invalid argument: endpoint\n"
        );
        assert_eq!(
            error(&["peer", "abc"]),
            "Key is not the correct length or format: `abc'\n"
        );
        assert_eq!(
            error(&["private-key", "/nonexistent/key"]),
            "fopen: No such file or directory\n"
        );
    }

    #[test]
    fn test_key_files() {
        let dir = std::env::temp_dir().join(format!("wg-set-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let read = |contents: &[u8]| {
            let path = dir.join("key");
            std::fs::write(&path, contents).unwrap();
            match read_key_file::<PrivateKey>(path.as_os_str()) {
                Ok(key) => Ok(key.to_base64()),
                Err(Failure::Parse(text) | Failure::Exit(text)) => Err(text),
            }
        };
        assert_eq!(read(b""), Ok("A".repeat(43) + "="));
        assert_eq!(
            read(format!("{KEY}\n \t\r\x0b\x0c").as_bytes()),
            Ok(KEY.into())
        );
        assert_eq!(
            read(b"short\n"),
            Err(b"Invalid length key in key file\n".to_vec())
        );
        assert_eq!(
            read(&[KEY.as_bytes(), b"\n\xff"].concat()),
            Err(b"Found trailing character in key file: `\xff'\n".to_vec())
        );
        let mut with_nul = KEY.as_bytes().to_vec();
        with_nul[3] = 0;
        assert_eq!(
            read(&with_nul),
            Err(b"Key is not the correct length or format: `JIu'\n".to_vec())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn test_interface_name_and_latin1() {
        assert_eq!(
            interface_name(OsStr::new("abcdefghijklmnopqrs")),
            "abcdefghijklmno"
        );
        assert_eq!(interface_name(OsStr::new("wg0")), "wg0");
        let bytes = b"a\xff\x80z";
        assert_eq!(unlatin1(&latin1(bytes)), bytes);
    }
}
