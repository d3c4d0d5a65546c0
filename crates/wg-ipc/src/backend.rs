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

    /// Applies the delta `device` to `interface`. Endpoints must already be resolved.
    pub fn set(&self, interface: &OsStr, device: &Device) -> Result<(), IpcError> {
        if self.sockets.has_interface(interface) {
            let reply = self.sockets.request(interface, &uapi::encode_set(device))?;
            return Ok(uapi::decode_set_reply(&reply)?);
        }
        Ok(kernel::set(interface.as_bytes(), device)?)
    }
}
