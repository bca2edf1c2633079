//! NetConnection/NetStream commands (AMF0 command messages) and the answers SRS and
//! nginx-rtmp give, so real clients (ffmpeg, OBS, librtmp) proceed. Pure.

use bytes::Bytes;

use super::{
    amf0::{self, Amf0Error, Value},
    chunk::Message,
    control::kind,
};

/// Chunk stream commands travel on (what ffmpeg, OBS and SRS use).
pub const COMMAND_CSID: u32 = 3;
/// Message stream id handed to clients by createStream (SRS and nginx-rtmp hand out 1).
pub const CLIENT_STREAM_ID: u32 = 1;

#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub name: String,
    pub transaction_id: f64,
    /// The command object (connect properties), usually null for other commands.
    pub object: Value,
    pub args: Vec<Value>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CommandError {
    #[error("command body is not valid AMF0: {0}")]
    Amf0(#[from] Amf0Error),
    #[error("command message has no name")]
    NoName,
}

impl Command {
    pub fn new(name: &str, transaction_id: f64, object: Value, args: Vec<Value>) -> Self {
        Self {
            name: name.to_owned(),
            transaction_id,
            object,
            args,
        }
    }

    /// Decodes an AMF0 command (type 20) or an AMF3 command (type 17), whose body is AMF0
    /// after a leading format byte.
    pub fn decode(type_id: u8, payload: &[u8]) -> Result<Self, CommandError> {
        let body = if type_id == kind::COMMAND_AMF3 {
            payload.get(1..).unwrap_or_default()
        } else {
            payload
        };
        let mut values = amf0::decode_all(body)?.into_iter();
        let name = match values.next() {
            Some(Value::String(name)) | Some(Value::LongString(name)) => name,
            _ => return Err(CommandError::NoName),
        };
        let transaction_id = values.next().and_then(|v| v.as_number()).unwrap_or(0.0);
        let object = values.next().unwrap_or(Value::Null);
        Ok(Self {
            name,
            transaction_id,
            object,
            args: values.collect(),
        })
    }

    pub fn encode(&self) -> Bytes {
        let mut out = amf0::encode_all([
            &Value::string(self.name.clone()),
            &Value::Number(self.transaction_id),
            &self.object,
        ]);
        for arg in &self.args {
            amf0::encode(arg, &mut out);
        }
        out.freeze()
    }

    /// The command as an AMF0 command message on `stream_id`.
    pub fn into_message(self, stream_id: u32) -> Message {
        Message {
            csid: COMMAND_CSID,
            timestamp: 0,
            type_id: kind::COMMAND_AMF0,
            stream_id,
            payload: self.encode(),
        }
    }

    /// First argument as a string: the stream name of publish/play/releaseStream/FCPublish.
    pub fn stream_name(&self) -> Option<&str> {
        self.args.first().and_then(Value::as_str)
    }

    pub fn is_status(&self, code: &str) -> bool {
        self.name == "onStatus" && status_code(self) == Some(code)
    }
}

/// The `code` of an onStatus/_result/_error info object.
pub fn status_code(command: &Command) -> Option<&str> {
    command
        .args
        .iter()
        .chain([&command.object])
        .find_map(|v| v.property("code"))
        .and_then(Value::as_str)
}

fn info(level: &str, code: &str, description: &str) -> Value {
    Value::object([
        ("level", Value::string(level)),
        ("code", Value::string(code)),
        ("description", Value::string(description)),
    ])
}

/// `_result` of connect, with the properties SRS sends (fmsVer, capabilities) and the
/// client's objectEncoding echoed.
pub fn connect_result(transaction_id: f64, object_encoding: f64) -> Command {
    let properties = Value::object([
        ("fmsVer", Value::string("FMS/3,5,3,888")),
        ("capabilities", Value::Number(127.0)),
        ("mode", Value::Number(1.0)),
    ]);
    let mut information = info(
        "status",
        "NetConnection.Connect.Success",
        "Connection succeeded.",
    );
    information.set_property("objectEncoding", Value::Number(object_encoding));
    Command::new("_result", transaction_id, properties, vec![information])
}

/// `_error` of connect, telling the client why (it shows in ffmpeg/OBS logs).
pub fn connect_error(transaction_id: f64, description: &str) -> Command {
    Command::new(
        "_error",
        transaction_id,
        Value::Null,
        vec![info("error", "NetConnection.Connect.Rejected", description)],
    )
}

/// A `_result` with a null command object and the given values (releaseStream, FCPublish,
/// createStream, getStreamLength answers).
pub fn result(transaction_id: f64, values: Vec<Value>) -> Command {
    Command::new("_result", transaction_id, Value::Null, values)
}

pub fn on_status(level: &str, code: &str, description: &str) -> Command {
    Command::new(
        "onStatus",
        0.0,
        Value::Null,
        vec![info(level, code, description)],
    )
}

/// SRS answers FCPublish with onFCPublish before the `_result`; OBS logs it.
pub fn on_fc_publish(stream: &str) -> Command {
    let mut information = info(
        "status",
        "NetStream.Publish.Start",
        "Started publishing stream.",
    );
    information.set_property("details", Value::string(stream));
    Command::new("onFCPublish", 0.0, Value::Null, vec![information])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_round_trips() {
        let publish = Command::new(
            "publish",
            5.0,
            Value::Null,
            vec![Value::string("cam?token=x"), Value::string("live")],
        );
        let message = publish.clone().into_message(1);
        let decoded = Command::decode(message.type_id, &message.payload).unwrap();
        assert_eq!(decoded, publish);
        assert_eq!(decoded.stream_name(), Some("cam?token=x"));
    }

    #[test]
    fn amf3_commands_skip_the_format_byte() {
        let mut payload = vec![0u8];
        payload.extend_from_slice(
            &Command::new("play", 4.0, Value::Null, vec![Value::string("s")]).encode(),
        );
        let decoded = Command::decode(kind::COMMAND_AMF3, &payload).unwrap();
        assert_eq!(decoded.name, "play");
    }

    #[test]
    fn status_codes_are_found() {
        let status = on_status("status", "NetStream.Publish.Start", "ok");
        assert!(status.is_status("NetStream.Publish.Start"));
        assert_eq!(
            status_code(&connect_result(1.0, 0.0)),
            Some("NetConnection.Connect.Success")
        );
        assert_eq!(Command::decode(20, &[0x05]), Err(CommandError::NoName));
    }
}
