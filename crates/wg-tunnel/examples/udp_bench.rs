//! Datagrams per second over loopback for 1400-byte payloads, through [`Bind`]'s send and
//! receive paths: one datagram per syscall, `sendmmsg`/`recvmmsg`, and UDP GSO/GRO.
//!
//! `cargo run --release -p wg-tunnel --example udp_bench [seconds per case]`
//!
//! A measurement, not a test: numbers depend on the machine and its load. Each case runs a
//! sender and a receiver thread for the given time (default 2 s) and prints what the sender
//! handed to the kernel and what the receiver got, per second.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wg_tunnel::batch::{Batch, SLOT_LEN};
use wg_tunnel::bind::Bind;

const PAYLOAD: usize = 1400;
const BATCH: usize = 64;

#[derive(Clone, Copy, Debug)]
enum SendMode {
    PerPacket,
    Sendmmsg,
    Gso,
}

#[derive(Clone, Copy, Debug)]
enum RecvMode {
    PerPacket,
    Recvmmsg,
    Gro,
}

fn run(send: SendMode, recv: RecvMode, secs: f64) -> (f64, f64) {
    let tx = Bind::new(0, 0).unwrap();
    let rx = Bind::new(0, 0).unwrap();
    tx.set_offloads(matches!(send, SendMode::Gso), false);
    rx.set_offloads(false, matches!(recv, RecvMode::Gro));
    let dst = SocketAddr::from((Ipv4Addr::LOCALHOST, rx.port()));
    let stop = Arc::new(AtomicBool::new(false));

    let receiver = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut got = 0u64;
            let mut buf = vec![0u8; SLOT_LEN];
            let mut batch = Batch::new(BATCH, SLOT_LEN);
            while !stop.load(Ordering::Relaxed) {
                let n = match recv {
                    RecvMode::PerPacket => rx.recv_from(&mut buf).map_or(0, |_| 1),
                    RecvMode::Recvmmsg | RecvMode::Gro => {
                        batch.clear();
                        rx.recv_batch(&mut batch);
                        batch.len()
                    }
                };
                if n == 0 {
                    std::thread::sleep(Duration::from_micros(20));
                }
                got += n as u64;
            }
            got
        })
    };

    let mut batch = Batch::new(BATCH, 2048);
    for i in 0..BATCH {
        let slot = batch.free_slot().unwrap();
        slot[..PAYLOAD].fill(i as u8);
        batch.commit(PAYLOAD, Some(dst));
    }
    let datagram = vec![7u8; PAYLOAD];
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        match send {
            SendMode::PerPacket => {
                for _ in 0..BATCH {
                    if tx.send_to(&datagram, dst).is_ok() {
                        sent += 1;
                    }
                }
            }
            SendMode::Sendmmsg | SendMode::Gso => {
                // A failure is a full buffer; count only what went.
                if tx.send_batch(&batch).is_none() {
                    sent += BATCH as u64;
                }
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    let got = receiver.join().unwrap();
    (sent as f64 / elapsed, got as f64 / elapsed)
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("seconds"))
        .unwrap_or(2.0);
    println!("{PAYLOAD}-byte datagrams over loopback, {secs} s per case, batches of {BATCH}");
    println!(
        "{:<12} {:<12} {:>14} {:>14}",
        "send", "receive", "sent/s", "received/s"
    );
    for (send, recv) in [
        (SendMode::PerPacket, RecvMode::Gro),
        (SendMode::Sendmmsg, RecvMode::Gro),
        (SendMode::Gso, RecvMode::Gro),
        (SendMode::Gso, RecvMode::PerPacket),
        (SendMode::Gso, RecvMode::Recvmmsg),
        (SendMode::PerPacket, RecvMode::PerPacket),
        (SendMode::Sendmmsg, RecvMode::Recvmmsg),
    ] {
        let (sent, got) = run(send, recv, secs);
        println!(
            "{:<12} {:<12} {:>14.0} {:>14.0}",
            format!("{send:?}"),
            format!("{recv:?}"),
            sent,
            got
        );
    }
}
