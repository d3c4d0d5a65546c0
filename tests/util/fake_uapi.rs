//! A scripted fake UAPI server: stands in for a userspace WireGuard daemon so a test can show
//! `wg` an exact state, or see the exact bytes `wg` sends.
//!
//! ```ignore
//! let sandbox = Sandbox::new();
//! let fake = FakeUapi::bind(sandbox.host_path("/run/wireguard/wg0.sock"));
//! fake.set_get_reply("listen_port=51820\nerrno=0\n\n");  // served to every `get=1`
//! fake.set_set_reply("errno=-98\n\n");                   // served to every `set=1`
//! // … run `wg show wg0` / `wg set wg0 …` in the sandbox …
//! assert_eq!(fake.requests(), vec![b"get=1\n\n".to_vec()]);
//! ```
//!
//! Contract:
//! * [`FakeUapi::bind`] creates the socket's directory (mode 0755) if needed, unlinks whatever
//!   is at the path, binds and listens; the socket is usable as soon as it returns. Dropping
//!   the server stops it and unlinks the socket (if it is still ours), so a later `wg` sees no
//!   interface.
//! * Every connection is served on its own thread. A connection carries zero or more requests;
//!   a request is the bytes up to and including the first empty line (`\n\n`, or a lone `\n`
//!   at the start of a request). Each one is recorded verbatim, in completion order, then
//!   answered: `get=1` requests (first line exactly `get=1`) with the get reply, `set=1` with
//!   the set reply; any other first line closes the connection without a reply (as
//!   wireguard-go does). Bytes left when the client closes mid-request are recorded too.
//! * A connection that closes without sending anything (the tools' existence probe) is not a
//!   request; it is only counted in [`FakeUapi::probes`].
//! * Replies are sent verbatim: the script decides whether they are well-formed, so malformed
//!   or error replies (`errno=22\n\n`) can be injected as easily as good ones.
//! * After a reply the connection stays open for the next request, as with wireguard-go,
//!   unless [`FakeUapi::set_close_after_reply`] asks for the server to close it: the way to
//!   serve a truncated reply (no blank line) that the client would otherwise wait on forever.
//! * Defaults: the get reply is an empty, valid device (`errno=0\n\n`); the set reply is
//!   `errno=0\n\n`; connections stay open.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The reply to a `set=1` request that succeeded.
pub const SET_OK: &[u8] = b"errno=0\n\n";

/// A connection that sends nothing for this long is dropped (a safety net; `wg` never waits).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
struct State {
    get_reply: Vec<u8>,
    set_reply: Vec<u8>,
    close_after_reply: bool,
    requests: Vec<Vec<u8>>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    probes: AtomicUsize,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock can only come from a bug here; the data stays usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A fake UAPI server listening on a Unix socket (see the module docs).
#[derive(Debug)]
pub struct FakeUapi {
    path: PathBuf,
    inode: u64,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl FakeUapi {
    /// Binds `path` (typically `sandbox.host_path("/run/wireguard/NAME.sock")`) and starts
    /// serving with the default replies. Panics if the socket cannot be created.
    pub fn bind(path: impl AsRef<Path>) -> FakeUapi {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => panic!("remove old {}: {e}", path.display()),
        }
        let listener =
            UnixListener::bind(&path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        let inode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
            .ino();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                get_reply: b"errno=0\n\n".to_vec(),
                set_reply: SET_OK.to_vec(),
                close_after_reply: false,
                requests: Vec::new(),
            }),
            probes: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let acceptor = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("fake-uapi {}", path.display()))
                .spawn(move || accept_loop(&listener, &shared))
                .expect("spawn fake UAPI thread")
        };
        FakeUapi {
            path,
            inode,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The socket's path (as given to [`FakeUapi::bind`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets the exact bytes sent in reply to every later `get=1` request.
    pub fn set_get_reply(&self, reply: impl Into<Vec<u8>>) {
        self.shared.lock().get_reply = reply.into();
    }

    /// Sets the exact bytes sent in reply to every later `set=1` request.
    pub fn set_set_reply(&self, reply: impl Into<Vec<u8>>) {
        self.shared.lock().set_reply = reply.into();
    }

    /// Whether the server closes each connection right after sending a reply (default
    /// `false`: it waits for another request, as wireguard-go does).
    pub fn set_close_after_reply(&self, close: bool) {
        self.shared.lock().close_after_reply = close;
    }

    /// Every request received so far, verbatim, oldest first.
    pub fn requests(&self) -> Vec<Vec<u8>> {
        self.shared.lock().requests.clone()
    }

    /// [`FakeUapi::requests`], clearing the record.
    pub fn take_requests(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.shared.lock().requests)
    }

    /// How many connections closed without sending a byte (existence probes).
    pub fn probes(&self) -> usize {
        self.shared.probes.load(Ordering::SeqCst)
    }
}

