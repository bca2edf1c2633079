//! One RTMP connection (toward a client or toward an origin): handshake, then messages in and
//! out over the chunk codec, with the per-hop housekeeping (chunk size, window
//! acknowledgements, pings) answered here so the layers above only see real messages.

use std::{io, net::SocketAddr};

use bytes::BytesMut;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::{
    chunk::{ChunkDecoder, ChunkEncoder, ChunkError, DecoderLimits, Message},
    control::{self, Control, ControlError, UserControl},
    handshake::{self, ClientHandshake, Form, HandshakeError, PACKET_SIZE, Scheme},
};

/// Bytes asked from the socket per read, growing while reads come back full (a fast stream)
/// so that a fast stream needs few system calls while a slow one keeps little memory. The
/// decoder consumes partial chunks, so the read buffer never holds more than one read plus
/// an incomplete chunk header, whatever the peer's chunk size.
const MIN_READ_SIZE: usize = 16 * 1024;
const MAX_READ_SIZE: usize = 128 * 1024;
/// Write buffers up to this size are always kept. A larger one is kept while flushes fill a
/// good part of it (a fast stream) and given back after [`SLOW_STREAK`] small flushes in a
/// row (it grew for a keyframe of a real-time stream), so a thousand streams do not each keep
/// their biggest keyframe's worth of memory.
const WRITE_BUFFER_KEEP: usize = 16 * 1024;
/// Reads at the smallest size, or small flushes, in a row after which a buffer grown for a
/// burst is given back. Long enough that a fast stream's occasional short read or flush does
/// not make it reallocate.
const SLOW_STREAK: u8 = 8;

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("network error: {0}")]
    Io(#[from] io::Error),
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("bad chunk stream: {0}")]
    Chunk(#[from] ChunkError),
    #[error("bad control message: {0}")]
    Control(#[from] ControlError),
    #[error("peer closed the connection")]
    Closed,
}

pub struct RtmpConnection {
    socket: TcpStream,
    read_buf: BytesMut,
    read_size: usize,
    write_buf: BytesMut,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    /// Bytes received, for acknowledgements (the sequence number wraps at 2^32 on the wire).
    received: u64,
    acknowledged: u64,
    /// The peer's Window Acknowledgement Size: acknowledge every this many bytes.
    ack_window: Option<u32>,
    /// Reads at the smallest size in a row, and flushes small for the write buffer in a row.
    slow_reads: u8,
    small_flushes: u8,
}

impl RtmpConnection {
    fn new(socket: TcpStream, limits: DecoderLimits) -> Self {
        Self {
            socket,
            read_buf: BytesMut::new(),
            read_size: MIN_READ_SIZE,
            write_buf: BytesMut::new(),
            decoder: ChunkDecoder::new(limits),
            encoder: ChunkEncoder::new(),
            received: 0,
            acknowledged: 0,
            ack_window: None,
            slow_reads: 0,
            small_flushes: 0,
        }
    }

    /// Server side: answers the client's handshake (plain or digest form).
    pub async fn accept(
        mut socket: TcpStream,
        limits: DecoderLimits,
    ) -> Result<Self, ConnectionError> {
        let mut c0c1 = [0u8; 1 + PACKET_SIZE];
        socket.read_exact(&mut c0c1).await?;
        let form = match handshake::client_form(&c0c1[1..]) {
            Ok(Form::Plain) => "plain",
            Ok(Form::Digest {
                scheme: Scheme::KeyFirst,
                ..
            }) => "digest, scheme 0",
            Ok(Form::Digest {
                scheme: Scheme::DigestFirst,
                ..
            }) => "digest, scheme 1",
            Err(_) => "invalid",
        };
        tracing::debug!(handshake = form, "client handshake");
        let response = handshake::server_response(c0c1[0], &c0c1[1..], &mut rand::rng())?;
        socket.write_all(&response).await?;
        let mut c2 = [0u8; PACKET_SIZE];
        socket.read_exact(&mut c2).await?;
        Ok(Self::new(socket, limits))
    }

    /// Client side, toward an origin.
    pub async fn connect(
        mut socket: TcpStream,
        limits: DecoderLimits,
    ) -> Result<Self, ConnectionError> {
        let (state, c0c1) = ClientHandshake::start(&mut rand::rng());
        socket.write_all(&c0c1).await?;
        let mut s0s1s2 = vec![0u8; 1 + 2 * PACKET_SIZE];
        socket.read_exact(&mut s0s1s2).await?;
        let c2 = state.c2(s0s1s2[0], &s0s1s2[1..1 + PACKET_SIZE], &mut rand::rng())?;
        socket.write_all(&c2).await?;
        Ok(Self::new(socket, limits))
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.socket.peer_addr()
    }

    /// Reads more bytes from the socket; `Ok(0)` when the peer closed. Cancel-safe.
    pub async fn fill(&mut self) -> io::Result<usize> {
        self.read_buf.reserve(self.read_size);
        if self.slow_reads >= SLOW_STREAK && self.read_buf.capacity() >= 2 * MIN_READ_SIZE {
            // Grown for a burst (a keyframe, a backlog) and the stream has been slow since:
            // give the allocation back, keeping the few undecoded bytes (at most a partial
            // chunk header, as the decoder consumes partial payloads).
            let mut smaller = BytesMut::with_capacity(MIN_READ_SIZE.max(self.read_buf.len()));
            smaller.extend_from_slice(&self.read_buf);
            self.read_buf = smaller;
        }
        let room = self.read_buf.capacity() - self.read_buf.len();
        let n = self.socket.read_buf(&mut self.read_buf).await?;
        self.read_size = if n == room {
            (self.read_size * 2).min(MAX_READ_SIZE)
        } else {
            (self.read_size / 2).max(MIN_READ_SIZE)
        };
        self.slow_reads = if self.read_size == MIN_READ_SIZE {
            self.slow_reads.saturating_add(1)
        } else {
            0
        };
        self.received += n as u64;
        if let Some(window) = self.ack_window
            && self.received - self.acknowledged >= u64::from(window)
        {
            self.acknowledged = self.received;
            self.queue(&control::acknowledgement(self.received as u32));
        }
        Ok(n)
    }

    /// The next complete message already received, with protocol control handled here.
    /// User control events other than pings are returned (the relay forwards them).
    pub fn next_buffered(&mut self) -> Result<Option<Message>, ConnectionError> {
        while let Some(message) = self.decoder.decode(&mut self.read_buf)? {
            match control::parse(&message)? {
                None
                | Some(Control::User(UserControl::StreamBegin(_)))
                | Some(Control::User(UserControl::StreamEof(_)))
                | Some(Control::User(UserControl::StreamDry(_)))
                | Some(Control::User(UserControl::SetBufferLength { .. }))
                | Some(Control::User(UserControl::StreamIsRecorded(_)))
                | Some(Control::User(UserControl::Other(_))) => return Ok(Some(message)),
                Some(Control::SetChunkSize(size)) => self.decoder.set_chunk_size(size)?,
                Some(Control::Abort { csid }) => self.decoder.abort(csid),
                Some(Control::WindowAckSize(size)) => self.ack_window = (size > 0).then_some(size),
                Some(Control::User(UserControl::PingRequest(timestamp))) => {
                    self.queue(&control::ping_response(timestamp));
                }
                Some(Control::Acknowledgement { .. })
                | Some(Control::SetPeerBandwidth { .. })
                | Some(Control::User(UserControl::PingResponse(_))) => {}
            }
        }
        Ok(None)
    }

    /// Reads until one message is complete (setup phase).
    pub async fn read_message(&mut self) -> Result<Message, ConnectionError> {
        loop {
            if let Some(message) = self.next_buffered()? {
                return Ok(message);
            }
            self.flush().await?;
            if self.fill().await? == 0 {
                return Err(ConnectionError::Closed);
            }
        }
    }

    /// Encodes `message` into the write buffer; [`flush`](Self::flush) sends it.
    pub fn queue(&mut self, message: &Message) {
        self.encoder.encode(message, &mut self.write_buf);
    }

    /// Announces and switches to a chunk size for what we send.
    pub fn set_out_chunk_size(&mut self, size: u32) {
        self.queue(&control::set_chunk_size(size));
        self.encoder.set_chunk_size(size);
    }

    pub fn has_pending_writes(&self) -> bool {
        !self.write_buf.is_empty()
    }

    pub async fn flush(&mut self) -> io::Result<()> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        self.socket.write_all(&self.write_buf).await?;
        let flushed = self.write_buf.len();
        self.write_buf.clear();
        let capacity = self.write_buf.capacity();
        self.small_flushes = if capacity > WRITE_BUFFER_KEEP && flushed * 4 < capacity {
            self.small_flushes.saturating_add(1)
        } else {
            0
        };
        if self.small_flushes >= SLOW_STREAK {
            self.write_buf = BytesMut::new();
            self.small_flushes = 0;
        }
        Ok(())
    }
}
