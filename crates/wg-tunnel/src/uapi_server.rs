//! The UAPI server: the listening socket `/var/run/wireguard/IFNAME.sock` and its
//! connections, speaking the text protocol through wg-config's [`RequestParser`].
//!
//! Transport rules follow wireguard-go: the directory is created with mode 0755 and the socket
//! under umask 077 (`srwx------`); a stale socket file nobody listens on is replaced, and a
//! live one makes start-up fail with "unix socket in use". Every connection is non-blocking
//! and buffered both ways, so a slow client never stalls the event loop. A connection may
//! carry several requests; what each request *does* is up to a [`Handler`].
//!
//! Unlike wireguard-go, which applies a `set` line by line, a `set` here is atomic with
//! respect to its input: the [`Handler`] sees it only once its terminating blank line has
//! arrived and every line parsed. A bad line (`errno=-71` for a line without `=`,
//! `errno=-22` for an unknown key or a bad value), a line longer than [`MAX_LINE`]
//! (`errno=-22`), or a client that disconnects mid-request changes nothing; the connection is
//! then closed, as wireguard-go does after an error, and the daemon goes on serving others.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use wg_config::uapi::{encode_errno, Request, RequestParser};
use wg_config::Device;

use crate::sys;

/// Where the sockets live.
pub const SOCKET_DIR: &str = "/var/run/wireguard";

/// Requests are not read nor processed while this many reply bytes wait for the client.
pub const OUTPUT_HIGH: usize = 1 << 20;

/// A line longer than this (without `\n`) fails the request and closes the connection.
pub const MAX_LINE: usize = 64 * 1024;

/// Setting up the UAPI socket failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The socket directory could not be created.
    #[error("failed to create `{}': {source}", path.display())]
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Another process is listening on the socket.
    #[error("unix socket in use: `{}'", path.display())]
    InUse {
        /// The socket.
        path: PathBuf,
    },
    /// Binding or listening failed.
    #[error("failed to listen on uapi socket `{}': {source}", path.display())]
    Listen {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// What the server does with each request.
pub trait Handler {
    /// Answers `get=1`: the full reply, ending in `errno=0` and a blank line.
    fn get(&mut self) -> String;
    /// Applies a `set=1` delta, returning a positive errno on failure.
    fn set(&mut self, delta: &Device) -> Result<(), i32>;
    /// Applies the NAT-traversal extension keys of a `set=1` (after its delta): the relay, or
    /// `None` to turn traversal off. Positive errno on failure.
    fn set_relay(&mut self, relay: Option<crate::nat::RelayConfig>) -> Result<(), i32> {
        let _ = relay;
        Err(libc::EINVAL)
    }
    /// Answers the `get=nat` extension operation: `key=value` lines, without the `errno`.
    fn get_nat(&mut self) -> String {
        String::new()
    }
}

/// The NAT-traversal extension keys seen in the current `set` (see [`crate::nat`]).
#[derive(Debug, Default, Clone)]
struct NatKeys {
    /// `relay=`: `Some(None)` for an empty value (off).
    relay: Option<Option<std::net::SocketAddr>>,
    public_key: Option<[u8; 32]>,
}

impl NatKeys {
    /// Takes an extension line of a `set` (device section); `None` if it is not one,
    /// `Some(Err(()))` for a bad value.
    fn line(&mut self, line: &str) -> Option<Result<(), ()>> {
        use wg_config::key::Key;
        let (key, value) = line.split_once('=')?;
        Some(match key {
            "relay" if value.is_empty() => {
                self.relay = Some(None);
                Ok(())
            }
            "relay" => value
                .parse::<std::net::SocketAddr>()
                .map(|a| self.relay = Some(Some(a)))
                .map_err(|_| ()),
            "relay_public_key" => wg_config::PublicKey::from_hex(value)
                .map(|k| self.public_key = Some(*k.as_bytes()))
                .map_err(|_| ()),
            _ => return None,
        })
    }

    /// The relay to set, if the request named one; `Err` when incomplete.
    fn resolve(&self) -> Option<Result<Option<crate::nat::RelayConfig>, ()>> {
        match (self.relay, self.public_key) {
            (None, None) => None,
            (Some(None), _) => Some(Ok(None)),
            (Some(Some(addr)), Some(key)) => Some(Ok(Some((addr, key)))),
            _ => Some(Err(())),
        }
    }
}

/// The listening socket. The file is removed by [`UapiListener::remove`], not on drop, so
/// that a forked parent cannot delete its child's socket.
#[derive(Debug)]
pub struct UapiListener {
    listener: UnixListener,
    path: PathBuf,
}

impl UapiListener {
    /// Creates `/var/run/wireguard/IFNAME.sock`.
    pub fn bind(ifname: &str) -> Result<UapiListener, ListenError> {
        Self::bind_in(Path::new(SOCKET_DIR), ifname)
    }

    /// Creates `DIR/IFNAME.sock`.
    pub fn bind_in(dir: &Path, ifname: &str) -> Result<UapiListener, ListenError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|source| ListenError::Directory {
                path: dir.to_owned(),
                source,
            })?;
        let path = dir.join(format!("{ifname}.sock"));
        let listen_error = |source| ListenError::Listen {
            path: path.clone(),
            source,
        };
        if fs::symlink_metadata(&path).is_ok() {
            if UnixStream::connect(&path).is_ok() {
                return Err(ListenError::InUse { path });
            }
            fs::remove_file(&path).map_err(listen_error)?;
        }
        let listener =
            sys::with_umask(0o077, || UnixListener::bind(&path)).map_err(listen_error)?;
        listener.set_nonblocking(true).map_err(listen_error)?;
        Ok(UapiListener { listener, path })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts one pending connection, if any.
    pub fn accept(&self) -> io::Result<Option<Connection>> {
        match self.listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(true)?;
                Ok(Some(Connection::new(stream)))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the socket file (at shutdown).
    pub fn remove(&self) {
        // Already gone is fine: someone deleted it, which is a reason to shut down anyway.
        let _ = fs::remove_file(&self.path);
    }
}

impl AsRawFd for UapiListener {
    fn as_raw_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }
}

