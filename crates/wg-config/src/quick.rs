//! The wg-quick(8) configuration format: a wg(8) file plus `Address`, `DNS`, `MTU`, `Table`,
//! `PreUp`/`PostUp`/`PreDown`/`PostDown` and `SaveConfig` in the `[Interface]` section.
//!
//! [`QuickParser`] reproduces `parse_options` of upstream HEAD's `wg-quick/linux.bash`
//! line for line: each line is trimmed of spaces and tabs (as `read -r` does); the text before
//! the first `#` is split at its first `=` into a key and a value, both trimmed; keys match
//! case-insensitively, and only inside `[Interface]` (a key starting with `[` leaves it,
//! `[Interface]` in any case enters it). Hook values keep text after `#` (the "unstripped"
//! value, HEAD). Every line not consumed is kept verbatim in [`QuickConfig::wg_config`]: that is
//! what `wg-quick strip` prints and what is handed to `wg addconf`.
//!
//! Error messages are the text after the binary's `wg-quick: ` prefix, e.g.
//! `` `maybe' is neither true nor false ``.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::cidr::{max_cidr, Warning};
use crate::config::{ConfigError, Parser};
use crate::model::Device;

/// A wg-quick configuration line that could not be parsed. `Display` is the message after
/// the binary's `wg-quick: ` prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuickError {
    /// `SaveConfig` was neither `true` nor `false` (any case); holds the value.
    #[error("`{0}' is neither true nor false")]
    SaveConfig(String),
    /// An `MTU` that `ip link set mtu` would refuse (see [`Mtu`]); only `Mtu::from_str` says
    /// this, the parser takes any text as the reference does.
    #[error("`{0}' is not a valid MTU")]
    Mtu(String),
    /// An `Address` item that `ip address add` would refuse (see [`InterfaceAddress`]); only
    /// `InterfaceAddress::from_str` says this, the parser takes any text as the reference does.
    #[error("`{0}' is not a valid interface address")]
    Address(String),
}

/// One `Address` item as wg-quick takes it: any text, handed to `ip address add` (so
/// `Display` gives it back as written, as the reference's `ip -4 address add <text> dev …`
/// trace shows it), and the address and prefix length `ip` reads from it, if it can.
///
/// `ip` reads it with iproute2's `get_prefix`: IPv6 (if the text has a `:`) as `inet_pton`;
/// IPv4 as one to four dot-separated C numbers (decimal, `0` octal or `0x` hex; missing parts
/// are 0, so `10.1` is 10.1.0.0); the prefix a C number or, for IPv4, a dotted netmask, at most
/// 32 or 128. Text `ip` cannot read makes the reference fail at that step, after the interface
/// exists; `FromStr` refuses it at once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceAddress {
    /// The item as written.
    text: String,
    /// The address and the prefix length if given (`ip` defaults to a host prefix), as `ip`
    /// reads them; `None` if it cannot.
    parsed: Option<(IpAddr, Option<u8>)>,
}

impl InterfaceAddress {
    /// Takes any text, as the reference does.
    pub fn new(text: &str) -> InterfaceAddress {
        InterfaceAddress {
            text: text.to_owned(),
            parsed: iproute_prefix(text),
        }
    }

    /// The address, if `ip` can read the text.
    pub fn addr(&self) -> Option<IpAddr> {
        self.parsed.map(|(addr, _)| addr)
    }

    /// The prefix length, if given and `ip` can read the text.
    pub fn prefix(&self) -> Option<u8> {
        self.parsed.and_then(|(_, prefix)| prefix)
    }

