//! SRS's HTTP server (`http_server`): the files of `http_server.dir` — HLS playlists with
//! SRS's `hls_ctx` playback sessions, and segments — and HTTP-FLV of live streams.
//!
//! A small HTTP/1 server of its own rather than axum: an HTTP-FLV player of a stream nobody
//! publishes yet gets its answer head and then nothing until media flows, as from SRS, and the
//! server must still notice when that player goes away (SRS reads the socket in a separate
//! coroutine for that, `srs_app_http_stream.cpp` l. 760). Here each FLV session waits on the
//! client's socket and ffmpeg's output at once and stops ffmpeg the moment the client closes.
//! One request per connection (`Connection: close`), as SRS's file server does.

use std::{path::PathBuf, process::Stdio, sync::Arc, time::Duration, time::Instant};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    process::Command,
};

use super::{SERVER_SIGNATURE, State, api, forward_stderr, log_warn};

/// Request heads larger than this are refused.
const MAX_HEAD: usize = 16 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read from ffmpeg per chunk written to the player.
const FLV_BUFFER: usize = 64 * 1024;

/// Accepts connections until the process ends.
pub async fn serve(listener: TcpListener, state: Arc<State>, with_api: bool) {
    loop {
        match listener.accept().await {
            Ok((socket, _)) => {
                let state = state.clone();
                tokio::spawn(async move {
                    if let Err(err) = connection(socket, &state, with_api).await {
                        // Clients leaving early are normal; nothing to report beyond a line.
                        if err.kind() != std::io::ErrorKind::BrokenPipe
                            && err.kind() != std::io::ErrorKind::ConnectionReset
                        {
                            log_warn!("HTTP: {err}");
                        }
                    }
                });
            }
            Err(err) => {
                log_warn!("HTTP accept: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The parts of a request the server looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path as sent (still percent-encoded).
    pub path: String,
    pub query: String,
    /// HTTP/1.1 (chunked answers) or 1.0 (answers end at the close).
    pub http11: bool,
}

/// Parses a request head; `None` until it is complete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Request>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("malformed request"),
    }
    let target = request.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Some(Request {
        method: request.method.unwrap_or("GET").to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        http11: request.version == Some(1),
    }))
}

/// `%XX` decoding of a URL path or query value (invalid escapes stay as they are).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn read_head(socket: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let deadline = tokio::time::Instant::now() + HEAD_TIMEOUT;
    loop {
        let n = match tokio::time::timeout_at(deadline, socket.read(&mut chunk)).await {
            Ok(read) => read?,
            Err(_) => return Ok(None),
        };
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        match parse_head(&buf) {
            Ok(Some(request)) => return Ok(Some(request)),
            Ok(None) if buf.len() < MAX_HEAD => {}
            _ => {
                respond(
                    socket,
                    400,
                    "text/plain; charset=utf-8",
                    b"Bad Request",
                    false,
                )
                .await?;
                return Ok(None);
            }
        }
    }
}

/// A whole answer with a `Content-Length`, then the connection closes.
async fn respond(
    socket: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nServer: {SERVER_SIGNATURE}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n",
        reason = reason(status),
        len = body.len(),
    );
    socket.write_all(head.as_bytes()).await?;
    if !head_only {
        socket.write_all(body).await?;
    }
    socket.shutdown().await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        _ => "Unknown",
    }
}

async fn not_found(socket: &mut TcpStream, head_only: bool) -> std::io::Result<()> {
    respond(
        socket,
        404,
        "text/plain; charset=utf-8",
        b"Not Found",
        head_only,
    )
    .await
}

async fn connection(mut socket: TcpStream, state: &State, with_api: bool) -> std::io::Result<()> {
    let Some(request) = read_head(&mut socket).await? else {
        return Ok(());
    };
    if with_api && request.path.starts_with("/api/") {
        let answer = api::dispatch(state, &request.method, &request.path, &request.query).await;
        let (content_type, body) = match answer.json {
            Some(json) => ("application/json", json),
            None => (
                "text/plain; charset=utf-8",
                reason(answer.status).to_owned(),
            ),
        };
        return respond(
            &mut socket,
            answer.status,
            content_type,
            body.as_bytes(),
            false,
        )
        .await;
    }
    let head_only = request.method == "HEAD";
    if request.method != "GET" && !head_only {
        return respond(
            &mut socket,
            405,
            "text/plain; charset=utf-8",
            b"Method Not Allowed",
            false,
        )
        .await;
    }
    let path = percent_decode(&request.path);
    if state.config.http_remux.is_some()
        && let Some((app, stream)) = flv_stream(&path)
    {
        return flv(socket, state, &app, &stream, &request, head_only).await;
    }
    let Some(file) = file_path(state, &path) else {
        return not_found(&mut socket, head_only).await;
    };
    if path.ends_with(".m3u8") && state.config.hls.ctx {
        return playlist(socket, state, &file, &request, head_only).await;
    }
    static_file(socket, &file, head_only).await
}

