//! Datagrams per second over loopback for 1400-byte payloads through [`Bind`]'s send and
//! receive paths: one datagram per syscall, `sendmmsg`/`recvmmsg`, and UDP GSO/GRO.
//!
//! `cargo run --release -p wg-tunnel --example udp_bench [seconds per case]`
//!
//! A measurement, not a test: numbers depend on the machine and its load. One thread
//! alternates: it queues a round of datagrams into the receiving socket, then drains them,
//! and times the two halves separately, so each side's cost is measured without the other
//! competing for the CPU. On loopback the sender's time includes the kernel's delivery into
//! the receiving socket (for send cases the receiver has GRO on, so a GSO message is
//! delivered whole, as it would leave through a NIC that segments it).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use wg_tunnel::batch::{Batch, SLOT_LEN};
use wg_tunnel::bind::Bind;

const PAYLOAD: usize = 1400;
/// Datagrams per send batch (the data path's batch size).
const BATCH: usize = 64;
/// Batches queued per round: well within the 7 MiB receive buffer.
const ROUND: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    PerPacket,
    Mmsg,
    Offload,
}

/// Runs rounds for about `secs`; returns (sent/s while sending, received/s while receiving).
fn run(send: Mode, recv: Mode, secs: f64) -> (f64, f64) {
    let tx = Bind::new(0, 0).unwrap();
    let rx = Bind::new(0, 0).unwrap();
    tx.set_offloads(send == Mode::Offload, false);
    rx.set_offloads(false, recv == Mode::Offload);
    let dst = SocketAddr::from((Ipv4Addr::LOCALHOST, rx.port()));
    let mut out = Batch::new(BATCH, 2048);
    for i in 0..BATCH {
        out.free_slot().unwrap()[..PAYLOAD].fill(i as u8);
        out.commit(PAYLOAD, Some(dst));
    }
    let datagram = vec![7u8; PAYLOAD];
    let mut buf = vec![0u8; SLOT_LEN];
    let mut inbound = Batch::new(BATCH, SLOT_LEN);
    let (mut sent, mut got) = (0u64, 0u64);
    let (mut send_time, mut recv_time) = (Duration::ZERO, Duration::ZERO);
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        let t = Instant::now();
        for _ in 0..ROUND {
            match send {
                Mode::PerPacket => {
                    for _ in 0..BATCH {
                        sent += u64::from(tx.send_to(&datagram, dst).is_ok());
                    }
                }
                Mode::Mmsg | Mode::Offload => {
                    if tx.send_batch(&out).is_none() {
                        sent += BATCH as u64;
                    }
                }
            }
        }
        send_time += t.elapsed();
        let t = Instant::now();
        loop {
            let n = match recv {
                Mode::PerPacket => match rx.recv_from(&mut buf) {
                    Ok(_) => 1,
                    Err(_) => 0,
                },
                Mode::Mmsg | Mode::Offload => {
                    inbound.clear();
                    rx.recv_batch(&mut inbound);
                    inbound.len()
                }
            };
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        recv_time += t.elapsed();
    }
    (
        sent as f64 / send_time.as_secs_f64(),
        got as f64 / recv_time.as_secs_f64(),
    )
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("seconds"))
        .unwrap_or(2.0);
    println!("{PAYLOAD}-byte datagrams over loopback, {secs} s per case");
    println!("send path (receiver: GRO)      datagrams/s");
    for (name, mode) in [
        ("send_to per datagram", Mode::PerPacket),
        ("sendmmsg", Mode::Mmsg),
        ("sendmmsg + GSO", Mode::Offload),
    ] {
        let (sent, _) = run(mode, Mode::Offload, secs);
        println!("  {name:<28} {sent:>10.0}");
    }
    println!("receive path (sender: GSO)     datagrams/s");
    for (name, mode) in [
        ("recv_from per datagram", Mode::PerPacket),
        ("recvmmsg", Mode::Mmsg),
        ("recvmmsg + GRO", Mode::Offload),
    ] {
        let (_, got) = run(Mode::Offload, mode, secs);
        println!("  {name:<28} {got:>10.0}");
    }
}
