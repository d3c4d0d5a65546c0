//! `wg-tunnel`: the userspace WireGuard daemon, the I/O shell around the sans-IO
//! [`wg_proto::Tunnel`]. It owns everything wg-proto must not: the TUN device, the UDP socket,
//! the UAPI socket, the clock and the OS RNG. Invoked like wireguard-go:
//! `wg-tunnel [-f|--foreground] IFNAME`.
//!
//! | module          | owns                                                              |
//! |-----------------|-------------------------------------------------------------------|
//! | [`tun`]         | the TUN interface (`/dev/net/tun`, `IFF_VNET_HDR` offloads)       |
//! | [`offload`]     | TSO/USO segmentation and GRO coalescing, pure (no I/O)            |
//! | [`bind`]        | the dual-stack UDP socket                                         |
//! | [`batch`]       | reusable packet batches, the unit the shell moves data in         |
//! | [`demux`]       | non-WireGuard datagrams on the UDP socket, for another consumer   |
//! | [`uapi_server`] | `/var/run/wireguard/IFNAME.sock` and its connections              |
//! | [`device`]      | the configuration model kept in step with the tunnel              |
//! | [`crypto`]      | the crypto worker pool (fork-join AEAD per batch; own `unsafe`)   |
//! | [`event_loop`]  | the single-threaded `poll(2)` loop, the only reader of the clock  |
//! | [`log`]         | `LOG_LEVEL` logging to stderr                                     |
//! | [`privileges`]  | dropping all but two capabilities after setup (own `unsafe`)      |
//! | `sys`           | all other `unsafe`: ioctl, poll, signalfd, fork, umask, `SO_MARK`  |
//!
//! Lifecycle (as wireguard-go): create the TUN device and the UAPI socket, then daemonise
//! unless `-f` or `WG_PROCESS_FOREGROUND=1`, so both exist when the command returns; bind the
//! UDP socket and set up the watches, then give up every capability but `CAP_NET_ADMIN` and
//! `CAP_NET_BIND_SERVICE` ([`privileges`]); run until
//! SIGINT/SIGTERM, until the interface is deleted (then remove the socket file) or until the
//! socket file is deleted; exit 0.

pub mod batch;
pub mod bind;
pub mod crypto;
pub mod demux;
pub mod device;
pub mod event_loop;
pub mod log;
pub mod nat;
pub mod offload;
pub mod privileges;
mod sys;
pub mod tun;
pub mod uapi_server;

use std::ffi::OsString;
use std::io;

use crate::device::Interface;
use crate::event_loop::Exit;
use crate::log::{info, Level};
use crate::tun::{LinkMonitor, Tun};
use crate::uapi_server::{ListenError, UapiListener};

/// What the command line and environment ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Stay in the foreground (`-f`, `--foreground`, or `WG_PROCESS_FOREGROUND=1`).
    pub foreground: bool,
    /// The interface to create.
    pub ifname: String,
    /// From `LOG_LEVEL`; `None` when it is unset. Errors are logged either way, but as in
    /// wireguard-go a daemonised process keeps stdout/stderr only when it is set (and not
    /// `silent`), so that `wg-tunnel wg0` in a pipeline returns without holding it open.
    pub log_level: Option<Level>,
}

/// The command line was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsageError {
    /// Wrong arguments; holds the program name for the usage line.
    #[error("Usage: {0} [-f/--foreground] INTERFACE-NAME")]
    Usage(String),
}

impl Options {
    /// Parses `argv` (including argv\[0\]) with the values of `WG_PROCESS_FOREGROUND` and
    /// `LOG_LEVEL`.
    pub fn parse(
        argv: impl IntoIterator<Item = OsString>,
        foreground_env: Option<&str>,
        log_level_env: Option<&str>,
    ) -> Result<Options, UsageError> {
        let mut argv = argv.into_iter().map(|a| a.to_string_lossy().into_owned());
        let program = argv.next().unwrap_or_else(|| "wg-tunnel".to_owned());
        let usage = || UsageError::Usage(program.clone());
        let args: Vec<String> = argv.collect();
        let (foreground, ifname) = match args.as_slice() {
            [flag, name] if flag == "-f" || flag == "--foreground" => (true, name),
            [name] if !name.starts_with('-') => (false, name),
            _ => return Err(usage()),
        };
        if ifname.is_empty() || ifname.len() >= sys::IFNAMSIZ || ifname.contains('/') {
            return Err(usage());
        }
        Ok(Options {
            foreground: foreground || foreground_env == Some("1"),
            ifname: ifname.clone(),
            log_level: log_level_env.map(|v| Level::from_env_value(Some(v))),
        })
    }
}

