//! Endpoint resolution at the edge, as wireguard-tools `parse_endpoint` (`src/config.c`) does
//! it: `getaddrinfo(host, port, AF_UNSPEC, SOCK_DGRAM, IPPROTO_UDP)`, first result used, with
//! the reference's retry policy for transient failures.
//!
//! `wg-config` parses an endpoint into an [`Endpoint`]; a hostname, or an IPv6 literal scoped by
//! an interface name, stays an [`Endpoint::Host`] until [`resolve_endpoint`] turns it into what
//! the reference would put on the wire: the numeric form `getnameinfo(NI_NUMERICHOST)` gives
//! (so a link-local scope is written as an interface name, `[fe80::1%lo]:51820`, exactly as the
//! reference's UAPI request carries it).
//!
//! Retry policy ([`retry_loop`]):
//! * `EAI_NONAME`, `EAI_FAIL` and `EAI_NODATA` are permanent: fail at once.
//! * Anything else is retried up to [`Retries`] times (default 15, from
//!   `WG_ENDPOINT_RESOLUTION_RETRIES`, or `infinity`), waiting 1 s, then ×1.2 each time, capped
//!   at 20 s. Before each wait the caller's `wait` hook is told the failure and the delay: the
//!   binary prints ``<error>: `<value>'. Trying again in %.2f seconds...`` and sleeps; tests
//!   record the schedule instead of sleeping.
//!
//! This module holds all of the crate's name-resolution FFI (`getaddrinfo`, `gai_strerror`,
//! `if_indextoname`); each `unsafe` block states what it relies on.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use wg_config::ntop::Ntop;
use wg_config::Endpoint;

/// The environment variable holding the retry count.
pub const RETRIES_ENV: &str = "WG_ENDPOINT_RESOLUTION_RETRIES";

/// Retries when [`RETRIES_ENV`] is unset.
pub const DEFAULT_RETRIES: u32 = 15;

/// The first delay between attempts, in microseconds (the reference counts in µs).
const FIRST_DELAY_US: u32 = 1_000_000;

/// The longest delay between attempts, in microseconds.
const MAX_DELAY_US: u32 = 20_000_000;

/// How many times a transient lookup failure is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retries {
    /// At most this many retries after the first attempt.
    Limited(u32),
    /// Retry forever (`infinity`).
    Infinite,
}

impl Default for Retries {
    fn default() -> Self {
        Retries::Limited(DEFAULT_RETRIES)
    }
}

/// A [`RETRIES_ENV`] value that is neither `infinity` nor a count.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("Unable to parse WG_ENDPOINT_RESOLUTION_RETRIES: `{0}'")]
pub struct RetriesError(pub String);

impl Retries {
    /// Reads [`RETRIES_ENV`]. The reference reads it for every endpoint it parses, literal or
    /// not, and exits on a bad value; callers do the same.
    pub fn from_env() -> Result<Retries, RetriesError> {
        Retries::parse(std::env::var_os(RETRIES_ENV).as_deref())
    }

    /// Parses a [`RETRIES_ENV`] value (`None`: unset) as the reference's `strtoul` check does:
    /// leading whitespace and one sign are accepted, the rest must be decimal digits (an empty
    /// value is 0), and the value must be at most `INT_MAX` (a negative number wraps to a huge
    /// one, so it is refused). `infinity` (exactly) retries forever.
    pub fn parse(value: Option<&OsStr>) -> Result<Retries, RetriesError> {
        let Some(value) = value else {
            return Ok(Retries::default());
        };
        let bytes = value.as_bytes();
        if bytes == b"infinity" {
            return Ok(Retries::Infinite);
        }
        let invalid = || RetriesError(value.to_string_lossy().into_owned());
        let rest = bytes.trim_ascii_start();
        let (negative, digits) = match rest.split_first() {
            Some((b'-', digits)) => (true, digits),
            Some((b'+', digits)) => (false, digits),
            _ => (false, rest),
        };
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(invalid());
        }
        // Without any digit strtoul converts nothing and leaves `end` at the start of the
        // value, which is junk unless the value is empty.
        if digits.is_empty() && !bytes.is_empty() {
            return Err(invalid());
        }
        let magnitude = digits.iter().try_fold(0u64, |acc, &d| {
            acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        });
        match magnitude {
            Some(0) => Ok(Retries::Limited(0)),
            Some(n) if !negative && n <= i32::MAX as u64 => {
                Ok(Retries::Limited(u32::try_from(n).map_err(|_| invalid())?))
            }
            _ => Err(invalid()),
        }
    }
}