    /// Whether wg-quick adds it with `ip -6` (the text contains `:`).
    pub fn is_ipv6(&self) -> bool {
        self.text.contains(':')
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for InterfaceAddress {
    type Err = QuickError;

    /// Like [`InterfaceAddress::new`], but refuses text `ip` cannot read.
    fn from_str(s: &str) -> Result<Self, QuickError> {
        let address = InterfaceAddress::new(s);
        match address.parsed {
            Some(_) => Ok(address),
            None => Err(QuickError::Address(s.to_owned())),
        }
    }
}

/// `ip[/prefix]` as iproute2's `get_prefix` reads it (see [`InterfaceAddress`]).
fn iproute_prefix(s: &str) -> Option<(IpAddr, Option<u8>)> {
    let (ip, prefix) = match s.split_once('/') {
        Some((ip, prefix)) => (ip, Some(prefix)),
        None => (s, None),
    };
    let addr = if ip.contains(':') {
        IpAddr::V6(ip.parse::<Ipv6Addr>().ok()?)
    } else {
        IpAddr::V4(iproute_ipv4(ip)?)
    };
    let prefix = match prefix {
        None => None,
        Some(text) => {
            let len = c_unsigned(text).or_else(|| match addr {
                IpAddr::V4(_) => netmask_length(iproute_ipv4(text)?),
                IpAddr::V6(_) => None,
            });
            Some(
                len.and_then(|n| u8::try_from(n).ok())
                    .filter(|&n| n <= max_cidr(addr))?,
            )
        }
    };
    Some((addr, prefix))
}

/// `strtoul(text, &end, 0)` over the whole text, as iproute2's `get_unsigned`: decimal, `0`
/// octal or `0x` hex, at most `u32::MAX`; `None` if anything is left over.
fn c_unsigned(text: &str) -> Option<u32> {
    let (value, rest) = c_number(text)?;
    if !rest.is_empty() {
        return None;
    }
    u32::try_from(value).ok()
}

/// The C number at the start of `text` (`strtoul` with base 0), and the rest of the text.
/// `None` if there are no digits or the value overflows.
fn c_number(text: &str) -> Option<(u64, &str)> {
    let text = text.strip_prefix('+').unwrap_or(text);
    let (radix, digits) = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) if hex.starts_with(|c: char| c.is_ascii_hexdigit()) => (16, hex),
        _ if text.starts_with('0') => (8, text),
        _ => (10, text),
    };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    if end == 0 {
        return None;
    }
    let mut value: u64 = 0;
    for c in digits[..end].chars() {
        let digit = u64::from(c.to_digit(radix)?);
        value = value.checked_mul(u64::from(radix))?.checked_add(digit)?;
    }
    Some((value, &digits[end..]))
}

/// iproute2's `get_addr_ipv4`: one to four C numbers of at most 255, separated by dots.
fn iproute_ipv4(mut text: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    for (i, octet) in octets.iter_mut().enumerate() {
        let (value, rest) = c_number(text)?;
        *octet = u8::try_from(value).ok()?;
        if rest.is_empty() {
            return Some(Ipv4Addr::from(octets));
        }
        text = rest.strip_prefix('.').filter(|_| i < 3)?;
    }
    None
}

/// The prefix length of a contiguous IPv4 netmask such as 255.255.255.0.
fn netmask_length(mask: Ipv4Addr) -> Option<u32> {
    let bits = u32::from(mask);
    let len = bits.leading_ones();
    (bits.checked_shl(len).unwrap_or(0) == 0).then_some(len)
}

impl fmt::Display for InterfaceAddress {
    /// The item exactly as written (`ip` or `ip/prefix`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The `MTU` setting: the text as written, which the reference hands to `ip link set mtu`
/// (so `Display` gives it back, as its trace shows it), and the value `ip` reads from it, a C
/// number (decimal, `0` octal or `0x` hex), if it can. Text `ip` cannot read makes the
/// reference fail at that step, after the interface exists; `FromStr` refuses it at once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mtu {
    /// The value as written.
    text: String,
    /// What `ip` reads from it.
    value: Option<u32>,
}

impl Mtu {
    /// Takes any text, as the reference does.
    pub fn new(text: &str) -> Mtu {
        Mtu {
            text: text.to_owned(),
            value: c_unsigned(text),
        }
    }

    /// The MTU, if `ip` can read the text.
    pub fn value(&self) -> Option<u32> {
        self.value
    }
}

