use super::*;

/// RFC 1071 the plain way: big-endian 16-bit words summed into a u32, folded, complemented.
pub(crate) fn ref_checksum(chunks: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = chunks.concat();
    let mut s: u32 = 0;
    for pair in bytes.chunks(2) {
        let hi = u32::from(pair[0]) << 8;
        let lo = pair.get(1).map_or(0, |&b| u32::from(b));
        s += hi | lo;
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn ref_pseudo(p: &[u8], proto: u8, l4: usize) -> Vec<u8> {
    let v6 = p[0] >> 4 == 6;
    let mut ph = Vec::new();
    if v6 {
        ph.extend_from_slice(&p[8..40]);
        ph.extend_from_slice(&((p.len() - l4) as u32).to_be_bytes());
        ph.extend_from_slice(&[0, 0, 0, proto]);
    } else {
        ph.extend_from_slice(&p[12..20]);
        ph.extend_from_slice(&[0, proto]);
        ph.extend_from_slice(&((p.len() - l4) as u16).to_be_bytes());
    }
    ph
}

/// Asserts that `p`'s IPv4 header checksum and transport checksum are right, by
/// [`ref_checksum`].
pub(crate) fn assert_checksums(p: &[u8]) {
    let v6 = p[0] >> 4 == 6;
    let (l4, proto) = if v6 {
        (40, p[6])
    } else {
        let l4 = usize::from(p[0] & 0xf) * 4;
        assert_eq!(ref_checksum(&[&p[..l4]]), 0, "IPv4 header checksum");
        (l4, p[9])
    };
    let ph = ref_pseudo(p, proto, l4);
    assert_eq!(ref_checksum(&[&ph, &p[l4..]]), 0, "transport checksum");
}

/// What [`packet`] builds: from 10.0.0.1 (fd00::1) port `sport` to 10.0.0.2 (fd00::2) port
/// `dport`, or the other way with `swap`.
#[derive(Clone)]
pub(crate) struct Spec {
    pub(crate) v6: bool,
    pub(crate) udp: bool,
    pub(crate) seq: u32,
    pub(crate) ack: u32,
    pub(crate) flags: u8,
    pub(crate) options: Vec<u8>,
    pub(crate) ip_options: Vec<u8>,
    pub(crate) id: u16,
    pub(crate) df: bool,
    pub(crate) ttl: u8,
    pub(crate) sport: u16,
    pub(crate) dport: u16,
    pub(crate) swap: bool,
}

impl Default for Spec {
    fn default() -> Spec {
        Spec {
            v6: false,
            udp: false,
            seq: 1000,
            ack: 77,
            flags: TCP_ACK,
            options: vec![],
            ip_options: vec![],
            id: 0x1234,
            df: true,
            ttl: 64,
            sport: 40000,
            dport: 5201,
            swap: false,
        }
    }
}

/// A valid packet with correct checksums.
pub(crate) fn packet(s: &Spec, payload: &[u8]) -> Vec<u8> {
    let mut l4h = Vec::new();
    let (sport, dport) = if s.swap {
        (s.dport, s.sport)
    } else {
        (s.sport, s.dport)
    };
    l4h.extend_from_slice(&sport.to_be_bytes());
    l4h.extend_from_slice(&dport.to_be_bytes());
    if s.udp {
        l4h.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        l4h.extend_from_slice(&[0, 0]);
    } else {
        assert_eq!(s.options.len() % 4, 0);
        l4h.extend_from_slice(&s.seq.to_be_bytes());
        l4h.extend_from_slice(&s.ack.to_be_bytes());
        l4h.push((((20 + s.options.len()) / 4) as u8) << 4);
        l4h.push(s.flags);
        l4h.extend_from_slice(&[0xff, 0x00, 0, 0, 0, 0]);
        l4h.extend_from_slice(&s.options);
    }
    let proto = if s.udp { PROTO_UDP } else { PROTO_TCP };
    let mut p = Vec::new();
    if s.v6 {
        p.extend_from_slice(&[0x60, 0x01, 0x23, 0x45]);
        p.extend_from_slice(&((l4h.len() + payload.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[proto, s.ttl]);
        let (a, b) = if s.swap { (2, 1) } else { (1, 2) };
        p.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, a]);
        p.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b]);
    } else {
        assert_eq!(s.ip_options.len() % 4, 0);
        let ihl = 20 + s.ip_options.len();
        let total = ihl + l4h.len() + payload.len();
        p.push(0x40 | (ihl / 4) as u8);
        p.push(0);
        p.extend_from_slice(&(total as u16).to_be_bytes());
        p.extend_from_slice(&s.id.to_be_bytes());
        p.extend_from_slice(&[if s.df { 0x40 } else { 0 }, 0, s.ttl, proto, 0, 0]);
        let (a, b) = if s.swap { (2, 1) } else { (1, 2) };
        p.extend_from_slice(&[10, 0, 0, a, 10, 0, 0, b]);
        p.extend_from_slice(&s.ip_options);
        let c = ref_checksum(&[&p]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let l4 = p.len();
    p.extend_from_slice(&l4h);
    p.extend_from_slice(payload);
    let field = l4 + if s.udp { 6 } else { 16 };
    let ph = ref_pseudo(&p, proto, l4);
    let mut c = ref_checksum(&[&ph, &p[l4..]]);
    if s.udp && c == 0 {
        c = 0xffff;
    }
    p[field..field + 2].copy_from_slice(&c.to_be_bytes());
    assert_checksums(&p);
    p
}

/// Deterministic test bytes.
pub(crate) fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A super-packet as the kernel hands it over: the whole payload after one set of headers,
/// a partial checksum, and its virtio-net header.
fn super_packet(s: &Spec, payload: &[u8], mss: u16) -> (VnetHdr, Vec<u8>) {
    let mut p = packet(s, payload);
    let v6 = s.v6;
    let l4 = if v6 { 40 } else { 20 + s.ip_options.len() };
    let field = l4 + if s.udp { 6 } else { 16 };
    // What the kernel leaves in the field: not the final checksum (scribble on it).
    p[field] ^= 0x5a;
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: match (s.udp, v6) {
            (true, _) => GSO_UDP_L4,
            (false, false) => GSO_TCPV4,
            (false, true) => GSO_TCPV6,
        },
        hdr_len: 0xdead, // kernels fill this in loosely; it must not matter
        gso_size: mss,
        csum_start: l4 as u16,
        csum_offset: if s.udp { 6 } else { 16 },
    };
    (hdr, p)
}

fn segment_all(hdr: &VnetHdr, p: &[u8]) -> Vec<Vec<u8>> {
    let gso = Gso::new(hdr, p).unwrap().unwrap();
    let mut segs = Vec::new();
    for i in 1..gso.count() {
        let mut out = vec![0; 70_000];
        let n = gso.copy_segment(p, i, &mut out).unwrap();
        out.truncate(n);
        segs.push(out);
    }
    let mut first = p.to_vec();
    let n = gso.first_in_place(&mut first).unwrap();
    first.truncate(n);
    segs.insert(0, first);
    segs
}

/// Runs `packets` through a [`Gro`] and returns, per group, what would be written: the
/// virtio-net header and the packet bytes.
fn coalesce(packets: &[Vec<u8>], tcp: bool, udp: bool) -> Vec<(VnetHdr, Vec<u8>)> {
    let mut gro = Gro::new(packets.len(), tcp, udp);
    for p in packets {
        gro.push(p);
    }
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for g in gro.groups() {
        let mut head = [0u8; MAX_HEAD];
        let (n, skip) = gro.write_head(g, &mut head);
        let hdr = VnetHdr::parse(&head).unwrap();
        let mut bytes = head[VNET_HDR_LEN..n].to_vec();
        let from = gro.payload_offset(g);
        for (k, i) in gro.members(g).enumerate() {
            seen.push(i);
            let start = if k == 0 { skip } else { from };
            bytes.extend_from_slice(&packets[i][start..]);
        }
        assert_eq!(gro.members(g).count(), usize::from(g.count));
        // The kernel's segmentation gives back exactly the packets that went in.
        let members: Vec<Vec<u8>> = gro.members(g).map(|i| packets[i].clone()).collect();
        if g.count > 1 {
            assert_eq!(segment_all(&hdr, &bytes), members);
        } else {
            assert_eq!(bytes, members[0]);
        }
        out.push((hdr, bytes));
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..packets.len()).collect::<Vec<_>>(),
        "every packet once"
    );
    out
}

