//! Real TUN devices in a private network namespace (root only): the kernel's own TCP and UDP
//! stacks talk through the device to a peer played by the test with [`TunRx`] and [`TunTx`].

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use super::*;
use crate::batch::SLOT_LEN;
use crate::offload::tests::{assert_checksums, bytes, packet, Spec};

const HEADROOM: usize = 16;
const TCP_SYN: u8 = 0x02;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;

fn is_root() -> bool {
    crate::sys::is_root_or_skip("needs root (TUN devices, network namespaces)")
}

/// Runs `f` on a thread of its own in a new network namespace with `lo` up.
fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        sys::unshare_net().expect("unshare(CLONE_NEWNET)");
        ip("link set lo up");
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// `ip ARGS` in the calling thread's namespace (children inherit it).
fn ip(args: &str) {
    let out = Command::new("ip")
        .args(args.split_whitespace())
        .output()
        .expect("ip");
    assert!(out.status.success(), "ip {args}: {out:?}");
}

/// A device with an address (10.0.0.1/24 and fd00::1/64; the test plays 10.0.0.2/fd00::2).
fn device(name: &str, wanted: Offloads) -> Tun {
    let tun = Tun::create_with(name, wanted).unwrap();
    ip(&format!("addr add 10.0.0.1/24 dev {name}"));
    ip(&format!("addr add fd00::1/64 dev {name} nodad"));
    ip(&format!("link set {name} up"));
    tun
}

fn wait_readable(tun: &Tun, deadline: Instant) {
    assert!(Instant::now() < deadline, "timed out");
    let mut fds = [sys::poll_fd(tun.as_raw_fd(), libc::POLLIN)];
    sys::poll(&mut fds, 100).unwrap();
}

/// The transport header offset of a packet from the kernel (no options or extensions).
fn l4(p: &[u8]) -> usize {
    if p[0] >> 4 == 6 {
        40
    } else {
        usize::from(p[0] & 0xf) * 4
    }
}

#[test]
fn test_offloads_negotiated() {
    if !is_root() {
        return;
    }
    in_netns(|| {
        let tun = Tun::create("off0").unwrap();
        let got = tun.offloads();
        eprintln!("negotiated: {got:?}");
        // Every kernel CI runs on has TSO on TUN (2.6.27); USO needs 6.2.
        assert!(got.vnet_hdr && got.tso, "{got:?}");
        let ethtool = Command::new("ethtool").args(["-k", "off0"]).output();
        match ethtool {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(
                    text.contains("tcp-segmentation-offload: on"),
                    "ethtool -k: {text}"
                );
                if got.uso {
                    assert!(text.contains("tx-udp-segmentation: on"), "{text}");
                }
            }
            _ => eprintln!("ethtool not available: not checking its view"),
        }
        let plain = Tun::create_with("off1", Offloads::default()).unwrap();
        assert_eq!(plain.offloads(), Offloads::default());
        let tso = Tun::create_with(
            "off2",
            Offloads {
                uso: false,
                ..Offloads::ALL
            },
        )
        .unwrap();
        assert_eq!(
            tso.offloads(),
            Offloads {
                uso: false,
                ..Offloads::ALL
            }
        );
    });
}

/// A TCP connection from the kernel's stack to the test's peer over the device: the client
/// sends `up` bytes (read with [`TunRx`], acknowledged per batch), then the peer sends `down`
/// bytes in MSS-sized segments with [`TunTx`]; both arrive intact. Returns how many
/// super-packets were read and written.
fn tcp_exchange(name: &str, wanted: Offloads, v6: bool, mss: u16) -> (u64, u64) {
    let (read, written, _) = tcp_exchange_with(name, wanted, v6, mss, HEADROOM, SLOT_LEN);
    (read, written)
}