impl From<u32> for Mtu {
    fn from(value: u32) -> Mtu {
        Mtu {
            text: value.to_string(),
            value: Some(value),
        }
    }
}

impl FromStr for Mtu {
    type Err = QuickError;

    /// Like [`Mtu::new`], but refuses text `ip` cannot read.
    fn from_str(s: &str) -> Result<Mtu, QuickError> {
        let mtu = Mtu::new(s);
        match mtu.value {
            Some(_) => Ok(mtu),
            None => Err(QuickError::Mtu(s.to_owned())),
        }
    }
}

impl fmt::Display for Mtu {
    /// The value exactly as written.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The `Table` setting. The text is kept verbatim: `Display` gives back what was written.
///
/// The special words are matched case-sensitively, as the reference compares them after
/// turning `nocasematch` off: `Off` is a table *name*.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Table {
    /// `auto`: routes go to the main table, with the default-route special handling.
    Auto,
    /// `off`: no routes are added.
    Off,
    /// A numeric table id, written in canonical decimal.
    Id(u32),
    /// Any other text, passed to `ip route add … table` as is (a name from `rt_tables`, or a
    /// number in a non-canonical form such as `01234`).
    Name(String),
}

impl FromStr for Table {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => Table::Auto,
            "off" => Table::Off,
            _ => match s.parse::<u32>() {
                Ok(id) if id.to_string() == s => Table::Id(id),
                _ => Table::Name(s.to_owned()),
            },
        })
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Table::Auto => f.write_str("auto"),
            Table::Off => f.write_str("off"),
            Table::Id(id) => write!(f, "{id}"),
            Table::Name(name) => f.write_str(name),
        }
    }
}

/// A parsed wg-quick configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QuickConfig {
    /// `Address` items, in order, across all `Address` lines.
    pub addresses: Vec<InterfaceAddress>,
    /// `DNS` items that are nameservers (all digits and dots, or containing `:`), verbatim.
    pub dns: Vec<String>,
    /// Other `DNS` items: search domains, verbatim.
    pub dns_search: Vec<String>,
    /// `MTU`; `None` (also for an empty value) means automatic.
    pub mtu: Option<Mtu>,
    /// `Table`; `None` (also for an empty value) behaves as `auto`.
    pub table: Option<Table>,
    /// `PreUp` commands in order, verbatim including any `#…`.
    pub pre_up: Vec<String>,
    /// `PostUp` commands in order.
    pub post_up: Vec<String>,
    /// `PreDown` commands in order.
    pub pre_down: Vec<String>,
    /// `PostDown` commands in order.
    pub post_down: Vec<String>,
    /// `SaveConfig`.
    pub save_config: bool,
    /// `Relay` (an extension of ours, for wg-tunnel's NAT traversal): the relay's
    /// `host:port`, verbatim; resolved and checked when used.
    pub relay: Option<String>,
    /// `RelayPublicKey` (extension): the relay's public key, base64, verbatim.
    pub relay_public_key: Option<String>,
    /// Every line not consumed above, each followed by `\n`: the wg(8) part of the file, as
    /// `wg-quick strip` prints it (it adds one more `\n`, from `echo`).
    pub wg_config: String,
}

impl QuickConfig {
    /// Parses [`QuickConfig::wg_config`] with the wg(8) parser: the delta for `wg addconf`.
    pub fn wg_device(&self) -> Result<(Device, Vec<Warning>), ConfigError> {
        Parser::parse_str(&self.wg_config)
    }

