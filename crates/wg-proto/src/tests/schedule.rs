//! The timer schedule with many peers: `poll_timeout` always equals the earliest deadline of
//! any peer (checked against a scan of every peer), `handle_timeout` at that instant always
//! finds work, and the heap stays bounded while traffic re-arms timers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand_core::RngCore;

use super::fixed_rng;
use super::util::ipv4_packet;
use crate::tunnel::{PeerConfig, Tunnel};
use crate::PeerId;

fn brute_min(t: &Tunnel, ids: &[PeerId]) -> Option<Instant> {
    ids.iter()
        .filter_map(|id| t.peer(*id).and_then(|p| p.next_timeout()))
        .min()
}

fn drain(t: &mut Tunnel) {
    let mut buf = [0u8; 2048];
    while t.poll_transmit(&mut buf).is_some() {}
    while t.poll_event().is_some() {}
}

/// A tunnel with `n` peers at 10.(i/250).(i%250).1/32, every `keepalive_every`-th with a 25 s
/// persistent keepalive; nobody answers.
fn tunnel_with_peers(n: usize, keepalive_every: usize, t0: Instant) -> (Tunnel, Vec<PeerId>) {
    let mut t = Tunnel::new([0x0a; 32], [9; 32], t0, Duration::from_secs(1_700_000_000));
    let mut rng = fixed_rng(42);
    let mut ids = Vec::new();
    for i in 0..n {
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        let ip = std::net::Ipv4Addr::new(10, (i / 250) as u8, (i % 250) as u8, 1);
        let id = t
            .add_peer(
                t0,
                PeerConfig {
                    public_key: key,
                    endpoint: Some(SocketAddr::from((ip, 51820))),
                    persistent_keepalive: (i % keepalive_every == 0).then_some(25),
                    allowed_ips: vec![(ip.into(), 32)],
                    ..Default::default()
                },
            )
            .unwrap();
        ids.push(id);
        drain(&mut t);
    }
    (t, ids)
}

#[test]
fn test_schedule_matches_a_scan_under_random_operations() {
    let t0 = super::epoch();
    let (mut t, mut ids) = tunnel_with_peers(100, 3, t0);
    let mut rng = fixed_rng(7);
    let mut now = t0;
    let mut fired = 0;
    for step in 0..1000 {
        match rng.next_u32() % 10 {
            // Let the clock run to the next deadline: there must be work there.
            0..=4 => {
                let Some(at) = t.poll_timeout() else { continue };
                now = now.max(at);
                t.handle_timeout(now);
                fired += 1;
                assert!(
                    brute_min(&t, &ids).map_or(true, |m| m > now),
                    "step {step}: a due timer was left"
                );
            }
            // Traffic to a random peer (stages a packet, starts or retries a handshake).
            5..=7 => {
                let i = rng.next_u32() as usize % 100;
                let dst = format!("10.{}.{}.1", i / 250, i % 250);
                now += Duration::from_millis(u64::from(rng.next_u32() % 3000));
                t.handle_outgoing(now, &ipv4_packet("10.255.0.1", &dst, b"x"));
            }
            // Keepalive switched on or off.
            8 => {
                let id = ids[rng.next_u32() as usize % ids.len()];
                let secs = [None, Some(1), Some(25)][rng.next_u32() as usize % 3];
                t.set_persistent_keepalive(now, id, secs);
            }
            // A peer removed.
            _ => {
                let i = rng.next_u32() as usize % ids.len();
                let key = *t.peer(ids[i]).unwrap().public_key();
                assert!(t.remove_peer(&key));
                ids.swap_remove(i);
            }
        }
        drain(&mut t);
        assert_eq!(t.poll_timeout(), brute_min(&t, &ids), "step {step}");
        assert!(t.schedule_len() <= 2 * ids.len() + 64 + 1, "step {step}");
    }
    assert!(fired > 300, "{fired}");
}

#[test]
fn test_ten_thousand_peers_keep_a_small_schedule() {
    let t0 = super::epoch();
    let (mut t, ids) = tunnel_with_peers(10_000, 200, t0);
    assert_eq!(t.poll_timeout(), brute_min(&t, &ids));
    // 50 handshakes in flight; the rest idle with no timer at all.
    assert!(t.schedule_len() <= 2 * 50 + 64, "{}", t.schedule_len());
    // Retransmissions run only for those 50 peers, each at its own deadline.
    let mut now = t0;
    for _ in 0..100 {
        let at = t.poll_timeout().unwrap();
        now = now.max(at);
        t.handle_timeout(now);
        drain(&mut t);
        assert_eq!(t.poll_timeout(), brute_min(&t, &ids));
    }
    assert!(now - t0 > Duration::from_secs(5), "{:?}", now - t0);
}