#[test]
fn test_vnet_hdr_round_trip() {
    let h = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: GSO_TCPV6 | GSO_ECN,
        hdr_len: 74,
        gso_size: 1368,
        csum_start: 40,
        csum_offset: 16,
    };
    assert_eq!(VnetHdr::parse(&h.to_bytes()).unwrap(), h);
    let mut longer = h.to_bytes().to_vec();
    longer.push(9);
    assert_eq!(VnetHdr::parse(&longer).unwrap(), h);
    assert_eq!(VnetHdr::parse(&[0; 9]), Err(OffloadError::Truncated));
    // Host byte order, as the TUN driver uses by default.
    assert_eq!(h.to_bytes()[4..6], 1368u16.to_ne_bytes());
}

#[test]
fn test_sum_matches_reference() {
    for len in (0..80).chain([1499, 1500, 65_535]) {
        for seed in 0..4 {
            let data = bytes(len, seed + len as u64);
            let c = !fold(sum(&data, 0));
            assert_eq!(
                c.to_ne_bytes(),
                ref_checksum(&[&data]).to_be_bytes(),
                "len {len}"
            );
            // Split at an even offset and chained.
            let mid = (len / 3) & !1;
            let chained = !fold(sum(&data[mid..], sum(&data[..mid], 0)));
            assert_eq!(chained, c);
        }
    }
    assert_eq!(fold(u64::MAX), 0xffff);
    assert_eq!(fold(0x1_0000), 1);
}