/// One client connection: input and output buffers and the request parser.
#[derive(Debug)]
pub struct Connection {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
    parser: RequestParser,
    /// No more requests will be read: close once `output` is flushed.
    closing: bool,
    /// An operation line was read and its request has not ended yet.
    in_request: bool,
    /// After `get=nat`, waiting for its blank line.
    in_nat_get: bool,
    /// Inside a `set=1`, before its first `public_key`: extension keys are taken here.
    in_set_device: bool,
    /// The extension keys of the current `set`.
    nat_keys: NatKeys,
}

impl Connection {
    fn new(stream: UnixStream) -> Connection {
        Connection {
            stream,
            input: Vec::new(),
            output: Vec::new(),
            parser: RequestParser::new(),
            closing: false,
            in_request: false,
            in_nat_get: false,
            in_set_device: false,
            nat_keys: NatKeys::default(),
        }
    }

    /// Whether there is a reply waiting to be written.
    pub fn wants_write(&self) -> bool {
        !self.output.is_empty()
    }

    /// Whether the connection is finished and can be dropped.
    pub fn is_done(&self) -> bool {
        self.closing && self.output.is_empty()
    }

    /// Reads everything available and handles each complete request.
    pub fn on_readable(&mut self, handler: &mut impl Handler) {
        // Requests held back while the output was full come first.
        self.process(handler);
        let mut chunk = [0u8; 4096];
        while self.wants_read() {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    // End of stream: a request cut short is discarded unapplied.
                    let _ = self.parser.abort();
                    self.closing = true;
                }
                Ok(n) => {
                    self.input.extend_from_slice(&chunk[..n]);
                    self.process(handler);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closing = true;
                    self.output.clear();
                }
            }
        }
        self.on_writable();
    }

    /// Writes as much of the pending reply as the socket takes.
    pub fn on_writable(&mut self) {
        while !self.output.is_empty() {
            match self.stream.write(&self.output) {
                Ok(n) => {
                    self.output.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.output.clear();
                    self.closing = true;
                }
            }
        }
    }

    /// Whether to read more requests: not while closing, nor while the client has not read
    /// [`OUTPUT_HIGH`] bytes of replies (a client that sends `get` after `get` without
    /// reading cannot make the daemon buffer unbounded replies).
    pub fn wants_read(&self) -> bool {
        !self.closing && self.output.len() < OUTPUT_HIGH
    }

    fn process(&mut self, handler: &mut impl Handler) {
        let mut start = 0;
        while let Some(end) = self.input[start..].iter().position(|&b| b == b'\n') {
            if self.output.len() >= OUTPUT_HIGH {
                break; // resumed from on_readable once the client has read
            }
            let line = String::from_utf8_lossy(&self.input[start..start + end]).into_owned();
            start += end + 1;
            // Extensions of ours (crate::nat): `get=nat`, and the relay keys of a `set`.
            if !self.in_request && line == "get=nat" {
                self.in_request = true;
                self.in_nat_get = true;
                continue;
            }
            if self.in_nat_get {
                self.in_request = false;
                self.in_nat_get = false;
                if line.is_empty() {
                    let mut reply = handler.get_nat();
                    reply.push_str(&encode_errno(0));
                    self.output.extend_from_slice(reply.as_bytes());
                    continue;
                }
                // Like a `get=1` with trailing lines: closed without a reply.
                self.closing = true;
                break;
            }
            if !self.in_request && line == "set=1" {
                self.in_set_device = true;
                self.nat_keys = NatKeys::default();
            } else if self.in_set_device && line.starts_with("public_key=") {
                self.in_set_device = false;
            } else if self.in_set_device {
                match self.nat_keys.line(&line) {
                    None => {}
                    Some(Ok(())) => continue,
                    Some(Err(())) => {
                        let _ = self.parser.abort();
                        self.output
                            .extend_from_slice(encode_errno(libc::EINVAL).as_bytes());
                        self.closing = true;
                        break;
                    }
                }
            }
            let parsed = self.parser.line(&line);
            if !matches!(parsed, Ok(None)) {
                self.in_request = false;
            }
            match parsed {
                Ok(None) => self.in_request = true,
                Ok(Some(Request::Get)) => self.output.extend_from_slice(handler.get().as_bytes()),
                Ok(Some(Request::Set(delta))) => {
                    self.in_set_device = false;
                    let nat = std::mem::take(&mut self.nat_keys).resolve();
                    let mut errno = handler.set(&delta).err().unwrap_or(0);
                    match nat {
                        None => {}
                        Some(Err(())) => errno = libc::EINVAL,
                        Some(Ok(relay)) => {
                            if let Err(e) = handler.set_relay(relay) {
                                errno = e;
                            }
                        }
                    }
                    self.output
                        .extend_from_slice(encode_errno(errno).as_bytes());
                }
                Err(err) => {
                    // Nothing of the failed request is applied (see the module docs).
                    let _ = self.parser.abort();
                    if let Some(errno) = err.errno() {
                        self.output
                            .extend_from_slice(encode_errno(errno).as_bytes());
                    }
                    self.closing = true;
                    break;
                }
            }
        }
        self.input.drain(..start);
        if !self.closing && self.input.len() > MAX_LINE {
            // A request in progress gets an answer; a garbage first line is just closed on,
            // as an unknown operation is.
            let _ = self.parser.abort();
            if self.in_request {
                self.output
                    .extend_from_slice(encode_errno(libc::EINVAL).as_bytes());
            }
            self.closing = true;
        }
        if self.closing {
            self.input.clear();
        }
    }
}

