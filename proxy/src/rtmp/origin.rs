//! The proxy as an RTMP client of the owning origin: handshake, connect with a tcUrl naming
//! the origin, createStream, then publish or play the client's stream name.

use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::{
    amf0::Value,
    chunk::DecoderLimits,
    command::{self, Command},
    connection::{ConnectionError, RtmpConnection},
    control::{self, kind},
    resolver::Intent,
    stream_key::{DEFAULT_VHOST, RtmpStreamKey, query_param},
};

/// Chunk size the proxy sends with, toward origins and clients: large chunks mean fewer chunk
/// headers to write and parse (ffmpeg and SRS use 4096 or more too; nginx-rtmp accepts any).
pub const OUT_CHUNK_SIZE: u32 = 60_000;
/// How often the proxy asks its peers to acknowledge (what SRS and nginx-rtmp announce).
pub const ACK_WINDOW: u32 = 2_500_000;

#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error("cannot reach the origin: {0}")]
    Unreachable(std::io::Error),
    #[error("origin answered {command} with {code}: {description}")]
    Rejected {
        command: &'static str,
        code: String,
        description: String,
    },
    #[error("origin's createStream answer carries no stream id")]
    NoStreamId,
}

/// Everything needed to replay the client's request toward the origin.
pub struct OriginRequest<'a> {
    pub key: &'a RtmpStreamKey,
    pub intent: Intent,
    /// The client's connect command object (flashVer, fourCcList for Enhanced RTMP, ...);
    /// app and tcUrl are replaced.
    pub connect_object: &'a Value,
    /// Query of the client's tcUrl/app (auth tokens), kept on the origin's tcUrl.
    pub tc_query: &'a str,
    /// publish/play arguments after the stream name, as the client sent them.
    pub stream_args: &'a [Value],
    /// Buffer length the client asked for (players).
    pub buffer_millis: u32,
}

/// A ready origin connection, its message stream publishing or playing the stream.
pub struct OriginSession {
    pub connection: RtmpConnection,
    pub stream_id: u32,
}

/// tcUrl naming the origin; the client's query is kept, and a non-default vhost the origin
/// can no longer see in the host name is passed as `?vhost=` (SRS reads it there).
pub fn origin_tc_url(addr: SocketAddr, key: &RtmpStreamKey, tc_query: &str) -> String {
    let mut query = tc_query.to_owned();
    if key.vhost != DEFAULT_VHOST
        && query_param(&key.query, &["vhost", "domain"]).is_none()
        && query_param(&query, &["vhost", "domain"]).is_none()
    {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str("vhost=");
        query.push_str(&key.vhost);
    }
    let separator = if query.is_empty() { "" } else { "?" };
    format!("rtmp://{addr}/{}{separator}{query}", key.app)
}

/// The stream name as the client gave it (name and query).
fn stream_name(key: &RtmpStreamKey) -> String {
    if key.query.is_empty() {
        key.stream.clone()
    } else {
        format!("{}?{}", key.stream, key.query)
    }
}