#[test]
fn test_complete_checksum() {
    for udp in [false, true] {
        for v6 in [false, true] {
            let s = Spec {
                v6,
                udp,
                ..Spec::default()
            };
            let good = packet(&s, &bytes(333, 5));
            let l4 = if v6 { 40 } else { 20 };
            let field = l4 + if udp { 6 } else { 16 };
            // The kernel's partial checksum: the pseudo-header sum, not complemented.
            let mut partial = good.clone();
            let ph = ref_pseudo(&good, if udp { 17 } else { 6 }, l4);
            partial[field..field + 2].copy_from_slice(&(!ref_checksum(&[&ph])).to_be_bytes());
            complete_checksum(&mut partial, l4, field - l4).unwrap();
            assert_eq!(partial, good);
        }
    }
    let mut short = vec![0x45; 30];
    assert_eq!(
        complete_checksum(&mut short, 20, 16),
        Err(OffloadError::Malformed)
    );
    assert_eq!(
        complete_checksum(&mut short, usize::MAX, 16),
        Err(OffloadError::Malformed)
    );
    assert_eq!(
        complete_checksum(&mut short, 20, 3),
        Err(OffloadError::Malformed)
    );
}

/// Segments a super-packet; checks every segment against what the sender would have sent;
/// coalesces the segments again and checks that segmenting the result gives the same bytes.
fn round_trip(s: &Spec, payload_len: usize, mss: u16, udp_gro: bool) {
    let payload = bytes(payload_len, u64::from(mss) + payload_len as u64);
    let (hdr, sp) = super_packet(s, &payload, mss);
    let segs = segment_all(&hdr, &sp);
    let mss = usize::from(mss);
    assert_eq!(segs.len(), payload_len.div_ceil(mss).max(1));
    let l4 = if s.v6 { 40 } else { 20 + s.ip_options.len() };
    let hdr_len = l4 + if s.udp { 8 } else { 20 + s.options.len() };
    let mut joined = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        let n = if last { payload_len - i * mss } else { mss };
        assert_eq!(seg.len(), hdr_len + n, "segment {i}");
        // Everything the sender's own segmentation would have produced.
        let expect = packet(
            &Spec {
                seq: s.seq.wrapping_add((i * mss) as u32),
                id: s.id.wrapping_add(i as u16),
                flags: {
                    let mut f = s.flags;
                    if !last {
                        f &= !(TCP_FIN | TCP_PSH);
                    }
                    if i > 0 {
                        f &= !TCP_CWR;
                    }
                    f
                },
                options: s.options.clone(),
                ip_options: s.ip_options.clone(),
                ..*s
            },
            &payload[i * mss..i * mss + n],
        );
        assert_eq!(seg, &expect, "segment {i}");
        joined.extend_from_slice(&seg[hdr_len..]);
    }
    assert_eq!(joined, payload);

    // Coalesce again (only plain IPv4 headers may be coalesced).
    let coalescable = s.ip_options.is_empty() && (!s.udp || udp_gro) && segs.len() > 1;
    let groups = coalesce(&segs, true, udp_gro);
    if !coalescable {
        assert_eq!(groups.len(), segs.len());
        for ((h, bytes), seg) in groups.iter().zip(&segs) {
            assert_eq!(h.gso_type, GSO_NONE);
            assert_eq!(bytes, seg);
        }
        return;
    }
    let mut again = Vec::new();
    for (h, bytes) in &groups {
        if h.gso_type == GSO_NONE {
            again.push(bytes.clone());
            continue;
        }
        assert_eq!(h.flags, F_NEEDS_CSUM);
        assert_eq!(usize::from(h.csum_start), l4);
        assert_eq!(usize::from(h.hdr_len), hdr_len);
        // What the kernel would check and compute: complete the checksum, then the super-
        // packet's checksums are valid.
        let mut whole = bytes.clone();
        complete_checksum(&mut whole, l4, usize::from(h.csum_offset)).unwrap();
        assert_checksums(&whole);
        again.extend(segment_all(h, bytes));
    }
    assert_eq!(again, segs, "segment(coalesce(segments)) == segments");
    let groups_expected = segs.len().div_ceil(MAX_SEGMENTS);
    assert!(groups.len() <= groups_expected + 1, "{}", groups.len());
}

