//! A small netlink attribute codec with libmnl's exact size rules, for the generic netlink
//! messages of the WireGuard family.
//!
//! Why not `netlink-packet-wireguard`? It has every attribute and flag (allowed-IP flags too),
//! but its model is "build the whole tree, then emit it". The reference splits a set request
//! while it writes it, asking before every attribute whether that attribute still fits in the
//! message (`mnl_attr_put_check`, `mnl_attr_nest_start_check`), and the split points follow
//! from those exact checks. [`Message`] reproduces them byte for byte. On the reading side the
//! reference is lenient in ways the crate is not (an attribute of the wrong size is skipped,
//! interface names need not be UTF-8, a short attribute never aborts), so [`Attrs`] walks
//! attributes the way `mnl_attr_for_each` does. The crate is still used, in the tests, as an
//! independent decoder and encoder to check this codec against.

/// Netlink attribute alignment.
const ALIGNTO: usize = 4;
/// The size of an attribute header (`struct nlattr`).
pub(crate) const ATTR_HDRLEN: usize = 4;
/// The size of a generic netlink header (`struct genlmsghdr`).
pub(crate) const GENL_HDRLEN: usize = 4;
/// The "nested" bit of an attribute type.
pub(crate) const NLA_F_NESTED: u16 = 1 << 15;
/// The mask of an attribute type without its flag bits.
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | (1 << 14));

/// `MNL_ALIGN`.
pub(crate) const fn align(len: usize) -> usize {
    (len + ALIGNTO - 1) & !(ALIGNTO - 1)
}

/// A generic netlink message being written, with libmnl's `put` / `put_check` / nest
/// operations. The header's length is kept up to date; its sequence number and port are left
/// zero for the sender to fill in.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    buf: Vec<u8>,
    budget: usize,
}

impl Message {
    /// A message of netlink type `family` (the genl family id), generic netlink command `cmd`
    /// and version `version`, with header flags `flags`. The `_check` operations refuse to
    /// grow it beyond `budget` bytes.
    pub(crate) fn new(family: u16, flags: u16, cmd: u8, version: u8, budget: usize) -> Message {
        let mut buf = Vec::with_capacity(budget.min(1 << 16));
        buf.extend_from_slice(&0u32.to_ne_bytes());
        buf.extend_from_slice(&family.to_ne_bytes());
        buf.extend_from_slice(&flags.to_ne_bytes());
        buf.extend_from_slice(&[0; 8]); // sequence number, port id
        buf.extend_from_slice(&[cmd, version, 0, 0]);
        let mut message = Message { buf, budget };
        message.sync_len();
        message
    }

    fn sync_len(&mut self) {
        let len = self.buf.len() as u32;
        self.buf[..4].copy_from_slice(&len.to_ne_bytes());
    }

    /// `mnl_attr_put`: appends an attribute without checking the budget.
    pub(crate) fn put(&mut self, kind: u16, data: &[u8]) {
        let nla_len = (ATTR_HDRLEN + data.len()) as u16;
        self.buf.extend_from_slice(&nla_len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(align(self.buf.len()), 0);
        self.sync_len();
    }

    /// `mnl_attr_put_check`: appends the attribute only if it fits in the budget.
    #[must_use]
    pub(crate) fn put_check(&mut self, kind: u16, data: &[u8]) -> bool {
        if self.buf.len() + ATTR_HDRLEN + align(data.len()) > self.budget {
            return false;
        }
        self.put(kind, data);
        true
    }

    /// `mnl_attr_put_strz`: a NUL-terminated string, unchecked.
    pub(crate) fn put_strz(&mut self, kind: u16, text: &[u8]) {
        let mut data = Vec::with_capacity(text.len() + 1);
        data.extend_from_slice(text);
        data.push(0);
        self.put(kind, &data);
    }

    /// `mnl_attr_nest_start`: opens a nested attribute; returns its offset for
    /// [`Message::nest_end`] or [`Message::nest_cancel`].
    pub(crate) fn nest_start(&mut self, kind: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(NLA_F_NESTED | kind).to_ne_bytes());
        self.sync_len();
        start
    }

    /// `mnl_attr_nest_start_check`: opens a nest only if its header fits in the budget.
    pub(crate) fn nest_start_check(&mut self, kind: u16) -> Option<usize> {
        if self.buf.len() + ATTR_HDRLEN > self.budget {
            return None;
        }
        Some(self.nest_start(kind))
    }

    /// `mnl_attr_nest_end`: closes the nest opened at `start`.
    pub(crate) fn nest_end(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// `mnl_attr_nest_cancel`: drops the nest opened at `start` and everything in it.
    pub(crate) fn nest_cancel(&mut self, start: usize) {
        self.buf.truncate(start);
        self.sync_len();
    }

    /// The finished message bytes.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// One attribute: its type (flag bits removed) and payload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attr<'a> {
    pub(crate) kind: u16,
    pub(crate) payload: &'a [u8],
}

impl<'a> Attr<'a> {
    /// The nested attributes of this attribute.
    pub(crate) fn nested(&self) -> Attrs<'a> {
        Attrs::new(self.payload)
    }

