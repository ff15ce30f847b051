//! D-Bus message framing: just enough of the wire format to route on.
//!
//! Like mini-redis's `frame.rs`, [`frame`] looks at the fixed 16-byte
//! prologue and says where the header ends and how long the body is (or
//! that more bytes are needed) without allocating; [`parse_header`] then
//! reads the header fields, which is all the proxy routes on: a body can
//! stream through without ever being held whole. Bodies are decoded only
//! for the few messages the filter must read (bus-driver calls and
//! replies, `NameOwnerChanged`): [`first_string_arg`], [`string_args`],
//! [`string_array_arg`], given the body alone. Everything is bounded: total
//! size, header size ([`MAX_HEADER`]), container nesting depth. Both
//! endiannesses are accepted; messages the proxy writes itself
//! ([`method_call`], [`error_reply`], [`method_return`]) are little-endian.

/// Largest message the specification allows (128 MiB).
pub const MAX_MESSAGE: usize = 1 << 27;
/// Largest array (and so header-field array) the specification allows.
pub const MAX_ARRAY: usize = 1 << 26;
/// Largest header (prologue and header fields) accepted. Real headers are
/// a few hundred bytes; the specification's bound (64 MiB of fields)
/// would let one message pin that much memory before any decision.
pub const MAX_HEADER: usize = 64 * 1024;
/// Containers may nest 32 arrays plus 32 structs deep.
const MAX_DEPTH: u32 = 64;
/// The fixed prologue: endianness, type, flags, version, body length,
/// serial, header-field array length.
pub const PROLOGUE: usize = 16;

/// Header flag: the sender does not want a reply.
pub const NO_REPLY_EXPECTED: u8 = 0x1;
/// Header flag: the bus must not start a service to deliver the call.
pub const NO_AUTO_START: u8 = 0x2;

/// Why bytes are not a D-Bus message. Any of these closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("bad endianness byte {0:#04x}")]
    Endianness(u8),
    #[error("unsupported protocol version {0}")]
    Version(u8),
    #[error("invalid message type {0}")]
    Type(u8),
    #[error("serial 0")]
    ZeroSerial,
    #[error("message of {0} bytes exceeds the limit")]
    TooLong(usize),
    #[error("malformed header: {0}")]
    Malformed(&'static str),
}

/// The four message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    MethodCall,
    MethodReturn,
    Error,
    Signal,
}

/// The routing-relevant header of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub big_endian: bool,
    pub kind: MessageType,
    pub flags: u8,
    pub serial: u32,
    /// Offset of the body from the start of the message.
    pub body_offset: usize,
    pub body_len: usize,
    pub path: Option<String>,
    pub interface: Option<String>,
    pub member: Option<String>,
    pub error_name: Option<String>,
    pub reply_serial: Option<u32>,
    pub destination: Option<String>,
    pub sender: Option<String>,
    pub signature: Option<String>,
    /// How many fds travel with this message (0 when the field is absent).
    pub unix_fds: u32,
}

impl Header {
    pub fn expects_reply(&self) -> bool {
        self.kind == MessageType::MethodCall && self.flags & NO_REPLY_EXPECTED == 0
    }
}

/// Where one message's parts lie, read from its prologue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Prologue and header fields, padded to 8: where the body starts.
    pub header_len: usize,
    pub body_len: usize,
}

impl Frame {
    pub fn total(&self) -> usize {
        self.header_len + self.body_len
    }
}