pub async fn open(
    addr: SocketAddr,
    request: OriginRequest<'_>,
    limits: DecoderLimits,
) -> Result<OriginSession, OriginError> {
    let socket = TcpStream::connect(addr)
        .await
        .map_err(OriginError::Unreachable)?;
    socket.set_nodelay(true).map_err(OriginError::Unreachable)?;
    let mut connection = RtmpConnection::connect(socket, limits).await?;
    connection.set_out_chunk_size(OUT_CHUNK_SIZE);
    connection.queue(&control::window_ack_size(ACK_WINDOW));

    let mut object = match request.connect_object {
        object @ Value::Object(_) => object.clone(),
        _ => Value::Object(Vec::new()),
    };
    object.set_property("app", Value::string(request.key.app.clone()));
    object.set_property(
        "tcUrl",
        Value::string(origin_tc_url(addr, request.key, request.tc_query)),
    );
    connection.queue(&Command::new("connect", 1.0, object, Vec::new()).into_message(0));
    connection.flush().await.map_err(ConnectionError::from)?;
    await_result(&mut connection, 1.0, "connect").await?;

    let name = Value::string(stream_name(request.key));
    let create_tid = match request.intent {
        Intent::Publish => {
            connection.queue(
                &Command::new("releaseStream", 2.0, Value::Null, vec![name.clone()])
                    .into_message(0),
            );
            connection.queue(
                &Command::new("FCPublish", 3.0, Value::Null, vec![name.clone()]).into_message(0),
            );
            4.0
        }
        Intent::Play => 2.0,
    };
    connection
        .queue(&Command::new("createStream", create_tid, Value::Null, Vec::new()).into_message(0));
    connection.flush().await.map_err(ConnectionError::from)?;
    let created = await_result(&mut connection, create_tid, "createStream").await?;
    let stream_id = created
        .args
        .first()
        .and_then(Value::as_number)
        .filter(|id| *id >= 1.0 && *id <= f64::from(u32::MAX))
        .ok_or(OriginError::NoStreamId)? as u32;

    let mut args = vec![name];
    args.extend(request.stream_args.iter().cloned());
    let verb = request.intent.as_str();
    if request.intent == Intent::Play {
        connection.queue(&control::set_buffer_length(
            stream_id,
            request.buffer_millis,
        ));
    }
    connection
        .queue(&Command::new(verb, create_tid + 1.0, Value::Null, args).into_message(stream_id));
    connection.flush().await.map_err(ConnectionError::from)?;
    Ok(OriginSession {
        connection,
        stream_id,
    })
}

/// Waits for the `_result` (or `_error`) of transaction `tid`, skipping what else the origin
/// sends meanwhile (onBWDone, answers to releaseStream/FCPublish, user control).
async fn await_result(
    connection: &mut RtmpConnection,
    tid: f64,
    what: &'static str,
) -> Result<Command, OriginError> {
    loop {
        let message = connection.read_message().await?;
        if !matches!(message.type_id, kind::COMMAND_AMF0 | kind::COMMAND_AMF3) {
            continue;
        }
        let Ok(reply) = Command::decode(message.type_id, &message.payload) else {
            continue;
        };
        if reply.transaction_id != tid {
            continue;
        }
        match reply.name.as_str() {
            "_result" => return Ok(reply),
            "_error" => {
                let code = command::status_code(&reply).unwrap_or("unknown").to_owned();
                let description = reply
                    .args
                    .iter()
                    .find_map(|v| v.property("description"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned();
                return Err(OriginError::Rejected {
                    command: what,
                    code,
                    description,
                });
            }
            _ => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(vhost: &str, query: &str) -> RtmpStreamKey {
        RtmpStreamKey {
            vhost: vhost.into(),
            app: "live".into(),
            stream: "s".into(),
            query: query.into(),
        }
    }

    #[test]
    fn tc_url_names_the_origin_and_keeps_the_query() {
        let addr: SocketAddr = "10.0.0.7:19351".parse().unwrap();
        assert_eq!(
            origin_tc_url(addr, &key(DEFAULT_VHOST, ""), ""),
            "rtmp://10.0.0.7:19351/live"
        );
        assert_eq!(
            origin_tc_url(addr, &key(DEFAULT_VHOST, ""), "token=t"),
            "rtmp://10.0.0.7:19351/live?token=t"
        );
        assert_eq!(
            origin_tc_url(addr, &key("a.com", ""), "token=t"),
            "rtmp://10.0.0.7:19351/live?token=t&vhost=a.com"
        );
        assert_eq!(
            origin_tc_url(addr, &key("a.com", "vhost=a.com"), ""),
            "rtmp://10.0.0.7:19351/live"
        );
        assert_eq!(stream_name(&key(DEFAULT_VHOST, "token=x")), "s?token=x");
    }
}