/// One failed `getaddrinfo` call: the `EAI_*` code and its text (`gai_strerror`, or
/// `strerror(errno)` for `EAI_SYSTEM`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupFailure {
    /// The `EAI_*` code.
    pub code: i32,
    /// The message the reference prints for it.
    pub message: String,
}

impl LookupFailure {
    /// Builds the failure for `code`, reading `errno` for `EAI_SYSTEM`.
    fn from_code(code: i32) -> LookupFailure {
        let message = if code == libc::EAI_SYSTEM {
            strerror(io::Error::last_os_error())
        } else {
            // SAFETY: gai_strerror returns a pointer to a static, NUL-terminated string for any
            // code (glibc answers "Unknown error" for codes it does not know).
            unsafe { CStr::from_ptr(libc::gai_strerror(code)) }
                .to_string_lossy()
                .into_owned()
        };
        LookupFailure { code, message }
    }

    /// Whether retrying cannot help: `EAI_NONAME`, `EAI_FAIL` or `EAI_NODATA` (glibc's
    /// "permanent failure" codes, which the reference does not retry).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self.code,
            libc::EAI_NONAME | libc::EAI_FAIL | libc::EAI_NODATA
        )
    }
}

/// An endpoint that could not be resolved. `Display` is the reference's message, quoting the
/// endpoint text as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The lookup failed permanently, or transiently more often than allowed.
    #[error("{}: `{value}'", failure.message)]
    Lookup {
        /// The last failure.
        failure: LookupFailure,
        /// The endpoint text.
        value: String,
    },
    /// The first result was neither IPv4 nor IPv6.
    #[error("Neither IPv4 nor IPv6 address found: `{value}'")]
    NoAddress {
        /// The endpoint text.
        value: String,
    },
}

/// Resolves `endpoint` (parsed from the text `value`, which messages quote) into the form the
/// reference sends: a numeric address, or for a link-local IPv6 address with a scope, the
/// address with its interface name (`fe80::1%lo`).
///
/// An [`Endpoint::Addr`] needs no lookup (getaddrinfo cannot fail on a numeric host and port);
/// only its scope is named. An [`Endpoint::Host`] is looked up with the retry policy of the
/// module docs; `wait(failure, delay)` runs before each retry and must report the failure and
/// sleep for `delay` (see [`retry_message`]).
pub fn resolve_endpoint(
    endpoint: &Endpoint,
    value: &str,
    retries: Retries,
    wait: &mut dyn FnMut(&ResolveError, Duration),
) -> Result<Endpoint, ResolveError> {
    let (host, port) = match endpoint {
        Endpoint::Addr(addr) => return Ok(numeric_endpoint(*addr)),
        Endpoint::Host { host, port } => (host, *port),
    };
    let as_error = |failure: LookupFailure| ResolveError::Lookup {
        failure,
        value: value.to_owned(),
    };
    let found = retry_loop(
        retries,
        || lookup(host, port),
        |failure, delay| wait(&as_error(failure.clone()), delay),
    )
    .map_err(as_error)?;
    match found {
        Some(addr) => Ok(numeric_endpoint(addr)),
        None => Err(ResolveError::NoAddress {
            value: value.to_owned(),
        }),
    }
}

/// The line the reference prints before waiting `delay` to retry after `error`:
/// ``<error>. Trying again in %.2f seconds...`` (without the newline).
pub fn retry_message(error: &ResolveError, delay: Duration) -> String {
    format!(
        "{error}. Trying again in {:.2} seconds...",
        delay.as_secs_f64()
    )
}