impl AsRawFd for Connection {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records `set` deltas and answers `get` with a fixed device.
    #[derive(Default)]
    struct Recorder {
        sets: Vec<Device>,
        fail_with: Option<i32>,
        /// A `get` reply body other than the default's.
        reply: String,
    }

    impl Handler for Recorder {
        fn get(&mut self) -> String {
            if !self.reply.is_empty() {
                return format!("{}errno=0\n\n", self.reply);
            }
            wg_config::uapi::encode_get(&Device {
                listen_port: Some(51820),
                ..Device::default()
            })
        }
        fn set(&mut self, delta: &Device) -> Result<(), i32> {
            self.sets.push(delta.clone());
            self.fail_with.map_or(Ok(()), Err)
        }
    }

    /// Sends `request` (then half-closes), drives the server side to the end, and returns
    /// everything it replied.
    fn exchange(handler: &mut Recorder, request: &[u8]) -> String {
        let (client, server) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut conn = Connection::new(server);
        (&client).write_all(request).unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        while !conn.is_done() {
            conn.on_readable(handler);
        }
        drop(conn);
        let mut reply = String::new();
        (&client).read_to_string(&mut reply).unwrap();
        reply
    }

    #[test]
    fn test_several_requests_per_connection() {
        let mut h = Recorder::default();
        let reply = exchange(&mut h, b"get=1\n\nset=1\nlisten_port=5\n\nget=1\n\n");
        let get = "listen_port=51820\nerrno=0\n\n";
        assert_eq!(reply, format!("{get}errno=0\n\n{get}"));
        assert_eq!(h.sets.len(), 1);
        assert_eq!(h.sets[0].listen_port, Some(5));
    }