#[test]
fn test_tcp_segment_and_coalesce_round_trip() {
    let timestamps = vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2];
    for v6 in [false, true] {
        for (payload, mss) in [
            (65_000, 1448),
            (64_000, 1380),
            (3000, 1000),
            (10_000, 100),
            (2999, 1000),
            (1, 1448),
            (7777, 1337),
            (1448, 1448),
        ] {
            for (flags, options) in [
                (TCP_ACK, vec![]),
                (TCP_ACK | TCP_PSH, timestamps.clone()),
                (TCP_ACK | TCP_PSH | TCP_FIN, vec![]),
                (TCP_ACK | TCP_CWR | TCP_PSH, timestamps.clone()),
            ] {
                let s = Spec {
                    v6,
                    flags,
                    options,
                    seq: 0xffff_f000, // wraps
                    id: 0xfff0,       // wraps
                    ..Spec::default()
                };
                round_trip(&s, payload, mss, false);
            }
        }
    }
}

#[test]
fn test_ipv4_options_segmented_not_coalesced() {
    let s = Spec {
        ip_options: vec![1, 1, 1, 0], // NOPs and an end-of-options
        ..Spec::default()
    };
    round_trip(&s, 5000, 1200, false);
}

#[test]
fn test_udp_segment_and_coalesce_round_trip() {
    for v6 in [false, true] {
        for (payload, mss) in [(60_000, 1400), (3000, 1000), (2500, 1000), (100, 7)] {
            for udp_gro in [false, true] {
                let s = Spec {
                    v6,
                    udp: true,
                    ..Spec::default()
                };
                round_trip(&s, payload, mss, udp_gro);
            }
        }
    }
}

