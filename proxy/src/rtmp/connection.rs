//! One RTMP connection (toward a client or toward an origin): handshake, then messages in and
//! out over the chunk codec, with the per-hop housekeeping (chunk size, window
//! acknowledgements, pings) answered here so the layers above only see real messages.

use std::{cell::RefCell, io, net::SocketAddr, pin::Pin, task::Poll};

use bytes::BytesMut;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf},
    net::TcpStream,
};

use super::{
    chunk::{ChunkDecoder, ChunkEncoder, ChunkError, DecoderLimits, Message},
    control::{self, Control, ControlError, UserControl},
    handshake::{self, ClientHandshake, Form, HandshakeError, PACKET_SIZE, Scheme},
};

/// Most bytes one read takes from the socket. Reads land in a buffer of the runtime thread's
/// ([`READ_SCRATCH`]) and only what arrived is copied to the connection, so a connection
/// holds no read buffer while it waits and one the size of a read while it decodes: a
/// thousand real-time streams cost no more than their bytes in flight.
const READ_SIZE: usize = 64 * 1024;
/// A flush at most this big is a real-time stream's message or two, not a fast stream's
/// backlog: the write buffer is given back after it.
const SMALL_FLUSH: usize = 16 * 1024;
/// Undecoded bytes (a partial chunk header) at most this many are moved out of a read buffer
/// so that it can be given back.
const SMALL_REMAINDER: usize = 64;

thread_local! {
    /// Where the connections served by this thread read. Only borrowed within one poll of a
    /// read and the copy out of it, never across an await.
    static READ_SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_SIZE].into_boxed_slice());
}

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
    write_buf: BytesMut,
    decoder: ChunkDecoder,
    encoder: ChunkEncoder,
    /// Bytes received, for acknowledgements (the sequence number wraps at 2^32 on the wire).
    received: u64,
    acknowledged: u64,
    /// The peer's Window Acknowledgement Size: acknowledge every this many bytes.
    ack_window: Option<u32>,
}

impl RtmpConnection {
    fn new(socket: TcpStream, limits: DecoderLimits) -> Self {
        Self {
            socket,
            read_buf: BytesMut::new(),
            write_buf: BytesMut::new(),
            decoder: ChunkDecoder::new(limits),
            encoder: ChunkEncoder::new(),
            received: 0,
            acknowledged: 0,
            ack_window: None,
        }
    }

    /// Server side: answers the client's handshake (plain or digest form).
    pub async fn accept(
        mut socket: TcpStream,
        limits: DecoderLimits,
    ) -> Result<Self, ConnectionError> {
        // On the heap for the handshake only: as arrays these 3 KiB would size the session's
        // whole setup future, which is as big as its biggest step.
        let mut c0c1 = vec![0u8; 1 + PACKET_SIZE];
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
        // Each packet is dropped once used: many sessions start at once after a restart, and
        // their handshakes' peak becomes the process's memory high-water mark.
        drop(c0c1);
        socket.write_all(&response).await?;
        drop(response);
        let mut c2 = vec![0u8; PACKET_SIZE];
        socket.read_exact(&mut c2).await?;
        Ok(Self::new(socket, limits))
    }

    /// Client side, toward an origin.
    pub async fn connect(
        mut socket: TcpStream,
        limits: DecoderLimits,
    ) -> Result<Self, ConnectionError> {
        // The handshake's packets live on the heap for the handshake only (as in `accept`).
        let (state, c0c1) = ClientHandshake::start(&mut rand::rng());
        let state = Box::new(state);
        socket.write_all(&c0c1).await?;
        drop(c0c1);
        let mut s0s1s2 = vec![0u8; 1 + 2 * PACKET_SIZE];
        socket.read_exact(&mut s0s1s2).await?;
        let c2 = state
            .c2(s0s1s2[0], &s0s1s2[1..1 + PACKET_SIZE], &mut rand::rng())?
            .to_vec();
        drop((state, s0s1s2));
        socket.write_all(&c2).await?;
        Ok(Self::new(socket, limits))
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.socket.peer_addr()
    }