/// Calls `attempt` until it succeeds, fails permanently, or has failed transiently `retries`
/// times after the first attempt; before each retry `wait(failure, delay)` is called with the
/// delay schedule 1 s, ×1.2 each time (in whole microseconds, as the reference computes it),
/// capped at 20 s. Returns the last failure when giving up.
pub fn retry_loop<T>(
    retries: Retries,
    mut attempt: impl FnMut() -> Result<T, LookupFailure>,
    mut wait: impl FnMut(&LookupFailure, Duration),
) -> Result<T, LookupFailure> {
    let mut left = retries;
    let mut delay_us = FIRST_DELAY_US;
    loop {
        let failure = match attempt() {
            Ok(found) => return Ok(found),
            Err(failure) => failure,
        };
        if failure.is_permanent() {
            return Err(failure);
        }
        match &mut left {
            Retries::Limited(0) => return Err(failure),
            Retries::Limited(n) => *n -= 1,
            Retries::Infinite => {}
        }
        wait(&failure, Duration::from_micros(u64::from(delay_us)));
        delay_us = MAX_DELAY_US.min(delay_us * 6 / 5);
    }
}

/// One `getaddrinfo(host, port, {AF_UNSPEC, SOCK_DGRAM, IPPROTO_UDP})`: the first result, or
/// `None` when it is neither IPv4 nor IPv6.
fn lookup(host: &str, port: u16) -> Result<Option<SocketAddr>, LookupFailure> {
    // A NUL cannot come from argv, and config lines are cut at NUL before parsing.
    let Ok(host) = CString::new(host) else {
        return Err(LookupFailure::from_code(libc::EAI_NONAME));
    };
    let service = CString::new(port.to_string()).expect("decimal digits contain no NUL");
    // SAFETY: an all-zero addrinfo is a valid "no hints" value; the fields set below are the
    // only ones getaddrinfo reads from hints.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = libc::AF_UNSPEC;
    hints.ai_socktype = libc::SOCK_DGRAM;
    hints.ai_protocol = libc::IPPROTO_UDP;
    let mut list: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: host and service are NUL-terminated strings that outlive the call, hints is
    // initialised, and list is a valid out-pointer.
    let code = unsafe { libc::getaddrinfo(host.as_ptr(), service.as_ptr(), &hints, &mut list) };
    if code != 0 {
        return Err(LookupFailure::from_code(code));
    }
    // SAFETY: on success getaddrinfo stores a non-empty list; the first entry's ai_addr points
    // to ai_addrlen bytes of the family's sockaddr. The list is freed exactly once, after the
    // address has been copied out.
    let found = unsafe {
        let first = &*list;
        let addr = sockaddr_to_std(first.ai_family, first.ai_addr, first.ai_addrlen);
        libc::freeaddrinfo(list);
        addr
    };
    Ok(found)
}

/// Copies a `sockaddr_in` / `sockaddr_in6` into a [`SocketAddr`]; `None` for other families
/// or a length that does not match the family.
///
/// # Safety
/// `addr` must point to at least `len` readable bytes.
unsafe fn sockaddr_to_std(
    family: libc::c_int,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    let len = len as usize;
    if family == libc::AF_INET && len == std::mem::size_of::<libc::sockaddr_in>() {
        // SAFETY: the caller guarantees `len` bytes, which is exactly a sockaddr_in; the read is
        // unaligned-safe.
        let sin: libc::sockaddr_in = unsafe { std::ptr::read_unaligned(addr.cast()) };
        let ip = u32::from_be(sin.sin_addr.s_addr);
        Some(SocketAddr::V4(SocketAddrV4::new(
            ip.into(),
            u16::from_be(sin.sin_port),
        )))
    } else if family == libc::AF_INET6 && len == std::mem::size_of::<libc::sockaddr_in6>() {
        // SAFETY: as above, for a sockaddr_in6.
        let sin6: libc::sockaddr_in6 = unsafe { std::ptr::read_unaligned(addr.cast()) };
        Some(SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::from(sin6.sin6_addr.s6_addr),
            u16::from_be(sin6.sin6_port),
            sin6.sin6_flowinfo,
            sin6.sin6_scope_id,
        )))
    } else {
        None
    }
}

