//! Peer endpoints: the `Endpoint` value of config files, `wg set … endpoint` and the UAPI.
//!
//! An [`Endpoint`] is either a socket address ([`Endpoint::Addr`]) or a host and port that
//! still need resolving ([`Endpoint::Host`]): a hostname such as `test.wireguard.com:18981`, or
//! an IPv6 literal scoped by interface name such as `[fe80::1%lo]:51820`, whose scope needs
//! `if_nametoindex`. This crate does no I/O, so resolution happens at the edge, in the binary.
//!
//! Splitting follows wireguard-tools `parse_endpoint`: a value starting with `[` is
//! `[host]:port`; otherwise the **last** colon splits host from port, so `::1:51820` is host
//! `::1`, port 51820. The port must be decimal and at most 65535 (see [`crate::ListenPort`] for
//! the deliberate difference from glibc's mod-65536 wrap).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::str::FromStr;

use crate::value::{parse_port_number, PortProblem};

/// An endpoint value that could not be parsed. Each message quotes the whole value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// The value was empty.
    #[error("Unable to parse empty endpoint")]
    Empty,
    /// The value started with `[` but had no `]`.
    #[error("Unable to find matching brace of endpoint: `{0}'")]
    NoBrace(String),
    /// There was no `:port` (or nothing after the colon).
    #[error("Unable to find port of endpoint: `{0}'")]
    NoPort(String),
    /// The port was not a decimal number (glibc's message for a failed service lookup).
    #[error("Servname not supported for ai_socktype: `{0}'")]
    NotNumeric(String),
    /// The port was above 65535 (the reference wraps it mod 65536; this crate refuses it).
    #[error("Port is not in the range 0-65535: `{0}'")]
    OutOfRange(String),
}

/// Where to send a peer's packets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A numeric socket address. IPv6 may carry a numeric scope id.
    Addr(SocketAddr),
    /// A host that still needs resolving (a name, or an IPv6 literal with a named scope such as
    /// `fe80::1%lo`), and a port. `host` never parses as a plain IP literal: [`Endpoint::new`]
    /// and the parser turn those into [`Endpoint::Addr`].
    Host {
        /// The host text, without brackets.
        host: String,
        /// The UDP port.
        port: u16,
    },
}

impl Endpoint {
    /// Builds an endpoint from a host text (without brackets) and a port, as `Addr` when the
    /// host is an IP literal (optionally IPv6 with a numeric `%scope`), else as `Host`.
    pub fn new(host: &str, port: u16) -> Endpoint {
        match literal_ip(host) {
            Some(addr) => Endpoint::Addr(with_port(addr, port)),
            None => Endpoint::Host {
                host: host.to_owned(),
                port,
            },
        }
    }

    /// The UDP port.
    pub fn port(&self) -> u16 {
        match self {
            Endpoint::Addr(addr) => addr.port(),
            Endpoint::Host { port, .. } => *port,
        }
    }

    /// The socket address, if this endpoint needs no resolution.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Endpoint::Addr(addr) => Some(*addr),
            Endpoint::Host { .. } => None,
        }
    }

    /// Whether the host is an IP literal, possibly IPv6 scoped by an interface *name* that the
    /// caller must still map to an index. wireguard-go's UAPI accepts exactly these.
    pub fn is_ip_literal(&self) -> bool {
        match self {
            Endpoint::Addr(_) => true,
            Endpoint::Host { host, .. } => host
                .split_once('%')
                .is_some_and(|(ip, scope)| !scope.is_empty() && ip.parse::<Ipv6Addr>().is_ok()),
        }
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Endpoint {
        Endpoint::Addr(addr)
    }
}

/// Parses an IP literal: IPv4, IPv6, or IPv6 with a numeric `%scope`.
fn literal_ip(host: &str) -> Option<(IpAddr, u32)> {
    if let Ok(v4) = host.parse::<Ipv4Addr>() {
        return Some((IpAddr::V4(v4), 0));
    }
    let (ip, scope) = match host.split_once('%') {
        Some((ip, scope)) => (ip, Some(scope)),
        None => (host, None),
    };
    let v6 = ip.parse::<Ipv6Addr>().ok()?;
    let scope_id = match scope {
        None => 0,
        Some(scope) => {
            let n = crate::value::parse_decimal(scope)?;
            u32::try_from(n).ok()?
        }
    };
    Some((IpAddr::V6(v6), scope_id))
}

fn with_port((addr, scope_id): (IpAddr, u32), port: u16) -> SocketAddr {
    match addr {
        IpAddr::V4(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
        IpAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(v6, port, 0, scope_id)),
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, EndpointError> {
        if s.is_empty() {
            return Err(EndpointError::Empty);
        }
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| EndpointError::NoBrace(s.to_owned()))?;
            match after.strip_prefix(':') {
                Some(port) if !port.is_empty() => (host, port),
                _ => return Err(EndpointError::NoPort(s.to_owned())),
            }
        } else {
            match s.rsplit_once(':') {
                Some((host, port)) if !port.is_empty() => (host, port),
                _ => return Err(EndpointError::NoPort(s.to_owned())),
            }
        };
        let port = parse_port_number(port).map_err(|problem| match problem {
            PortProblem::NotNumeric => EndpointError::NotNumeric(s.to_owned()),
            PortProblem::OutOfRange => EndpointError::OutOfRange(s.to_owned()),
        })?;
        Ok(Endpoint::new(host, port))
    }
}

