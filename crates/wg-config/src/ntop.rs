//! IP address text exactly as glibc's `inet_ntop` (and `getnameinfo` with `NI_NUMERICHOST`)
//! writes it, which is what the reference tools print.
//!
//! Rust's `Ipv6Addr` formatting follows RFC 5952 like glibc, with one exception: glibc keeps
//! the deprecated IPv4-compatible form, writing `::1.2.3.4` where Rust writes `::102:304`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Displays an [`IpAddr`] the glibc way.
#[derive(Debug, Clone, Copy)]
pub struct Ntop(pub IpAddr);

impl fmt::Display for Ntop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => fmt_v6(&v6, f),
        }
    }
}

fn fmt_v6(addr: &Ipv6Addr, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let s = addr.segments();
    // glibc writes the last 32 bits as a dotted quad when the longest zero run is exactly the
    // first six groups (IPv4-compatible) or the first five followed by ffff (IPv4-mapped, which
    // Rust already writes the same way).
    if s[..6] == [0; 6] && s[6] != 0 {
        let [a, b, c, d] = addr.octets()[12..] else {
            unreachable!("an IPv6 address has 16 octets")
        };
        return write!(f, "::{}", Ipv4Addr::new(a, b, c, d));
    }
    write!(f, "{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_matches_glibc() {
        // Expected strings are what glibc's inet_ntop prints (checked with Python's
        // socket.inet_ntop, a thin wrapper around it).
        for (input, glibc) in [
            ("::1.2.3.4", "::1.2.3.4"),
            ("::ffff:1.2.3.4", "::ffff:1.2.3.4"),
            ("1:0:2:0:0:3:0:4", "1:0:2::3:0:4"),
            ("::", "::"),
            ("::1", "::1"),
            ("::0.0.0.1", "::1"),
            ("0:0:0:0:0:1:2:3", "::1:2:3"),
            ("::ffff:0:1.2.3.4", "::ffff:0:102:304"),
            ("64:ff9b::1.2.3.4", "64:ff9b::102:304"),
            ("2001:DB8::1", "2001:db8::1"),
        ] {
            let addr: IpAddr = input.parse().unwrap();
            assert_eq!(Ntop(addr).to_string(), glibc, "{input}");
        }
    }
}