#[test]
fn test_gso_rejects_malformed() {
    let s = Spec::default();
    let (hdr, p) = super_packet(&s, &bytes(3000, 1), 1000);
    let bad = |h: VnetHdr, p: &[u8]| Gso::new(&h, p).err();
    assert_eq!(
        bad(VnetHdr { gso_size: 0, ..hdr }, &p),
        Some(OffloadError::Malformed)
    );
    assert_eq!(
        bad(
            VnetHdr {
                gso_type: GSO_UDP,
                ..hdr
            },
            &p
        ),
        Some(OffloadError::Unsupported)
    );
    assert_eq!(
        bad(VnetHdr { gso_type: 9, ..hdr }, &p),
        Some(OffloadError::Malformed)
    );
    assert_eq!(
        bad(
            VnetHdr {
                gso_type: GSO_TCPV6,
                ..hdr
            },
            &p
        ),
        Some(OffloadError::Malformed)
    );
    assert_eq!(
        bad(
            VnetHdr {
                gso_type: GSO_UDP_L4,
                ..hdr
            },
            &p
        ),
        Some(OffloadError::Malformed),
        "the IP protocol is TCP"
    );
    assert_eq!(
        bad(
            VnetHdr {
                csum_start: 24,
                ..hdr
            },
            &p
        ),
        Some(OffloadError::Malformed)
    );
    assert_eq!(bad(hdr, &p[..30]), Some(OffloadError::Truncated));
    assert_eq!(bad(hdr, &[]), Some(OffloadError::Truncated));
    let mut v5 = p.clone();
    v5[0] = 0x55;
    assert_eq!(bad(hdr, &v5), Some(OffloadError::Malformed));
    let mut short_tcp = p.clone();
    short_tcp[20 + 12] = 0x40; // data offset 16 bytes
    assert_eq!(bad(hdr, &short_tcp), Some(OffloadError::Malformed));
    assert_eq!(Gso::new(&VnetHdr::default(), &p), Ok(None));
    // A segment that does not fit its buffer.
    let gso = Gso::new(&hdr, &p).unwrap().unwrap();
    assert_eq!(
        gso.copy_segment(&p, 1, &mut [0; 100]),
        Err(OffloadError::NoRoom)
    );
    assert_eq!(
        gso.copy_segment(&p[..100], 1, &mut [0; 2000]),
        Err(OffloadError::Truncated)
    );
    assert_eq!(
        gso.first_in_place(&mut [0; 10]),
        Err(OffloadError::Truncated)
    );
}

/// Consecutive data segments of one flow, valid, starting at `seq`.
fn flow(s: &Spec, n: usize, mss: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            packet(
                &Spec {
                    seq: s.seq.wrapping_add((i * mss) as u32),
                    id: s.id.wrapping_add(i as u16),
                    options: s.options.clone(),
                    ip_options: s.ip_options.clone(),
                    ..*s
                },
                &bytes(mss, i as u64),
            )
        })
        .collect()
}

