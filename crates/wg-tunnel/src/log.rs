//! Logging to stderr with wireguard-go's `LOG_LEVEL` levels (`silent`, `error`, `info`,
//! `debug`/`verbose`).
//!
//! The level is process-wide and set once at start-up. Lines carry the level and interface
//! name, like wireguard-go's `DEBUG: (wg0) …`, but no timestamp: only the event loop reads the
//! clock.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

/// How much to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Nothing.
    Silent = 0,
    /// Errors only (the default, as in wireguard-go).
    Error = 1,
    /// Errors and lifecycle messages.
    Info = 2,
    /// Everything, including per-peer events.
    Debug = 3,
}

impl Level {
    /// Parses a `LOG_LEVEL` value; unknown values mean [`Level::Error`], as in wireguard-go.
    pub fn from_env_value(value: Option<&str>) -> Level {
        match value {
            Some("verbose" | "debug") => Level::Debug,
            Some("info") => Level::Info,
            Some("silent") => Level::Silent,
            _ => Level::Error,
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Level::Silent => "",
            Level::Error => "ERROR",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Error as u8);

/// Sets the process-wide level.
pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

/// Whether messages at `level` are written.
pub fn enabled(level: Level) -> bool {
    level != Level::Silent && LEVEL.load(Ordering::Relaxed) >= level as u8
}

/// Writes one line at `level` for interface `ifname`, if enabled.
pub fn write(level: Level, ifname: &str, args: fmt::Arguments<'_>) {
    if enabled(level) {
        // A failed write to stderr has nowhere to be reported.
        let _ = writeln!(std::io::stderr(), "{}: ({ifname}) {args}", level.tag());
    }
}

/// Logs at error level: `error!(ifname, "fmt", args…)`.
macro_rules! error {
    ($ifname:expr, $($arg:tt)*) => {
        $crate::log::write($crate::log::Level::Error, $ifname, format_args!($($arg)*))
    };
}
/// Logs at info level.
macro_rules! info {
    ($ifname:expr, $($arg:tt)*) => {
        $crate::log::write($crate::log::Level::Info, $ifname, format_args!($($arg)*))
    };
}
/// Logs at debug level.
macro_rules! debug {
    ($ifname:expr, $($arg:tt)*) => {
        $crate::log::write($crate::log::Level::Debug, $ifname, format_args!($($arg)*))
    };
}
pub(crate) use {debug, error, info};
