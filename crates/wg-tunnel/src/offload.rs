//! TUN offloads without I/O: the virtio-net header, Internet checksums, the segmentation of a
//! GSO super-packet read from the device, and the coalescing (GRO) of packets to write to it.
//!
//! With `IFF_VNET_HDR` and `TUNSETOFFLOAD` (see [`crate::tun`]) every packet on the TUN
//! descriptor starts with a 10-byte [`VnetHdr`]. On reads the kernel may hand over one TCP
//! (TSO) or UDP (USO) *super-packet* of up to 64 KiB with a partial checksum; [`Gso`] cuts it
//! into the MSS-sized packets the sender's stack would have sent, each complete with its own
//! IP length, IPv4 identification and header checksum, TCP sequence number and flags, and
//! transport checksum. On writes, [`Gro`] groups the consecutive segments of one TCP (or,
//! when USO was negotiated, UDP) flow of a batch, and [`Gro::write_head`] makes the headers
//! that let the kernel take a group as one super-packet (`NEEDS_CSUM` with the pseudo-header
//! sum in the checksum field, as a NIC's GRO would hand it up).
//!
//! Coalescing follows Linux's GRO rules: same addresses, ports, TOS/traffic class, TTL/hop
//! limit, DF, IPv4 without options or fragmentation, IPv6 without extension headers, same
//! TCP header length, options and acknowledgement number, contiguous sequence numbers, no
//! SYN/RST/URG, CWR only on the first, PSH or FIN only on the last, every payload of the
//! first one's size except a shorter last one, at most 64 KiB and [`MAX_SEGMENTS`] packets.
//! It is stricter where Linux would lose a detail: IPv4 ids must count up and the TCP window
//! and urgent pointer must not change, so that the kernel's segmentation of a super-packet
//! gives back exactly the packets that went in (the unit tests and the fuzz target check
//! that).
//! Because the kernel computes the checksum of a super-packet afresh, the checksums of the
//! packets joining a group are verified first (as wireguard-go does): a corrupt packet is
//! written alone, as it came, for the kernel to drop.
//!
//! Checksums are summed eight bytes at a time in native byte order (one's-complement
//! addition does not depend on the order, RFC 1071) and stored back in native order.
//!
//! Nothing here allocates after construction; malformed input is an [`OffloadError`], never a
//! panic (fuzzed by `fuzz/fuzz_targets/offload.rs`).

use std::fmt;

/// The size of `struct virtio_net_hdr` (without the `num_buffers` of the mergeable variant).
pub const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the transport checksum is partial (pseudo-header only);
/// sum from `csum_start` to the end and store at `csum_start + csum_offset`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksums were verified.
pub const F_DATA_VALID: u8 = 2;
/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP` (UFO: IP fragmentation; never negotiated here).
pub const GSO_UDP: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4` (USO).
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`: the TCP segments carry ECN (CWR on the first one).
pub const GSO_ECN: u8 = 0x80;
/// The largest IP packet (IPv4 total length; the IPv6 limit without jumbograms is close).
pub const MAX_PACKET: usize = 65_535;
/// The most packets [`Gro`] puts in one super-packet.
pub const MAX_SEGMENTS: usize = 64;
/// The size of [`Gro`]'s flow table.
const FLOW_SLOTS: usize = 1024;

/// A flow hash's slot in [`Gro`]'s flow table (from its best-mixed, top bits).
fn flow_slot(flow: u64) -> usize {
    (flow >> 54) as usize % FLOW_SLOTS
}
/// Room for the headers of one coalesced super-packet: the virtio-net header, IPv6 (the
/// larger) and a TCP header with the most options.
pub const MAX_HEAD: usize = VNET_HDR_LEN + 40 + 60;

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_PSH: u8 = 0x08;
const TCP_ACK: u8 = 0x10;
const TCP_URG: u8 = 0x20;
const TCP_CWR: u8 = 0x80;
/// The IPv4 `MF` flag and fragment offset bits of the flags/offset word.
const IPV4_FRAGMENT: u16 = 0x3fff;

/// Why a packet could not be segmented or have its checksum completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OffloadError {
    /// Shorter than its headers say.
    Truncated,
    /// A header field that cannot be right (IP version, header lengths, checksum offsets,
    /// a GSO type that does not match the packet).
    Malformed,
    /// A GSO type that is never negotiated (UFO).
    Unsupported,
    /// A segment does not fit the buffer given for it.
    NoRoom,
}

impl fmt::Display for OffloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OffloadError::Truncated => "truncated packet",
            OffloadError::Malformed => "malformed packet headers",
            OffloadError::Unsupported => "unsupported GSO type",
            OffloadError::NoRoom => "segment larger than its buffer",
        })
    }
}

impl std::error::Error for OffloadError {}

/// `struct virtio_net_hdr`, in the host's byte order (a TUN device is "legacy" virtio unless
/// told otherwise with `TUNSETVNETLE`/`BE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    /// `F_NEEDS_CSUM`, `F_DATA_VALID`.
    pub flags: u8,
    /// `GSO_*`, possibly with [`GSO_ECN`].
    pub gso_type: u8,
    /// The length of the headers (IP + transport). Kernels fill it in loosely on reads, so
    /// [`Gso`] recomputes it.
    pub hdr_len: u16,
    /// The payload bytes per segment (the MSS).
    pub gso_size: u16,
    /// Where the transport checksum's coverage starts (the transport header).
    pub csum_start: u16,
    /// Where the checksum field is, from `csum_start`.
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads a header from the first [`VNET_HDR_LEN`] bytes of `b`.
    pub fn parse(b: &[u8]) -> Result<VnetHdr, OffloadError> {
        let b = b.get(..VNET_HDR_LEN).ok_or(OffloadError::Truncated)?;
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Ok(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        })
    }

    /// The header's bytes.
    pub fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }
}