/// The frame of the message at the start of `buf`, `None` if fewer than
/// [`PROLOGUE`] bytes are buffered. Rejects garbage as early as possible.
pub fn frame(buf: &[u8]) -> Result<Option<Frame>, WireError> {
    if buf.len() < PROLOGUE {
        // Reject a bad first byte right away so garbage does not wait for
        // 16 bytes that may never come.
        if let Some(&b) = buf.first() {
            endianness(b)?;
        }
        return Ok(None);
    }
    let big = endianness(buf[0])?;
    if buf[1] == 0 || buf[1] > 4 {
        return Err(WireError::Type(buf[1]));
    }
    if buf[3] != 1 {
        return Err(WireError::Version(buf[3]));
    }
    let body_len = u32_at(buf, 4, big) as usize;
    let fields = u32_at(buf, 12, big) as usize;
    if fields > MAX_HEADER - PROLOGUE {
        return Err(WireError::TooLong(fields));
    }
    let header_len = PROLOGUE + align8(fields);
    let total = header_len
        .checked_add(body_len)
        .ok_or(WireError::TooLong(usize::MAX))?;
    if total > MAX_MESSAGE {
        return Err(WireError::TooLong(total));
    }
    Ok(Some(Frame {
        header_len,
        body_len,
    }))
}

/// How long the message at the start of `buf` is, `None` if fewer than
/// [`PROLOGUE`] bytes are buffered.
pub fn check(buf: &[u8]) -> Result<Option<usize>, WireError> {
    Ok(frame(buf)?.map(|f| f.total()))
}

/// Parse the header of one complete message (`msg.len()` must be what
/// [`check`] returned).
pub fn parse(msg: &[u8]) -> Result<Header, WireError> {
    let total = check(msg)?.ok_or(WireError::Malformed("short message"))?;
    if total != msg.len() {
        return Err(WireError::Malformed("length mismatch"));
    }
    parse_header(msg)
}

/// Parse a message's header from `head`, which holds at least the first
/// [`Frame::header_len`] bytes of the message: the body need not have
/// arrived.
pub fn parse_header(head: &[u8]) -> Result<Header, WireError> {
    let f = frame(head)?.ok_or(WireError::Malformed("short message"))?;
    if head.len() < f.header_len {
        return Err(WireError::Malformed("short header"));
    }
    let msg = head;
    let big = msg[0] == b'B';
    let kind = match msg[1] {
        1 => MessageType::MethodCall,
        2 => MessageType::MethodReturn,
        3 => MessageType::Error,
        _ => MessageType::Signal,
    };
    let serial = u32_at(msg, 8, big);
    if serial == 0 {
        return Err(WireError::ZeroSerial);
    }
    let fields_len = u32_at(msg, 12, big) as usize;
    let fields_end = PROLOGUE + fields_len;
    let mut h = Header {
        big_endian: big,
        kind,
        flags: msg[2],
        serial,
        body_offset: f.header_len,
        body_len: f.body_len,
        path: None,
        interface: None,
        member: None,
        error_name: None,
        reply_serial: None,
        destination: None,
        sender: None,
        signature: None,
        unix_fds: 0,
    };
    // The cursor sees only the fields array, so nothing can read past it.
    let mut r = Reader {
        buf: &msg[..fields_end],
        pos: PROLOGUE,
        big,
    };
    while r.pos < fields_end {
        r.align(8)?;
        if r.pos >= fields_end {
            break;
        }
        let code = r.byte()?;
        let sig = r.signature()?;
        match code {
            1 => h.path = Some(r.typed_string(&sig, b"o")?),
            2 => h.interface = Some(r.typed_string(&sig, b"s")?),
            3 => h.member = Some(r.typed_string(&sig, b"s")?),
            4 => h.error_name = Some(r.typed_string(&sig, b"s")?),
            5 => h.reply_serial = Some(r.typed_u32(&sig)?),
            6 => h.destination = Some(r.typed_string(&sig, b"s")?),
            7 => h.sender = Some(r.typed_string(&sig, b"s")?),
            8 => h.signature = Some(r.typed_string(&sig, b"g")?),
            9 => h.unix_fds = r.typed_u32(&sig)?,
            // Unknown fields must be skipped, whatever their type.
            _ => {
                let end = single_type_end(sig.as_bytes(), 0, 0)?;
                if end != sig.len() {
                    return Err(WireError::Malformed("variant signature"));
                }
                r.skip(sig.as_bytes(), 0, 0)?;
            }
        }
    }
    if r.pos != fields_end {
        return Err(WireError::Malformed("header fields overrun"));
    }
    let required = match kind {
        MessageType::MethodCall => h.path.is_some() && h.member.is_some(),
        MessageType::MethodReturn => h.reply_serial.is_some(),
        MessageType::Error => h.reply_serial.is_some() && h.error_name.is_some(),
        MessageType::Signal => h.path.is_some() && h.interface.is_some() && h.member.is_some(),
    };
    if !required {
        return Err(WireError::Malformed("required header field missing"));
    }
    if h.reply_serial == Some(0) {
        return Err(WireError::ZeroSerial);
    }
    Ok(h)
}

