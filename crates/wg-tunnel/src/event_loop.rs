//! The event loop: one thread, one `poll(2)` over the termination signalfd, the TUN device,
//! the UAPI listener, the UDP socket and every UAPI connection, woken at the latest by the
//! protocol's next deadline. This is the only code in the daemon that reads the clock. It
//! owns the crypto pool ([`crate::crypto`]), whose workers it starts (after setup dropped
//! privileges, so they inherit that) and which it joins on every batch.
//!
//! Data moves in [`Batch`]es (at most one batch per source per round, so neither the TUN
//! device nor the socket starves the other), allocated once.
//!
//! Each round: wait; read the clock once; handle signals (exit), the deletion of the UAPI
//! socket file (exit, as wireguard-go does through inotify), the TUN device (packets to
//! encrypt, read at [`HEADROOM`] and sealed in place by [`Interface::send_packets`];
//! `POLLERR` or `EBADFD` means the interface was deleted: exit; segments of a super-packet
//! left over by a full batch make the next wait zero), UDP datagrams (opened in place by
//! [`Interface::receive_datagrams`] and written to the TUN device; handshake messages are
//! queued), a budget of queued handshakes (a backlog makes the next wait zero, and its
//! length is the tunnel's load signal), due timers; flush the tunnel's outputs; then serve
//! UAPI connections and flush again (a `set` may start a handshake).

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime};

use wg_config::uapi::encode_get;
use wg_config::Device;

use crate::batch::{Batch, SLOT_LEN};
use crate::crypto::Pool;
use crate::device::{Interface, HEADROOM};
use crate::log::{debug, error, info};
use crate::sys::{self, PollFd};
use crate::tun::{LinkMonitor, Tun, TunRx, TunTx};
use crate::uapi_server::{Connection, Handler, UapiListener};

/// Handshake messages costing a DH processed per round (a few milliseconds of CPU), so a
/// flood grows the backlog, which puts the tunnel under load (cookie replies), instead of
/// starving the data path.
const HANDSHAKES_PER_ROUND: usize = 16;
/// Slots of the batch read from the TUN device.
const TX_BATCH: usize = 128;
/// Slots of the receive batch while UDP GRO coalesces (each slot then holds up to ~45
/// datagrams): a round delivers at most a few hundred packets, about what a receiving
/// application's default socket buffer (212 KiB) holds. With the full batch (64 slots, up to
/// ~2,900 datagrams) one round's burst overflowed an iperf3 server's socket, which then
/// dropped most of it: 2-4 slots gave 20-40% more datagrams read by the application under a
/// UDP flood, and the same TCP throughput.
const RX_GRO_SLOTS: usize = 4;
/// Poll entries before the UAPI connections'.
const FIXED_FDS: usize = 6;

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// SIGINT or SIGTERM.
    Signal,
    /// The TUN interface was deleted.
    InterfaceGone,
    /// The UAPI socket file was deleted.
    SocketRemoved,
}

/// What the loop watches besides the data path and the UAPI socket.
#[derive(Debug)]
pub struct Watch<'a> {
    /// The termination signalfd.
    pub signals: &'a std::fs::File,
    /// The inotify watch on the UAPI socket file.
    pub socket_watch: &'a std::fs::File,
    /// Link notifications, for MTU changes.
    pub links: &'a LinkMonitor,
}