/// `/{app}/{stream}.flv`, the default vhost's HTTP-FLV mount; the names must be plain (they
/// go into an RTMP URL).
pub fn flv_stream(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix('/')?.strip_suffix(".flv")?;
    let (app, stream) = rest.split_once('/')?;
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
    };
    (plain(app) && plain(stream) && !stream.contains('/'))
        .then(|| (app.to_owned(), stream.to_owned()))
}

/// The file under `http_server.dir` for a decoded path: no `..`, directories answer their
/// `index.html` (SrsHttpFileServer, `srs_protocol_http_stack.cpp`).
fn file_path(state: &State, path: &str) -> Option<PathBuf> {
    if !path.starts_with('/') || path.contains('\0') {
        return None;
    }
    let mut file = state.http_dir.clone();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        if segment == ".." || segment == "." {
            return None;
        }
        file.push(segment);
    }
    if path.ends_with('/') || file.is_dir() {
        file.push("index.html");
    }
    file.is_file().then_some(file)
}

/// The content type SRS's file server gives an extension (`_mime`, l. 436).
fn content_type(path: &std::path::Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
    {
        "ts" => "video/MP2T",
        "flv" => "video/x-flv",
        "m4v" => "video/x-m4v",
        "3gpp" | "3gp" => "video/3gpp",
        "mp4" => "video/mp4",
        "aac" => "audio/x-aac",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/x-m4a",
        "ogg" => "audio/ogg",
        "m3u8" => "application/vnd.apple.mpegurl",
        "json" => "application/json",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" => "text/javascript",
        "txt" => "text/plain",
        "xml" => "text/xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    }
}

async fn static_file(
    mut socket: TcpStream,
    file: &std::path::Path,
    head_only: bool,
) -> std::io::Result<()> {
    // nginx may replace or remove a segment at any moment: a vanished file is a 404.
    let Ok(mut handle) = tokio::fs::File::open(file).await else {
        return not_found(&mut socket, head_only).await;
    };
    let length = handle.metadata().await?.len();
    let head = format!(
        "HTTP/1.1 200 OK\r\nServer: {SERVER_SIGNATURE}\r\nContent-Type: {}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n",
        content_type(file)
    );
    socket.write_all(head.as_bytes()).await?;
    if !head_only {
        tokio::io::copy(&mut (&mut handle).take(length), &mut socket).await?;
    }
    socket.shutdown().await
}

/// What SRS answers for a playlist with `hls_ctx` on (SrsHlsStream::serve_m3u8_ctx,
/// `srs_app_http_static.cpp` l. 83-250).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaylistAnswer {
    /// A new session: a one-variant playlist naming the same path with `hls_ctx`.
    NewSession { ctx: String, body: String },
    /// A known session: the playlist with its segments named with the session
    /// (`hls_ts_ctx` on), or the file as it is (`None`).
    Known { ctx: String, body: Option<String> },
}

/// Decides the answer for `path?query` given the known sessions and the playlist's text.
pub fn playlist_answer(
    path: &str,
    query: &str,
    known: impl Fn(&str) -> bool,
    ts_ctx: bool,
    file: &str,
    new_ctx: impl FnOnce() -> String,
) -> PlaylistAnswer {
    let ctx = api::query_get(query, "hls_ctx").unwrap_or_default();
    // A session id goes into the playlist text: nothing that could break a line.
    let ctx = if ctx.chars().any(|c| c.is_control() || c.is_whitespace()) {
        String::new()
    } else {
        ctx
    };
    if !ctx.is_empty() && known(&ctx) {
        if !ts_ctx {
            return PlaylistAnswer::Known { ctx, body: None };
        }
        // serve_exists_session: every `.ts` gets the session, joined to a query it has.
        let mut body = file.to_owned();
        if body.contains(".ts") {
            let mut with = format!(".ts?hls_ctx={ctx}");
            if body.contains(".ts?") {
                with.push('&');
                body = body.replace(".ts?", &with);
            } else {
                body = body.replace(".ts", &with);
            }
        }
        return PlaylistAnswer::Known {
            ctx,
            body: Some(body),
        };
    }
    // serve_new_session: an unknown id given by the client is taken as the new one.
    let ctx = if ctx.is_empty() { new_ctx() } else { ctx };
    let mut url = format!("{path}?hls_ctx={ctx}");
    if !query.is_empty()
        && api::query_get(query, "hls_ctx")
            .unwrap_or_default()
            .is_empty()
    {
        url.push('&');
        url.push_str(query);
    }
    PlaylistAnswer::NewSession {
        body: format!("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,AVERAGE-BANDWIDTH=1\n{url}\n"),
        ctx,
    }
}