/// A body reader for `h`'s body (`body` is the body alone: it starts
/// 8-aligned in the message, so alignment is the same).
fn body_reader<'a>(body: &'a [u8], h: &Header) -> Option<Reader<'a>> {
    Some(Reader {
        buf: body.get(..h.body_len)?,
        pos: 0,
        big: h.big_endian,
    })
}

/// The body's first argument if it is a string or object path (e.g. the
/// name in `RequestName`), `None` otherwise or if it does not decode.
pub fn first_string_arg(body: &[u8], h: &Header) -> Option<String> {
    let t = *h.signature.as_deref()?.as_bytes().first()?;
    if t != b's' && t != b'o' {
        return None;
    }
    body_reader(body, h)?.string().ok()
}

/// Every argument, when the signature is made of strings only (e.g.
/// `NameOwnerChanged`'s `sss`); `None` otherwise or if it does not decode.
pub fn string_args(body: &[u8], h: &Header) -> Option<Vec<String>> {
    let sig = h.signature.as_deref()?;
    if sig.is_empty() || !sig.bytes().all(|c| c == b's' || c == b'o') {
        return None;
    }
    let mut r = body_reader(body, h)?;
    let args = sig
        .bytes()
        .map(|_| r.string().ok())
        .collect::<Option<Vec<_>>>()?;
    (r.pos == r.buf.len()).then_some(args)
}

/// The body's only argument when it is an array of strings (the reply to
/// `ListNames`); `None` otherwise or if it does not decode.
pub fn string_array_arg(body: &[u8], h: &Header) -> Option<Vec<String>> {
    if h.signature.as_deref()? != "as" {
        return None;
    }
    let mut r = body_reader(body, h)?;
    let n = r.u32().ok()? as usize;
    let end = r.need(n).ok()?;
    let mut out = Vec::new();
    while r.pos < end {
        out.push(r.string().ok()?);
    }
    (r.pos == end && end == r.buf.len()).then_some(out)
}

/// A header field the proxy writes.
enum Field<'a> {
    Str(u8, u8, &'a str),
    U32(u8, u32),
}