/// Running the daemon failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The TUN interface could not be created.
    #[error("failed to create TUN device `{ifname}': {source}")]
    CreateTun {
        /// The requested name.
        ifname: String,
        /// Why.
        source: io::Error,
    },
    /// The UAPI socket could not be set up.
    #[error(transparent)]
    Uapi(#[from] ListenError),
    /// Forking into the background failed.
    #[error("failed to daemonize: {0}")]
    Daemonize(io::Error),
    /// SIGINT/SIGTERM, the socket file's deletion or link changes could not be routed to the
    /// loop.
    #[error("failed to set up signal or socket watching: {0}")]
    Signals(io::Error),
    /// The initial UDP socket could not be bound.
    #[error("failed to bind UDP socket: {0}")]
    Bind(io::Error),
    /// poll(2) failed.
    #[error("event loop failed: {0}")]
    EventLoop(io::Error),
    /// The capabilities not needed after setup could not be given up.
    #[error("failed to drop privileges: {0}")]
    Privileges(io::Error),
}

/// Runs the daemon to completion.
pub fn run(options: &Options) -> Result<(), Error> {
    log::set_level(options.log_level.unwrap_or(Level::Error));
    // Block SIGINT/SIGTERM before anything exists that a signal would leave behind: from here
    // on they queue for the loop (the mask and the signalfd survive daemonising), so a signal
    // that arrives while the socket is being created still ends in a clean shutdown.
    let signals = sys::termination_signalfd().map_err(Error::Signals)?;
    let tun = Tun::create(&options.ifname).map_err(|source| Error::CreateTun {
        ifname: options.ifname.clone(),
        source,
    })?;
    let ifname = tun.name().to_owned();
    let uapi = UapiListener::bind(&ifname)?;
    if !options.foreground {
        let keep_output = options.log_level.is_some_and(|l| l != Level::Silent);
        if let Err(e) = sys::daemonize(keep_output) {
            uapi.remove();
            return Err(Error::Daemonize(e));
        }
    }
    info!(&ifname, "device started, UAPI at {}", uapi.path().display());
    let result = serve(&tun, &uapi, &signals);
    // A socket file someone else removed may since have been re-created by another daemon.
    if !matches!(result, Ok(Exit::SocketRemoved)) {
        uapi.remove();
    }
    info!(&ifname, "shut down");
    result.map(drop)
}

fn serve(tun: &Tun, uapi: &UapiListener, signals: &std::fs::File) -> Result<Exit, Error> {
    let socket_watch = sys::watch_unlink(uapi.path()).map_err(Error::Signals)?;
    let links = LinkMonitor::new().map_err(Error::Signals)?;
    let mut iface = Interface::new(tun.name()).map_err(Error::Bind)?;
    let watch = event_loop::Watch {
        signals,
        socket_watch: &socket_watch,
        links: &links,
    };
    // Setup is over: from here on only what the loop needs (before any thread exists).
    privileges::drop_to_runtime(tun.name()).map_err(Error::Privileges)?;
    event_loop::run(tun, uapi, &watch, &mut iface).map_err(Error::EventLoop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], fg: Option<&str>) -> Result<Options, UsageError> {
        Options::parse(args.iter().map(OsString::from), fg, None)
    }

    #[test]
    fn test_parse() {
        let o = parse(&["wg-tunnel", "wg0"], None).unwrap();
        assert_eq!((o.foreground, o.ifname.as_str()), (false, "wg0"));
        assert!(parse(&["wg-tunnel", "-f", "wg0"], None).unwrap().foreground);
        assert!(
            parse(&["wg-tunnel", "--foreground", "wg0"], None)
                .unwrap()
                .foreground
        );
        assert!(parse(&["wg-tunnel", "wg0"], Some("1")).unwrap().foreground);
        assert_eq!(o.log_level, None);
    }

    #[test]
    fn test_parse_rejects() {
        for args in [
            &["wg-tunnel"][..],
            &["wg-tunnel", "-x", "wg0"],
            &["wg-tunnel", "-f"],
            &["wg-tunnel", "a-name-far-too-long"],
            &["wg-tunnel", "a/b"],
            &["wg-tunnel", "wg0", "extra"],
        ] {
            assert!(parse(args, None).is_err(), "{args:?}");
        }
    }
}