    #[test]
    fn test_empty_connection() {
        let mut h = Recorder::default();
        assert_eq!(exchange(&mut h, b""), "");
        assert!(h.sets.is_empty());
    }

    #[test]
    fn test_set_failure_is_negative_errno() {
        let mut h = Recorder {
            fail_with: Some(libc::EADDRINUSE),
            ..Recorder::default()
        };
        assert_eq!(
            exchange(&mut h, b"set=1\nlisten_port=5\n\n"),
            "errno=-98\n\n"
        );
    }

    #[test]
    fn test_bad_line_applies_nothing_and_closes() {
        let mut h = Recorder::default();
        let reply = exchange(&mut h, b"set=1\nlisten_port=7\nbogus\n\nget=1\n\n");
        assert_eq!(reply, "errno=-71\n\n");
        assert!(h.sets.is_empty(), "a failed set applies none of its lines");
    }

    #[test]
    fn test_bad_values_and_keys_are_einval() {
        let key = "ab".repeat(32);
        for request in [
            "set=1\nlisten_port=65536\n\n".to_owned(),
            "set=1\nlisten_port=99999999999999999999999999999\n\n".to_owned(),
            "set=1\nfwmark=-1\n\n".to_owned(),
            "set=1\nprivate_key=zz\n\n".to_owned(),
            "set=1\nfrobnicate=1\n\n".to_owned(),
            format!("set=1\npublic_key={key}\nlisten_port=1\n\n"),
            format!("set=1\npublic_key={key}\nendpoint=example.com:1\n\n"),
            format!("set=1\npublic_key={key}\nallowed_ip=10.0.0.1\n\n"),
            format!("set=1\npublic_key={key}\nprotocol_version=2\n\n"),
            format!("set=1\npublic_key={key}\nremove=false\n\n"),
            "get=1\nextra\n".to_owned(),
        ] {
            let mut h = Recorder::default();
            assert_eq!(
                exchange(&mut h, request.as_bytes()),
                "errno=-22\n\n",
                "{request:?}"
            );
            assert!(h.sets.is_empty(), "{request:?}");
        }
    }

    #[test]
    fn test_not_utf8_is_einval() {
        let mut h = Recorder::default();
        let reply = exchange(&mut h, b"set=1\nlisten_port=\xff\xfe\n\n");
        assert_eq!(reply, "errno=-22\n\n");
        assert!(h.sets.is_empty());
    }