    /// The payload as a u8, if it has exactly one byte (`mnl_attr_validate(MNL_TYPE_U8)`).
    pub(crate) fn u8(&self) -> Option<u8> {
        match self.payload {
            [b] => Some(*b),
            _ => None,
        }
    }

    /// The payload as a host-order u16, if it has exactly two bytes.
    pub(crate) fn u16(&self) -> Option<u16> {
        Some(u16::from_ne_bytes(self.payload.try_into().ok()?))
    }

    /// The payload as a host-order u32, if it has exactly four bytes.
    pub(crate) fn u32(&self) -> Option<u32> {
        Some(u32::from_ne_bytes(self.payload.try_into().ok()?))
    }

    /// The payload as a host-order u64, if it has exactly eight bytes.
    pub(crate) fn u64(&self) -> Option<u64> {
        Some(u64::from_ne_bytes(self.payload.try_into().ok()?))
    }

    /// The payload as a 32-byte key, if it has exactly that size.
    pub(crate) fn key(&self) -> Option<[u8; 32]> {
        self.payload.try_into().ok()
    }
}

/// The attributes of a buffer, walked as `mnl_attr_for_each` does: iteration stops, without an
/// error, at the first header that is short or claims more bytes than remain.
#[derive(Debug, Clone)]
pub(crate) struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Attrs<'a> {
    /// The attributes in `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Attrs<'a> {
        Attrs { rest: buf }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Attr<'a>;

    fn next(&mut self) -> Option<Attr<'a>> {
        let header = self.rest.get(..ATTR_HDRLEN)?;
        let len = usize::from(u16::from_ne_bytes([header[0], header[1]]));
        let kind = u16::from_ne_bytes([header[2], header[3]]) & NLA_TYPE_MASK;
        if len < ATTR_HDRLEN || len > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let payload = &self.rest[ATTR_HDRLEN..len];
        self.rest = self.rest.get(align(len)..).unwrap_or(&[]);
        Some(Attr { kind, payload })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_put_and_read_back() {
        let mut m = Message::new(0x20, 5, 1, 1, 64);
        assert_eq!(m.clone().into_bytes().len(), 16 + GENL_HDRLEN);
        m.put_strz(2, b"wg0");
        let nest = m.nest_start(8);
        assert!(m.put_check(1, &[7; 5]));
        m.nest_end(nest);
        let bytes = m.into_bytes();
        assert_eq!(bytes.len(), 20 + 8 + 4 + 12);
        assert_eq!(u32::from_ne_bytes(bytes[..4].try_into().unwrap()), 44);
        let attrs: Vec<Attr<'_>> = Attrs::new(&bytes[20..]).collect();
        assert_eq!(attrs.len(), 2);
        assert_eq!((attrs[0].kind, attrs[0].payload), (2, &b"wg0\0"[..]));
        assert_eq!(attrs[1].kind, 8);
        let inner: Vec<Attr<'_>> = attrs[1].nested().collect();
        assert_eq!((inner[0].kind, inner[0].payload), (1, &[7u8; 5][..]));
    }

    #[test]
    fn test_checks_follow_libmnl() {
        // 20 bytes of headers; a 4-byte attribute needs 8 more.
        let mut m = Message::new(1, 0, 0, 1, 28);
        assert!(m.nest_start_check(1).is_some()); // 24
        assert!(!m.put_check(1, &[0; 4])); // 24 + 4 + 4 > 28
        assert!(m.put_check(1, &[])); // 24 + 4 <= 28
        assert!(m.nest_start_check(2).is_none());
        let mut m = Message::new(1, 0, 0, 1, 28);
        let start = m.nest_start(1);
        m.put(3, &[1]);
        m.nest_cancel(start);
        assert_eq!(m.into_bytes().len(), 20);
    }

    #[test]
    fn test_reader_stops_at_garbage() {
        // A valid u16 attribute, then a header claiming 200 bytes.
        let buf = [6, 0, 1, 0, 0x34, 0x12, 0, 0, 200, 0, 2, 0, 1, 2];
        let attrs: Vec<Attr<'_>> = Attrs::new(&buf).collect();
        assert_eq!(attrs.len(), 1);
        assert_eq!(attrs[0].u16(), Some(0x1234));
        assert_eq!(attrs[0].u32(), None);
        assert_eq!(Attrs::new(&[3, 0, 1, 0]).count(), 0);
        assert_eq!(Attrs::new(&[4, 0]).count(), 0);
    }
}