async fn playlist(
    mut socket: TcpStream,
    state: &State,
    file: &std::path::Path,
    request: &Request,
    head_only: bool,
) -> std::io::Result<()> {
    let Ok(text) = tokio::fs::read_to_string(file).await else {
        return not_found(&mut socket, head_only).await;
    };
    let answer = {
        let sessions = state.hls_sessions.lock().expect("hls sessions");
        playlist_answer(
            &request.path,
            &request.query,
            |ctx| sessions.contains_key(ctx),
            state.config.hls.ts_ctx,
            &text,
            || {
                // Unique among the live sessions, as SRS makes sure.
                loop {
                    let ctx = super::sys::random_str(8);
                    if !sessions.contains_key(&ctx) {
                        return ctx;
                    }
                }
            },
        )
    };
    let (ctx, body) = match answer {
        PlaylistAnswer::NewSession { ctx, body } => (ctx, body),
        PlaylistAnswer::Known { ctx, body } => (ctx, body.unwrap_or(text)),
    };
    // SrsHlsStream::alive: the session is (still) in use.
    state
        .hls_sessions
        .lock()
        .expect("hls sessions")
        .insert(ctx, Instant::now());
    respond(
        &mut socket,
        200,
        "application/vnd.apple.mpegurl",
        body.as_bytes(),
        head_only,
    )
    .await
}