    /// Reads more bytes from the socket; `Ok(0)` when the peer closed. Cancel-safe.
    pub async fn fill(&mut self) -> io::Result<usize> {
        // Through `poll_read`, not `readable` + `try_read`: tokio takes a read that came back
        // short of the buffer as the socket drained and waits for the next edge, where
        // `try_read` would leave the readiness set and cost a second system call (EAGAIN) for
        // every message of a real-time stream.
        let n = std::future::poll_fn(|cx| {
            READ_SCRATCH.with_borrow_mut(|scratch| {
                let mut buf = ReadBuf::new(scratch);
                std::task::ready!(Pin::new(&mut self.socket).poll_read(cx, &mut buf))?;
                self.read_buf.extend_from_slice(buf.filled());
                Poll::Ready(io::Result::Ok(buf.filled().len()))
            })
        })
        .await?;
        self.received += n as u64;
        if let Some(window) = self.ack_window
            && self.received - self.acknowledged >= u64::from(window)
        {
            self.acknowledged = self.received;
            self.queue(&control::acknowledgement(self.received as u32));
        }
        Ok(n)
    }

    /// Gives the read buffer back once its messages are decoded. Even a full-speed stream
    /// loses little by it (one allocation per read of up to [`READ_SIZE`], against the system
    /// call and the decoding), and a real-time one then waits with no buffer at all.
    fn release_read_buffer(&mut self) {
        if self.read_buf.capacity() == 0 {
            return;
        }
        match self.read_buf.len() {
            0 => self.read_buf = BytesMut::new(),
            n if n <= SMALL_REMAINDER => self.read_buf = BytesMut::from(&self.read_buf[..]),
            _ => {}
        }
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
        self.release_read_buffer();
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
        if self.write_buf.len() <= SMALL_FLUSH {
            // A real-time stream: give the buffer back rather than hold it while waiting
            // for the next message. A fast stream keeps its buffer for the next flush.
            self.write_buf = BytesMut::new();
        } else {
            self.write_buf.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::net::TcpListener;

    use super::*;
    use crate::rtmp::control::kind;

    async fn pair() -> (RtmpConnection, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (socket, _) = listener.accept().await.unwrap();
        let limits = DecoderLimits {
            max_message_size: 1 << 20,
            max_chunk_streams: 16,
        };
        (RtmpConnection::new(socket, limits), peer)
    }

    fn video(timestamp: u32, len: usize) -> Message {
        Message {
            csid: 6,
            timestamp,
            type_id: kind::VIDEO,
            stream_id: 1,
            payload: Bytes::from(vec![0x17; len]),
        }
    }

    /// A real-time stream's connection waits with no buffer of its own: the read buffer is
    /// given back once its messages are decoded, the write buffer once it is flushed.
    #[tokio::test]
    async fn buffers_are_given_back_between_messages() {
        let (mut connection, mut peer) = pair().await;
        let mut encoder = ChunkEncoder::new();
        for timestamp in 0..3 {
            let mut wire = BytesMut::new();
            encoder.encode(&video(timestamp * 40, 1500), &mut wire);
            peer.write_all(&wire).await.unwrap();
            let message = connection.read_message().await.unwrap();
            assert_eq!(
                (message.timestamp, message.payload.len()),
                (timestamp * 40, 1500)
            );
            assert_eq!(connection.next_buffered().unwrap(), None);
            assert_eq!(connection.read_buf.capacity(), 0, "read buffer kept");
            // Waiting for the next message (the socket's readiness is stale after a short
            // read) holds no buffer either.
            let waited = tokio::time::timeout(Duration::from_millis(50), connection.fill()).await;
            assert!(waited.is_err(), "nothing more was sent");
            assert_eq!(
                connection.read_buf.capacity(),
                0,
                "read buffer kept while waiting"
            );

            connection.queue(&message);
            assert!(connection.write_buf.capacity() > 0);
            connection.flush().await.unwrap();
            assert_eq!(connection.write_buf.capacity(), 0, "write buffer kept");
            let mut echoed = vec![0u8; wire.len()];
            peer.read_exact(&mut echoed).await.unwrap();
        }
    }
}