/// The endpoint as `getnameinfo(NI_NUMERICHOST | NI_NUMERICSERV)` writes it, which is what the
/// reference's UAPI request carries: a scope id stays numeric except on link-local unicast or
/// multicast addresses, where it becomes the interface name if that index exists.
pub fn numeric_endpoint(addr: SocketAddr) -> Endpoint {
    let SocketAddr::V6(v6) = addr else {
        return Endpoint::Addr(addr);
    };
    // Flow labels are not part of an endpoint's text (getnameinfo ignores them).
    let v6 = SocketAddrV6::new(*v6.ip(), v6.port(), 0, v6.scope_id());
    let octets = v6.ip().octets();
    let link_local = (octets[0] == 0xfe && octets[1] & 0xc0 == 0x80)
        || (octets[0] == 0xff && octets[1] & 0x0f == 0x02);
    if v6.scope_id() != 0 && link_local {
        if let Some(name) = interface_name(v6.scope_id()) {
            return Endpoint::Host {
                host: format!("{}%{name}", Ntop((*v6.ip()).into())),
                port: v6.port(),
            };
        }
    }
    Endpoint::Addr(SocketAddr::V6(v6))
}

/// Rewrites every resolved peer endpoint of a state into the form the reference prints
/// (see [`numeric_endpoint`]): link-local scope ids become interface names.
pub fn name_endpoint_scopes(device: &mut wg_config::Device) {
    for peer in &mut device.peers {
        if let Some(Endpoint::Addr(addr)) = peer.endpoint {
            peer.endpoint = Some(numeric_endpoint(addr));
        }
    }
}

/// `if_indextoname`, or `None` when no interface has that index.
fn interface_name(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buf has the IF_NAMESIZE bytes if_indextoname may write, NUL included.
    let name = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if name.is_null() {
        return None;
    }
    // SAFETY: on success buf holds a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Some(name.to_string_lossy().into_owned())
}