impl fmt::Display for Endpoint {
    /// `a.b.c.d:port`, `[v6]:port` (with `%scope` inside the brackets), or `host:port`.
    ///
    /// A `Host` is bracketed when it contains `:` (or starts with `[`) and has no `]`, so that
    /// parsing the output gives back the same host: unbracketed text is split at its last
    /// colon, bracketed text at its first `]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Addr(SocketAddr::V4(addr)) => write!(f, "{addr}"),
            // getnameinfo with NI_NUMERICHOST appends a non-zero scope id as `%id` (a name for
            // link-local addresses, which only the binary can look up).
            Endpoint::Addr(SocketAddr::V6(addr)) => {
                write!(f, "[{}", crate::ntop::Ntop(IpAddr::V6(*addr.ip())))?;
                if addr.scope_id() != 0 {
                    write!(f, "%{}", addr.scope_id())?;
                }
                write!(f, "]:{}", addr.port())
            }
            Endpoint::Host { host, port } => {
                if (host.contains(':') || host.starts_with('[')) && !host.contains(']') {
                    write!(f, "[{host}]:{port}")
                } else {
                    write!(f, "{host}:{port}")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> Endpoint {
        s.parse().unwrap()
    }

    #[test]
    fn test_parse() {
        assert_eq!(
            parse("192.95.5.67:1234"),
            Endpoint::Addr("192.95.5.67:1234".parse().unwrap())
        );
        assert_eq!(
            parse("[2607:5300:60:6b0::c05f:543]:2468"),
            Endpoint::Addr("[2607:5300:60:6b0::c05f:543]:2468".parse().unwrap())
        );
        assert_eq!(
            parse("::1:51820"),
            Endpoint::Addr("[::1]:51820".parse().unwrap())
        );
        assert_eq!(
            parse("test.wireguard.com:18981"),
            Endpoint::Host {
                host: "test.wireguard.com".into(),
                port: 18981
            }
        );
        assert_eq!(
            parse("[fe80::1%lo]:51820"),
            Endpoint::Host {
                host: "fe80::1%lo".into(),
                port: 51820
            }
        );
        assert!(parse("[fe80::1%lo]:51820").is_ip_literal());
        assert!(!parse("localhost:1").is_ip_literal());
        let scoped = parse("[fe80::1%2]:51820");
        assert_eq!(scoped, Endpoint::Addr("[fe80::1%2]:51820".parse().unwrap()));
        assert_eq!(scoped.to_string(), "[fe80::1%2]:51820");
        // Non-canonical IPv4 text stays for the resolver (getaddrinfo accepts `10.1`).
        assert_eq!(
            parse("10.1:5"),
            Endpoint::Host {
                host: "10.1".into(),
                port: 5
            }
        );
        assert_eq!(parse("1.2.3.4:0").port(), 0);
        assert_eq!(
            parse("[example.com]:7"),
            Endpoint::Host {
                host: "example.com".into(),
                port: 7
            }
        );
    }

    #[test]
    fn test_errors() {
        let err = |s: &str| s.parse::<Endpoint>().unwrap_err().to_string();
        assert_eq!(err(""), "Unable to parse empty endpoint");
        assert_eq!(
            err("[::1:51820"),
            "Unable to find matching brace of endpoint: `[::1:51820'"
        );
        assert_eq!(err("[::1]"), "Unable to find port of endpoint: `[::1]'");
        assert_eq!(err("[::1]:"), "Unable to find port of endpoint: `[::1]:'");
        assert_eq!(
            err("[::1]51820"),
            "Unable to find port of endpoint: `[::1]51820'"
        );
        assert_eq!(err("1.2.3.4"), "Unable to find port of endpoint: `1.2.3.4'");
        assert_eq!(
            err("1.2.3.4:"),
            "Unable to find port of endpoint: `1.2.3.4:'"
        );
        assert_eq!(
            err("1.2.3.4:abc"),
            "Servname not supported for ai_socktype: `1.2.3.4:abc'"
        );
        assert_eq!(
            err("1.2.3.4:99999"),
            "Port is not in the range 0-65535: `1.2.3.4:99999'"
        );
    }

    #[test]
    fn test_display() {
        for (input, shown) in [
            ("1.2.3.4:5", "1.2.3.4:5"),
            ("[::1]:5", "[::1]:5"),
            ("::1:5", "[::1]:5"),
            ("[2001:DB8::1]:5", "[2001:db8::1]:5"),
            ("host.example:5", "host.example:5"),
            ("[fe80::1%lo]:5", "[fe80::1%lo]:5"),
            ("fe80::1%lo:5", "[fe80::1%lo]:5"),
            ("a]:b:5", "a]:b:5"),
            ("[[x]:5", "[[x]:5"),
            (":5", ":5"),
        ] {
            let endpoint = parse(input);
            assert_eq!(endpoint.to_string(), shown, "{input}");
            assert_eq!(parse(shown), endpoint, "{input}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed), cases: 1024, ..ProptestConfig::default() })]

        #[test]
        fn prop_addr_round_trips(addr in any::<SocketAddr>()) {
            // Flow info is not part of the text form.
            let addr = match addr {
                SocketAddr::V6(v6) => SocketAddr::V6(SocketAddrV6::new(*v6.ip(), v6.port(), 0, v6.scope_id())),
                v4 => v4,
            };
            let endpoint = Endpoint::from(addr);
            prop_assert_eq!(endpoint.to_string().parse::<Endpoint>(), Ok(endpoint));
        }

        #[test]
        fn prop_text_round_trips(s in "[a-z0-9:.%\\[\\]-]{0,12}:[0-9]{1,5}") {
            if let Ok(endpoint) = s.parse::<Endpoint>() {
                prop_assert_eq!(endpoint.to_string().parse::<Endpoint>(), Ok(endpoint));
            }
        }
    }
}