/// Runs until a termination signal, the interface's deletion or the socket file's.
pub fn run(
    tun: &Tun,
    uapi: &UapiListener,
    watch: &Watch<'_>,
    iface: &mut Interface,
) -> io::Result<Exit> {
    let Watch {
        signals,
        socket_watch,
        links,
    } = *watch;
    let ifname = tun.name().to_owned();
    let mut conns: Vec<Connection> = Vec::new();
    // Allocated once: the data path reuses these for every round. The send batch is larger,
    // so a TSO super-packet's segments fit with other packets.
    let mut tx = Batch::new(TX_BATCH, SLOT_LEN);
    let mut rx = Batch::for_data_path();
    let mut rx_coalesced = Batch::new(RX_GRO_SLOTS, SLOT_LEN);
    // Whether the last receive had several datagrams per slot (UDP GRO at work).
    let mut coalescing = false;
    let mut out = Batch::for_data_path();
    let (mut tun_rx, mut tun_tx) = (TunRx::new(), TunTx::new());
    // The crypto workers start here, after setup dropped privileges (they inherit that).
    let mut pool = Pool::from_env();
    debug!(&ifname, "{} crypto worker threads", pool.workers());
    let mut fds: Vec<PollFd> = Vec::new();
    let mut backlog = 0;
    // The link's state before any notification: someone may have changed it already.
    let mut link_changed = true;
    loop {
        let timeout = match iface.poll_timeout() {
            // Handshakes wait, or segments of a TUN super-packet did not fit the last batch.
            _ if backlog > 0 || tun_rx.has_pending() => 0,
            None => -1,
            Some(deadline) => millis_until(deadline, Instant::now()),
        };
        fds.clear();
        fds.push(sys::poll_fd(signals.as_raw_fd(), libc::POLLIN));
        fds.push(sys::poll_fd(tun.as_raw_fd(), libc::POLLIN));
        fds.push(sys::poll_fd(uapi.as_raw_fd(), libc::POLLIN));
        fds.push(sys::poll_fd(iface.bind().as_raw_fd(), libc::POLLIN));
        fds.push(sys::poll_fd(socket_watch.as_raw_fd(), libc::POLLIN));
        fds.push(sys::poll_fd(links.as_raw_fd(), libc::POLLIN));
        for conn in &conns {
            let mut events = 0;
            if conn.wants_read() {
                events |= libc::POLLIN;
            }
            if conn.wants_write() {
                events |= libc::POLLOUT;
            }
            fds.push(sys::poll_fd(conn.as_raw_fd(), events));
        }
        sys::poll(&mut fds, timeout)?;

        let now = Instant::now();
        let since_epoch = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        iface.set_wall_clock(now, since_epoch);

        if fds[0].revents != 0 {
            info!(&ifname, "received termination signal, shutting down");
            return Ok(Exit::Signal);
        }
        if fds[4].revents != 0 {
            // Drain the events; only whether the file still exists matters.
            let mut events = [0u8; 4096];
            while matches!((&*socket_watch).read(&mut events), Ok(n) if n > 0) {}
            if std::fs::symlink_metadata(uapi.path()).is_err() {
                info!(&ifname, "UAPI socket removed, shutting down");
                return Ok(Exit::SocketRemoved);
            }
        }
        link_changed |= fds[5].revents != 0 && links.drain();
        if std::mem::take(&mut link_changed) {
            match tun.mtu() {
                Ok(mtu) => iface.set_mtu(mtu),
                Err(e) => debug!(&ifname, "cannot read the MTU: {e}"),
            }
            match tun.is_up() {
                Ok(up) => iface.set_link_up(now, up),
                Err(e) => debug!(&ifname, "cannot read the link state: {e}"),
            }
        }
        if fds[1].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
            info!(&ifname, "interface deleted, shutting down");
            return Ok(Exit::InterfaceGone);
        }
        if fds[1].revents & libc::POLLIN != 0 || tun_rx.has_pending() {
            tx.clear();
            let result = tun_rx.recv_batch(tun, &mut tx, HEADROOM);
            iface.send_packets(now, &mut tx, &mut pool, &mut out);
            match result {
                Ok(()) => {}
                Err(e) if Tun::is_gone(&e) => {
                    info!(&ifname, "interface deleted ({e}), shutting down");
                    return Ok(Exit::InterfaceGone);
                }
                Err(e) => error!(&ifname, "failed to read from TUN device: {e}"),
            }
        }
        if fds[3].revents != 0 {
            let rx = if coalescing {
                &mut rx_coalesced
            } else {
                &mut rx
            };
            rx.clear();
            if let Some(e) = iface.bind().recv_batch(rx) {
                debug!(&ifname, "UDP receive: {e}");
            }
            coalescing = rx.len() > 2 * rx.first_free_slot();
            iface.receive_datagrams(now, rx, &mut pool);
            if !rx.is_empty() {
                if let Some(e) = tun_tx.send_batch(tun, rx) {
                    debug!(&ifname, "failed to write to TUN device: {e}");
                }
            }
        }
        backlog = iface.process_handshakes(now, HANDSHAKES_PER_ROUND);
        iface.handle_timeout(now);
        iface.flush(tun, &mut tun_tx, &mut out);

        // UAPI: existing connections first (their pollfds start at FIXED_FDS), then new ones.
        let mut handler = UapiHandler {
            iface,
            now,
            since_epoch,
        };
        for (conn, fd) in conns.iter_mut().zip(&fds[FIXED_FDS..]) {
            let mut read = fd.revents & !libc::POLLOUT != 0;
            if fd.revents & libc::POLLOUT != 0 {
                conn.on_writable();
                // Requests held back by a full output go on once the client has read.
                read |= conn.wants_read();
            }
            if read {
                conn.on_readable(&mut handler);
            }
        }
        if fds[2].revents != 0 {
            loop {
                match uapi.accept() {
                    Ok(Some(mut conn)) => {
                        conn.on_readable(&mut handler);
                        conns.push(conn);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        error!(&ifname, "UAPI accept: {e}");
                        break;
                    }
                }
            }
        }
        conns.retain(|c| !c.is_done());
        iface.flush(tun, &mut tun_tx, &mut out);
    }
}

/// Milliseconds from `now` until `deadline`, rounded up so the loop never wakes early and
/// spins, clamped to what poll(2) takes.
fn millis_until(deadline: Instant, now: Instant) -> libc::c_int {
    let wait = deadline.saturating_duration_since(now);
    let millis = wait
        .as_nanos()
        .div_ceil(Duration::from_millis(1).as_nanos());
    libc::c_int::try_from(millis).unwrap_or(libc::c_int::MAX)
}

/// Serves UAPI requests against the interface at one instant of the loop.
struct UapiHandler<'a> {
    iface: &'a mut Interface,
    now: Instant,
    since_epoch: Duration,
}

impl Handler for UapiHandler<'_> {
    fn get(&mut self) -> String {
        encode_get(self.iface.get())
    }

    fn set(&mut self, delta: &Device) -> Result<(), i32> {
        self.iface.set(self.now, self.since_epoch, delta)
    }

    fn set_relay(&mut self, relay: Option<crate::nat::RelayConfig>) -> Result<(), i32> {
        self.iface.set_relay(self.now, self.since_epoch, relay);
        Ok(())
    }

    fn get_nat(&mut self) -> String {
        self.iface.nat_report(self.now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_millis_until_rounds_up() {
        let now = Instant::now();
        assert_eq!(millis_until(now, now), 0);
        assert_eq!(millis_until(now + Duration::from_micros(1), now), 1);
        assert_eq!(millis_until(now + Duration::from_millis(5), now), 5);
        assert_eq!(millis_until(now, now + Duration::from_secs(1)), 0);
    }
}
