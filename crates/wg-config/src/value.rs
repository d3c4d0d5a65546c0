//! Scalar value parsers shared by the wg(8) config file and `wg set` argv: the listen port,
//! the firewall mark and the persistent-keepalive interval.
//!
//! Each value type is a thin newtype with `FromStr` and `Display` that round-trip exactly, and
//! each parser has its own error enum whose `Display` is the reference tool's message,
//! byte for byte, with the offending value in `` `…' `` quotes (wireguard-tools `config.c`).
//! The model ([`crate::Device`]) stores the plain integers; these types exist for parsing and
//! for printing in the reference formats.

use std::fmt;
use std::str::FromStr;

/// Whitespace as wireguard-tools' `char_is_space` sees it: space, `\t`, `\n`, `\v`, `\f`, `\r`.
///
/// Differs from [`char::is_ascii_whitespace`], which leaves out the vertical tab.
pub fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// Returns `s` with every [`is_c_space`] character deleted, as `wg set allowed-ips` and the
/// config-file lexer do.
pub fn strip_c_space(s: &str) -> String {
    s.chars().filter(|&c| !is_c_space(c)).collect()
}

/// Parses a non-empty run of ASCII decimal digits, saturating at `u64::MAX` (like `strtoul`,
/// whose result is then range-checked by every caller). `None` if `s` is empty or has a
/// non-digit.
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// Why a port number (listen port, or the port of an endpoint) was refused, without the text
/// to quote; callers wrap it in their own error with the value they were given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortProblem {
    /// Not a decimal number: glibc would have looked it up in /etc/services.
    NotNumeric,
    /// Decimal, but above 65535.
    OutOfRange,
}

/// The numeric part of port parsing shared by [`ListenPort`] and [`crate::Endpoint`].
///
/// glibc's getaddrinfo reads a numeric service with `strtoul`: leading C whitespace and one
/// `+` or `-` sign are allowed before the digits (so ` 1`, `+1` and `-0` are port 1, 1 and 0);
/// a negative number other than zero is not numeric for it (`-1` fails as a service name).
pub(crate) fn parse_port_number(s: &str) -> Result<u16, PortProblem> {
    let s = s.trim_start_matches(is_c_space);
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    let n = parse_decimal(digits).ok_or(PortProblem::NotNumeric)?;
    if negative && n != 0 {
        return Err(PortProblem::NotNumeric);
    }
    u16::try_from(n).map_err(|_| PortProblem::OutOfRange)
}

/// A `ListenPort` / `listen-port` value that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PortError {
    /// The value was empty.
    #[error("Unable to parse empty port")]
    Empty,
    /// The value was not a decimal number. The reference asks getaddrinfo, which looks names
    /// up in /etc/services; this crate does no I/O and accepts numbers only, and uses glibc's
    /// message for a failed lookup.
    #[error("Servname not supported for ai_socktype: `{0}'")]
    NotNumeric(String),
    /// The number was above 65535. Deliberate difference: glibc silently takes it mod 65536
    /// (`70000` becomes 4464); this crate refuses it.
    #[error("Port is not in the range 0-65535: `{0}'")]
    OutOfRange(String),
}

/// A UDP listen port. `0` means "pick a random port".
///
/// Parsing accepts decimal digits only, with value at most 65535. Two deliberate differences
/// from the reference, which resolves the text with getaddrinfo: service names such as `http`
/// are refused (they failed in the reference's environment anyway), and numbers above 65535
/// are refused rather than wrapped mod 65536.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ListenPort(pub u16);

impl FromStr for ListenPort {
    type Err = PortError;

    fn from_str(s: &str) -> Result<Self, PortError> {
        if s.is_empty() {
            return Err(PortError::Empty);
        }
        parse_port_number(s)
            .map(ListenPort)
            .map_err(|problem| match problem {
                PortProblem::NotNumeric => PortError::NotNumeric(s.to_owned()),
                PortProblem::OutOfRange => PortError::OutOfRange(s.to_owned()),
            })
    }
}

impl fmt::Display for ListenPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A `FwMark` / `fwmark` value that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FwmarkError {
    /// Not `off`, not a decimal or `0x` hex number, or above `0xffffffff`.
    #[error("Fwmark is neither 0/off nor 0-0xffffffff: `{0}'")]
    Invalid(String),
}

/// A firewall mark for the tunnel's UDP socket. `0` means off.
///
/// Parsing: `off` in any case is 0. Otherwise the text must start with a digit; `0x` (lower-case
/// `x`) followed by at least one hex digit is hexadecimal, everything else is decimal (a leading
/// `0` is **not** octal). The value must fit in 32 bits with no trailing junk.
///
/// Display is the reference's: `off` for 0, else `0x%x` in lower case (`wg show` script form
/// prints exactly this; `showconf` prints the hex form and omits a zero mark).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Fwmark(pub u32);

impl FromStr for Fwmark {
    type Err = FwmarkError;

    fn from_str(s: &str) -> Result<Self, FwmarkError> {
        let invalid = || FwmarkError::Invalid(s.to_owned());
        if s.eq_ignore_ascii_case("off") {
            return Ok(Fwmark(0));
        }
        if !s.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(invalid());
        }
        let value = match s.strip_prefix("0x") {
            Some(hex) if !hex.is_empty() => {
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(invalid());
                }
                // Leading zeros may make the text long; strip them before the width check.
                let significant = hex.trim_start_matches('0');
                if significant.len() > 8 {
                    return Err(invalid());
                }
                if significant.is_empty() {
                    0
                } else {
                    u64::from_str_radix(significant, 16).map_err(|_| invalid())?
                }
            }
            _ => parse_decimal(s).ok_or_else(invalid)?,
        };
        u32::try_from(value).map(Fwmark).map_err(|_| invalid())
    }
}

