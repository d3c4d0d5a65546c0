//! The wg(8) configuration file format: a push-based [`Parser`] (the file read by `wg setconf`,
//! `addconf` and `syncconf`) and the [`showconf`] printer.
//!
//! Lexing follows wireguard-tools `config_read_line`: everything from the first `#` is a
//! comment, then **all** whitespace anywhere in the line is deleted (so `Private Key = x` is
//! `PrivateKey=x`, and CR from CRLF files vanishes); `;` is not a comment. Sections `[Interface]`
//! and `[Peer]` match case-insensitively; keys match case-insensitively as a `Key=` prefix with
//! a non-empty rest. Several `[Interface]` sections merge; each `[Peer]` starts a new peer entry
//! with "replace allowed IPs" set. Error messages are the reference's; a [`ConfigError`] is
//! followed by `Configuration parsing error` in `wg`, which the binary prints.
//!
//! The parser yields a **delta** with only what the file mentions ([`Device`] module docs);
//! [`for_setconf`] turns it into what `setconf` sends. [`showconf`] prints a **state**; parsing
//! its output gives back the state, up to [`Device::normalize`] (which clears the
//! replace-allowed-IPs flag every `[Peer]` sets).

use std::fmt::Write as _;

use crate::cidr::{parse_allowed_ips_into, AllowedIpError, AllowedIpList, Warning};
use crate::endpoint::{Endpoint, EndpointError};
use crate::key::{Key, KeyError, PresharedKey, PrivateKey, PublicKey};
use crate::model::{zero_key, Device, Peer};
use crate::value::{
    is_c_space, Fwmark, FwmarkError, Keepalive, KeepaliveError, ListenPort, PortError,
};