/// `strerror` text without Rust's ` (os error N)` suffix.
fn strerror(e: io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<Retries, String> {
        Retries::parse(Some(OsStr::new(value))).map_err(|e| e.to_string())
    }

    #[test]
    fn test_parse_retries() {
        assert_eq!(Retries::parse(None), Ok(Retries::Limited(15)));
        assert_eq!(parse("infinity"), Ok(Retries::Infinite));
        assert_eq!(parse("0"), Ok(Retries::Limited(0)));
        assert_eq!(parse(""), Ok(Retries::Limited(0)));
        assert_eq!(parse(" 2"), Ok(Retries::Limited(2)));
        assert_eq!(parse("+3"), Ok(Retries::Limited(3)));
        assert_eq!(parse("-0"), Ok(Retries::Limited(0)));
        assert_eq!(parse("2147483647"), Ok(Retries::Limited(i32::MAX as u32)));
        for bad in [
            "-1",
            "2147483648",
            "99999999999999999999999",
            "2x",
            "INFINITY",
            "0x10",
            "2 ",
            "+",
            " -",
            "  ",
        ] {
            assert_eq!(
                parse(bad),
                Err(format!(
                    "Unable to parse WG_ENDPOINT_RESOLUTION_RETRIES: `{bad}'"
                ))
            );
        }
    }

    fn transient() -> LookupFailure {
        LookupFailure::from_code(libc::EAI_AGAIN)
    }

    /// Runs the loop with a lookup that fails `failures` times, recording the delays.
    fn schedule(retries: Retries, failures: usize, failure: LookupFailure) -> (bool, Vec<u64>) {
        let mut calls = 0;
        let mut delays = Vec::new();
        let result = retry_loop(
            retries,
            || {
                calls += 1;
                if calls > failures {
                    Ok(())
                } else {
                    Err(failure.clone())
                }
            },
            |_, delay| delays.push(delay.as_micros() as u64),
        );
        (result.is_ok(), delays)
    }

    #[test]
    fn test_retry_schedule() {
        // The default: 15 retries, then the last failure is final.
        let (ok, delays) = schedule(Retries::default(), usize::MAX, transient());
        assert!(!ok);
        assert_eq!(delays.len(), 15);
        assert_eq!(
            delays[..8],
            [
                1_000_000, 1_200_000, 1_440_000, 1_728_000, 2_073_600, 2_488_320, 2_985_984,
                3_583_180
            ]
        );
        let shown: Vec<String> = delays
            .iter()
            .map(|&us| format!("{:.2}", Duration::from_micros(us).as_secs_f64()))
            .collect();
        assert_eq!(shown[0], "1.00");
        assert_eq!(shown[2], "1.44");
        assert_eq!(shown[14], "12.84", "the reference's observed last delay");

        // Capped at 20 s; infinite retries until success.
        let (ok, delays) = schedule(Retries::Infinite, 40, transient());
        assert!(ok);
        assert_eq!(delays.len(), 40);
        assert!(delays[..17].iter().all(|&d| d < 20_000_000));
        assert!(delays[17..].iter().all(|&d| d == 20_000_000));

        // Success within the budget; zero retries; permanent failures never wait.
        assert_eq!(
            schedule(Retries::Limited(3), 2, transient()),
            (true, vec![1_000_000, 1_200_000])
        );
        assert_eq!(
            schedule(Retries::Limited(0), 1, transient()),
            (false, vec![])
        );
        for code in [libc::EAI_NONAME, libc::EAI_FAIL, libc::EAI_NODATA] {
            let failure = LookupFailure::from_code(code);
            assert!(failure.is_permanent());
            assert_eq!(schedule(Retries::Infinite, 1, failure), (false, vec![]));
        }
    }

    #[test]
    fn test_messages() {
        let error = ResolveError::Lookup {
            failure: LookupFailure::from_code(libc::EAI_NONAME),
            value: "nonexistent.invalid:51820".into(),
        };
        assert_eq!(
            error.to_string(),
            "Name or service not known: `nonexistent.invalid:51820'"
        );
        assert_eq!(
            retry_message(&error, Duration::from_micros(1_728_000)),
            "Name or service not known: `nonexistent.invalid:51820'. Trying again in 1.73 seconds..."
        );
        assert_eq!(
            LookupFailure::from_code(libc::EAI_AGAIN).message,
            "Temporary failure in name resolution"
        );
    }

    fn resolve(value: &str) -> Result<String, String> {
        let endpoint: Endpoint = value.parse().unwrap();
        let mut wait = |_: &ResolveError, _: Duration| panic!("no retries expected");
        resolve_endpoint(&endpoint, value, Retries::Limited(0), &mut wait)
            .map(|e| e.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn test_resolve_literals_and_localhost() {
        assert_eq!(resolve("1.2.3.4:5").unwrap(), "1.2.3.4:5");
        assert_eq!(resolve("[::1]:5").unwrap(), "[::1]:5");
        assert_eq!(resolve("::1:51820").unwrap(), "[::1]:51820");
        assert_eq!(resolve("[::1.2.3.4]:5").unwrap(), "[::1.2.3.4]:5");
        // inet_aton forms go through getaddrinfo, as in the reference.
        assert_eq!(resolve("10.1:5").unwrap(), "10.0.0.1:5");
        // A scope on a global address stays numeric; a link-local one is named if it exists.
        assert_eq!(resolve("[2001:db8::1%7]:5").unwrap(), "[2001:db8::1%7]:5");
        assert_eq!(resolve("[fe80::1%lo]:5").unwrap(), "[fe80::1%lo]:5");
        assert_eq!(resolve("[fe80::1%1]:5").unwrap(), "[fe80::1%lo]:5");
        assert_eq!(resolve("[ff02::1%1]:5").unwrap(), "[ff02::1%lo]:5");
        assert_eq!(resolve("[fe80::1%999999]:5").unwrap(), "[fe80::1%999999]:5");
        // localhost comes from /etc/hosts; its first result is IPv4 or IPv6 loopback.
        let local = resolve("localhost:7").unwrap();
        assert!(local == "127.0.0.1:7" || local == "[::1]:7", "{local}");
        // Failing lookups may ask DNS, so they are tested in the sandboxed integration tests.
    }
}