    #[test]
    fn test_disconnect_mid_set_applies_nothing() {
        for cut in [
            &b"set=1\nlisten_port=7\n"[..],
            b"set=1\nlisten_port=7",
            b"set=1",
        ] {
            let mut h = Recorder::default();
            assert_eq!(exchange(&mut h, cut), "");
            assert!(h.sets.is_empty(), "{cut:?}");
        }
    }

    #[test]
    fn test_huge_line_fails_the_request_and_closes() {
        let mut h = Recorder::default();
        let mut request = b"set=1\nlisten_port=".to_vec();
        request.extend(std::iter::repeat(b'1').take(MAX_LINE + 10));
        request.extend_from_slice(b"\n\n");
        assert_eq!(exchange(&mut h, &request), "errno=-22\n\n");
        assert!(h.sets.is_empty());
        // Garbage with no operation line is closed on silently, as an unknown operation.
        let mut h = Recorder::default();
        assert_eq!(exchange(&mut h, &vec![b'x'; MAX_LINE + 10]), "");
    }

    #[test]
    fn test_client_that_does_not_read_gets_backpressure() {
        let mut h = Recorder::default();
        let (client, server) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut conn = Connection::new(server);
        // 20,000 requests; each reply is 27 bytes, so 540,000 bytes in all, more than the
        // socket buffer holds but less than OUTPUT_HIGH...
        let requests = b"get=1\n\n".repeat(20_000);
        let writer = std::thread::spawn(move || {
            (&client).write_all(&requests).unwrap();
            client
        });
        let start = std::time::Instant::now();
        while !writer.is_finished() {
            conn.on_readable(&mut h);
            assert!(start.elapsed().as_secs() < 10);
        }
        let client = writer.join().unwrap();
        conn.on_readable(&mut h);
        assert!(conn.output.len() < OUTPUT_HIGH);
        // ...then with replies of 64 KiB, reading stops at OUTPUT_HIGH plus one reply.
        let mut big = Recorder {
            reply: "x=1\n".repeat(16 * 1024),
            ..Recorder::default()
        };
        (&client).write_all(&b"get=1\n\n".repeat(100)).unwrap();
        conn.on_readable(&mut big);
        assert!(!conn.wants_read());
        assert!(conn.output.len() < OUTPUT_HIGH + big.reply.len() + 4096);
        assert!(
            !conn.input.is_empty(),
            "the rest waits, unread or unprocessed"
        );
        // The client reads everything; all requests are answered in the end.
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            (&client).read_to_end(&mut all).unwrap();
            all.len()
        });
        while !conn.is_done() {
            conn.on_writable();
            conn.on_readable(&mut big);
        }
        drop(conn);
        let total = reader.join().unwrap();
        let small = Recorder::default().get().len();
        assert_eq!(small, 27);
        assert_eq!(
            total,
            20_000 * small + 100 * (big.reply.len() + "errno=0\n\n".len())
        );
    }

    #[test]
    fn test_good_request_after_bad_connection() {
        // State is per connection: a fresh one after a failure is served normally.
        let mut h = Recorder::default();
        assert_eq!(exchange(&mut h, b"set=1\nbad\n"), "errno=-71\n\n");
        assert_eq!(exchange(&mut h, b"set=1\nlisten_port=9\n\n"), "errno=0\n\n");
        assert_eq!(h.sets.len(), 1);
    }

    #[test]
    fn test_unknown_operation_closes_silently() {
        let mut h = Recorder::default();
        assert_eq!(exchange(&mut h, b"frob=1\n\n"), "");
    }

    #[test]
    fn test_stale_socket_replaced_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wg0.sock");
        drop(UnixListener::bind(&path).unwrap());
        let first = UapiListener::bind_in(dir.path(), "wg0").expect("stale socket replaced");
        match UapiListener::bind_in(dir.path(), "wg0") {
            Err(ListenError::InUse { .. }) => {}
            other => panic!("expected InUse, got {other:?}"),
        }
        first.remove();
        assert!(!path.exists());
    }
}