/// A configuration file line (or the file as a whole) that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A key outside any section, a key that does not belong to the current section, an unknown
    /// key, or a key with an empty value; holds the line with comments and whitespace removed.
    #[error("Line unrecognized: `{0}'")]
    LineUnrecognized(String),
    /// A `PrivateKey`, `PublicKey` or `PresharedKey` that is not a base64 key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A bad `ListenPort`.
    #[error(transparent)]
    Port(#[from] PortError),
    /// A bad `FwMark`.
    #[error(transparent)]
    Fwmark(#[from] FwmarkError),
    /// A bad `Endpoint`.
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// A bad `PersistentKeepalive`.
    #[error(transparent)]
    Keepalive(#[from] KeepaliveError),
    /// A bad `AllowedIPs` item.
    #[error(transparent)]
    AllowedIp(#[from] AllowedIpError),
    /// A `[Peer]` section without a `PublicKey` (reported by [`Parser::finish`]).
    #[error("A peer is missing a public key")]
    MissingPublicKey,
}

/// Which section the parser is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Interface,
    Peer,
}

/// A push-based parser of the wg(8) configuration format.
///
/// Call order: [`Parser::new`], then [`Parser::line`] once per line of the file (with or
/// without its line terminator), then [`Parser::finish`]. After each line the caller may
/// drain [`Parser::take_warnings`] to print warnings where the reference does, before any later
/// error (also after an error: an `AllowedIPs` line warns about the items before a bad one), and
/// resolve the endpoint the line parsed, if any ([`Parser::line_endpoint_mut`]). After an error
/// the parser must not be fed further lines.
#[derive(Debug, Clone)]
pub struct Parser {
    device: Device,
    section: Section,
    /// Whether each entry of `device.peers` has seen its `PublicKey` yet; until then its key
    /// is a placeholder.
    has_public_key: Vec<bool>,
    warnings: Vec<Warning>,
    /// Whether the latest line was an `Endpoint` that parsed.
    endpoint_line: bool,
}

impl Default for Parser {
    fn default() -> Self {
        Parser::new()
    }
}

impl Parser {
    /// A parser at the start of a file.
    pub fn new() -> Parser {
        Parser {
            device: Device::default(),
            section: Section::None,
            has_public_key: Vec::new(),
            warnings: Vec::new(),
            endpoint_line: false,
        }
    }

    /// Feeds one line.
    pub fn line(&mut self, line: &str) -> Result<(), ConfigError> {
        self.endpoint_line = false;
        let uncommented = line.split('#').next().unwrap_or_default();
        let line: String = uncommented.chars().filter(|&c| !is_c_space(c)).collect();
        if line.is_empty() {
            return Ok(());
        }
        if line.eq_ignore_ascii_case("[Interface]") {
            self.section = Section::Interface;
            return Ok(());
        }
        if line.eq_ignore_ascii_case("[Peer]") {
            self.section = Section::Peer;
            let placeholder = PublicKey::from_bytes([0; 32]);
            self.device.peers.push(Peer {
                replace_allowed_ips: true,
                ..Peer::new(placeholder)
            });
            self.has_public_key.push(false);
            return Ok(());
        }
        let unrecognized = || ConfigError::LineUnrecognized(line.clone());
        match self.section {
            Section::None => Err(unrecognized()),
            Section::Interface => {
                let device = &mut self.device;
                if let Some(value) = value_of(&line, "ListenPort=") {
                    device.listen_port = Some(value.parse::<ListenPort>()?.0);
                } else if let Some(value) = value_of(&line, "FwMark=") {
                    device.fwmark = Some(value.parse::<Fwmark>()?.0);
                } else if let Some(value) = value_of(&line, "PrivateKey=") {
                    device.private_key = Some(PrivateKey::from_base64(value)?);
                } else {
                    return Err(unrecognized());
                }
                Ok(())
            }
            Section::Peer => {
                // Entering the Peer section pushed an entry, so there is a last one.
                let index = self.device.peers.len() - 1;
                let peer = &mut self.device.peers[index];
                if let Some(value) = value_of(&line, "Endpoint=") {
                    peer.endpoint = Some(value.parse::<Endpoint>()?);
                    self.endpoint_line = true;
                } else if let Some(value) = value_of(&line, "PublicKey=") {
                    peer.public_key = PublicKey::from_base64(value)?;
                    self.has_public_key[index] = true;
                } else if let Some(value) = value_of(&line, "AllowedIPs=") {
                    let mut list = AllowedIpList::default();
                    let parsed = parse_allowed_ips_into(value, &mut list);
                    self.warnings.extend(list.warnings);
                    parsed?;
                    peer.replace_allowed_ips = list.replace;
                    peer.allowed_ips.extend(list.items);
                } else if let Some(value) = value_of(&line, "PersistentKeepalive=") {
                    peer.persistent_keepalive = Some(value.parse::<Keepalive>()?.0);
                } else if let Some(value) = value_of(&line, "PresharedKey=") {
                    peer.preshared_key = Some(PresharedKey::from_base64(value)?);
                } else {
                    return Err(unrecognized());
                }
                Ok(())
            }
        }
    }

    /// Takes the warnings produced so far (each to be printed on its own line).
    pub fn take_warnings(&mut self) -> Vec<Warning> {
        std::mem::take(&mut self.warnings)
    }

    /// The endpoint parsed by the latest [`Parser::line`] call, if that line was an `Endpoint`
    /// that parsed, for the caller to resolve in place: the reference resolves each endpoint as
    /// its line is read, so resolution messages interleave with the other diagnostics.
    pub fn line_endpoint_mut(&mut self) -> Option<&mut Endpoint> {
        if !self.endpoint_line {
            return None;
        }
        self.device.peers.last_mut()?.endpoint.as_mut()
    }

    /// Ends the file: checks that every peer has a public key and returns the delta.
    pub fn finish(self) -> Result<Device, ConfigError> {
        if self.has_public_key.contains(&false) {
            return Err(ConfigError::MissingPublicKey);
        }
        Ok(self.device)
    }

    /// Parses a whole file held in memory, returning the delta and all warnings.
    pub fn parse_str(text: &str) -> Result<(Device, Vec<Warning>), ConfigError> {
        let mut parser = Parser::new();
        for line in text.lines() {
            parser.line(line)?;
        }
        let warnings = parser.take_warnings();
        parser.finish().map(|device| (device, warnings))
    }
}

/// The value after a case-insensitive `key` prefix (which ends in `=`), if the line has that
/// prefix and something after it (wireguard-tools `get_value`).
fn value_of<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let head = line.get(..key.len())?;
    (line.len() > key.len() && head.eq_ignore_ascii_case(key)).then(|| &line[key.len()..])
}

/// Turns a parsed file into the delta `wg setconf` (and the first step of `syncconf`) sends:
/// a missing private key, listen port or fwmark is reset (all-zero key, port 0, mark 0) and all
/// existing peers are replaced. `addconf` sends the parsed delta as is.
pub fn for_setconf(mut device: Device) -> Device {
    device.private_key.get_or_insert_with(zero_key);
    device.listen_port.get_or_insert(0);
    device.fwmark.get_or_insert(0);
    device.replace_peers = true;
    device
}

/// Prints a device state in the `wg showconf` format.
///
/// `[Interface]` always; `ListenPort` if non-zero; `FwMark = 0x%x` if non-zero; `PrivateKey`
/// if set; then a blank line, always. Per peer: `[Peer]`, `PublicKey`, `PresharedKey` if set
/// and non-zero, `AllowedIPs` joined by `, ` if any, `Endpoint` if set, `PersistentKeepalive`
/// if non-zero; peers are separated by a blank line, with none after the last.
pub fn showconf(device: &Device) -> String {
    let mut out = String::from("[Interface]\n");
    // Writing to a String cannot fail, so the fmt::Results below are ignored.
    if let Some(port) = device.listen_port.filter(|&p| p != 0) {
        let _ = writeln!(out, "ListenPort = {port}");
    }
    if let Some(mark) = device.fwmark.filter(|&m| m != 0) {
        let _ = writeln!(out, "FwMark = {}", Fwmark(mark));
    }
    if let Some(key) = &device.private_key {
        let _ = writeln!(out, "PrivateKey = {key}");
    }
    out.push('\n');
    for (i, peer) in device.peers.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "[Peer]\nPublicKey = {}", peer.public_key);
        if let Some(psk) = peer.preshared_key.as_ref().filter(|k| !k.is_zero()) {
            let _ = writeln!(out, "PresharedKey = {psk}");
        }
        if !peer.allowed_ips.is_empty() {
            let list: Vec<String> = peer.allowed_ips.iter().map(ToString::to_string).collect();
            let _ = writeln!(out, "AllowedIPs = {}", list.join(", "));
        }
        if let Some(endpoint) = &peer.endpoint {
            let _ = writeln!(out, "Endpoint = {endpoint}");
        }
        if let Some(interval) = peer.persistent_keepalive.filter(|&k| k != 0) {
            let _ = writeln!(out, "PersistentKeepalive = {interval}");
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cidr::AllowedIp;
    use proptest::prelude::*;
    use std::net::{IpAddr, SocketAddr, SocketAddrV6};
    use std::time::Duration;

    const PRIVATE: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
    const PEER1: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
    const PEER2: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";

    fn parse(text: &str) -> Result<Device, ConfigError> {
        Parser::parse_str(text).map(|(device, _)| device)
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn test_parse_basic() {
        let text = format!(
            "# comment\n[Interface]\r\nPrivateKey = {PRIVATE} # trailing\nListen Port = 51820\n\n\
             [Peer]\nPublicKey={PEER1}\nEndpoint = [::1]:5\nAllowedIPs = 10.0.0.0/8, fd00::/64\n\
             AllowedIPs = 10.1.0.0/16\npersistentkeepalive = 25\n[PEER]\npublickey = {PEER1}\n"
        );
        let device = parse(&text).unwrap();
        assert_eq!(device.private_key, Some(PRIVATE.parse().unwrap()));
        assert_eq!(device.listen_port, Some(51820));
        assert_eq!(device.fwmark, None);
        assert!(!device.replace_peers);
        assert_eq!(
            device.peers.len(),
            2,
            "each [Peer] is its own entry, even for the same key"
        );
        let first = &device.peers[0];
        assert!(first.replace_allowed_ips);
        assert_eq!(first.endpoint, Some("[::1]:5".parse().unwrap()));
        assert_eq!(first.persistent_keepalive, Some(25));
        let list: Vec<String> = first.allowed_ips.iter().map(ToString::to_string).collect();
        assert_eq!(list, ["10.0.0.0/8", "fd00::/64", "10.1.0.0/16"]);
        assert!(device.peers[1].replace_allowed_ips && device.peers[1].allowed_ips.is_empty());
    }

    #[test]
    fn test_interfaces_merge_and_values() {
        let text = "[Interface]\nListenPort=1\nFwMark=0x10\n[Peer]\nPublicKey=".to_owned()
            + PEER1
            + "\n[interface]\nListenPort=2\nFwMark=off\n";
        let device = parse(&text).unwrap();
        assert_eq!((device.listen_port, device.fwmark), (Some(2), Some(0)));
        assert_eq!(device.peers.len(), 1);
        assert_eq!(parse("").unwrap(), Device::default());
        assert_eq!(parse("# only a comment\n\n").unwrap(), Device::default());
    }

    #[test]
    fn test_incremental_allowed_ips() {
        let text = format!("[Peer]\nPublicKey={PEER1}\nAllowedIPs=+10.0.0.0/8,-10.1.0.0/16\n");
        let peer = &parse(&text).unwrap().peers[0];
        assert!(!peer.replace_allowed_ips);
        assert!(peer.allowed_ips[1].remove);
        // As upstream, each AllowedIPs line sets the flag again; the last one decides.
        let text =
            format!("[Peer]\nPublicKey={PEER1}\nAllowedIPs=-10.0.0.0/8\nAllowedIPs=10.2.0.0/16\n");
        assert!(parse(&text).unwrap().peers[0].replace_allowed_ips);
    }

    #[test]
    fn test_line_endpoint_and_warnings_before_error() {
        let mut parser = Parser::new();
        parser.line("[Peer]").unwrap();
        assert!(parser.line_endpoint_mut().is_none());
        parser.line("Endpoint = host.example:5").unwrap();
        *parser.line_endpoint_mut().unwrap() = "1.2.3.4:5".parse().unwrap();
        parser.line(&format!("PublicKey={PEER1}")).unwrap();
        assert!(parser.line_endpoint_mut().is_none());
        let err = parser
            .line("AllowedIPs = 10.0.0.1/8, 10.0.0.256")
            .unwrap_err();
        assert_eq!(err.to_string(), "Unable to parse IP address: `10.0.0.256'");
        let warnings = parser.take_warnings();
        assert_eq!(
            warnings,
            [Warning::NonzeroHostPart("10.0.0.1/8".into())],
            "warnings before the bad item are kept"
        );
        let mut parser = Parser::new();
        parser.line("[Peer]").unwrap();
        parser.line(&format!("PublicKey={PEER1}")).unwrap();
        parser.line("Endpoint = host.example:5").unwrap();
        *parser.line_endpoint_mut().unwrap() = "1.2.3.4:5".parse().unwrap();
        let device = parser.finish().unwrap();
        assert_eq!(device.peers[0].endpoint, Some("1.2.3.4:5".parse().unwrap()));
    }

    #[test]
    fn test_warnings() {
        let mut parser = Parser::new();
        parser.line("[Peer]").unwrap();
        parser.line(&format!("PublicKey={PEER1}")).unwrap();
        parser
            .line("AllowedIPs = 10.0.0.1/24, 10.0.0.0/24, 2001:DB8::1/32")
            .unwrap();
        let warnings: Vec<String> = parser
            .take_warnings()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            warnings,
            [
                "Warning: AllowedIP has nonzero host part: 10.0.0.1/24",
                "Warning: AllowedIP has nonzero host part: 2001:DB8::1/32",
            ]
        );
        assert!(parser.take_warnings().is_empty());
    }

    /// compat.md §3.3, one case each, with the exact reference message.
    #[test]
    fn test_rejections() {
        let peer = format!("[Peer]\nPublicKey={PEER1}\n");
        // Unknown keys, `;` comments, keys outside sections, empty values.
        assert_eq!(
            error("[Interface]\nBogus = 1\n"),
            "Line unrecognized: `Bogus=1'"
        );
        assert_eq!(
            error("[Interface]\n;semicolon\n"),
            "Line unrecognized: `;semicolon'"
        );
        assert_eq!(
            error("ListenPort = 1\n"),
            "Line unrecognized: `ListenPort=1'"
        );
        assert_eq!(
            error("[Interface]\nAddress = 10.0.0.1/24\n"),
            "Line unrecognized: `Address=10.0.0.1/24'"
        );
        assert_eq!(
            error("[Interface]\nDNS = 1.1.1.1\n"),
            "Line unrecognized: `DNS=1.1.1.1'"
        );
        assert_eq!(
            error("[Interface]\nMTU = 1420\n"),
            "Line unrecognized: `MTU=1420'"
        );
        assert_eq!(
            error(&format!("[Interface]\nPublicKey = {PEER1}\n")),
            format!("Line unrecognized: `PublicKey={PEER1}'")
        );
        assert_eq!(
            error(&format!("{peer}ListenPort = 1\n")),
            "Line unrecognized: `ListenPort=1'"
        );
        assert_eq!(
            error("[Interface]\nListenPort =\n"),
            "Line unrecognized: `ListenPort='"
        );
        assert_eq!(
            error(&format!("{peer}AllowedIPs = \n")),
            "Line unrecognized: `AllowedIPs='"
        );
        assert_eq!(error("[Interfaces]\n"), "Line unrecognized: `[Interfaces]'");
        // A [Peer] with no PublicKey.
        assert_eq!(
            error("[Peer]\nAllowedIPs = 10.0.0.0/8\n"),
            "A peer is missing a public key"
        );
        assert_eq!(
            error(&format!("{peer}[Peer]\n")),
            "A peer is missing a public key"
        );
        // Bad base64 or wrong length.
        let short = &PRIVATE[..43];
        assert_eq!(
            error(&format!("[Interface]\nPrivateKey = {short}\n")),
            format!("Key is not the correct length or format: `{short}'")
        );
        assert_eq!(
            error("[Peer]\nPublicKey = a b c\n"),
            "Key is not the correct length or format: `abc'"
        );
        assert_eq!(
            error(&format!("{peer}PresharedKey = {PEER1}A\n")),
            format!("Key is not the correct length or format: `{PEER1}A'")
        );
        // A port that won't resolve.
        assert_eq!(
            error("[Interface]\nListenPort = http\n"),
            "Servname not supported for ai_socktype: `http'"
        );
        assert_eq!(
            error("[Interface]\nListenPort = 70000\n"),
            "Port is not in the range 0-65535: `70000'"
        );
        assert_eq!(
            error(&format!("{peer}Endpoint = 1.2.3.4:abc\n")),
            "Servname not supported for ai_socktype: `1.2.3.4:abc'"
        );
        assert_eq!(
            error(&format!("{peer}Endpoint = 1.2.3.4\n")),
            "Unable to find port of endpoint: `1.2.3.4'"
        );
        assert_eq!(
            error(&format!("{peer}Endpoint = [::1\n")),
            "Unable to find matching brace of endpoint: `[::1'"
        );
        // fwmark or keepalive out of range.
        assert_eq!(
            error("[Interface]\nFwMark = 4294967296\n"),
            "Fwmark is neither 0/off nor 0-0xffffffff: `4294967296'"
        );
        assert_eq!(
            error("[Interface]\nFwMark = 0X10\n"),
            "Fwmark is neither 0/off nor 0-0xffffffff: `0X10'"
        );
        assert_eq!(
            error(&format!("{peer}PersistentKeepalive = 65536\n")),
            "Persistent keepalive interval is neither 0/off nor 1-65535: `65536'"
        );
        // A CIDR out of range.
        assert_eq!(
            error(&format!("{peer}AllowedIPs = 10.0.0.0/33\n")),
            "AllowedIP is not in the correct format: `10.0.0.0/33'"
        );
        assert_eq!(
            error(&format!("{peer}AllowedIPs = fe80::/129\n")),
            "AllowedIP is not in the correct format: `fe80::/129'"
        );
        // Non-dotted-quad IPv4.
        assert_eq!(
            error(&format!("{peer}AllowedIPs = 10.0.0/24\n")),
            "Unable to parse IP address: `10.0.0'"
        );
        assert_eq!(
            error(&format!("{peer}AllowedIPs = 10.0.0.256\n")),
            "Unable to parse IP address: `10.0.0.256'"
        );
    }

    #[test]
    fn test_for_setconf() {
        let delta = for_setconf(parse(&format!("[Peer]\nPublicKey={PEER1}\n")).unwrap());
        assert!(delta.private_key.as_ref().is_some_and(Key::is_zero));
        assert_eq!(
            (delta.listen_port, delta.fwmark, delta.replace_peers),
            (Some(0), Some(0), true)
        );
        let kept = for_setconf(
            parse(&format!(
                "[Interface]\nPrivateKey={PRIVATE}\nListenPort=5\n"
            ))
            .unwrap(),
        );
        assert_eq!(kept.private_key, Some(PRIVATE.parse().unwrap()));
        assert_eq!(kept.listen_port, Some(5));
    }

    #[test]
    fn test_showconf() {
        let mut device = Device {
            private_key: Some(PRIVATE.parse().unwrap()),
            listen_port: Some(10001),
            fwmark: Some(0x1234),
            ..Device::default()
        };
        assert_eq!(
            showconf(&device),
            format!("[Interface]\nListenPort = 10001\nFwMark = 0x1234\nPrivateKey = {PRIVATE}\n\n")
        );
        device.peers.push(Peer {
            preshared_key: Some(PEER2.parse().unwrap()),
            allowed_ips: vec![
                "10.9.0.2/32".parse().unwrap(),
                "fd00::2/128".parse().unwrap(),
            ],
            endpoint: Some("127.0.0.1:10002".parse().unwrap()),
            persistent_keepalive: Some(25),
            ..Peer::new(PEER1.parse().unwrap())
        });
        device.peers.push(Peer::new(PEER2.parse().unwrap()));
        let expected = format!(
            "[Interface]\nListenPort = 10001\nFwMark = 0x1234\nPrivateKey = {PRIVATE}\n\n\
             [Peer]\nPublicKey = {PEER1}\nPresharedKey = {PEER2}\nAllowedIPs = 10.9.0.2/32, fd00::2/128\n\
             Endpoint = 127.0.0.1:10002\nPersistentKeepalive = 25\n\n[Peer]\nPublicKey = {PEER2}\n"
        );
        assert_eq!(showconf(&device), expected);
        assert_eq!(showconf(&Device::default()), "[Interface]\n\n");
    }

    /// A random device state in normal form, for the round-trip properties of every codec.
    pub(crate) fn arb_state() -> impl Strategy<Value = Device> {
        let allowed_ip = (any::<IpAddr>(), any::<u8>()).prop_map(|(addr, cidr)| {
            let cidr = cidr % (crate::cidr::max_cidr(addr) + 1);
            AllowedIp::new(addr, cidr)
                .expect("cidr reduced into range")
                .masked()
        });
        let endpoint = prop_oneof![
            any::<SocketAddr>().prop_map(|addr| match addr {
                SocketAddr::V6(v6) => {
                    Endpoint::Addr(SocketAddr::V6(SocketAddrV6::new(
                        *v6.ip(),
                        v6.port(),
                        0,
                        v6.scope_id(),
                    )))
                }
                v4 => Endpoint::Addr(v4),
            }),
            ("[a-z]{1,10}\\.example", any::<u16>())
                .prop_map(|(host, port)| Endpoint::Host { host, port }),
            any::<u16>().prop_map(|port| Endpoint::Host {
                host: "fe80::1%eth0".into(),
                port
            }),
        ];
        let peer = (
            any::<[u8; 32]>(),
            proptest::option::of(any::<[u8; 32]>()),
            proptest::option::of(endpoint),
            proptest::option::of(1u16..),
            proptest::collection::vec(allowed_ip, 0..8),
            proptest::option::of((1u64..1 << 40, 0u32..1_000_000_000)),
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(|(key, psk, endpoint, keepalive, ips, handshake, rx, tx)| {
                let mut peer = Peer::new(PublicKey::from_bytes(key));
                peer.preshared_key = psk.map(PresharedKey::from_bytes);
                peer.endpoint = endpoint;
                peer.persistent_keepalive = keepalive;
                peer.allowed_ips = ips;
                peer.last_handshake = handshake.map(|(s, n)| Duration::new(s, n));
                peer.rx_bytes = rx;
                peer.tx_bytes = tx;
                peer
            });
        (
            proptest::option::of(any::<[u8; 32]>()),
            proptest::option::of(1u16..),
            proptest::option::of(1u32..),
            proptest::collection::vec(peer, 0..40),
        )
            .prop_map(|(private, port, mark, peers)| {
                let mut device = Device {
                    private_key: private.map(PrivateKey::from_random),
                    listen_port: port,
                    fwmark: mark,
                    replace_peers: false,
                    peers,
                };
                // Unique peer keys, non-zero keys, masked unique prefixes.
                let mut seen = std::collections::HashSet::new();
                device.peers.retain(|p| seen.insert(p.public_key));
                device.normalize();
                device
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed), cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn prop_showconf_then_parse_is_identity(state in arb_state()) {
            let text = showconf(&state);
            let (mut parsed, warnings) = Parser::parse_str(&text).unwrap();
            prop_assert!(warnings.is_empty());
            prop_assert!(parsed.peers.iter().all(|p| p.replace_allowed_ips));
            parsed.normalize();
            let mut expected = state.clone();
            for peer in &mut expected.peers {
                // Statistics are not part of the file.
                peer.last_handshake = None;
                peer.rx_bytes = 0;
                peer.tx_bytes = 0;
            }
            prop_assert_eq!(parsed, expected);
            // Printing is deterministic.
            let mut reparsed = Parser::parse_str(&text).unwrap().0;
            reparsed.normalize();
            prop_assert_eq!(showconf(&reparsed), text);
        }
    }
}
