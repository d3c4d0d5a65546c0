//! Backends that read and change WireGuard devices, behind one interface.
//!
//! A device is reached either through the UAPI socket of a userspace implementation
//! (`/var/run/wireguard/<name>.sock`: wireguard-go, boringtun, our `wg-tunnel`) or through the
//! kernel's generic netlink family. As in wireguard-tools' `src/ipc.c`, the userspace socket
//! takes precedence when it exists and accepts connections; otherwise the kernel is asked.
//!
//! This crate owns the transport only. What is said on the wire comes from `wg-config`'s model
//! and codecs; errors are errno values, because the reference prints them with `strerror`.

pub mod backend;
mod kernel;
mod netlink;
pub mod resolve;
pub mod rtnl;
pub mod uapi;

pub use backend::{Ipc, IpcError};