/// HTTP-FLV: ffmpeg plays the stream from nginx and remuxes it (`-c copy`) to FLV on its
/// stdout, which goes to the player as it comes. Like SRS, the answer starts at once and
/// waits for a publisher if there is none yet.
async fn flv(
    socket: TcpStream,
    state: &State,
    app: &str,
    stream: &str,
    request: &Request,
    head_only: bool,
) -> std::io::Result<()> {
    let mut socket = socket;
    let head = format!(
        "HTTP/1.1 200 OK\r\nServer: {SERVER_SIGNATURE}\r\nContent-Type: video/x-flv\r\n{}Connection: close\r\n\r\n",
        if request.http11 {
            "Transfer-Encoding: chunked\r\n"
        } else {
            ""
        }
    );
    if head_only {
        socket.write_all(head.as_bytes()).await?;
        return socket.shutdown().await;
    }
    let source = format!("rtmp://{}/{app}/{stream}", state.rtmp_local);
    let mut command = Command::new(&state.ffmpeg);
    let mut child = match super::die_with_parent(&mut command)
        .args(["-hide_banner", "-nostdin", "-loglevel", "error"])
        // Low latency: no input buffering, a short probe (nginx sends the metadata and the
        // sequence headers first), every packet written out at once.
        .args([
            "-fflags",
            "nobuffer",
            "-probesize",
            "32768",
            "-analyzeduration",
            "1000000",
        ])
        .args(["-rtmp_live", "live", "-i", &source])
        .args(["-map", "0", "-c", "copy", "-f", "flv"])
        .args([
            "-flvflags",
            "no_duration_filesize",
            "-flush_packets",
            "1",
            "pipe:1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(err) => {
            log_warn!("HTTP-FLV {app}/{stream}: cannot start ffmpeg: {err}");
            return respond(
                &mut socket,
                500,
                "text/plain; charset=utf-8",
                b"Internal Server Error",
                false,
            )
            .await;
        }
    };
    let pid = child.id().unwrap_or(0);
    state.children.lock().expect("children").insert(pid);
    if let Some(stderr) = child.stderr.take() {
        forward_stderr(format!("ffmpeg {pid} ({app}/{stream}.flv)"), stderr);
    }
    let mut stdout = child.stdout.take().expect("piped stdout");
    let result = async {
        socket.write_all(head.as_bytes()).await?;
        let (mut from_client, mut to_client) = socket.split();
        let mut media = vec![0u8; FLV_BUFFER];
        let mut ignored = [0u8; 512];
        let mut shutdown = state.shutdown.clone();
        loop {
            tokio::select! {
                read = stdout.read(&mut media) => {
                    let n = read?;
                    if n == 0 {
                        // ffmpeg ended (the stream could not be played): end the answer.
                        if request.http11 {
                            to_client.write_all(b"0\r\n\r\n").await?;
                        }
                        break;
                    }
                    if request.http11 {
                        to_client.write_all(format!("{n:x}\r\n").as_bytes()).await?;
                        to_client.write_all(&media[..n]).await?;
                        to_client.write_all(b"\r\n").await?;
                    } else {
                        to_client.write_all(&media[..n]).await?;
                    }
                }
                read = from_client.read(&mut ignored) => {
                    // The player closed (0) or failed: stop. Anything it sends is ignored.
                    if read.unwrap_or(0) == 0 {
                        break;
                    }
                }
                // The guard wait_for returns is dropped at once: it must not live across awaits.
                _ = async { let _ = shutdown.wait_for(|stop| *stop).await; } => break,
            }
        }
        std::io::Result::Ok(())
    }
    .await;
    let _ = child.start_kill();
    let _ = child.wait().await;
    state.children.lock().expect("children").remove(&pid);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_heads_parse() {
        let request = parse_head(b"GET /live/s.m3u8?hls_ctx=abc HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(request.path, "/live/s.m3u8");
        assert_eq!(request.query, "hls_ctx=abc");
        assert!(request.http11);
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost"), Ok(None));
        assert!(parse_head(b"\x00\x01 nonsense\r\n\r\n").is_err());
        assert_eq!(percent_decode("/a%20b%zz"), "/a b%zz");
    }

    #[test]
    fn flv_paths_name_app_and_stream() {
        assert_eq!(
            flv_stream("/live/cam-1.flv"),
            Some(("live".into(), "cam-1".into()))
        );
        for path in [
            "/cam.flv",
            "/a/b/c.flv",
            "/live/.flv",
            "/live/x y.flv",
            "/live/s.ts",
        ] {
            assert_eq!(flv_stream(path), None, "{path}");
        }
    }

    const PLAYLIST: &str =
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.000,\ns-0.ts\n#EXTINF:2.000,\ns-1.ts\n";

    #[test]
    fn a_new_playlist_session_names_the_same_path_with_its_id() {
        let answer = playlist_answer(
            "/live/s.m3u8",
            "",
            |_| false,
            true,
            PLAYLIST,
            || "k2x9a0b1".into(),
        );
        assert_eq!(
            answer,
            PlaylistAnswer::NewSession {
                ctx: "k2x9a0b1".into(),
                body: "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1,AVERAGE-BANDWIDTH=1\n/live/s.m3u8?hls_ctx=k2x9a0b1\n".into(),
            }
        );
        // Another query is carried along; an unknown id sent by the client is adopted.
        let answer = playlist_answer(
            "/live/s.m3u8",
            "token=t",
            |_| false,
            true,
            PLAYLIST,
            || "new".into(),
        );
        assert!(
            matches!(answer, PlaylistAnswer::NewSession { ref body, .. } if body.contains("/live/s.m3u8?hls_ctx=new&token=t\n"))
        );
        let answer = playlist_answer(
            "/live/s.m3u8",
            "hls_ctx=mine&x=1",
            |_| false,
            true,
            PLAYLIST,
            || unreachable!(),
        );
        assert!(
            matches!(answer, PlaylistAnswer::NewSession { ref ctx, ref body } if ctx == "mine" && body.contains("?hls_ctx=mine\n"))
        );
    }

    #[test]
    fn a_known_session_gets_its_segments_named_with_it() {
        let answer = playlist_answer(
            "/live/s.m3u8",
            "hls_ctx=abc",
            |c| c == "abc",
            true,
            PLAYLIST,
            || unreachable!(),
        );
        let PlaylistAnswer::Known {
            ctx,
            body: Some(body),
        } = answer
        else {
            panic!("{answer:?}")
        };
        assert_eq!(ctx, "abc");
        assert!(
            body.contains("\ns-0.ts?hls_ctx=abc\n") && body.contains("\ns-1.ts?hls_ctx=abc\n"),
            "{body}"
        );
        let with_query = playlist_answer(
            "/p.m3u8",
            "hls_ctx=abc",
            |_| true,
            true,
            "a.ts?x=1\n",
            || unreachable!(),
        );
        assert_eq!(
            with_query,
            PlaylistAnswer::Known {
                ctx: "abc".into(),
                body: Some("a.ts?hls_ctx=abc&x=1\n".into())
            }
        );
        let off = playlist_answer(
            "/p.m3u8",
            "hls_ctx=abc",
            |_| true,
            false,
            PLAYLIST,
            || unreachable!(),
        );
        assert_eq!(
            off,
            PlaylistAnswer::Known {
                ctx: "abc".into(),
                body: None
            }
        );
    }
}