/// Recomputes the checksums of a packet built by [`packet`] and then changed.
fn resum(p: &mut [u8]) {
    let v6 = p[0] >> 4 == 6;
    let (l4, proto) = if v6 {
        (40, p[6])
    } else {
        (usize::from(p[0] & 0xf) * 4, p[9])
    };
    if !v6 {
        p[10..12].fill(0);
        let c = ref_checksum(&[&p[..l4]]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let field = l4 + if proto == PROTO_UDP { 6 } else { 16 };
    p[field..field + 2].fill(0);
    let ph = ref_pseudo(p, proto, l4);
    let c = ref_checksum(&[&ph, &p[l4..]]);
    p[field..field + 2].copy_from_slice(&c.to_be_bytes());
}

/// The group sizes [`Gro`] makes of `packets`.
fn group_sizes(packets: &[Vec<u8>], tcp: bool, udp: bool) -> Vec<u16> {
    let mut gro = Gro::new(packets.len(), tcp, udp);
    for p in packets {
        gro.push(p);
    }
    gro.groups().iter().map(|g| g.count).collect()
}

#[test]
fn test_gro_rules() {
    let s = Spec::default();
    let base = flow(&s, 4, 1000);
    assert_eq!(group_sizes(&base, true, false), [4]);
    assert_eq!(group_sizes(&base, false, false), [1, 1, 1, 1], "no TSO");

    let with = |i: usize, f: &dyn Fn(&mut Spec)| {
        let mut v = base.clone();
        let mut spec = Spec {
            seq: s.seq + (i * 1000) as u32,
            id: s.id + i as u16,
            ..Spec::default()
        };
        f(&mut spec);
        v[i] = packet(&spec, &bytes(1000, i as u64));
        v
    };
    // A different acknowledgement number, TTL, DF or options: a new group (and the packet
    // after it differs from it in the same way, so another one).
    assert_eq!(
        group_sizes(&with(2, &|s| s.ack = 78), true, false),
        [2, 1, 1]
    );
    assert_eq!(
        group_sizes(&with(2, &|s| s.ttl = 63), true, false),
        [2, 1, 1]
    );
    assert_eq!(
        group_sizes(&with(2, &|s| s.options = vec![1, 1, 1, 1]), true, false),
        [2, 1, 1]
    );
    assert_eq!(
        group_sizes(&with(2, &|s| s.df = false), true, false),
        [2, 1, 1]
    );
    assert_eq!(group_sizes(&with(3, &|s| s.ack = 78), true, false), [3, 1]);
    // Another flow in between does not break the group.
    let mut mixed = base.clone();
    mixed.insert(
        2,
        packet(
            &Spec {
                sport: 1,
                ..Spec::default()
            },
            &bytes(1000, 9),
        ),
    );
    assert_eq!(group_sizes(&mixed, true, false), [4, 1]);
    mixed.push(packet(
        &Spec {
            seq: s.seq + 2000,
            id: s.id + 2,
            ..Spec::default()
        },
        &bytes(1000, 2),
    ));
    // The flow's group cannot take a repeated segment (not contiguous after 4000).
    assert_eq!(group_sizes(&mixed, true, false), [4, 1, 1]);
    // A sequence gap.
    assert_eq!(
        group_sizes(&with(2, &|s| s.seq += 1), true, false),
        [2, 1, 1]
    );
    // PSH ends a group, FIN too; SYN, RST and URG are never coalesced; CWR only first.
    assert_eq!(
        group_sizes(&with(1, &|s| s.flags |= TCP_PSH), true, false),
        [2, 2]
    );
    assert_eq!(
        group_sizes(&with(1, &|s| s.flags |= TCP_FIN), true, false),
        [2, 2]
    );
    assert_eq!(
        group_sizes(&with(1, &|s| s.flags |= TCP_URG), true, false),
        [1, 1, 2]
    );
    assert_eq!(
        group_sizes(&with(0, &|s| s.flags |= TCP_SYN), true, false),
        [1, 3]
    );
    assert_eq!(
        group_sizes(&with(2, &|s| s.flags |= TCP_CWR), true, false),
        [2, 2]
    );
    assert_eq!(
        group_sizes(&with(0, &|s| s.flags |= TCP_CWR), true, false),
        [4]
    );
    // A shorter packet ends a group; a longer one starts a new one.
    let mut v = base.clone();
    v[1] = packet(
        &Spec {
            seq: s.seq + 1000,
            id: s.id + 1,
            ..Spec::default()
        },
        &bytes(500, 1),
    );
    assert_eq!(group_sizes(&v[..2], true, false), [2]);
    let mut longer = flow(&s, 1, 1000);
    longer.push(packet(
        &Spec {
            seq: s.seq + 1000,
            id: s.id + 1,
            ..Spec::default()
        },
        &bytes(1200, 1),
    ));
    assert_eq!(group_sizes(&longer, true, false), [1, 1]);
    // A pure ACK is not coalesced and keeps the order.
    let mut acks = base.clone();
    acks.insert(2, packet(&Spec::default(), &[]));
    assert_eq!(group_sizes(&acks, true, false), [2, 1, 2]);
    // A bad checksum: written alone, and the flow goes on after it.
    let mut corrupt = base.clone();
    let last = corrupt[2].len() - 1;
    corrupt[2][last] ^= 1;
    assert_eq!(group_sizes(&corrupt, true, false), [2, 1, 1]);
    corrupt[0][last] ^= 1;
    assert_eq!(group_sizes(&corrupt, true, false), [1, 1, 1, 1]);
    // IPv4 options: segmented fine but never coalesced, and they end the flow's group.
    let mut opts = base.clone();
    opts[1] = packet(
        &Spec {
            seq: s.seq + 1000,
            id: s.id + 1,
            ip_options: vec![1, 1, 1, 0],
            ..Spec::default()
        },
        &bytes(1000, 1),
    );
    assert_eq!(group_sizes(&opts, true, false), [1, 1, 2]);
    // IPv4 IDs must count up (with or without DF).
    let nodf = Spec {
        df: false,
        ..Spec::default()
    };
    let mut v = flow(&nodf, 3, 1000);
    assert_eq!(group_sizes(&v, true, false), [3]);
    v[2][4] ^= 0x80;
    v[2][10] ^= 0x80; // keep the header checksum right
    assert_eq!(group_sizes(&v, true, false), [2, 1]);
    // The same with DF (the kernel numbers TSO segments so).
    let mut v = base.clone();
    v[2][4] ^= 0x80;
    resum(&mut v[2]);
    assert_eq!(group_sizes(&v, true, false), [2, 1, 1]);
    // A changed TCP window or urgent pointer (URG not set) starts a new group.
    for at in [34, 38] {
        let mut v = base.clone();
        v[2][at] ^= 1;
        resum(&mut v[2]);
        assert_eq!(group_sizes(&v, true, false), [2, 1, 1], "byte {at}");
    }
    // UDP without a checksum is not coalesced (segmentation would add one).
    let udp = Spec {
        udp: true,
        ..Spec::default()
    };
    let mut v = flow(&udp, 3, 500);
    assert_eq!(group_sizes(&v, true, true), [3]);
    assert_eq!(group_sizes(&v, true, false), [1, 1, 1], "no USO");
    v[1][26..28].fill(0);
    assert_eq!(group_sizes(&v, true, true), [1, 1, 1]);
    // At most MAX_SEGMENTS per super-packet, at most 64 KiB.
    let many = flow(&s, MAX_SEGMENTS + 3, 100);
    assert_eq!(group_sizes(&many, true, false), [MAX_SEGMENTS as u16, 3]);
    let big = flow(&s, 50, 1448);
    let sizes = group_sizes(&big, true, false);
    assert_eq!(sizes.iter().sum::<u16>(), 50);
    assert_eq!(sizes[0], 45, "(65535 - 40) / 1448");
}

#[test]
fn test_gro_many_interleaved_flows() {
    // 100 flows, two segments each, round robin: each flow's pair is coalesced (unless two
    // flows share a slot of the flow table).
    let flows: Vec<Vec<Vec<u8>>> = (0..100)
        .map(|i| {
            flow(
                &Spec {
                    sport: 1000 + i,
                    ..Spec::default()
                },
                2,
                300,
            )
        })
        .collect();
    let packets: Vec<Vec<u8>> = (0..2)
        .flat_map(|k| flows.iter().map(move |f| f[k].clone()))
        .collect();
    let sizes = group_sizes(&packets, true, false);
    assert!(sizes.len() < 120, "{}", sizes.len());
    coalesce(&packets, true, false);
}

#[test]
fn test_gro_passes_other_packets_through() {
    let mut packets = flow(&Spec::default(), 2, 1000);
    // ICMP, garbage, an IPv4 fragment, a truncated TCP header.
    let mut icmp = packets[0].clone();
    icmp[9] = 1;
    packets.insert(1, icmp);
    packets.push(vec![0xff; 3]);
    packets.push(vec![]);
    let mut frag = flow(&Spec::default(), 3, 1000).pop().unwrap();
    frag[6] |= 0x20;
    packets.push(frag);
    packets.push(packets[0][..30].to_vec());
    let groups = coalesce(&packets, true, true);
    assert_eq!(groups.len(), 6);
    assert_eq!(groups[0].1.len(), 2 * 1040 - 40);
    let alone: Vec<_> = packets
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 0 && i != 2)
        .map(|(_, p)| p)
        .collect();
    for ((h, bytes), p) in groups.iter().skip(1).zip(alone) {
        assert_eq!(h.gso_type, GSO_NONE);
        assert_eq!(h.flags & F_NEEDS_CSUM, 0);
        assert_eq!(bytes, p);
    }
}

#[test]
fn test_malformed_never_panics() {
    // Random bytes, and real packets cut short or with random bytes flipped.
    let good = [
        packet(&Spec::default(), &bytes(300, 1)),
        packet(
            &Spec {
                v6: true,
                udp: true,
                ..Spec::default()
            },
            &bytes(300, 2),
        ),
    ];
    let mut out = vec![0; 70_000];
    for seed in 0..3000u64 {
        let r = bytes(64, seed);
        let mut p = if seed % 3 == 0 {
            bytes(usize::from(r[0]) * 4, seed)
        } else {
            good[(seed % 2) as usize].clone()
        };
        for k in 0..usize::from(r[1] % 4) {
            if !p.is_empty() {
                let at = usize::from(u16::from_ne_bytes([r[2 + k], r[3 + k]])) % p.len();
                p[at] = r[10 + k];
            }
        }
        p.truncate(usize::from(u16::from_ne_bytes([r[20], r[21]])) % 400);
        let hdr = VnetHdr::parse(&r[30..]).unwrap();
        if let Ok(Some(gso)) = Gso::new(&hdr, &p) {
            for i in 0..gso.count().min(5) {
                let _ = gso.copy_segment(&p, i, &mut out);
            }
            let _ = gso.first_in_place(&mut p.clone());
        }
        let _ = complete_checksum(
            &mut p.clone(),
            usize::from(hdr.csum_start),
            usize::from(hdr.csum_offset),
        );
        let batch = [p.clone(), good[0].clone(), p.clone(), p];
        coalesce(&batch, true, true);
    }
}

#[test]
fn test_coalesce_mutated_flows() {
    // Runs of segments with one byte changed (checksums fixed up or not): whatever is
    // coalesced must segment back to exactly the packets (checked in `coalesce`).
    let specs = [
        Spec::default(),
        Spec {
            v6: true,
            options: vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2],
            ..Spec::default()
        },
        Spec {
            udp: true,
            ..Spec::default()
        },
        Spec {
            udp: true,
            v6: true,
            ..Spec::default()
        },
    ];
    let mut coalesced = 0;
    for seed in 0..4000u64 {
        let r = bytes(16, seed);
        let mut v = flow(&specs[(seed % 4) as usize], 6, 50 + usize::from(r[0]));
        let which = usize::from(r[1]) % v.len();
        let at = usize::from(u16::from_ne_bytes([r[2], r[3]])) % v[which].len();
        v[which][at] ^= r[4] | 1;
        if r[5] & 1 == 0 && v[which][0] >> 4 == if seed % 2 == 1 { 6 } else { 4 } {
            resum(&mut v[which]);
        }
        if r[6] & 1 == 0 {
            let last = v.len() - 1;
            let keep = v[last].len() - usize::from(r[7] % 40);
            v[last].truncate(keep);
        }
        coalesced += coalesce(&v, true, true)
            .iter()
            .filter(|(h, _)| h.gso_type != GSO_NONE)
            .count();
    }
    assert!(coalesced > 1000, "{coalesced}");
}