impl fmt::Display for Fwmark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            f.write_str("off")
        } else {
            write!(f, "0x{:x}", self.0)
        }
    }
}

/// A `PersistentKeepalive` / `persistent-keepalive` value that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeepaliveError {
    /// Not `off` and not a decimal number from 0 to 65535.
    #[error("Persistent keepalive interval is neither 0/off nor 1-65535: `{0}'")]
    Invalid(String),
}

/// A persistent-keepalive interval in seconds. `0` means off.
///
/// Parsing: `off` in any case is 0; otherwise decimal digits only, at most 65535.
/// Display: `off` for 0, else the decimal number (as `wg show … persistent-keepalive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Keepalive(pub u16);

impl FromStr for Keepalive {
    type Err = KeepaliveError;

    fn from_str(s: &str) -> Result<Self, KeepaliveError> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Keepalive(0));
        }
        parse_decimal(s)
            .and_then(|n| u16::try_from(n).ok())
            .map(Keepalive)
            .ok_or_else(|| KeepaliveError::Invalid(s.to_owned()))
    }
}

impl fmt::Display for Keepalive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            f.write_str("off")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_port_number_like_getaddrinfo() {
        for (text, port) in [
            ("1", 1),
            (" 1", 1),
            ("\t+2", 2),
            ("+1", 1),
            ("-0", 0),
            ("65535", 65535),
        ] {
            assert_eq!(parse_port_number(text), Ok(port), "{text:?}");
        }
        for text in ["", "+", "-", "-1", "++1", "+-1", "+ 1", "1 ", "0x1"] {
            assert_eq!(
                parse_port_number(text),
                Err(PortProblem::NotNumeric),
                "{text:?}"
            );
        }
        assert_eq!(parse_port_number("+65536"), Err(PortProblem::OutOfRange));
    }
    use proptest::prelude::*;

    #[test]
    fn test_port() {
        assert_eq!("51820".parse::<ListenPort>(), Ok(ListenPort(51820)));
        assert_eq!("0".parse::<ListenPort>(), Ok(ListenPort(0)));
        assert_eq!("065535".parse::<ListenPort>(), Ok(ListenPort(65535)));
        let err = |s: &str| s.parse::<ListenPort>().unwrap_err().to_string();
        assert_eq!(err(""), "Unable to parse empty port");
        assert_eq!(err("abc"), "Servname not supported for ai_socktype: `abc'");
        assert_eq!(
            err("http"),
            "Servname not supported for ai_socktype: `http'"
        );
        assert_eq!(err("-1"), "Servname not supported for ai_socktype: `-1'");
        assert_eq!(err("70000"), "Port is not in the range 0-65535: `70000'");
        assert_eq!(
            err("99999999999999999999999"),
            "Port is not in the range 0-65535: `99999999999999999999999'"
        );
    }

    #[test]
    fn test_fwmark() {
        let ok = |s: &str| s.parse::<Fwmark>().unwrap().0;
        assert_eq!(ok("off"), 0);
        assert_eq!(ok("OfF"), 0);
        assert_eq!(ok("0"), 0);
        assert_eq!(ok("0x10"), 16);
        assert_eq!(ok("0xDEADbeef"), 0xdead_beef);
        assert_eq!(ok("0x00000000ffffffff"), u32::MAX);
        assert_eq!(ok("010"), 10, "a leading zero is not octal");
        assert_eq!(ok("4294967295"), u32::MAX);
        for bad in [
            "0X10",
            "0x",
            "-1",
            "4294967296",
            "0x100000000",
            "",
            "x10",
            "10x",
            "0x1g",
            "0x+5",
        ] {
            assert_eq!(
                bad.parse::<Fwmark>().unwrap_err().to_string(),
                format!("Fwmark is neither 0/off nor 0-0xffffffff: `{bad}'")
            );
        }
        assert_eq!(Fwmark(0).to_string(), "off");
        assert_eq!(Fwmark(0x1234).to_string(), "0x1234");
        assert_eq!(Fwmark(0xdead_beef).to_string(), "0xdeadbeef");
    }

    #[test]
    fn test_keepalive() {
        let ok = |s: &str| s.parse::<Keepalive>().unwrap().0;
        assert_eq!(ok("off"), 0);
        assert_eq!(ok("OFF"), 0);
        assert_eq!(ok("0"), 0);
        assert_eq!(ok("25"), 25);
        assert_eq!(ok("65535"), 65535);
        for bad in ["65536", "", "-1", "+1", "0x10", "1s", "on"] {
            assert_eq!(
                bad.parse::<Keepalive>().unwrap_err().to_string(),
                format!("Persistent keepalive interval is neither 0/off nor 1-65535: `{bad}'")
            );
        }
        assert_eq!(Keepalive(0).to_string(), "off");
        assert_eq!(Keepalive(25).to_string(), "25");
    }

    #[test]
    fn test_c_space() {
        assert_eq!(strip_c_space(" a\tb\nc\x0bd\x0ce\rf "), "abcdef");
        assert!(!is_c_space('\u{a0}'));
    }

    proptest! {
        #![proptest_config(ProptestConfig { rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed), cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn prop_display_round_trips(port in any::<u16>(), mark in any::<u32>(), ka in any::<u16>()) {
            prop_assert_eq!(ListenPort(port).to_string().parse::<ListenPort>(), Ok(ListenPort(port)));
            prop_assert_eq!(Fwmark(mark).to_string().parse::<Fwmark>(), Ok(Fwmark(mark)));
            prop_assert_eq!(format!("{mark}").parse::<Fwmark>(), Ok(Fwmark(mark)));
            prop_assert_eq!(Keepalive(ka).to_string().parse::<Keepalive>(), Ok(Keepalive(ka)));
        }
    }
}
