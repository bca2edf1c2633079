//! AMF0, the value encoding of RTMP command and data messages. Pure: bytes in, values out.
//!
//! Decoding is bounded: nesting depth is limited and no allocation is sized from a count the
//! peer declared (every element needs at least one input byte, so input length bounds output).

use bytes::{BufMut, BytesMut};

/// Deepest nesting of objects/arrays accepted; real commands nest two or three levels.
pub const MAX_DEPTH: usize = 32;

const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const REFERENCE: u8 = 0x07;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0A;
const DATE: u8 = 0x0B;
const LONG_STRING: u8 = 0x0C;
const UNSUPPORTED: u8 = 0x0D;
const XML_DOCUMENT: u8 = 0x0F;
const TYPED_OBJECT: u8 = 0x10;
const AVMPLUS: u8 = 0x11;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Boolean(bool),
    String(String),
    Object(Vec<(String, Value)>),
    Null,
    Undefined,
    EcmaArray(Vec<(String, Value)>),
    StrictArray(Vec<Value>),
    /// Milliseconds since the epoch and the (unused, always sent as 0) time zone.
    Date {
        millis: f64,
        timezone: i16,
    },
    /// Strings longer than 65535 bytes travel as long strings; decoded ones keep the marker
    /// so re-encoding is byte-identical.
    LongString(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Amf0Error {
    #[error("AMF0 input ends inside a value")]
    Truncated,
    #[error("AMF0 type marker {0:#04x} is not supported")]
    UnsupportedMarker(u8),
    #[error("AMF0 values nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("AMF0 string is not valid UTF-8")]
    InvalidUtf8,
    #[error("AMF0 object end marker outside an object")]
    UnexpectedObjectEnd,
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) | Value::LongString(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// A property of an object or ECMA array.
    pub fn property(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Object(props) | Value::EcmaArray(props) => props
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value),
            _ => None,
        }
    }

    /// Sets (replaces or appends) a property of an object or ECMA array; other values are left
    /// as they are.
    pub fn set_property(&mut self, name: &str, value: Value) {
        if let Value::Object(props) | Value::EcmaArray(props) = self {
            match props.iter_mut().find(|(key, _)| key == name) {
                Some((_, slot)) => *slot = value,
                None => props.push((name.to_owned(), value)),
            }
        }
    }

    pub fn string(s: impl Into<String>) -> Value {
        let s = s.into();
        if s.len() > u16::MAX as usize {
            Value::LongString(s)
        } else {
            Value::String(s)
        }
    }

    pub fn object<K: Into<String>>(props: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Object(props.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

/// Decodes every value in `input` (a command or data message body).
pub fn decode_all(input: &[u8]) -> Result<Vec<Value>, Amf0Error> {
    let mut reader = Reader { input, pos: 0 };
    let mut values = Vec::new();
    while reader.pos < input.len() {
        values.push(reader.value(0)?);
    }
    Ok(values)
}

/// Decodes one value from the front of `input`; returns it and the bytes it used.
pub fn decode(input: &[u8]) -> Result<(Value, usize), Amf0Error> {
    let mut reader = Reader { input, pos: 0 };
    let value = reader.value(0)?;
    Ok((value, reader.pos))
}

struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Amf0Error> {
        let end = self.pos.checked_add(n).ok_or(Amf0Error::Truncated)?;
        let bytes = self.input.get(self.pos..end).ok_or(Amf0Error::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn u8(&mut self) -> Result<u8, Amf0Error> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Amf0Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Amf0Error> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f64(&mut self) -> Result<f64, Amf0Error> {
        let b = self.take(8)?;
        Ok(f64::from_be_bytes(
            b.try_into().map_err(|_| Amf0Error::Truncated)?,
        ))
    }

    fn utf8(&mut self, len: usize) -> Result<String, Amf0Error> {
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| Amf0Error::InvalidUtf8)
    }

    fn short_string(&mut self) -> Result<String, Amf0Error> {
        let len = self.u16()? as usize;
        self.utf8(len)
    }

    fn value(&mut self, depth: usize) -> Result<Value, Amf0Error> {
        if depth > MAX_DEPTH {
            return Err(Amf0Error::TooDeep);
        }
        let marker = self.u8()?;
        Ok(match marker {
            NUMBER => Value::Number(self.f64()?),
            BOOLEAN => Value::Boolean(self.u8()? != 0),
            STRING => Value::String(self.short_string()?),
            LONG_STRING => {
                let len = self.u32()? as usize;
                Value::LongString(self.utf8(len)?)
            }
            OBJECT => Value::Object(self.properties(depth)?),
            NULL => Value::Null,
            UNDEFINED => Value::Undefined,
            ECMA_ARRAY => {
                // The count is only a hint (encoders get it wrong); the end marker is authoritative.
                let _count = self.u32()?;
                Value::EcmaArray(self.properties(depth)?)
            }
            STRICT_ARRAY => {
                let count = self.u32()?;
                let mut items = Vec::new();
                for _ in 0..count {
                    items.push(self.value(depth + 1)?);
                }
                Value::StrictArray(items)
            }
            DATE => {
                let millis = self.f64()?;
                let timezone = self.u16()? as i16;
                Value::Date { millis, timezone }
            }
            OBJECT_END => return Err(Amf0Error::UnexpectedObjectEnd),
            REFERENCE | UNSUPPORTED | XML_DOCUMENT | TYPED_OBJECT | AVMPLUS => {
                return Err(Amf0Error::UnsupportedMarker(marker));
            }
            other => return Err(Amf0Error::UnsupportedMarker(other)),
        })
    }

    /// Key/value pairs up to the empty key followed by the object end marker.
    fn properties(&mut self, depth: usize) -> Result<Vec<(String, Value)>, Amf0Error> {
        let mut props = Vec::new();
        loop {
            let key = self.short_string()?;
            if key.is_empty() && self.input.get(self.pos) == Some(&OBJECT_END) {
                self.pos += 1;
                return Ok(props);
            }
            let value = self.value(depth + 1)?;
            props.push((key, value));
        }
    }
}

/// Appends the encoding of `value` to `out`.
pub fn encode(value: &Value, out: &mut BytesMut) {
    match value {
        Value::Number(n) => {
            out.put_u8(NUMBER);
            out.put_f64(*n);
        }
        Value::Boolean(b) => {
            out.put_u8(BOOLEAN);
            out.put_u8(u8::from(*b));
        }
        Value::String(s) if s.len() <= u16::MAX as usize => {
            out.put_u8(STRING);
            put_short_string(s, out);
        }
        Value::String(s) | Value::LongString(s) => {
            out.put_u8(LONG_STRING);
            // Strings beyond 4 GiB cannot be represented; nothing this proxy builds comes close.
            let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
            out.put_u32(len);
            out.put_slice(&s.as_bytes()[..len as usize]);
        }
        Value::Object(props) => {
            out.put_u8(OBJECT);
            put_properties(props, out);
        }
        Value::Null => out.put_u8(NULL),
        Value::Undefined => out.put_u8(UNDEFINED),
        Value::EcmaArray(props) => {
            out.put_u8(ECMA_ARRAY);
            out.put_u32(u32::try_from(props.len()).unwrap_or(u32::MAX));
            put_properties(props, out);
        }
        Value::StrictArray(items) => {
            out.put_u8(STRICT_ARRAY);
            out.put_u32(u32::try_from(items.len()).unwrap_or(u32::MAX));
            for item in items {
                encode(item, out);
            }
        }
        Value::Date { millis, timezone } => {
            out.put_u8(DATE);
            out.put_f64(*millis);
            out.put_i16(*timezone);
        }
    }
}

/// Encodes a sequence of values (a whole command body).
pub fn encode_all<'a>(values: impl IntoIterator<Item = &'a Value>) -> BytesMut {
    let mut out = BytesMut::new();
    for value in values {
        encode(value, &mut out);
    }
    out
}

/// Property names are short strings; a longer one is cut at a character boundary rather than
/// producing a length field that lies.
fn put_short_string(s: &str, out: &mut BytesMut) {
    let mut len = s.len().min(u16::MAX as usize);
    while !s.is_char_boundary(len) {
        len -= 1;
    }
    out.put_u16(len as u16);
    out.put_slice(&s.as_bytes()[..len]);
}

fn put_properties(props: &[(String, Value)], out: &mut BytesMut) {
    for (key, value) in props {
        put_short_string(key, out);
        encode(value, out);
    }
    out.put_u16(0);
    out.put_u8(OBJECT_END);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(value: Value) {
        let bytes = encode_all([&value]);
        let (decoded, used) = decode(&bytes).unwrap();
        assert_eq!(decoded, value);
        assert_eq!(used, bytes.len());
    }

    #[test]
    fn every_type_round_trips() {
        round_trip(Value::Number(1.5));
        round_trip(Value::Boolean(true));
        round_trip(Value::String("live".into()));
        round_trip(Value::LongString("x".repeat(70_000)));
        round_trip(Value::Null);
        round_trip(Value::Undefined);
        round_trip(Value::Date {
            millis: 1.7e12,
            timezone: 0,
        });
        round_trip(Value::object([
            ("app", Value::string("live")),
            (
                "nested",
                Value::EcmaArray(vec![(
                    "k".into(),
                    Value::StrictArray(vec![Value::Number(1.0), Value::Null]),
                )]),
            ),
        ]));
    }

    #[test]
    fn decodes_a_connect_command_as_ffmpeg_sends_it() {
        // "connect", 1.0, {app: "live", tcUrl: "rtmp://h/live"}
        let mut wire = vec![0x02, 0x00, 0x07];
        wire.extend_from_slice(b"connect");
        wire.push(0x00);
        wire.extend_from_slice(&1.0f64.to_be_bytes());
        wire.push(0x03);
        wire.extend_from_slice(&[0x00, 0x03]);
        wire.extend_from_slice(b"app");
        wire.extend_from_slice(&[0x02, 0x00, 0x04]);
        wire.extend_from_slice(b"live");
        wire.extend_from_slice(&[0x00, 0x05]);
        wire.extend_from_slice(b"tcUrl");
        wire.extend_from_slice(&[0x02, 0x00, 0x0d]);
        wire.extend_from_slice(b"rtmp://h/live");
        wire.extend_from_slice(&[0x00, 0x00, 0x09]);
        let values = decode_all(&wire).unwrap();
        assert_eq!(values[0].as_str(), Some("connect"));
        assert_eq!(values[1].as_number(), Some(1.0));
        assert_eq!(
            values[2].property("tcUrl").and_then(Value::as_str),
            Some("rtmp://h/live")
        );
        assert_eq!(encode_all(&values).as_ref(), wire.as_slice());
    }

    #[test]
    fn hostile_input_is_an_error_not_a_panic() {
        assert_eq!(decode(&[]), Err(Amf0Error::Truncated));
        assert_eq!(decode(&[0x02, 0xff, 0xff, b'a']), Err(Amf0Error::Truncated));
        assert_eq!(
            decode(&[0x0c, 0xff, 0xff, 0xff, 0xff]),
            Err(Amf0Error::Truncated)
        );
        // A strict array claiming four billion items in a few bytes allocates nothing big.
        assert_eq!(
            decode(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x05]),
            Err(Amf0Error::Truncated)
        );
        assert_eq!(decode(&[0x09]), Err(Amf0Error::UnexpectedObjectEnd));
        assert_eq!(decode(&[0x11]), Err(Amf0Error::UnsupportedMarker(0x11)));
        assert_eq!(
            decode(&[0x02, 0x00, 0x01, 0xff]),
            Err(Amf0Error::InvalidUtf8)
        );
        let deep: Vec<u8> = std::iter::repeat_n([0x0a, 0, 0, 0, 1], 100)
            .flatten()
            .collect();
        assert_eq!(decode(&deep), Err(Amf0Error::TooDeep));
    }
}