    /// The lines this config contributes to the `[Interface]` section when printed, in the
    /// order `wg-quick save` writes them.
    fn interface_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        lines.extend(self.addresses.iter().map(|a| format!("Address = {a}")));
        lines.extend(
            self.dns
                .iter()
                .chain(&self.dns_search)
                .map(|d| format!("DNS = {d}")),
        );
        lines.extend(self.mtu.as_ref().map(|mtu| format!("MTU = {mtu}")));
        lines.extend(self.table.as_ref().map(|table| format!("Table = {table}")));
        if self.save_config {
            lines.push("SaveConfig = true".to_owned());
        }
        lines.extend(self.relay.as_ref().map(|r| format!("Relay = {r}")));
        lines.extend(
            self.relay_public_key
                .as_ref()
                .map(|k| format!("RelayPublicKey = {k}")),
        );
        for (key, hooks) in [
            ("PreUp", &self.pre_up),
            ("PostUp", &self.post_up),
            ("PreDown", &self.pre_down),
            ("PostDown", &self.post_down),
        ] {
            lines.extend(hooks.iter().map(|hook| format!("{key} = {hook}")));
        }
        lines
    }
}

impl fmt::Display for QuickConfig {
    /// Renders the file: [`QuickConfig::wg_config`] with the wg-quick keys inserted right after
    /// its first `[Interface]` line (or, if it has none, under a new `[Interface]` at the top).
    ///
    /// Parsing the output gives back the same config, for any config the parser produced
    /// (hook commands cannot hold a newline or begin or end with whitespace).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let extra = self.interface_lines();
        if extra.is_empty() {
            return f.write_str(&self.wg_config);
        }
        let mut rest = self.wg_config.as_str();
        let mut found = false;
        let mut offset = 0;
        for line in self.wg_config.split_inclusive('\n') {
            offset += line.len();
            if split_line(line.trim_end_matches('\n'))
                .key
                .eq_ignore_ascii_case("[Interface]")
            {
                f.write_str(&self.wg_config[..offset])?;
                rest = &self.wg_config[offset..];
                found = true;
                break;
            }
        }
        if !found {
            f.write_str("[Interface]\n")?;
        }
        for line in extra {
            writeln!(f, "{line}")?;
        }
        f.write_str(rest)
    }
}

/// `[[:space:]]` in the C locale.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// One line cut up as `parse_options` does.
struct Split<'a> {
    /// Text before the first `=` of the uncommented part, trimmed.
    key: &'a str,
    /// Text after that `=` (the whole uncommented part if there is none), trimmed.
    value: &'a str,
    /// Text after the first `=` of the whole line (the whole line if none), trimmed.
    unstripped_value: &'a str,
}

fn split_line(line: &str) -> Split<'_> {
    let stripped = line.split('#').next().unwrap_or_default();
    let (key, value) = stripped.split_once('=').unwrap_or((stripped, stripped));
    let unstripped_value = line.split_once('=').map_or(line, |(_, v)| v);
    Split {
        key: key.trim_matches(is_space),
        value: value.trim_matches(is_space),
        unstripped_value: unstripped_value.trim_matches(is_space),
    }
}

/// Splits an `Address`/`DNS` value as `${value//,/ }` word splitting does.
fn words(value: &str) -> impl Iterator<Item = &str> {
    value
        .split([',', ' ', '\t', '\n'])
        .filter(|w| !w.is_empty())
}

/// A push parser of the wg-quick format. Call order: [`QuickParser::new`], [`QuickParser::line`]
/// per line (without its terminator; a last line without a newline counts too), then
/// [`QuickParser::finish`].
#[derive(Debug, Clone, Default)]
pub struct QuickParser {
    config: QuickConfig,
    in_interface: bool,
}

impl QuickParser {
    /// A parser at the start of a file.
    pub fn new() -> QuickParser {
        QuickParser::default()
    }

    /// Feeds one line.
    pub fn line(&mut self, line: &str) -> Result<(), QuickError> {
        // `read -r` drops leading and trailing IFS whitespace.
        let line = line.trim_matches([' ', '\t', '\n']);
        let Split {
            key,
            value,
            unstripped_value,
        } = split_line(line);
        if key.starts_with('[') {
            self.in_interface = false;
        }
        if key.eq_ignore_ascii_case("[Interface]") {
            self.in_interface = true;
        }
        if self.in_interface && self.consume(key, value, unstripped_value)? {
            return Ok(());
        }
        self.config.wg_config.push_str(line);
        self.config.wg_config.push('\n');
        Ok(())
    }