/// A little-endian message of `kind` with these header fields and an
/// already marshalled body of signature `sig`.
fn message(
    kind: u8,
    flags: u8,
    serial: u32,
    fields: &[Field<'_>],
    sig: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut m = vec![b'l', kind, flags, 1];
    m.extend_from_slice(&(body.len() as u32).to_le_bytes());
    m.extend_from_slice(&serial.to_le_bytes());
    m.extend_from_slice(&[0; 4]); // fields length, patched below
    for f in fields {
        pad_to(&mut m, 8);
        match f {
            Field::Str(code, t, v) => {
                m.extend_from_slice(&[*code, 1, *t, 0]);
                if *t == b'g' {
                    m.push(v.len() as u8);
                    m.extend_from_slice(v.as_bytes());
                    m.push(0);
                } else {
                    put_string(&mut m, v);
                }
            }
            Field::U32(code, v) => {
                m.extend_from_slice(&[*code, 1, b'u', 0]);
                m.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    if !sig.is_empty() {
        pad_to(&mut m, 8);
        m.extend_from_slice(&[8, 1, b'g', 0, sig.len() as u8]);
        m.extend_from_slice(sig.as_bytes());
        m.push(0);
    }
    let fields_len = (m.len() - PROLOGUE) as u32;
    m[12..16].copy_from_slice(&fields_len.to_le_bytes());
    pad_to(&mut m, 8);
    m.extend_from_slice(body);
    m
}

/// A method call whose arguments are all strings.
pub fn method_call(
    serial: u32,
    flags: u8,
    destination: &str,
    path: &str,
    interface: &str,
    member: &str,
    args: &[&str],
) -> Vec<u8> {
    let mut body = Vec::new();
    for a in args {
        put_string(&mut body, a);
    }
    let sig = "s".repeat(args.len());
    message(
        1,
        flags,
        serial,
        &[
            Field::Str(1, b'o', path),
            Field::Str(6, b's', destination),
            Field::Str(2, b's', interface),
            Field::Str(3, b's', member),
        ],
        &sig,
        &body,
    )
}

/// A little-endian `ERROR` message from `org.freedesktop.DBus` to
/// `destination`, replying to `reply_serial`, with one string argument.
pub fn error_reply(
    serial: u32,
    reply_serial: u32,
    destination: Option<&str>,
    error_name: &str,
    text: &str,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(text.len() + 5);
    put_string(&mut body, text);
    let mut fields = vec![Field::Str(4, b's', error_name), Field::U32(5, reply_serial)];
    if let Some(d) = destination {
        fields.push(Field::Str(6, b's', d));
    }
    fields.push(Field::Str(7, b's', "org.freedesktop.DBus"));
    message(3, NO_REPLY_EXPECTED, serial, &fields, "s", &body)
}

/// A `METHOD_RETURN` from `org.freedesktop.DBus` to `destination`.
pub fn method_return(
    serial: u32,
    reply_serial: u32,
    destination: Option<&str>,
    sig: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut fields = vec![Field::U32(5, reply_serial)];
    if let Some(d) = destination {
        fields.push(Field::Str(6, b's', d));
    }
    fields.push(Field::Str(7, b's', "org.freedesktop.DBus"));
    message(2, NO_REPLY_EXPECTED, serial, &fields, sig, body)
}

/// A marshalled `b` body.
pub fn bool_body(v: bool) -> Vec<u8> {
    u32::from(v).to_le_bytes().to_vec()
}

/// A marshalled `as` body.
pub fn string_array_body(items: &[&str]) -> Vec<u8> {
    let mut body = vec![0; 4];
    for s in items {
        put_string(&mut body, s);
    }
    let n = (body.len() - 4) as u32;
    body[..4].copy_from_slice(&n.to_le_bytes());
    body
}

fn put_string(m: &mut Vec<u8>, s: &str) {
    pad_to(m, 4);
    m.extend_from_slice(&(s.len() as u32).to_le_bytes());
    m.extend_from_slice(s.as_bytes());
    m.push(0);
}

fn pad_to(m: &mut Vec<u8>, a: usize) {
    while m.len() % a != 0 {
        m.push(0);
    }
}

fn align8(n: usize) -> usize {
    (n + 7) & !7
}

fn endianness(b: u8) -> Result<bool, WireError> {
    match b {
        b'l' => Ok(false),
        b'B' => Ok(true),
        other => Err(WireError::Endianness(other)),
    }
}

fn u32_at(buf: &[u8], at: usize, big: bool) -> u32 {
    let b = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    if big {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    }
}

/// Where the single complete type starting at `sig[start]` ends.
fn single_type_end(sig: &[u8], start: usize, depth: u32) -> Result<usize, WireError> {
    if depth > MAX_DEPTH {
        return Err(WireError::Malformed("signature nests too deep"));
    }
    let c = *sig
        .get(start)
        .ok_or(WireError::Malformed("truncated signature"))?;
    match c {
        b'y' | b'b' | b'n' | b'q' | b'i' | b'u' | b'x' | b't' | b'd' | b'h' | b's' | b'o'
        | b'g' | b'v' => Ok(start + 1),
        b'a' => single_type_end(sig, start + 1, depth + 1),
        b'(' => {
            let mut p = start + 1;
            if sig.get(p) == Some(&b')') {
                return Err(WireError::Malformed("empty struct"));
            }
            while sig.get(p) != Some(&b')') {
                p = single_type_end(sig, p, depth + 1)?;
            }
            Ok(p + 1)
        }
        b'{' => {
            let k = single_type_end(sig, start + 1, depth + 1)?;
            let v = single_type_end(sig, k, depth + 1)?;
            if sig.get(v) != Some(&b'}') {
                return Err(WireError::Malformed("dict entry"));
            }
            Ok(v + 1)
        }
        _ => Err(WireError::Malformed("bad signature character")),
    }
}

fn alignment(c: u8) -> usize {
    match c {
        b'y' | b'g' | b'v' => 1,
        b'n' | b'q' => 2,
        b'x' | b't' | b'd' | b'(' | b'{' => 8,
        _ => 4,
    }
}

/// A bounds-checked cursor over (part of) a message.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    big: bool,
}

impl Reader<'_> {
    fn need(&self, n: usize) -> Result<usize, WireError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(WireError::Malformed("overflow"))?;
        if end > self.buf.len() {
            return Err(WireError::Malformed("value runs past its container"));
        }
        Ok(end)
    }

    fn align(&mut self, a: usize) -> Result<(), WireError> {
        let p = (self.pos + a - 1) & !(a - 1);
        if p > self.buf.len() {
            return Err(WireError::Malformed("padding runs past its container"));
        }
        self.pos = p;
        Ok(())
    }

    fn byte(&mut self) -> Result<u8, WireError> {
        self.need(1)?;
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        self.align(4)?;
        self.need(4)?;
        let v = u32_at(self.buf, self.pos, self.big);
        self.pos += 4;
        Ok(v)
    }

    fn bytes(&mut self, n: usize) -> Result<&[u8], WireError> {
        let end = self.need(n)?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// A string or object path: length, bytes, NUL; must be UTF-8.
    fn string(&mut self) -> Result<String, WireError> {
        let n = self.u32()? as usize;
        let s = self.bytes(n)?;
        let s = std::str::from_utf8(s)
            .map_err(|_| WireError::Malformed("string is not UTF-8"))?
            .to_owned();
        if self.byte()? != 0 || s.contains('\0') {
            return Err(WireError::Malformed("string not NUL-terminated"));
        }
        Ok(s)
    }

    fn signature(&mut self) -> Result<String, WireError> {
        let n = self.byte()? as usize;
        let s = self.bytes(n)?;
        let s = std::str::from_utf8(s)
            .map_err(|_| WireError::Malformed("signature is not ASCII"))?
            .to_owned();
        if self.byte()? != 0 {
            return Err(WireError::Malformed("signature not NUL-terminated"));
        }
        Ok(s)
    }

    fn typed_string(&mut self, sig: &str, want: &[u8]) -> Result<String, WireError> {
        if sig.as_bytes() != want {
            return Err(WireError::Malformed("header field has the wrong type"));
        }
        if want == b"g" {
            self.signature()
        } else {
            self.string()
        }
    }

    fn typed_u32(&mut self, sig: &str) -> Result<u32, WireError> {
        if sig != "u" {
            return Err(WireError::Malformed("header field has the wrong type"));
        }
        self.u32()
    }

    /// Skip one value of the single complete type at `sig[at]`.
    fn skip(&mut self, sig: &[u8], at: usize, depth: u32) -> Result<usize, WireError> {
        if depth > MAX_DEPTH {
            return Err(WireError::Malformed("value nests too deep"));
        }
        let c = *sig
            .get(at)
            .ok_or(WireError::Malformed("truncated signature"))?;
        match c {
            b'y' => {
                self.byte()?;
            }
            b'n' | b'q' => {
                self.align(2)?;
                self.bytes(2)?;
            }
            b'b' | b'i' | b'u' | b'h' => {
                self.u32()?;
            }
            b'x' | b't' | b'd' => {
                self.align(8)?;
                self.bytes(8)?;
            }
            b's' | b'o' => {
                self.string()?;
            }
            b'g' => {
                self.signature()?;
            }
            b'v' => {
                let inner = self.signature()?;
                let inner = inner.as_bytes();
                if single_type_end(inner, 0, depth + 1)? != inner.len() {
                    return Err(WireError::Malformed("variant signature"));
                }
                self.skip(inner, 0, depth + 1)?;
            }
            b'a' => {
                let n = self.u32()? as usize;
                if n > MAX_ARRAY {
                    return Err(WireError::TooLong(n));
                }
                let elem = sig
                    .get(at + 1)
                    .ok_or(WireError::Malformed("truncated signature"))?;
                self.align(alignment(*elem))?;
                let end = self.need(n)?;
                while self.pos < end {
                    self.skip(sig, at + 1, depth + 1)?;
                }
                if self.pos != end {
                    return Err(WireError::Malformed("array length mismatch"));
                }
                return single_type_end(sig, at, depth);
            }
            b'(' | b'{' => {
                self.align(8)?;
                let close = if c == b'(' { b')' } else { b'}' };
                let mut p = at + 1;
                while sig.get(p).is_some_and(|&x| x != close) {
                    p = self.skip(sig, p, depth + 1)?;
                }
                return Ok(p + 1);
            }
            _ => return Err(WireError::Malformed("bad signature character")),
        }
        Ok(at + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `GetInfo` call as libdbus's `dbus-send` writes it.
    fn call(dest: &str, member: &str, serial: u32) -> Vec<u8> {
        let mut m = vec![b'l', 1, 0, 1, 0, 0, 0, 0];
        m.extend_from_slice(&serial.to_le_bytes());
        m.extend_from_slice(&[0; 4]);
        let f = |m: &mut Vec<u8>, code: u8, sig: u8, v: &str| {
            pad_to(m, 8);
            m.extend_from_slice(&[code, 1, sig, 0]);
            put_string(m, v);
        };
        f(&mut m, 1, b'o', "/org/pantavisor/Example");
        f(&mut m, 6, b's', dest);
        f(&mut m, 2, b's', "org.pantavisor.Example");
        f(&mut m, 3, b's', member);
        let n = (m.len() - PROLOGUE) as u32;
        m[12..16].copy_from_slice(&n.to_le_bytes());
        pad_to(&mut m, 8);
        m
    }

    #[test]
    fn parses_a_method_call() {
        let m = call("org.pantavisor.Example", "GetInfo", 7);
        assert_eq!(check(&m).unwrap(), Some(m.len()));
        assert_eq!(check(&m[..10]).unwrap(), None);
        let h = parse(&m).unwrap();
        assert_eq!(h.kind, MessageType::MethodCall);
        assert_eq!(h.serial, 7);
        assert_eq!(h.destination.as_deref(), Some("org.pantavisor.Example"));
        assert_eq!(h.member.as_deref(), Some("GetInfo"));
        assert!(h.expects_reply());
        assert_eq!(h.unix_fds, 0);
    }

    #[test]
    fn error_reply_round_trips() {
        let m = error_reply(
            9,
            7,
            Some(":1.4"),
            "org.freedesktop.DBus.Error.AccessDenied",
            "no",
        );
        let h = parse(&m).unwrap();
        assert_eq!(h.kind, MessageType::Error);
        assert_eq!(h.reply_serial, Some(7));
        assert_eq!(h.destination.as_deref(), Some(":1.4"));
        assert_eq!(
            h.error_name.as_deref(),
            Some("org.freedesktop.DBus.Error.AccessDenied")
        );
        assert_eq!(
            first_string_arg(&m[h.body_offset..], &h).as_deref(),
            Some("no")
        );
    }

    #[test]
    fn rejects_garbage_early() {
        assert_eq!(check(b"GET /"), Err(WireError::Endianness(b'G')));
        let mut m = call("a.b", "C", 1);
        m[3] = 2;
        assert_eq!(check(&m), Err(WireError::Version(2)));
        let mut m = call("a.b", "C", 1);
        m[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(check(&m), Err(WireError::TooLong(_))));
        let mut m = call("a.b", "C", 1);
        m[8..12].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(parse(&m), Err(WireError::ZeroSerial));
    }

    #[test]
    fn skips_unknown_fields_of_any_type() {
        // Field 42 holding a{sv} with one entry, then the usual fields.
        let base = call("a.b", "C", 3);
        let mut m = base[..PROLOGUE].to_vec();
        m.extend_from_slice(&[42, 5, b'a', b'{', b's', b'v', b'}', 0]);
        let arr_at = m.len();
        m.extend_from_slice(&[0; 4]);
        pad_to(&mut m, 8);
        let start = m.len();
        put_string(&mut m, "k");
        m.extend_from_slice(&[1, b'u', 0]);
        pad_to(&mut m, 4);
        m.extend_from_slice(&5u32.to_le_bytes());
        let alen = (m.len() - start) as u32;
        m[arr_at..arr_at + 4].copy_from_slice(&alen.to_le_bytes());
        let fields = &base[PROLOGUE..PROLOGUE + u32_at(&base, 12, false) as usize];
        pad_to(&mut m, 8);
        m.extend_from_slice(fields);
        let n = (m.len() - PROLOGUE) as u32;
        m[12..16].copy_from_slice(&n.to_le_bytes());
        pad_to(&mut m, 8);
        let h = parse(&m).unwrap();
        assert_eq!(h.member.as_deref(), Some("C"));
    }
}

#[cfg(test)]
mod proptests {
    //! The parser faces bytes from untrusted containers: it must never
    //! panic, and whatever it accepts must be self-consistent.
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn check_and_parse_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(Some(n)) = check(&bytes) {
                prop_assert!((PROLOGUE..=MAX_MESSAGE).contains(&n));
                if n <= bytes.len() {
                    if let Ok(h) = parse(&bytes[..n]) {
                        prop_assert!(h.body_offset + h.body_len == n);
                        let _ = first_string_arg(&bytes[h.body_offset..n], &h);
                    }
                }
            }
        }

        #[test]
        fn mutated_valid_messages_never_panic(
            idx in any::<prop::sample::Index>(), val in any::<u8>(), text in "[a-z ]{0,40}"
        ) {
            let mut m = error_reply(3, 2, Some(":1.1"), ACCESS, &text);
            let i = idx.index(m.len());
            m[i] = val;
            if let Ok(Some(n)) = check(&m) {
                if n <= m.len() {
                    let _ = parse(&m[..n]);
                }
            }
        }

        #[test]
        fn error_replies_parse_back(serial in 1u32.., reply in 1u32.., dest in ":[0-9]\\.[0-9]{1,4}", text in "\\PC{0,64}") {
            let m = error_reply(serial, reply, Some(&dest), ACCESS, &text);
            prop_assert_eq!(check(&m).unwrap(), Some(m.len()));
            let h = parse(&m).unwrap();
            prop_assert_eq!(h.serial, serial);
            prop_assert_eq!(h.reply_serial, Some(reply));
            prop_assert_eq!(h.destination.as_deref(), Some(dest.as_str()));
            prop_assert_eq!(first_string_arg(&m[h.body_offset..], &h), Some(text));
        }
    }

    const ACCESS: &str = "org.freedesktop.DBus.Error.AccessDenied";
}
