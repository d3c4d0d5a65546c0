//! The UAPI socket transport (wireguard-tools `src/ipc-uapi.h`, `ipc-uapi-unix.h`).
//!
//! One connection per operation: connect, write the request, read the reply up to the first
//! empty line, close. A socket file that refuses connections belongs to a daemon that is gone;
//! it is unlinked, exactly as the reference does, and the interface is treated as absent.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// The directory holding the UAPI sockets: `RUNSTATEDIR "/wireguard"`.
pub const SOCKET_DIR: &str = "/var/run/wireguard";

/// The suffix of every UAPI socket file.
const SOCKET_SUFFIX: &str = ".sock";

/// Where the UAPI sockets live; a field so tests can point it elsewhere.
#[derive(Debug, Clone)]
pub struct SocketDir {
    dir: PathBuf,
}

impl Default for SocketDir {
    fn default() -> Self {
        SocketDir {
            dir: PathBuf::from(SOCKET_DIR),
        }
    }
}

impl SocketDir {
    /// A socket directory at `dir` instead of the default.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SocketDir { dir: dir.into() }
    }

    /// The socket path of `interface`, or `None` when the name cannot be a socket file name
    /// (it contains `/`), in which case the reference goes straight to the kernel.
    pub fn socket_path(&self, interface: &OsStr) -> Option<PathBuf> {
        if interface.as_bytes().contains(&b'/') || interface.is_empty() {
            return None;
        }
        let mut name = interface.to_os_string();
        name.push(SOCKET_SUFFIX);
        Some(self.dir.join(name))
    }

    /// Whether `interface` is served by a userspace implementation: its socket file exists, is
    /// a socket, and connecting to it does not fail with `ECONNREFUSED`. A refusing socket is
    /// stale and gets unlinked. Any other connect error (say `EACCES` for non-root) still
    /// counts as userspace, so the caller reports that error rather than asking the kernel.
    pub fn has_interface(&self, interface: &OsStr) -> bool {
        let Some(path) = self.socket_path(interface) else {
            return false;
        };
        match fs::metadata(&path) {
            Ok(m) if m.file_type().is_socket() => {}
            _ => return false,
        }
        match UnixStream::connect(&path) {
            Ok(_) => true,
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                let _ = fs::remove_file(&path);
                false
            }
            Err(_) => true,
        }
    }

    /// The userspace interfaces, in directory order. A missing directory means none.
    pub fn list(&self) -> io::Result<Vec<Vec<u8>>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            let Some(stem) = name.as_bytes().strip_suffix(SOCKET_SUFFIX.as_bytes()) else {
                continue;
            };
            if stem.is_empty() {
                continue;
            }
            if self.has_interface(OsStr::from_bytes(stem)) {
                names.push(stem.to_vec());
            }
        }
        Ok(names)
    }

    /// Sends one request to `interface` and returns the reply, up to and including the empty
    /// line that ends it. A reply cut short (no empty line before end of input) is returned as
    /// read; judging it is the codec's job. Bytes that are not UTF-8 become U+FFFD, so a line
    /// holding them reads as an unknown key or a bad value, as the reference reads it, rather
    /// than failing the whole read.
    pub fn request(&self, interface: &OsStr, request: &str) -> io::Result<String> {
        let path = self
            .socket_path(interface)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        let stream = connect(&path)?;
        (&stream).write_all(request.as_bytes())?;
        let mut reader = BufReader::new(&stream);
        let mut reply = Vec::new();
        loop {
            let start = reply.len();
            if reader.read_until(b'\n', &mut reply)? == 0 || &reply[start..] == b"\n" {
                return Ok(String::from_utf8_lossy(&reply).into_owned());
            }
        }
    }
}

/// Connects to a socket, unlinking it if nothing listens there any more.
fn connect(path: &Path) -> io::Result<UnixStream> {
    UnixStream::connect(path).inspect_err(|e| {
        if e.raw_os_error() == Some(libc::ECONNREFUSED) {
            let _ = fs::remove_file(path);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wg-ipc-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn test_socket_path_rejects_slash() {
        let dir = SocketDir::new("/x");
        assert_eq!(
            dir.socket_path(OsStr::new("wg0")).unwrap(),
            Path::new("/x/wg0.sock")
        );
        assert!(dir.socket_path(OsStr::new("a/b")).is_none());
    }

    #[test]
    fn test_missing_dir_lists_nothing() {
        let dir = SocketDir::new("/nonexistent/wireguard-test-dir");
        assert!(dir.list().unwrap().is_empty());
    }

    #[test]
    fn test_list_skips_non_sockets_and_unlinks_stale() {
        let path = temp_dir("list");
        let dir = SocketDir::new(&path);
        fs::write(path.join("notasocket.sock"), b"").unwrap();
        fs::write(path.join(".sock"), b"").unwrap();
        let live = UnixListener::bind(path.join("live.sock")).unwrap();
        // A socket whose listener is gone refuses connections: stale.
        drop(UnixListener::bind(path.join("stale.sock")).unwrap());
        assert_eq!(dir.list().unwrap(), vec![b"live".to_vec()]);
        assert!(
            !path.join("stale.sock").exists(),
            "stale socket must be unlinked"
        );
        assert!(path.join("notasocket.sock").exists());
        drop(live);
        fs::remove_dir_all(&path).unwrap();
    }

    #[test]
    fn test_request_reads_to_blank_line() {
        let path = temp_dir("req");
        let dir = SocketDir::new(&path);
        let listener = UnixListener::bind(path.join("wgt.sock")).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert_eq!(line, "get=1\n");
            (&stream)
                .write_all(b"listen_port=5\nerrno=0\n\ntrailing junk")
                .unwrap();
        });
        let reply = dir.request(OsStr::new("wgt"), "get=1\n\n").unwrap();
        assert_eq!(reply, "listen_port=5\nerrno=0\n\n");
        server.join().unwrap();
        fs::remove_dir_all(&path).unwrap();
    }
}