impl Drop for FakeUapi {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept(); if the socket is gone the thread is stuck in accept() on a
        // listener nobody can reach, and it is left to die with the process.
        if UnixStream::connect(&self.path).is_ok() {
            if let Some(acceptor) = self.acceptor.take() {
                let _ = acceptor.join();
            }
        }
        // Unlink only our own socket, not one a test (or wg's stale-socket cleanup) replaced.
        if std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_socket() && m.ino() == self.inode)
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn accept_loop(listener: &UnixListener, shared: &Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else { continue };
        let shared = Arc::clone(shared);
        // Serving on a thread: a client that holds a connection open cannot block others.
        let _ = thread::Builder::new()
            .name("fake-uapi conn".into())
            .spawn(move || serve(conn, &shared));
    }
}

/// Where the request at the start of `buf` ends (just past its empty line), if complete.
fn request_end(buf: &[u8]) -> Option<usize> {
    if buf.first() == Some(&b'\n') {
        return Some(1);
    }
    buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2)
}

fn serve(mut conn: UnixStream, shared: &Shared) {
    let _ = conn.set_read_timeout(Some(IDLE_TIMEOUT));
    let mut buf = Vec::new();
    let mut received_any = false;
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = request_end(&buf) {
            let request: Vec<u8> = buf.drain(..end).collect();
            let (reply, close) = {
                let mut state = shared.lock();
                state.requests.push(request.clone());
                let reply = if request.starts_with(b"get=1\n") {
                    Some(state.get_reply.clone())
                } else if request.starts_with(b"set=1\n") {
                    Some(state.set_reply.clone())
                } else {
                    None
                };
                (reply, state.close_after_reply)
            };
            match reply {
                Some(reply) if conn.write_all(&reply).is_ok() && !close => {}
                _ => return,
            }
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                received_any = true;
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
    if !buf.is_empty() {
        shared.lock().requests.push(buf);
    } else if !received_any {
        shared.probes.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(path: &Path, request: &[u8]) -> Vec<u8> {
        let mut c = UnixStream::connect(path).expect("connect");
        c.write_all(request).expect("write");
        c.shutdown(std::net::Shutdown::Write).expect("shutdown");
        let mut out = Vec::new();
        // A server that closes on a bogus request may reset the connection: keep what came.
        let _ = c.read_to_end(&mut out);
        out
    }

    #[test]
    fn test_request_end() {
        assert_eq!(request_end(b"get=1\n\n"), Some(7));
        assert_eq!(request_end(b"\nget=1\n"), Some(1));
        assert_eq!(request_end(b"set=1\nlisten_port=1\n"), None);
        assert_eq!(request_end(b""), None);
    }

    #[test]
    fn test_scripted_replies_and_recording() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("wireguard/wg0.sock");
        let fake = FakeUapi::bind(&path);
        // A probe: connect and close.
        drop(UnixStream::connect(&path).expect("probe"));
        assert_eq!(roundtrip(&path, b"get=1\n\n"), b"errno=0\n\n");
        fake.set_get_reply("listen_port=1\nerrno=0\n\n");
        fake.set_set_reply("errno=-98\n\n");
        assert_eq!(
            roundtrip(&path, b"get=1\n\nset=1\nfwmark=1\n\n"),
            b"listen_port=1\nerrno=0\n\nerrno=-98\n\n"
        );
        assert_eq!(roundtrip(&path, b"bogus=1\n\nget=1\n\n"), b"");
        fake.set_close_after_reply(true);
        fake.set_get_reply("errno=0\n");
        assert_eq!(roundtrip(&path, b"get=1\n\nget=1\n\n"), b"errno=0\n");
        assert_eq!(
            fake.take_requests(),
            vec![
                b"get=1\n\n".to_vec(),
                b"get=1\n\n".to_vec(),
                b"set=1\nfwmark=1\n\n".to_vec(),
                b"bogus=1\n\n".to_vec(),
                b"get=1\n\n".to_vec(),
            ]
        );
        // The probe thread may still be finishing; the count is eventually exact.
        for _ in 0..200 {
            if fake.probes() == 1 {
                break;
            }
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(fake.probes(), 1);
        drop(fake);
        assert!(!path.exists(), "socket not unlinked on drop");
    }
}
