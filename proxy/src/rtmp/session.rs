//! One client session: the server side of RTMP up to publish/play (answered the way SRS and
//! nginx-rtmp answer, so real clients proceed), then the owning origin is resolved, the same
//! request is replayed toward it and the two connections are relayed.

use std::{net::SocketAddr, sync::Arc};

use tokio::{net::TcpStream, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{
    ConnectionSlot, RtmpLimits, RtmpStats,
    amf0::Value,
    command::{self, CLIENT_STREAM_ID, Command, CommandError},
    connection::{ConnectionError, RtmpConnection},
    control::{self, Control, UserControl, kind},
    origin::{self, ACK_WINDOW, OUT_CHUNK_SIZE, OriginError, OriginRequest},
    relay::{self, RelayEnd, RelayError, StreamIds},
    resolver::{Intent, OriginResolver, ResolveError, ResolvedOrigin},
    stream_key::{ConnectTarget, RtmpStreamKey},
};

/// Buffer length asked of the origin for players that never said (ffmpeg's default).
const DEFAULT_BUFFER_MILLIS: u32 = 3000;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error("handshake and setup took longer than {0:?}")]
    SetupTimeout(std::time::Duration),
    #[error("bad command: {0}")]
    Command(#[from] CommandError),
    #[error("client sent {0} before connect")]
    NotConnected(String),
    #[error("client sent a second connect")]
    ConnectedTwice,
    #[error("client closed before publishing or playing")]
    LeftBeforeStream,
    #[error("cannot find the origin of the stream: {0}")]
    Resolve(#[from] ResolveError),
    #[error("origin {addr}: {source}")]
    Origin {
        addr: SocketAddr,
        #[source]
        source: OriginError,
    },
    #[error(transparent)]
    Relay(#[from] RelayError),
}

/// What the client asked for in the setup phase.
struct StreamRequest {
    target: ConnectTarget,
    connect_object: Value,
    intent: Intent,
    key: RtmpStreamKey,
    stream_args: Vec<Value>,
    buffer_millis: u32,
}

/// Runs a session to its end, logging how it ended with the client address and stream key.
///
/// Until the client sends its first byte a connection costs only this small future and its
/// socket, so a crowd of idle connections (scanners, stalled clients, floods up to the
/// connection limit) stays cheap: the log span, the handshake buffers, the codec state and
/// the large setup-and-relay future are allocated once the handshake starts.
pub async fn run(
    socket: TcpStream,
    client: SocketAddr,
    resolver: Arc<dyn OriginResolver>,
    limits: Arc<RtmpLimits>,
    stats: Arc<RtmpStats>,
    terminate: CancellationToken,
    _slot: ConnectionSlot,
) {
    let deadline = Instant::now() + limits.handshake_timeout;
    let mut first_byte = [0u8; 1];
    let waited = tokio::select! {
        _ = terminate.cancelled() => return,
        waited = tokio::time::timeout_at(deadline, socket.peek(&mut first_byte)) => waited,
    };
    match waited {
        Ok(Ok(0)) => {
            // Closed without a byte: TCP health checks and probes.
            tracing::debug!(client = %client, "connection closed before the handshake");
            return;
        }
        Ok(Ok(_)) => {}
        Ok(Err(err)) => {
            tracing::info!(client = %client, error = %err, "RTMP connection failed before the handshake");
            return;
        }
        Err(_) => {
            let err = SessionError::SetupTimeout(limits.handshake_timeout);
            tracing::warn!(client = %client, stream = "-", error = %err, "RTMP session closed");
            return;
        }
    }
    Box::pin(session(
        socket, client, resolver, limits, stats, terminate, deadline,
    ))
    .await
}

async fn session(
    socket: TcpStream,
    client: SocketAddr,
    resolver: Arc<dyn OriginResolver>,
    limits: Arc<RtmpLimits>,
    stats: Arc<RtmpStats>,
    terminate: CancellationToken,
    deadline: Instant,
) {
    let span = tracing::info_span!("rtmp", client = %client, stream = tracing::field::Empty);
    let setup = serve_client(socket, &*resolver, &limits, deadline)
        .instrument(span.clone())
        .await;
    let ended = match setup {
        // The relay runs outside the span: entering it on every poll (twice per relayed
        // message) cost more than the relay's own bookkeeping, and nothing in the relay logs.
        Ok(established) => established.relay(&limits, &stats, &terminate).await,
        Err(failure) => Err(failure),
    };
    let _entered = span.enter();
    match ended {
        Ok((key, end)) => tracing::info!(stream = %key, ?end, "RTMP session ended"),
        Err((key, err)) => {
            let key = key.map(|k| k.to_string()).unwrap_or_else(|| "-".into());
            if matches!(err, SessionError::LeftBeforeStream) {
                // Probes and port scanners: normal, not worth a warning.
                tracing::info!(stream = %key, reason = %err, "RTMP session closed");
            } else {
                tracing::warn!(stream = %key, error = %err, "RTMP session closed");
            }
        }
    }
}

type Failure = (Option<RtmpStreamKey>, SessionError);

async fn serve_client(
    socket: TcpStream,
    resolver: &dyn OriginResolver,
    limits: &RtmpLimits,
    deadline: Instant,
) -> Result<Established, Failure> {
    let _ = socket.set_nodelay(true);
    let decoder_limits = limits.decoder_limits();
    // Waiting for the first byte, handshake, commands, resolution and the origin's setup all
    // fall under one deadline: a client that dribbles bytes cannot hold a slot longer than
    // that before relaying.
    let setup = async {
        let mut client = RtmpConnection::accept(socket, decoder_limits)
            .await
            .map_err(|e| (None, e.into()))?;
        let request = read_request(&mut client).await.map_err(|e| (None, e))?;
        let key = request.key.clone();
        tracing::Span::current().record("stream", tracing::field::display(&key));
        let fail = |e: SessionError| (Some(key.clone()), e);
        // An origin that refuses connections gets reported and the stream resolved once more,
        // so a publish is not lost to an origin that died before ownership noticed.
        let mut attempts = 0;
        let (opened, resolved) = loop {
            attempts += 1;
            let resolved = match resolver.resolve(&request.key, request.intent).await {
                Ok(resolved) => resolved,
                Err(err) => {
                    refuse(
                        &mut client,
                        request.intent,
                        "no origin is available for this stream",
                    )
                    .await;
                    return Err(fail(err.into()));
                }
            };
            let origin_request = OriginRequest {
                key: &request.key,
                intent: request.intent,
                connect_object: &request.connect_object,
                tc_query: &request.target.query,
                stream_args: &request.stream_args,
                buffer_millis: request.buffer_millis,
            };
            match origin::open(resolved.rtmp, origin_request, decoder_limits).await {
                Ok(opened) => break (opened, resolved),
                Err(OriginError::Unreachable(err)) if attempts < 2 => {
                    tracing::warn!(origin = %resolved.rtmp, error = %err, "origin unreachable, resolving again");
                    resolver
                        .report_unreachable(&request.key, &resolved, &err)
                        .await;
                }
                Err(source) => {
                    refuse(
                        &mut client,
                        request.intent,
                        "the origin of this stream is unreachable",
                    )
                    .await;
                    return Err(fail(SessionError::Origin {
                        addr: resolved.rtmp,
                        source,
                    }));
                }
            }
        };
        tracing::info!(origin = %resolved.rtmp, intent = request.intent.as_str(), "relaying to origin");
        Ok(Established {
            client,
            opened,
            resolved,
            key: request.key,
            intent: request.intent,
        })
    };
    // Boxed: the setup future (handshake, commands, the origin's setup) is bigger than the
    // relay's state and would otherwise size the session's future for as long as the stream
    // lives.
    match tokio::time::timeout_at(deadline, Box::pin(setup)).await {
        Ok(result) => result,
        Err(_) => Err((None, SessionError::SetupTimeout(limits.handshake_timeout))),
    }
}

/// A session set up on both sides, ready to relay.
struct Established {
    client: RtmpConnection,
    opened: origin::OriginSession,
    /// The stream's ownership lease: it lives exactly as long as the relay.
    resolved: ResolvedOrigin,
    key: RtmpStreamKey,
    intent: Intent,
}

impl Established {
    async fn relay(
        mut self,
        limits: &RtmpLimits,
        stats: &Arc<RtmpStats>,
        terminate: &CancellationToken,
    ) -> Result<(RtmpStreamKey, RelayEnd), Failure> {
        let ids = StreamIds {
            client: CLIENT_STREAM_ID,
            origin: self.opened.stream_id,
        };
        let relaying = stats.relaying(self.intent);
        let relayed = relay::relay(
            &mut self.client,
            &mut self.opened.connection,
            ids,
            limits.idle_timeout,
            terminate,
            &stats.bytes,
        )
        .await;
        drop(self.resolved);
        drop(relaying);
        match relayed {
            Ok(end) => Ok((self.key, end)),
            Err(err) => Err((Some(self.key), err.into())),
        }
    }
}

/// Answers the client's commands up to publish or play.
async fn read_request(client: &mut RtmpConnection) -> Result<StreamRequest, SessionError> {
    let mut connected: Option<(ConnectTarget, Value)> = None;
    let mut buffer_millis = DEFAULT_BUFFER_MILLIS;
    loop {
        let message = match client.read_message().await {
            Ok(message) => message,
            Err(ConnectionError::Closed) => return Err(SessionError::LeftBeforeStream),
            Err(err) => return Err(err.into()),
        };
        if message.type_id == kind::USER_CONTROL {
            if let Ok(Some(Control::User(UserControl::SetBufferLength { millis, .. }))) =
                control::parse(&message)
            {
                buffer_millis = millis;
            }
            continue;
        }
        if !matches!(message.type_id, kind::COMMAND_AMF0 | kind::COMMAND_AMF3) {
            // Data messages (e.g. @setDataFrame) only matter once publishing; nothing else
            // is expected before it.
            continue;
        }
        let cmd = Command::decode(message.type_id, &message.payload).map_err(SessionError::from)?;
        let tid = cmd.transaction_id;
        match cmd.name.as_str() {
            "connect" => {
                if connected.is_some() {
                    return Err(SessionError::ConnectedTwice);
                }
                let target = ConnectTarget::parse(
                    cmd.object.property("tcUrl").and_then(Value::as_str),
                    cmd.object.property("app").and_then(Value::as_str),
                );
                let encoding = cmd
                    .object
                    .property("objectEncoding")
                    .and_then(Value::as_number)
                    .unwrap_or(0.0);
                client.queue(&control::window_ack_size(ACK_WINDOW));
                client.queue(&control::set_peer_bandwidth(ACK_WINDOW, 2));
                client.set_out_chunk_size(OUT_CHUNK_SIZE);
                client.queue(&command::connect_result(tid, encoding).into_message(0));
                connected = Some((target, cmd.object));
            }
            "releaseStream" | "FCUnpublish" => {
                require_connect(&connected, &cmd.name)?;
                client.queue(&command::result(tid, vec![Value::Undefined]).into_message(0));
            }
            "FCPublish" => {
                require_connect(&connected, &cmd.name)?;
                client.queue(
                    &command::on_fc_publish(cmd.stream_name().unwrap_or_default()).into_message(0),
                );
                client.queue(&command::result(tid, vec![Value::Undefined]).into_message(0));
            }
            "createStream" => {
                require_connect(&connected, &cmd.name)?;
                client.queue(
                    &command::result(tid, vec![Value::Number(f64::from(CLIENT_STREAM_ID))])
                        .into_message(0),
                );
            }
            "getStreamLength" => {
                // Live streams have no length; ffmpeg reads a number here.
                client.queue(&command::result(tid, vec![Value::Number(0.0)]).into_message(0));
            }
            "deleteStream" | "closeStream" => return Err(SessionError::LeftBeforeStream),
            "publish" | "play" => {
                let intent = if cmd.name == "publish" {
                    Intent::Publish
                } else {
                    Intent::Play
                };
                let Some((target, connect_object)) = connected.take() else {
                    return Err(SessionError::NotConnected(cmd.name));
                };
                let name = cmd.stream_name().unwrap_or_default().to_owned();
                let key = target.stream_key(&name);
                return Ok(StreamRequest {
                    target,
                    connect_object,
                    intent,
                    key,
                    stream_args: cmd.args.into_iter().skip(1).collect(),
                    buffer_millis,
                });
            }
            // _checkbw, FCSubscribe and other optional commands: clients do not wait for them.
            _ => {}
        }
        client.flush().await.map_err(ConnectionError::from)?;
    }
}

fn require_connect(
    connected: &Option<(ConnectTarget, Value)>,
    what: &str,
) -> Result<(), SessionError> {
    connected
        .as_ref()
        .map(|_| ())
        .ok_or_else(|| SessionError::NotConnected(what.to_owned()))
}

/// Tells the client its publish/play cannot go on (ffmpeg and OBS show the description).
async fn refuse(client: &mut RtmpConnection, intent: Intent, description: &str) {
    let code = match intent {
        Intent::Publish => "NetStream.Publish.BadName",
        Intent::Play => "NetStream.Play.StreamNotFound",
    };
    client.queue(&command::on_status("error", code, description).into_message(CLIENT_STREAM_ID));
    let _ = client.flush().await;
}