// ---------------------------------------------------------------------------------------
// Checksums

/// Adds `data` to the one's-complement accumulator `acc`, in native byte order. `data` must
/// start at an even offset of the summed region (an odd length is fine only at its end).
/// Accumulates 32-bit words into a 64-bit sum, which cannot overflow for any packet, and lets
/// the compiler vectorise the loop.
pub fn sum(data: &[u8], acc: u64) -> u64 {
    // Keep the incoming accumulator small, so chaining many calls cannot overflow.
    let mut a = (acc & 0xffff_ffff) + (acc >> 32);
    let mut b = 0u64;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        a += w & 0xffff_ffff;
        b += w >> 32;
    }
    let mut acc = a + b;
    let mut rest = chunks.remainder();
    if rest.len() >= 4 {
        acc += u64::from(u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]));
        rest = &rest[4..];
    }
    if rest.len() >= 2 {
        acc += u64::from(u16::from_ne_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let [last] = rest {
        acc += u64::from(u16::from_ne_bytes([*last, 0]));
    }
    acc
}

/// Folds an accumulator to 16 bits (not complemented), in native byte order: store it with
/// `to_ne_bytes`.
pub fn fold(acc: u64) -> u16 {
    let mut s = (acc & 0xffff_ffff) + (acc >> 32);
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// The pseudo-header sum for a transport segment of `len` bytes with protocol `proto`
/// between `src` and `dst` (both 4 or both 16 bytes).
fn pseudo_sum(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u64 {
    let len = len as u32;
    let tail = [
        0,
        proto,
        (len >> 24) as u8,
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
    ];
    sum(&tail, sum(dst, sum(src, 0)))
}

fn be16(p: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([p[at], p[at + 1]])
}

fn be32(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

fn put16(p: &mut [u8], at: usize, v: u16) {
    p[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// Recomputes the IPv4 header checksum of `header` (exactly the header, 20 to 60 bytes).
fn set_ipv4_checksum(header: &mut [u8]) {
    header[10..12].fill(0);
    let c = !fold(sum(header, 0));
    header[10..12].copy_from_slice(&c.to_ne_bytes());
}

/// The pseudo-header sum of `packet` (an IPv4 or IPv6 packet) for its transport segment
/// starting at `l4`.
fn packet_pseudo_sum(packet: &[u8], v6: bool, proto: u8, l4: usize) -> u64 {
    let (src, dst) = if v6 {
        (&packet[8..24], &packet[24..40])
    } else {
        (&packet[12..16], &packet[16..20])
    };
    pseudo_sum(src, dst, proto, packet.len() - l4)
}

/// Completes a partial checksum (`F_NEEDS_CSUM` without GSO): sums from `csum_start` to the
/// end, starting from what the field holds (the pseudo-header sum), and stores the result.
pub fn complete_checksum(
    packet: &mut [u8],
    csum_start: usize,
    csum_offset: usize,
) -> Result<(), OffloadError> {
    let field = csum_start
        .checked_add(csum_offset)
        .filter(|&f| f + 2 <= packet.len())
        .ok_or(OffloadError::Malformed)?;
    if csum_offset % 2 != 0 {
        return Err(OffloadError::Malformed);
    }
    let mut c = !fold(sum(&packet[csum_start..], 0));
    if c == 0 {
        // As skb_checksum_help: 0 means "no checksum" to UDP; 0xffff is the same sum.
        c = 0xffff;
    }
    packet[field..field + 2].copy_from_slice(&c.to_ne_bytes());
    Ok(())
}

/// Whether the IP packet's transport checksum (and IPv4 header checksum) is valid. `v6`,
/// `proto` and `l4` come from the packet's IP header. A UDP-over-IPv4 checksum of zero (none)
/// counts as valid.
fn checksums_valid(packet: &[u8], v6: bool, proto: u8, l4: usize) -> bool {
    if !v6 && fold(sum(&packet[..l4], 0)) != 0xffff {
        return false;
    }
    if !v6 && proto == PROTO_UDP && be16(packet, l4 + 6) == 0 {
        return true;
    }
    let total = sum(&packet[l4..], packet_pseudo_sum(packet, v6, proto, l4));
    fold(total) == 0xffff
}

// ---------------------------------------------------------------------------------------
// Segmentation (reads)

/// A GSO super-packet read from the device, to be cut into segments. Describe it with
/// [`Gso::new`], then produce segment `i` with [`copy_segment`](Self::copy_segment) (from the
/// untouched super-packet) or segment 0 with [`first_in_place`](Self::first_in_place) (last,
/// since it changes the headers the others are copied from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gso {
    v6: bool,
    udp: bool,
    /// The transport header's offset.
    l4: usize,
    /// IP and transport headers.
    hdr_len: usize,
    mss: usize,
    /// The super-packet's length.
    len: usize,
}

impl Gso {
    /// Describes the super-packet `packet` that came with `hdr`. `Ok(None)` when `hdr` asks
    /// for no segmentation.
    pub fn new(hdr: &VnetHdr, packet: &[u8]) -> Result<Option<Gso>, OffloadError> {
        let (udp, want_v6) = match hdr.gso_type & !GSO_ECN {
            GSO_NONE => return Ok(None),
            GSO_TCPV4 => (false, Some(false)),
            GSO_TCPV6 => (false, Some(true)),
            GSO_UDP_L4 => (true, None),
            GSO_UDP => return Err(OffloadError::Unsupported),
            _ => return Err(OffloadError::Malformed),
        };
        let first = *packet.first().ok_or(OffloadError::Truncated)?;
        let v6 = match first >> 4 {
            4 => false,
            6 => true,
            _ => return Err(OffloadError::Malformed),
        };
        if want_v6.is_some_and(|w| w != v6) {
            return Err(OffloadError::Malformed);
        }
        let l4 = usize::from(hdr.csum_start);
        let proto = if udp { PROTO_UDP } else { PROTO_TCP };
        if v6 {
            if l4 < 40 || (l4 == 40 && packet.get(6) != Some(&proto)) {
                return Err(OffloadError::Malformed);
            }
        } else {
            if usize::from(first & 0x0f) * 4 != l4 || l4 < 20 {
                return Err(OffloadError::Malformed);
            }
            if packet.get(9).ok_or(OffloadError::Truncated)? != &proto {
                return Err(OffloadError::Malformed);
            }
        }
        let l4_len = if udp {
            8
        } else {
            let offset = *packet.get(l4 + 12).ok_or(OffloadError::Truncated)?;
            usize::from(offset >> 4) * 4
        };
        if l4_len < 8 || (!udp && l4_len < 20) {
            return Err(OffloadError::Malformed);
        }
        let hdr_len = l4 + l4_len;
        if hdr_len > packet.len() {
            return Err(OffloadError::Truncated);
        }
        let mss = usize::from(hdr.gso_size);
        let max = if v6 { MAX_PACKET + 40 } else { MAX_PACKET };
        if mss == 0 || packet.len() > max {
            return Err(OffloadError::Malformed);
        }
        Ok(Some(Gso {
            v6,
            udp,
            l4,
            hdr_len,
            mss,
            len: packet.len(),
        }))
    }

    /// How many segments the super-packet makes (at least one).
    pub fn count(&self) -> usize {
        (self.len - self.hdr_len).div_ceil(self.mss).max(1)
    }

    /// The length of segment `i`.
    pub fn segment_len(&self, i: usize) -> usize {
        let start = self.hdr_len + i * self.mss;
        self.hdr_len + self.len.min(start + self.mss).saturating_sub(start)
    }

    /// The length of the longest segment (the first).
    pub fn max_segment_len(&self) -> usize {
        self.segment_len(0)
    }

    /// Writes segment `i` of the untouched super-packet `packet` to the start of `out`;
    /// returns its length.
    pub fn copy_segment(
        &self,
        packet: &[u8],
        i: usize,
        out: &mut [u8],
    ) -> Result<usize, OffloadError> {
        let n = self.segment_len(i);
        let out = out.get_mut(..n).ok_or(OffloadError::NoRoom)?;
        let packet = packet.get(..self.len).ok_or(OffloadError::Truncated)?;
        out[..self.hdr_len].copy_from_slice(&packet[..self.hdr_len]);
        let start = self.hdr_len + i * self.mss;
        out[self.hdr_len..].copy_from_slice(&packet[start..start + n - self.hdr_len]);
        self.fix(out, i);
        Ok(n)
    }

    /// Turns the super-packet in `packet` into its first segment, in place; returns its
    /// length. Call it after every [`copy_segment`](Self::copy_segment) from `packet`.
    pub fn first_in_place(&self, packet: &mut [u8]) -> Result<usize, OffloadError> {
        let n = self.segment_len(0);
        let seg = packet.get_mut(..n).ok_or(OffloadError::Truncated)?;
        self.fix(seg, 0);
        Ok(n)
    }

    /// Sets the lengths, sequence number, flags and checksums of segment `i`, whose headers
    /// are still those of the super-packet.
    fn fix(&self, seg: &mut [u8], i: usize) {
        let len = seg.len();
        let l4 = self.l4;
        if self.v6 {
            put16(seg, 4, (len - 40) as u16);
        } else {
            put16(seg, 2, len as u16);
            let id = be16(seg, 4).wrapping_add(i as u16);
            put16(seg, 4, id);
            set_ipv4_checksum(&mut seg[..l4]);
        }
        let field = if self.udp {
            put16(seg, l4 + 4, (len - l4) as u16);
            l4 + 6
        } else {
            let seq = be32(seg, l4 + 4).wrapping_add((i * self.mss) as u32);
            seg[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
            if i + 1 < self.count() {
                seg[l4 + 13] &= !(TCP_FIN | TCP_PSH);
            }
            if i > 0 {
                seg[l4 + 13] &= !TCP_CWR;
            }
            l4 + 16
        };
        seg[field..field + 2].fill(0);
        let proto = if self.udp { PROTO_UDP } else { PROTO_TCP };
        let mut c = !fold(sum(&seg[l4..], packet_pseudo_sum(seg, self.v6, proto, l4)));
        if self.udp && c == 0 {
            c = 0xffff;
        }
        seg[field..field + 2].copy_from_slice(&c.to_ne_bytes());
    }
}

// ---------------------------------------------------------------------------------------
// Coalescing (writes)

/// What kind of packet a group holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Not coalescable: written alone, as it is.
    Other,
    Tcp,
    Udp,
}

/// One packet to write, or several coalesced into one super-packet.
#[derive(Debug, Clone, Copy)]
pub struct Group {
    /// The index (as given to [`Gro::push`]) of the first packet.
    pub first: u32,
    /// The index of the last packet.
    last: u32,
    /// How many packets.
    pub count: u16,
    kind: Kind,
    /// Whether the first packet's checksums are right.
    verified: bool,
    /// No packet may join any more.
    closed: bool,
    v6: bool,
    /// A hash of the flow, 0 for packets that have none.
    flow: u64,
    l4: u8,
    hdr_len: u8,
    /// The first packet's payload length.
    gso_size: u16,
    /// The super-packet's length so far.
    len: u32,
    /// The next TCP sequence number expected.
    next_seq: u32,
    /// The TCP flags of the last packet (PSH/FIN go into the super-packet's header).
    last_flags: u8,
    /// The first packet's headers (IP + transport).
    head: [u8; MAX_HEAD - VNET_HDR_LEN],
}

/// Groups the packets of one batch for writing: call [`push`](Self::push) for each packet in
/// order, then write each of [`groups`](Self::groups) (see [`Gro::write_head`] and
/// [`Gro::members`]). Order within a flow is kept: a packet either joins its flow's newest
/// group or starts a new one, and groups are listed by their first packet.
#[derive(Debug)]
pub struct Gro {
    tcp: bool,
    udp: bool,
    groups: Vec<Group>,
    /// For each pushed packet, the next packet of its group (`u32::MAX`: none).
    next: Vec<u32>,
    /// By flow hash, the newest group started for a flow with that hash (a flow whose
    /// entry another flow took over starts a new group: the order within a flow holds,
    /// since an older group is never found once a newer one exists).
    newest: [u32; FLOW_SLOTS],
}

/// The facts about one packet [`Gro`] needs.
struct Parsed {
    kind: Kind,
    v6: bool,
    l4: usize,
    hdr_len: usize,
    flow: u64,
}

impl Gro {
    /// A coalescer for batches of up to `capacity` packets; `tcp` and `udp` say which
    /// protocols may be coalesced (TSO and USO negotiated).
    pub fn new(capacity: usize, tcp: bool, udp: bool) -> Gro {
        Gro {
            tcp,
            udp,
            groups: Vec::with_capacity(capacity),
            next: Vec::with_capacity(capacity),
            newest: [u32::MAX; FLOW_SLOTS],
        }
    }

    /// Changes which protocols may be coalesced.
    pub fn set_protocols(&mut self, tcp: bool, udp: bool) {
        self.tcp = tcp;
        self.udp = udp;
    }

    /// Forgets the previous batch.
    pub fn clear(&mut self) {
        self.groups.clear();
        self.next.clear();
        self.newest.fill(u32::MAX);
    }

    /// The groups, in the order of their first packets.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The indexes of the packets of `group`, in order.
    pub fn members<'a>(&'a self, group: &Group) -> impl Iterator<Item = usize> + 'a {
        let mut at = group.first;
        std::iter::from_fn(move || {
            if at == u32::MAX {
                return None;
            }
            let i = at as usize;
            at = self.next[i];
            Some(i)
        })
    }

    /// Adds the next packet; packets are numbered from 0 in the order of the calls.
    pub fn push(&mut self, packet: &[u8]) {
        let index = self.next.len() as u32;
        self.next.push(u32::MAX);
        let parsed = self.parse(packet);
        if parsed.kind != Kind::Other {
            // The flow's newest group, if the packet may join it.
            let g = self.newest[flow_slot(parsed.flow)] as usize;
            if self.groups.get(g).is_some_and(|g| g.flow == parsed.flow)
                && self.try_join(g, &parsed, packet)
            {
                let group = &mut self.groups[g];
                self.next[group.last as usize] = index;
                group.last = index;
                group.count += 1;
                return;
            }
        }
        self.start_group(index, parsed, packet);
    }

    fn parse(&self, p: &[u8]) -> Parsed {
        let mut parsed = Parsed {
            kind: Kind::Other,
            v6: false,
            l4: 0,
            hdr_len: 0,
            flow: 0,
        };
        if p.len() > MAX_PACKET || p.len() < 20 {
            return parsed;
        }
        // Eligible: exact lengths, IPv4 without options or fragmentation, IPv6 without
        // extension headers.
        let (v6, l4, proto, eligible) = match p[0] >> 4 {
            4 => {
                let l4 = usize::from(p[0] & 0x0f) * 4;
                let exact = usize::from(be16(p, 2)) == p.len();
                let fragment = be16(p, 6) & IPV4_FRAGMENT != 0;
                (false, l4, p[9], l4 == 20 && exact && !fragment)
            }
            6 if p.len() >= 40 => {
                let exact = usize::from(be16(p, 4)) + 40 == p.len();
                (true, 40, p[6], exact)
            }
            _ => return parsed,
        };
        if (proto != PROTO_TCP && proto != PROTO_UDP) || p.len() < l4 + 4 {
            return parsed;
        }
        // Every TCP or UDP packet gets its flow, coalescable or not, so that one that is not
        // ends its flow's group and the flow's order is kept.
        let addrs = if v6 { &p[8..40] } else { &p[12..20] };
        let mut h = 0xcbf2_9ce4_8422_2325u64 ^ u64::from(proto) ^ (u64::from(v6) << 8);
        for c in addrs.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            h = (h ^ u64::from_ne_bytes(w)).wrapping_mul(0x0100_0000_01b3);
        }
        h = (h ^ u64::from(be32(p, l4))).wrapping_mul(0x0100_0000_01b3);
        // Mix the high bits down (a multiply only carries upwards); 0 means "no flow".
        h ^= h >> 32;
        h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        parsed.flow = (h ^ (h >> 29)) | 1;
        let kind = match proto {
            PROTO_TCP if self.tcp && eligible => Kind::Tcp,
            PROTO_UDP if self.udp && eligible => Kind::Udp,
            _ => return parsed,
        };
        let l4_len = match kind {
            Kind::Tcp => match p.get(l4 + 12) {
                Some(&offset) if offset >> 4 >= 5 => usize::from(offset >> 4) * 4,
                _ => return parsed,
            },
            _ => 8,
        };
        let hdr_len = l4 + l4_len;
        if hdr_len > p.len() {
            return parsed;
        }
        if kind == Kind::Udp && usize::from(be16(p, l4 + 4)) != p.len() - l4 {
            return parsed;
        }
        Parsed {
            kind,
            v6,
            l4,
            hdr_len,
            flow: parsed.flow,
        }
    }

    /// Whether `p` (parsed as `n`) may be appended to group `g`; if so, accounts for it.
    fn try_join(&mut self, g: usize, n: &Parsed, p: &[u8]) -> bool {
        let group = &self.groups[g];
        if group.closed
            || group.kind != n.kind
            || group.v6 != n.v6
            || usize::from(group.hdr_len) != n.hdr_len
            || usize::from(group.count) >= MAX_SEGMENTS
        {
            return false;
        }
        let h = &group.head[..n.hdr_len];
        let l4 = n.l4;
        // Every header byte that segmentation copies from the first packet must be the same,
        // so that the kernel's segments are exactly the packets coalesced: the IP header but
        // for its lengths, IPv4 id and checksum (the id must count up: the kernel's TSO
        // numbers segments so); the ports; TCP's acknowledgement number, data offset,
        // window, urgent pointer and options.
        let same = |r: std::ops::Range<usize>| h[r.clone()] == p[r];
        let ip_same = if n.v6 {
            same(0..4) && same(6..40)
        } else {
            same(0..2)
                && same(6..10)
                && same(12..20)
                && be16(p, 4) == be16(h, 4).wrapping_add(group.count)
        };
        if !ip_same || !same(l4..l4 + 4) {
            return false;
        }
        let payload = p.len() - n.hdr_len;
        let gso_size = usize::from(group.gso_size);
        if payload == 0 || payload > gso_size || group.len as usize + payload > MAX_PACKET {
            return false;
        }
        let tcp = group.kind == Kind::Tcp;
        if tcp {
            let flags = p[l4 + 13];
            let head_flags = h[l4 + 13];
            if flags & TCP_CWR != 0
                || (flags ^ head_flags) & !(TCP_CWR | TCP_FIN | TCP_PSH) != 0
                || be32(p, l4 + 4) != group.next_seq
                || !same(l4 + 8..l4 + 13)
                || !same(l4 + 14..l4 + 16)
                || !same(l4 + 18..n.hdr_len)
            {
                return false;
            }
        }
        if (!tcp && be16(p, l4 + 6) == 0)
            || !checksums_valid(p, n.v6, if tcp { PROTO_TCP } else { PROTO_UDP }, l4)
        {
            return false;
        }
        let group = &mut self.groups[g];
        group.len += payload as u32;
        if tcp {
            let flags = p[l4 + 13];
            group.next_seq = group.next_seq.wrapping_add(payload as u32);
            group.last_flags = flags;
            group.closed = flags & (TCP_PSH | TCP_FIN) != 0;
        }
        group.closed |= payload < gso_size;
        true
    }

    fn start_group(&mut self, index: u32, n: Parsed, p: &[u8]) {
        let mut group = Group {
            first: index,
            last: index,
            count: 1,
            kind: n.kind,
            verified: false,
            closed: true,
            v6: n.v6,
            flow: n.flow,
            l4: n.l4 as u8,
            hdr_len: n.hdr_len as u8,
            gso_size: 0,
            len: p.len() as u32,
            next_seq: 0,
            last_flags: 0,
            head: [0; MAX_HEAD - VNET_HDR_LEN],
        };
        if n.kind != Kind::Other {
            let l4 = n.l4;
            let payload = p.len() - n.hdr_len;
            let tcp = n.kind == Kind::Tcp;
            let proto = if tcp { PROTO_TCP } else { PROTO_UDP };
            group.verified = checksums_valid(p, n.v6, proto, l4);
            // A UDP datagram without a checksum (IPv4) would get one from segmentation.
            let unsummed = !tcp && be16(p, l4 + 6) == 0;
            group.head[..n.hdr_len].copy_from_slice(&p[..n.hdr_len]);
            group.gso_size = payload as u16;
            // Only a verified packet with a payload may start a super-packet.
            group.closed = !group.verified || payload == 0 || unsummed;
            if tcp {
                let flags = p[l4 + 13];
                group.next_seq = be32(p, l4 + 4).wrapping_add(payload as u32);
                group.last_flags = flags;
                if flags & (TCP_SYN | TCP_RST | TCP_URG | TCP_PSH | TCP_FIN) != 0
                    || flags & TCP_ACK == 0
                {
                    group.closed = true;
                }
            }
        }
        if group.flow != 0 {
            self.newest[flow_slot(group.flow)] = self.groups.len() as u32;
        }
        self.groups.push(group);
    }

    /// Writes what goes before the first packet's payload for `group` into `out` (at least
    /// [`MAX_HEAD`] bytes), returns its length and how many bytes of the first packet to
    /// skip: the virtio-net header alone (skip nothing) for a single packet, or the header
    /// and the super-packet's IP and transport headers (skip the first packet's headers) for
    /// a coalesced group. The payloads of the other members follow (see
    /// [`payload_offset`](Self::payload_offset)).
    pub fn write_head(&self, group: &Group, out: &mut [u8]) -> (usize, usize) {
        if group.count == 1 {
            out[..VNET_HDR_LEN].copy_from_slice(&VnetHdr::default().to_bytes());
            return (VNET_HDR_LEN, 0);
        }
        let l4 = usize::from(group.l4);
        let hdr_len = usize::from(group.hdr_len);
        let len = group.len as usize;
        let tcp = group.kind == Kind::Tcp;
        let h = &mut out[VNET_HDR_LEN..VNET_HDR_LEN + hdr_len];
        h.copy_from_slice(&group.head[..hdr_len]);
        if group.v6 {
            put16(h, 4, (len - 40) as u16);
        } else {
            put16(h, 2, len as u16);
            set_ipv4_checksum(&mut h[..20]);
        }
        let proto = if tcp { PROTO_TCP } else { PROTO_UDP };
        let (src, dst) = if group.v6 {
            (&h[8..24], &h[24..40])
        } else {
            (&h[12..16], &h[16..20])
        };
        let partial = fold(pseudo_sum(src, dst, proto, len - l4));
        let mut gso_type;
        let csum_offset;
        if tcp {
            h[l4 + 13] |= group.last_flags & (TCP_PSH | TCP_FIN);
            gso_type = if group.v6 { GSO_TCPV6 } else { GSO_TCPV4 };
            if h[l4 + 13] & TCP_CWR != 0 {
                gso_type |= GSO_ECN;
            }
            csum_offset = 16;
        } else {
            put16(h, l4 + 4, (len - l4) as u16);
            gso_type = GSO_UDP_L4;
            csum_offset = 6;
        }
        h[l4 + csum_offset..l4 + csum_offset + 2].copy_from_slice(&partial.to_ne_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type,
            hdr_len: hdr_len as u16,
            gso_size: group.gso_size,
            csum_start: l4 as u16,
            csum_offset: csum_offset as u16,
        };
        out[..VNET_HDR_LEN].copy_from_slice(&hdr.to_bytes());
        (VNET_HDR_LEN + hdr_len, hdr_len)
    }

    /// Where the payload starts in each member of `group` (0 for a single packet).
    pub fn payload_offset(&self, group: &Group) -> usize {
        if group.count == 1 {
            0
        } else {
            usize::from(group.hdr_len)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