/// Not a timing assertion: prints how fast segmentation and coalescing run (`cargo test
/// --release -p wg-tunnel offload::tests::test_speed -- --nocapture`).
#[test]
fn test_speed() {
    let rounds = if cfg!(debug_assertions) { 20 } else { 2000 };
    let s = Spec::default();
    let payload = bytes(64_000, 3);
    let (hdr, sp) = super_packet(&s, &payload, 1380);
    let gso = Gso::new(&hdr, &sp).unwrap().unwrap();
    let mut outs = vec![vec![0u8; 1500]; gso.count()];
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        for (i, out) in outs.iter_mut().enumerate().skip(1) {
            gso.copy_segment(&sp, i, out).unwrap();
        }
        let mut first = sp.clone();
        gso.first_in_place(&mut first).unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let mb = (rounds * payload.len()) as f64 / 1e6;
    println!("segment: {:.0} MB/s", mb / secs);

    let segs = segment_all(&hdr, &sp);
    let mut gro = Gro::new(64, true, true);
    let mut head = [0u8; MAX_HEAD];
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        gro.clear();
        for p in &segs {
            gro.push(p);
        }
        for g in gro.groups() {
            gro.write_head(g, &mut head);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "coalesce (with checksum verification): {:.0} MB/s",
        mb / secs
    );
    let start = std::time::Instant::now();
    let mut acc = 0;
    for _ in 0..rounds {
        acc += u64::from(fold(sum(&payload, 0)));
    }
    let secs = start.elapsed().as_secs_f64();
    println!("checksum: {:.0} MB/s ({acc})", mb / secs);
}