    /// Handles a wg-quick key; `false` if `key` is not one.
    fn consume(&mut self, key: &str, value: &str, unstripped: &str) -> Result<bool, QuickError> {
        let config = &mut self.config;
        match key.to_ascii_lowercase().as_str() {
            "address" => {
                for word in words(value) {
                    config.addresses.push(InterfaceAddress::new(word));
                }
            }
            "mtu" if value.is_empty() => config.mtu = None,
            "mtu" => config.mtu = Some(Mtu::new(value)),
            "dns" => {
                for word in words(value) {
                    let nameserver =
                        word.bytes().all(|b| b.is_ascii_digit() || b == b'.') || word.contains(':');
                    let list = if nameserver {
                        &mut config.dns
                    } else {
                        &mut config.dns_search
                    };
                    list.push(word.to_owned());
                }
            }
            "table" if value.is_empty() => config.table = None,
            "table" => config.table = value.parse().ok(),
            "preup" => config.pre_up.push(unstripped.to_owned()),
            "predown" => config.pre_down.push(unstripped.to_owned()),
            "postup" => config.post_up.push(unstripped.to_owned()),
            "postdown" => config.post_down.push(unstripped.to_owned()),
            "saveconfig" if value.eq_ignore_ascii_case("true") => config.save_config = true,
            "saveconfig" if value.eq_ignore_ascii_case("false") => config.save_config = false,
            "saveconfig" => return Err(QuickError::SaveConfig(value.to_owned())),
            // Extensions of ours (wg-tunnel's NAT traversal), kept out of `wg setconf`.
            "relay" => config.relay = (!value.is_empty()).then(|| value.to_owned()),
            "relaypublickey" => {
                config.relay_public_key = (!value.is_empty()).then(|| value.to_owned())
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Ends the file.
    pub fn finish(self) -> QuickConfig {
        self.config
    }

    /// Parses a whole file held in memory.
    pub fn parse_str(text: &str) -> Result<QuickConfig, QuickError> {
        let mut parser = QuickParser::new();
        // Not `str::lines`, which would also eat the `\r` of a CRLF line; bash keeps it.
        for line in text.split_inclusive('\n') {
            match line.strip_suffix('\n') {
                Some(line) => parser.line(line)?,
                // `read -r line || [[ -n $line ]]`: a last line without a newline counts only
                // if something is left once `read` has trimmed its blanks.
                None if line.trim_matches([' ', '\t']).is_empty() => {}
                None => parser.line(line)?,
            }
        }
        Ok(parser.finish())
    }
}

/// Expands every `%i` in a hook command to the interface name, as `execute_hooks` does.
pub fn substitute_interface(hook: &str, interface: &str) -> String {
    hook.replace("%i", interface)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn test_relay_extension_keys() {
        let text = "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n\
                    Relay = relay.example:3478\nrelaypublickey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n";
        let config = QuickParser::parse_str(text).unwrap();
        assert_eq!(config.relay.as_deref(), Some("relay.example:3478"));
        assert_eq!(
            config.relay_public_key.as_deref(),
            Some("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=")
        );
        // Kept out of what goes to `wg setconf`; kept by save.
        assert!(!config.wg_config.to_lowercase().contains("relay"));
        let saved = config.to_string();
        assert!(
            saved.contains("Relay = relay.example:3478\nRelayPublicKey = "),
            "{saved}"
        );
        assert_eq!(QuickParser::parse_str(&saved).unwrap(), config);
    }

    #[test]
    fn test_parse_and_strip() {
        let text = "\
# top comment
[Interface]
Address = 10.0.0.1/24, fd00::1/64
address=10.0.0.2
  PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
DNS = 1.1.1.1,2606:4700::1111 example.com
MTU = 1420
Table = off
PostUp = iptables -A x # keep this comment
PostUp = echo %i
SaveConfig = TRUE

[Peer]
PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
Address = 10.9.9.9/32
[interface]
PreDown=echo down
";
        let config = QuickParser::parse_str(text).unwrap();
        let addresses: Vec<String> = config.addresses.iter().map(ToString::to_string).collect();
        assert_eq!(addresses, ["10.0.0.1/24", "fd00::1/64", "10.0.0.2"]);
        let upper: InterfaceAddress = "FD00::0001/64".parse().unwrap();
        assert_eq!(upper.to_string(), "FD00::0001/64");
        assert_eq!(upper.addr(), Some("fd00::1".parse::<IpAddr>().unwrap()));
        assert_eq!(upper.prefix(), Some(64));
        assert_eq!(config.dns, ["1.1.1.1", "2606:4700::1111"]);
        assert_eq!(config.dns_search, ["example.com"]);
        assert_eq!(config.mtu, Some(Mtu::from(1420)));
        assert_eq!(config.table, Some(Table::Off));
        assert_eq!(
            config.post_up,
            ["iptables -A x # keep this comment", "echo %i"]
        );
        assert_eq!(config.pre_down, ["echo down"]);
        assert!(config.save_config);
        // The [Peer] `Address` is not consumed (wg setconf will reject it); indentation is
        // dropped as `read -r` does.
        assert_eq!(
            config.wg_config,
            "# top comment\n[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n\n\
             [Peer]\nPublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\nAddress = 10.9.9.9/32\n\
             [interface]\n"
        );
        assert_eq!(substitute_interface(&config.post_up[1], "wg0"), "echo wg0");
    }

    #[test]
    fn test_values() {
        let parse = |body: &str| QuickParser::parse_str(&format!("[Interface]\n{body}\n"));
        assert_eq!(parse("Table = 1234").unwrap().table, Some(Table::Id(1234)));
        assert_eq!(parse("Table = auto").unwrap().table, Some(Table::Auto));
        assert_eq!(
            parse("Table = Off").unwrap().table,
            Some(Table::Name("Off".into()))
        );
        assert_eq!(
            parse("Table = 01234").unwrap().table.unwrap().to_string(),
            "01234"
        );
        assert_eq!(parse("Table = 5\nTable =").unwrap().table, None);
        assert_eq!(parse("MTU = 1280\nMTU =").unwrap().mtu, None);
        assert!(
            !parse("SaveConfig = true\nSaveConfig = False")
                .unwrap()
                .save_config
        );
        assert_eq!(
            parse("SaveConfig = maybe").unwrap_err().to_string(),
            "`maybe' is neither true nor false"
        );
        assert_eq!(
            parse("SaveConfig =").unwrap_err().to_string(),
            "`' is neither true nor false"
        );
        let mtu = |text: &str| parse(text).unwrap().mtu.unwrap();
        assert_eq!(mtu("MTU = 0x500").value(), Some(1280));
        assert_eq!(mtu("MTU = 0x500").to_string(), "0x500");
        assert_eq!(mtu("MTU = 01420").value(), Some(0o1420));
        // The parser takes any text; `ip` fails on it later, as in the reference.
        assert_eq!(mtu("MTU = 1420x").value(), None);
        assert!("1420x".parse::<Mtu>().is_err());
        assert_eq!(
            "big".parse::<Mtu>().unwrap_err().to_string(),
            "`big' is not a valid MTU"
        );
        assert_eq!(
            "10.0.0.256/24"
                .parse::<InterfaceAddress>()
                .unwrap_err()
                .to_string(),
            "`10.0.0.256/24' is not a valid interface address"
        );
        // The parser takes any text; `ip` fails on it later, as in the reference.
        let bad = &parse("Address = 10.0.0.1/33, fd00::1").unwrap().addresses;
        assert_eq!((bad[0].as_str(), bad[0].addr()), ("10.0.0.1/33", None));
        assert!(bad[1].is_ipv6() && !bad[0].is_ipv6());
        // iproute2's parsing, which the reference relies on.
        let address = |text: &str| {
            let a: InterfaceAddress = text.parse().unwrap();
            (a.addr().unwrap().to_string(), a.prefix())
        };
        assert_eq!(address("10.1/8"), ("10.1.0.0".into(), Some(8)));
        assert_eq!(address("010.0.0.1/024"), ("8.0.0.1".into(), Some(20)));
        assert_eq!(address("0x0a.0.0.1/0x18"), ("10.0.0.1".into(), Some(24)));
        assert_eq!(
            address("10.0.0.1/255.255.240.0"),
            ("10.0.0.1".into(), Some(20))
        );
        assert_eq!(address("10.0.0.1"), ("10.0.0.1".into(), None));
        assert_eq!(address("FD00::1/064"), ("fd00::1".into(), Some(52)));
        for bad in [
            "10.0.0.300/24",
            "08.0.0.1",
            "1.2.3.4.5",
            "1.2.3.",
            "1.2.3.4/33",
            "1.2.3.4/255.0.255.0",
            "abc",
            "fd00::1/129",
            "fd00::1/ffff::",
            "1.2.3.4/",
        ] {
            assert!(bad.parse::<InterfaceAddress>().is_err(), "{bad}");
        }
        // Hooks: the unstripped value is the text after the line's first `=`.
        assert_eq!(parse("PostUp = a=b # c").unwrap().post_up, ["a=b # c"]);
        assert_eq!(parse("PostUp =").unwrap().post_up, [""]);
        // Keys outside [Interface] are not wg-quick's.
        let outside = QuickParser::parse_str("MTU = 1\n[Peer]\nDNS = 1.1.1.1\n").unwrap();
        assert_eq!(outside.mtu, None);
        assert_eq!(outside.wg_config, "MTU = 1\n[Peer]\nDNS = 1.1.1.1\n");
        // A last line of only blanks and no newline is no line at all.
        assert_eq!(
            QuickParser::parse_str("[Peer]\n \t").unwrap().wg_config,
            "[Peer]\n"
        );
        assert_eq!(
            QuickParser::parse_str("[Peer]\n \t\n").unwrap().wg_config,
            "[Peer]\n\n"
        );
        // CR is not IFS whitespace, so it stays in the wg text (wg strips it later).
        assert_eq!(
            QuickParser::parse_str("[Peer]\r\n").unwrap().wg_config,
            "[Peer]\r\n"
        );
    }

    #[test]
    fn test_print() {
        let config = QuickParser::parse_str(
            "[Interface] # main\nPrivateKey = k\nPostDown = b\nAddress = 10.0.0.1/24\nDNS = x.example, 9.9.9.9\n\n[Peer]\nPublicKey = p\n",
        )
        .unwrap();
        assert_eq!(
            config.to_string(),
            "[Interface] # main\nAddress = 10.0.0.1/24\nDNS = 9.9.9.9\nDNS = x.example\nPostDown = b\n\
             PrivateKey = k\n\n[Peer]\nPublicKey = p\n"
        );
        let headless = QuickConfig {
            mtu: Some(Mtu::from(1280)),
            wg_config: "[Peer]\n".into(),
            ..QuickConfig::default()
        };
        assert_eq!(headless.to_string(), "[Interface]\nMTU = 1280\n[Peer]\n");
        let plain = QuickConfig {
            wg_config: "[Peer]\n".into(),
            ..QuickConfig::default()
        };
        assert_eq!(plain.to_string(), "[Peer]\n");
    }

    proptest! {
        #![proptest_config(ProptestConfig { rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed), cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn prop_print_then_parse_is_identity(
            lines in proptest::collection::vec(prop_oneof![
                Just("[Interface]".to_owned()),
                Just("[Peer]".to_owned()),
                Just("# comment".to_owned()),
                Just(String::new()),
                "(Address|DNS|MTU|Table|PreUp|PostUp|PreDown|PostDown|SaveConfig|PrivateKey|Other) ?= ?[a-z0-9:.,/# =%-]{0,20}",
            ], 0..30)
        ) {
            let text = lines.join("\n");
            if let Ok(config) = QuickParser::parse_str(&text) {
                let printed = config.to_string();
                prop_assert_eq!(QuickParser::parse_str(&printed), Ok(config));
            }
        }
    }
}