/// [`tcp_exchange`] reading at `headroom` into slots of `slot_len` bytes; also says whether
/// segments were ever left over for the next read.
fn tcp_exchange_with(
    name: &str,
    wanted: Offloads,
    v6: bool,
    mss: u16,
    headroom: usize,
    slot_len: usize,
) -> (u64, u64, bool) {
    let name = name.to_owned();
    in_netns(move || {
        let tun = device(&name, wanted);
        let up = bytes(300_000, 1);
        let down = bytes(50_000, 2);
        let server: IpAddr = if v6 {
            Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2).into()
        } else {
            Ipv4Addr::new(10, 0, 0, 2).into()
        };
        let client = {
            let up = up.clone();
            let len = down.len();
            std::thread::spawn(move || {
                let addr = SocketAddr::new(server, 5201);
                let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(20)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                s.write_all(&up).unwrap();
                let mut got = vec![0; len];
                s.read_exact(&mut got).unwrap();
                got
            })
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut rx = TunRx::new();
        let mut tx = TunTx::new();
        let mut batch = Batch::new(64, slot_len);
        let mut out = Batch::new(64, SLOT_LEN);
        let our_isn: u32 = 0x7fff_fff0; // wraps during the transfer
        let mut spec = Spec {
            v6,
            swap: true,
            seq: our_isn,
            ..Spec::default()
        };
        let mut received = Vec::new();
        let mut saw_pending = false;
        let send = |tx: &mut TunTx, out: &mut Batch, packets: &[Vec<u8>]| {
            for chunk in packets.chunks(out.capacity()) {
                out.clear();
                for p in chunk {
                    let slot = out.free_slot().unwrap();
                    slot[HEADROOM..HEADROOM + p.len()].copy_from_slice(p);
                    out.commit_at(HEADROOM, p.len(), None);
                }
                assert!(tx.send_batch(&tun, out).is_none());
            }
        };
        // Handshake, then the client's data.
        let mut expected: Option<u32> = None;
        while received.len() < up.len() {
            if !rx.has_pending() {
                wait_readable(&tun, deadline);
            }
            batch.clear();
            rx.recv_batch(&tun, &mut batch, headroom).unwrap();
            saw_pending |= rx.has_pending();
            assert!(batch
                .entries()
                .iter()
                .all(|e| e.offset as usize == headroom));
            let mut ack = false;
            for (_, p) in batch.iter() {
                if p[0] >> 4 != if v6 { 6 } else { 4 } || (v6 && p[6] != 6) || (!v6 && p[9] != 6) {
                    continue; // neighbour discovery, MLD, ...
                }
                assert_checksums(p);
                let t = l4(p);
                let seq = u32::from_be_bytes(p[t + 4..t + 8].try_into().unwrap());
                let flags = p[t + 13];
                let payload = &p[t + usize::from(p[t + 12] >> 4) * 4..];
                if flags & TCP_SYN != 0 {
                    spec.sport = u16::from_be_bytes([p[t], p[t + 1]]);
                    spec.ack = seq.wrapping_add(1);
                    expected = Some(spec.ack);
                    let syn_ack = packet(
                        &Spec {
                            flags: TCP_SYN | TCP_ACK,
                            options: [[2, 4], mss.to_be_bytes()].concat(),
                            ..spec.clone()
                        },
                        &[],
                    );
                    send(&mut tx, &mut out, &[syn_ack]);
                    spec.seq = spec.seq.wrapping_add(1);
                    continue;
                }
                assert!(payload.len() <= usize::from(mss), "{} > MSS", payload.len());
                if !payload.is_empty() && Some(seq) == expected {
                    received.extend_from_slice(payload);
                    expected = Some(seq.wrapping_add(payload.len() as u32));
                    ack = true;
                }
            }
            if ack {
                spec.ack = expected.unwrap();
                send(&mut tx, &mut out, &[packet(&spec, &[])]);
            }
        }
        assert_eq!(received, up);
        // The peer's data: one batch of segments, coalesced on the way in.
        let segments: Vec<Vec<u8>> = down
            .chunks(usize::from(mss))
            .enumerate()
            .map(|(i, chunk)| {
                let last = (i + 1) * usize::from(mss) >= down.len();
                let seg = packet(
                    &Spec {
                        seq: spec.seq,
                        id: spec.id.wrapping_add(i as u16),
                        flags: if last { TCP_ACK | TCP_PSH } else { TCP_ACK },
                        ..spec.clone()
                    },
                    chunk,
                );
                spec.seq = spec.seq.wrapping_add(chunk.len() as u32);
                seg
            })
            .collect();
        send(&mut tx, &mut out, &segments);
        let got = client.join().unwrap();
        assert!(got == down, "the client's data differs");
        assert_eq!(rx.dropped(), 0);
        (rx.super_packets(), tx.super_packets(), saw_pending)
    })
}

#[test]
fn test_tcp_through_tun_with_tso() {
    if !is_root() {
        return;
    }
    for (v6, mss) in [(false, 997), (true, 1221)] {
        let (read, written) = tcp_exchange("tso0", Offloads::ALL, v6, mss);
        eprintln!("v6 {v6}: {read} super-packets read, {written} written");
        assert!(read > 0, "the kernel sent no super-packet");
        assert!(written > 0, "nothing was coalesced");
    }
}

#[test]
fn test_tcp_through_tun_tiny_mss() {
    if !is_root() {
        return;
    }
    // A super-packet of hundreds of segments, more than the batch holds: read straight into
    // a slot, or (small headroom, small slots) through the scratch buffer.
    for (v6, headroom, slot_len) in [(false, 16, SLOT_LEN), (true, 4, 2048)] {
        let (read, _, pending) =
            tcp_exchange_with("tiny0", Offloads::ALL, v6, 100, headroom, slot_len);
        assert!(read > 0 && pending, "{read} {pending}");
    }
}

