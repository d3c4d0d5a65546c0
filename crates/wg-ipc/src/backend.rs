//! Backend selection (wireguard-tools `src/ipc.c`): which implementation serves an interface,
//! and the list of every interface.
//!
//! The userspace socket wins when it exists and accepts connections; otherwise the kernel is
//! asked. Every failure is an errno, because the reference reports them with `strerror`.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;

use wg_config::uapi;
use wg_config::Device;

use crate::kernel;
use crate::uapi::SocketDir;

/// The size of a kernel interface name buffer, NUL included.
const IFNAMSIZ: usize = 16;

/// A backend failure, carrying the errno the reference would print with `strerror`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpcError(pub i32);

impl IpcError {
    /// The errno value.
    pub fn errno(self) -> i32 {
        self.0
    }
}

impl From<io::Error> for IpcError {
    fn from(e: io::Error) -> Self {
        IpcError(e.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl From<uapi::ReplyError> for IpcError {
    fn from(e: uapi::ReplyError) -> Self {
        IpcError(e.errno())
    }
}

impl fmt::Display for IpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `io::Error` renders strerror followed by " (os error N)"; keep only the C text.
        let text = io::Error::from_raw_os_error(self.0).to_string();
        let cut = text.rfind(" (os error ").unwrap_or(text.len());
        f.write_str(&text[..cut])
    }
}

impl std::error::Error for IpcError {}

/// Reaches WireGuard interfaces wherever they live: UAPI sockets or the kernel.
#[derive(Debug, Clone, Default)]
pub struct Ipc {
    sockets: SocketDir,
}

impl Ipc {
    /// An `Ipc` using the default socket directory, `/var/run/wireguard`.
    pub fn new() -> Self {
        Ipc::default()
    }

    /// An `Ipc` whose UAPI sockets live in `sockets`.
    pub fn with_socket_dir(sockets: SocketDir) -> Self {
        Ipc { sockets }
    }

    /// Every WireGuard interface: kernel links first, then userspace sockets in directory
    /// order. A name served by both appears twice, as with the reference.
    pub fn list(&self) -> Result<Vec<Vec<u8>>, IpcError> {
        let mut names = kernel::list()?;
        names.extend(self.sockets.list()?);
        Ok(names)
    }

    /// Reads the state of `interface`.
    pub fn get(&self, interface: &OsStr) -> Result<Device, IpcError> {
        if self.sockets.has_interface(interface) {
            let reply = self.sockets.request(interface, uapi::GET_REQUEST)?;
            return Ok(uapi::decode_get(&reply)?);
        }
        // Upstream HEAD refuses names that cannot be a kernel interface name (IFNAMSIZ)
        // before asking the kernel; 1.0.20210914 passed them on.
        if interface.len() >= IFNAMSIZ {
            return Err(IpcError(libc::ENAMETOOLONG));
        }
        Ok(kernel::get(interface.as_bytes())?)
    }

    /// The NAT-traversal status of a wg-tunnel device (the `get=nat` UAPI extension of
    /// wg-tunnel(8)): its `key=value` lines, without `errno`. `EOPNOTSUPP` for a kernel device
    /// or a daemon without the extension (which closes the connection without a reply).
    pub fn get_nat(&self, interface: &OsStr) -> Result<Vec<(String, String)>, IpcError> {
        if !self.sockets.has_interface(interface) {
            return Err(IpcError(libc::EOPNOTSUPP));
        }
        let reply = self.sockets.request(interface, "get=nat\n\n")?;
        decode_nat(&reply)
    }

    /// Applies the delta `device` to `interface`. Endpoints must already be resolved.
    pub fn set(&self, interface: &OsStr, device: &Device) -> Result<(), IpcError> {
        if self.sockets.has_interface(interface) {
            let reply = self.sockets.request(interface, &uapi::encode_set(device))?;
            return Ok(uapi::decode_set_reply(&reply)?);
        }
        Ok(kernel::set(interface.as_bytes(), device)?)
    }
}

/// Parses a `get=nat` reply: `key=value` lines up to `errno=N` and a blank line.
fn decode_nat(reply: &str) -> Result<Vec<(String, String)>, IpcError> {
    let mut lines = Vec::new();
    for line in reply.lines() {
        let Some((key, value)) = line.split_once('=') else {
            break;
        };
        if key == "errno" {
            return match value.parse::<i32>() {
                Ok(0) => Ok(lines),
                Ok(errno) => Err(IpcError(errno.saturating_abs())),
                Err(_) => Err(IpcError(libc::EPROTO)),
            };
        }
        lines.push((key.to_owned(), value.to_owned()));
    }
    Err(IpcError(if reply.is_empty() {
        libc::EOPNOTSUPP
    } else {
        libc::EPROTO
    }))
}

#[cfg(test)]
mod nat_tests {
    use super::*;

    #[test]
    fn test_decode_nat() {
        assert_eq!(
            decode_nat("relay=1.2.3.4:5\npath=relay\nerrno=0\n\n"),
            Ok(vec![
                ("relay".to_owned(), "1.2.3.4:5".to_owned()),
                ("path".to_owned(), "relay".to_owned())
            ])
        );
        assert_eq!(decode_nat(""), Err(IpcError(libc::EOPNOTSUPP)));
        assert_eq!(decode_nat("errno=-22\n\n"), Err(IpcError(libc::EINVAL)));
        assert_eq!(decode_nat("garbage\n"), Err(IpcError(libc::EPROTO)));
    }
}