#[cfg(test)]
mod nat_tests {
    //! The NAT-traversal extensions: relay keys in `set`, the `get=nat` operation.
    use super::*;
    use wg_config::key::Key;

    #[derive(Default)]
    struct Nat {
        sets: Vec<Device>,
        relays: Vec<Option<crate::nat::RelayConfig>>,
    }

    impl Handler for Nat {
        fn get(&mut self) -> String {
            "listen_port=1\nerrno=0\n\n".to_owned()
        }
        fn set(&mut self, delta: &Device) -> Result<(), i32> {
            self.sets.push(delta.clone());
            Ok(())
        }
        fn set_relay(&mut self, relay: Option<crate::nat::RelayConfig>) -> Result<(), i32> {
            self.relays.push(relay);
            Ok(())
        }
        fn get_nat(&mut self) -> String {
            "relay=192.0.2.1:3478\n".to_owned()
        }
    }

    fn exchange(handler: &mut Nat, request: &[u8]) -> String {
        let (client, server) = UnixStream::pair().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut conn = Connection::new(server);
        (&client).write_all(request).unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        while !conn.is_done() {
            conn.on_readable(handler);
        }
        drop(conn);
        let mut reply = String::new();
        (&client).read_to_string(&mut reply).unwrap();
        reply
    }

    const KEY: &str = "f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f10";

    #[test]
    fn test_relay_keys_are_taken_before_the_parser() {
        let mut h = Nat::default();
        let request = format!(
            "set=1\nlisten_port=7\nrelay=192.0.2.1:3478\nrelay_public_key={KEY}\npublic_key={KEY}\nallowed_ip=10.0.0.0/8\n\nget=nat\n\nget=1\n\n"
        );
        assert_eq!(
            exchange(&mut h, request.as_bytes()),
            "errno=0\n\nrelay=192.0.2.1:3478\nerrno=0\n\nlisten_port=1\nerrno=0\n\n"
        );
        assert_eq!(h.sets.len(), 1);
        assert_eq!(h.sets[0].listen_port, Some(7));
        assert_eq!(h.sets[0].peers.len(), 1);
        let key = *wg_config::PublicKey::from_hex(KEY).unwrap().as_bytes();
        assert_eq!(
            h.relays,
            vec![Some(("192.0.2.1:3478".parse().unwrap(), key))]
        );
        // An empty relay turns traversal off; a set without the keys leaves it alone.
        let mut h = Nat::default();
        assert_eq!(
            exchange(&mut h, b"set=1\nrelay=\n\nset=1\nlisten_port=1\n\n"),
            "errno=0\n\nerrno=0\n\n"
        );
        assert_eq!(h.relays, vec![None]);
    }

    #[test]
    fn test_bad_relay_keys_are_einval_and_apply_nothing() {
        for request in [
            "set=1\nrelay=not-an-address\n\n".to_owned(),
            format!("set=1\nrelay_public_key=zz{}\n\n", &KEY[2..]),
            // Inside a peer section they are unknown peer keys.
            format!("set=1\npublic_key={KEY}\nrelay=192.0.2.1:1\n\n"),
        ] {
            let mut h = Nat::default();
            assert_eq!(
                exchange(&mut h, request.as_bytes()),
                "errno=-22\n\n",
                "{request}"
            );
            assert!(h.sets.is_empty() && h.relays.is_empty(), "{request}");
        }
        // An address without a key is incomplete.
        let mut h = Nat::default();
        assert_eq!(
            exchange(&mut h, b"set=1\nrelay=192.0.2.1:1\n\n"),
            "errno=-22\n\n"
        );
        assert!(h.relays.is_empty());
        // `get=nat` with trailing lines is closed on, like `get=1`.
        let mut h = Nat::default();
        assert_eq!(exchange(&mut h, b"get=nat\nfoo=1\n\n"), "");
    }
}