#[test]
fn test_tcp_through_tun_without_offloads() {
    if !is_root() {
        return;
    }
    for v6 in [false, true] {
        let (read, written) = tcp_exchange("plain0", Offloads::default(), v6, 1380);
        assert_eq!((read, written), (0, 0));
    }
}

/// UDP GSO from a socket (`UDP_SEGMENT`) comes out as datagrams; datagrams written in a batch
/// reach a socket one by one, coalesced (USO) or not.
fn udp_exchange(name: &str, wanted: Offloads) -> (u64, u64) {
    let name = name.to_owned();
    in_netns(move || {
        let tun = device(&name, wanted);
        let socket = UdpSocket::bind("10.0.0.1:4000").unwrap();
        sys::udp::set_int_option(socket.as_fd(), libc::SOL_UDP, libc::UDP_SEGMENT, 1000).unwrap();
        let data = bytes(7500, 3);
        socket.send_to(&data, "10.0.0.2:9").unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut rx = TunRx::new();
        let mut batch = Batch::new(4, SLOT_LEN); // fewer slots than datagrams
        let mut got = Vec::new();
        let mut sizes = Vec::new();
        while got.len() < data.len() {
            if !rx.has_pending() {
                wait_readable(&tun, deadline);
            }
            batch.clear();
            rx.recv_batch(&tun, &mut batch, HEADROOM).unwrap();
            for (_, p) in batch.iter() {
                if p[0] >> 4 != 4 || p[9] != 17 {
                    continue;
                }
                assert_checksums(p);
                sizes.push(p.len() - 28);
                got.extend_from_slice(&p[28..]);
            }
        }
        assert_eq!(got, data);
        assert_eq!(sizes, [1000, 1000, 1000, 1000, 1000, 1000, 1000, 500]);

        // Back: eight datagrams from 10.0.0.2:9, in one batch.
        let mut tx = TunTx::new();
        let mut out = Batch::new(16, SLOT_LEN);
        for (i, chunk) in data.chunks(1000).enumerate() {
            let p = packet(
                &Spec {
                    udp: true,
                    swap: true,
                    sport: 4000,
                    dport: 9,
                    id: i as u16,
                    ..Spec::default()
                },
                chunk,
            );
            let slot = out.free_slot().unwrap();
            slot[HEADROOM..HEADROOM + p.len()].copy_from_slice(&p);
            out.commit_at(HEADROOM, p.len(), None);
        }
        assert!(tx.send_batch(&tun, &mut out).is_none());
        socket
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut buf = [0; 2000];
        for chunk in data.chunks(1000) {
            let (n, from) = socket.recv_from(&mut buf).unwrap();
            assert_eq!(from, "10.0.0.2:9".parse().unwrap());
            assert_eq!(&buf[..n], chunk);
        }
        (rx.super_packets(), tx.super_packets())
    })
}

#[test]
fn test_udp_through_tun() {
    if !is_root() {
        return;
    }
    let (read, written) = udp_exchange("uso0", Offloads::ALL);
    let uso = in_netns(|| Tun::create("uso9").unwrap().offloads().uso);
    eprintln!("USO {uso}: {read} super-packets read, {written} written");
    if uso {
        assert!(read > 0 && written > 0);
    }
    let tso_only = Offloads {
        uso: false,
        ..Offloads::ALL
    };
    assert_eq!(udp_exchange("tso1", tso_only), (0, 0));
    assert_eq!(udp_exchange("plain1", Offloads::default()), (0, 0));
}

/// An ICMP echo request from 10.0.0.2 to 10.0.0.1.
fn echo_request(id: u16) -> Vec<u8> {
    let mut icmp = vec![8, 0, 0, 0];
    icmp.extend_from_slice(&id.to_be_bytes());
    icmp.extend_from_slice(&[0, 1]);
    icmp.extend_from_slice(&bytes(56, 4));
    let c = crate::offload::tests::ref_checksum(&[&icmp]);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, 2, 10, 0, 0, 1]);
    let c = crate::offload::tests::ref_checksum(&[&p]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&icmp);
    p
}

#[test]
fn test_single_packet_send_and_recv() {
    if !is_root() {
        return;
    }
    for (name, wanted) in [("one0", Offloads::ALL), ("one1", Offloads::default())] {
        in_netns(move || {
            let tun = device(name, wanted);
            let deadline = Instant::now() + Duration::from_secs(20);
            tun.send(&echo_request(77)).unwrap();
            let mut buf = [0; 2000];
            loop {
                wait_readable(&tun, deadline);
                let n = match tun.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => panic!("{e}"),
                };
                let p = &buf[..n];
                // The echo reply (skipping IPv6 router solicitations and the like).
                if p[0] == 0x45 && p[9] == 1 && p[20] == 0 {
                    assert_eq!(&p[24..26], &77u16.to_be_bytes());
                    assert_eq!(&p[16..20], &[10, 0, 0, 2]);
                    break;
                }
            }
        });
    }
}
