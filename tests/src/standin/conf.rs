//! srs.conf as SRS 7 reads it, and the `SRS_*` environment overrides, for the stand-in.
//!
//! Pure: text and an environment lookup in, a [`Config`] or a [`ConfError`] out. Everything
//! here follows SRS 7.0.18's source (ossrs/srs, commit 101382afd0, `trunk/src/app/`); line
//! numbers below refer to `srs_app_config.cpp` there unless another file is named.
//!
//! - The syntax is SRS's port of nginx's tokenizer (`SrsConfDirective::read_token`, l. 1182):
//!   `name args;` or `name args { ... }`, `#` comments, `"..."` and `'...'` quoting, one
//!   directive per line, `include file;`.
//! - A directive is looked up as SRS does: the **first** one of a name counts
//!   (`SrsConfDirective::get`, l. 877), so a second `max_connections` later in the file has no
//!   effect in SRS and none here.
//! - Each value the stand-in honours is read by a function mirroring SRS's getter: the
//!   environment variable first (`srs_getenv`, `srs_app_utility.cpp` l. 1382: the dotted path
//!   upper-cased, dots to underscores, used when non-empty), then the file, then SRS's default;
//!   numbers with C's `atoi`/`atof`, switches with SRS's `SRS_CONF_PREFER_FALSE` (`on` is on)
//!   or `SRS_CONF_PREFER_TRUE` (anything but `off` is on). Only variables SRS really reads
//!   exist here.
//! - Names SRS refuses (`check_normal_config`, l. 2321) are refused with SRS's message; names
//!   SRS accepts but the stand-in cannot honour are refused when they would change behaviour
//!   (a feature switched on), and ignored when they only tune SRS internals.

use std::{fmt, net::IpAddr, time::Duration};

/// Why a configuration cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfError {
    /// The text is not SRS config syntax.
    Syntax { line: usize, message: String },
    /// SRS itself refuses this configuration (with this message).
    Invalid(String),
    /// SRS would run it, but the stand-in cannot behave as SRS would.
    Unsupported(String),
    /// A file could not be read.
    Io(String),
}

impl fmt::Display for ConfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax { line, message } => write!(f, "line {line}: {message}"),
            Self::Invalid(message) => write!(f, "{message}"),
            Self::Unsupported(message) => write!(f, "not supported by srs-standin: {message}"),
            Self::Io(message) => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for ConfError {}

fn invalid(message: impl Into<String>) -> ConfError {
    ConfError::Invalid(message.into())
}

fn unsupported(message: impl Into<String>) -> ConfError {
    ConfError::Unsupported(message.into())
}

/// One directive: `name args;` or a block `name args { children }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub children: Vec<Directive>,
    /// Line of the directive's first word (0 when unknown).
    pub line: usize,
}

impl Directive {
    /// The first child named `name`, as `SrsConfDirective::get` (l. 877).
    pub fn get(&self, name: &str) -> Option<&Directive> {
        self.children.iter().find(|d| d.name == name)
    }

    /// The first argument, or "" (`arg0()`).
    pub fn arg0(&self) -> &str {
        self.args.first().map(String::as_str).unwrap_or("")
    }

    /// `self.get(name).arg0()` when present and non-empty: SRS treats an empty value as unset.
    fn value(&self, name: &str) -> Option<&str> {
        self.get(name)
            .map(Directive::arg0)
            .filter(|v| !v.is_empty())
    }
}

/// Parses config text into its top-level directives. `include` names files read with
/// `read_file` (relative to the working directory, as SRS opens them).
pub fn parse(
    text: &str,
    read_file: &mut dyn FnMut(&str) -> Result<String, ConfError>,
) -> Result<Vec<Directive>, ConfError> {
    parse_nested(text, read_file, 0)
}

fn parse_nested(
    text: &str,
    read_file: &mut dyn FnMut(&str) -> Result<String, ConfError>,
    depth: usize,
) -> Result<Vec<Directive>, ConfError> {
    // SRS recurses without a limit; a loop of includes would never end there.
    if depth > 16 {
        return Err(invalid("include nested more than 16 deep"));
    }
    let mut tokens = Tokenizer {
        buf: text.as_bytes(),
        pos: 0,
        line: 1,
    };
    let mut root = Vec::new();
    parse_block(&mut tokens, &mut root, false, read_file, depth)?;
    Ok(root)
}

/// `SrsConfDirective::parse_conf` (l. 1108).
fn parse_block(
    tokens: &mut Tokenizer<'_>,
    into: &mut Vec<Directive>,
    in_block: bool,
    read_file: &mut dyn FnMut(&str) -> Result<String, ConfError>,
    depth: usize,
) -> Result<(), ConfError> {
    loop {
        let mut args = Vec::new();
        let mut line_start = 0;
        let end = tokens.read_token(&mut args, &mut line_start)?;
        match end {
            TokenEnd::BlockEnd if in_block => return Ok(()),
            TokenEnd::BlockEnd => {
                return Err(ConfError::Syntax {
                    line: tokens.line,
                    message: "unexpected \"}\"".into(),
                });
            }
            TokenEnd::Eof if in_block => {
                return Err(ConfError::Syntax {
                    line: tokens.line,
                    message: "unexpected end of file, expecting \"}\"".into(),
                });
            }
            TokenEnd::Eof => return Ok(()),
            TokenEnd::Entire | TokenEnd::BlockStart => {}
        }
        if args.is_empty() {
            return Err(ConfError::Syntax {
                line: tokens.line,
                message: "empty directive".into(),
            });
        }
        if args[0] != "include" {
            let mut directive = Directive {
                name: args.remove(0),
                args,
                children: Vec::new(),
                line: line_start,
            };
            if end == TokenEnd::BlockStart {
                parse_block(tokens, &mut directive.children, true, read_file, depth)?;
            }
            into.push(directive);
            continue;
        }
        let files = &args[1..];
        if files.is_empty() {
            return Err(ConfError::Syntax {
                line: tokens.line,
                message: "include is empty directive".into(),
            });
        }
        for file in files {
            let text = read_file(file)?;
            into.extend(parse_nested(&text, read_file, depth + 1)?);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenEnd {
    /// `;`
    Entire,
    /// `{`
    BlockStart,
    /// `}`
    BlockEnd,
    Eof,
}

struct Tokenizer<'a> {
    buf: &'a [u8],
    pos: usize,
    line: usize,
}

fn is_space(ch: u8) -> bool {
    matches!(ch, b' ' | b'\t' | b'\r' | b'\n')
}

impl Tokenizer<'_> {
    fn error(&self, line: usize, message: String) -> ConfError {
        ConfError::Syntax { line, message }
    }

    /// `SrsConfDirective::read_token` (l. 1182), step for step: a directive must end on the
    /// line it starts, quotes end a word, `#` starts a comment only where a word could start.
    fn read_token(
        &mut self,
        args: &mut Vec<String>,
        line_start: &mut usize,
    ) -> Result<TokenEnd, ConfError> {
        let mut pstart = self.pos;
        let mut sharp_comment = false;
        let (mut d_quoted, mut s_quoted) = (false, false);
        let mut need_space = false;
        let mut last_space = true;
        loop {
            let Some(&ch) = self.buf.get(self.pos) else {
                if !args.is_empty() || !last_space {
                    return Err(self.error(
                        self.line,
                        "unexpected end of file, expecting ; or \"}\"".into(),
                    ));
                }
                return Ok(TokenEnd::Eof);
            };
            self.pos += 1;
            if ch == b'\n' || ch == b'\r' {
                if ch == b'\n' {
                    self.line += 1;
                }
                sharp_comment = false;
                if !args.is_empty() {
                    return Err(self.error(
                        self.line - 1,
                        format!("unexpected end of line to parse token {}", args[0]),
                    ));
                }
            }
            if sharp_comment {
                continue;
            }
            if need_space {
                if is_space(ch) {
                    last_space = true;
                    need_space = false;
                    continue;
                }
                return match ch {
                    b';' => Ok(TokenEnd::Entire),
                    b'{' => Ok(TokenEnd::BlockStart),
                    _ => Err(self.error(self.line, format!("unexpected '{}'", ch as char))),
                };
            }
            if last_space {
                if is_space(ch) {
                    continue;
                }
                pstart = self.pos - 1;
                match ch {
                    b';' | b'{' if args.is_empty() => {
                        return Err(self.error(self.line, format!("unexpected '{}'", ch as char)));
                    }
                    b';' => return Ok(TokenEnd::Entire),
                    b'{' => return Ok(TokenEnd::BlockStart),
                    b'}' if !args.is_empty() => {
                        return Err(self.error(self.line, "unexpected '}'".into()));
                    }
                    b'}' => return Ok(TokenEnd::BlockEnd),
                    b'#' => sharp_comment = true,
                    b'"' => {
                        pstart += 1;
                        d_quoted = true;
                        last_space = false;
                    }
                    b'\'' => {
                        pstart += 1;
                        s_quoted = true;
                        last_space = false;
                    }
                    _ => last_space = false,
                }
                continue;
            }
            if *line_start == 0 {
                *line_start = self.line;
            }
            let found = if d_quoted {
                ch == b'"' && {
                    d_quoted = false;
                    need_space = true;
                    true
                }
            } else if s_quoted {
                ch == b'\'' && {
                    s_quoted = false;
                    need_space = true;
                    true
                }
            } else if is_space(ch) || ch == b';' || ch == b'{' {
                last_space = true;
                true
            } else {
                false
            };
            if found {
                let word = &self.buf[pstart..self.pos - 1];
                if !word.is_empty() {
                    args.push(String::from_utf8_lossy(word).into_owned());
                }
                match ch {
                    b';' => return Ok(TokenEnd::Entire),
                    b'{' => return Ok(TokenEnd::BlockStart),
                    b'\n' | b'\r' if !args.is_empty() => {
                        return Err(self.error(
                            self.line - 1,
                            format!("unexpected end of line to parse token {}", args[0]),
                        ));
                    }
                    _ => {}
                }
            }
        }
    }
}

/// The environment variable SRS reads for a config path (`srs_getenv`,
/// `srs_app_utility.cpp` l. 1382): `srs.heartbeat.url` → `SRS_HEARTBEAT_URL`.
pub fn env_name(key: &str) -> String {
    key.trim_start_matches('$')
        .chars()
        .map(|c| match c {
            '.' => '_',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// Looks a variable up by its name (`SRS_HEARTBEAT_URL`); the process environment in the
/// binary, a map in tests.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, for [`Config::from_directives`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// C's `atoi`: leading blanks, a sign, digits; whatever follows is ignored; 0 when no digit.
pub fn atoi(text: &str) -> i64 {
    let text = text.trim_start();
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let value = digits
        .bytes()
        .take_while(u8::is_ascii_digit)
        .fold(0i64, |n, d| {
            n.saturating_mul(10).saturating_add(i64::from(d - b'0'))
        });
    if negative { -value } else { value }
}

/// C's `atof` for decimal numbers: the longest prefix that parses; 0 when none does.
pub fn atof(text: &str) -> f64 {
    let text = text.trim_start();
    let mut end = 0;
    let bytes = text.as_bytes();
    if matches!(bytes.first(), Some(b'-' | b'+')) {
        end = 1;
    }
    let mut seen_dot = false;
    let mut seen_exp = false;
    while end < bytes.len() {
        match bytes[end] {
            b'0'..=b'9' => {}
            b'.' if !seen_dot && !seen_exp => seen_dot = true,
            b'e' | b'E' if !seen_exp && end > 0 => {
                seen_exp = true;
                if matches!(bytes.get(end + 1), Some(b'-' | b'+')) {
                    end += 1;
                }
            }
            _ => break,
        }
        end += 1;
    }
    (1..=end)
        .rev()
        .find_map(|n| text[..n].parse::<f64>().ok())
        .unwrap_or(0.0)
}

/// `SRS_CONF_PREFER_FALSE` (l. 49): only `on` is on.
fn prefer_false(value: &str) -> bool {
    value == "on"
}

/// `SRS_CONF_PREFER_TRUE` (l. 50): anything but `off` is on.
fn prefer_true(value: &str) -> bool {
    value != "off"
}

/// A listen endpoint as written (`1935`, `0.0.0.0:1935`, `[::]:1935`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The text of the config or variable: SRS reports it unchanged in the heartbeat.
    pub raw: String,
    /// `None`: every address (SRS's `srs_any_address_for_listener`).
    pub ip: Option<IpAddr>,
    pub port: u16,
}

impl Endpoint {
    /// `srs_parse_endpoint` (`srs_kernel_utility.cpp` l. 240) and the checks of
    /// `check_normal_config` (l. 2451): the port after the last `:`, an IP literal before it.
    pub fn parse(what: &str, raw: &str) -> Result<Self, ConfError> {
        let (ip, port) = match raw.rfind(':') {
            Some(at) => {
                let host = &raw[..at];
                let host = host
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(host);
                let ip = host
                    .parse::<IpAddr>()
                    .map_err(|_| invalid(format!("{what}.ip={host} is invalid")))?;
                (Some(ip), atoi(&raw[at + 1..]))
            }
            None => (None, atoi(raw)),
        };
        let port = u16::try_from(port)
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| invalid(format!("{what}.port={port} is invalid")))?;
        Ok(Self {
            raw: raw.to_owned(),
            ip,
            port,
        })
    }
}

/// `http_server` when enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpServer {
    pub listen: Endpoint,
    /// The directory served (`http_server.dir`), as written; relative to the working dir.
    pub dir: String,
}

/// `heartbeat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub enabled: bool,
    /// Whole seconds, as SRS reads it (`atoi`): `2.5` is 2 s.
    pub interval: Duration,
    pub url: String,
    pub device_id: String,
    pub summaries: bool,
    pub ports: bool,
}

/// `vhost.hls`.
#[derive(Debug, Clone, PartialEq)]
pub struct Hls {
    /// nginx-rtmp writes segments only when on; the other values apply either way, as SRS
    /// reads them either way (its HTTP server treats any `.m3u8` by `hls_ctx`).
    pub enabled: bool,
    /// `hls_fragment`, seconds (fractions allowed).
    pub fragment: Duration,
    /// `hls_window`: the seconds of media the playlist keeps (not a count of fragments).
    pub window: Duration,
    /// `hls_path`, as written; relative to the working dir.
    pub path: String,
    /// `hls_ctx`: playlists are answered per playback session (see the HTTP server).
    pub ctx: bool,
    /// `hls_ts_ctx`: a session's playlist names its segments with the session.
    pub ts_ctx: bool,
}

/// What the stand-in runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `listen`: the RTMP endpoints.
    pub listens: Vec<Endpoint>,
    pub max_connections: u32,
    /// The RTMP chunk size SRS sends with.
    pub chunk_size: u32,
    /// `pid`: SRS keeps the server id in a file beside it.
    pub pid_file: String,
    /// `SRS_SERVER_ID` or `server_id`; else the id file or a random one.
    pub server_id: Option<String>,
    /// `work_dir`: SRS changes into it before anything else.
    pub work_dir: String,
    /// `http_api.listen` when the API is enabled.
    pub http_api: Option<Endpoint>,
    pub http_server: Option<HttpServer>,
    pub heartbeat: Heartbeat,
    pub hls: Hls,
    /// The HTTP-FLV mount (`http_remux.mount`) when `http_remux` is enabled.
    pub http_remux: Option<String>,
    /// `cluster { mode remote; origin ...; }`: the origins this edge uses.
    pub edge_origins: Option<Vec<String>>,
}

/// The vhost OriginStack uses; the only one the stand-in serves.
pub const DEFAULT_VHOST: &str = "__defaultVhost__";

/// SRS's RTMP chunk size when nothing is configured (`SRS_CONSTS_RTMP_SRS_CHUNK_SIZE`).
pub const DEFAULT_CHUNK_SIZE: i64 = 60000;

/// The config file SRS reads without `-c` (`SRS_CONF_DEFAULT_COFNIG_FILE`).
pub const DEFAULT_CONFIG_FILE: &str = "conf/srs.conf";

/// Reads one value as SRS's getters do: a non-empty variable, else the directive.
struct Reader<'a> {
    env: EnvLookup<'a>,
}

impl Reader<'_> {
    /// `srs_getenv(key)` when non-empty.
    fn env(&self, key: &str) -> Option<String> {
        (self.env)(&env_name(key)).filter(|v| !v.is_empty())
    }

    fn string(&self, key: &str, block: Option<&Directive>, name: &str, default: &str) -> String {
        self.env(key)
            .or_else(|| block.and_then(|b| b.value(name)).map(str::to_owned))
            .unwrap_or_else(|| default.to_owned())
    }

    /// `SRS_OVERWRITE_BY_ENV_BOOL` with a `SRS_CONF_PREFER_FALSE` getter (default off).
    fn switch_off_by_default(&self, key: &str, block: Option<&Directive>, name: &str) -> bool {
        match self.env(key) {
            Some(value) => prefer_false(&value),
            None => block.and_then(|b| b.value(name)).is_some_and(prefer_false),
        }
    }

    /// `SRS_OVERWRITE_BY_ENV_BOOL2` with a `SRS_CONF_PREFER_TRUE` getter (default on).
    fn switch_on_by_default(&self, key: &str, block: Option<&Directive>, name: &str) -> bool {
        match self.env(key) {
            Some(value) => prefer_true(&value),
            None => block.and_then(|b| b.value(name)).is_none_or(prefer_true),
        }
    }
}

impl Config {
    /// Parses `text` and applies the environment, as SRS does on start (`-c file`).
    pub fn from_text(
        text: &str,
        read_file: &mut dyn FnMut(&str) -> Result<String, ConfError>,
        env: EnvLookup<'_>,
    ) -> Result<Self, ConfError> {
        Self::from_directives(&parse(text, read_file)?, env)
    }

    /// The configuration of parsed directives under `env`.
    pub fn from_directives(root: &[Directive], env: EnvLookup<'_>) -> Result<Self, ConfError> {
        // `check_normal_config` (l. 2330): an empty file is refused.
        if root.is_empty() {
            return Err(invalid("conf is empty"));
        }
        let root = Directive {
            children: root.to_vec(),
            ..Directive::default()
        };
        let read = Reader { env };
        check_root(&root, &read)?;

        // get_listens (l. 3058): SRS_LISTEN is split on single spaces.
        let listens: Vec<String> = match read.env("srs.listen") {
            Some(value) => value.split(' ').map(str::to_owned).collect(),
            None => root
                .get("listen")
                .map(|d| d.args.clone())
                .unwrap_or_default(),
        };
        if listens.is_empty() {
            return Err(invalid("listen requires params"));
        }
        let listens = listens
            .iter()
            .map(|raw| Endpoint::parse("listen", raw))
            .collect::<Result<Vec<_>, _>>()?;

        // get_max_connections (l. 3045), SRS_MAX_CONNECTIONS.
        let max_connections = read
            .env("srs.max_connections")
            .or_else(|| root.value("max_connections").map(str::to_owned))
            .map(|v| atoi(&v))
            .unwrap_or(1000);
        let max_connections = u32::try_from(max_connections)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| invalid(format!("max_connections={max_connections} is invalid")))?;

        // get_pid_file (l. 3079), SRS_PID; get_work_dir (l. 3122), SRS_WORK_DIR.
        let pid_file = read.string("srs.pid", Some(&root), "pid", "./objs/srs.pid");
        let work_dir = read.string("srs.work_dir", Some(&root), "work_dir", "./");
        // get_server_id (l. 3008): SRS_SERVER_ID, else `server_id`.
        let server_id = read
            .env("srs.server_id")
            .or_else(|| root.value("server_id").map(str::to_owned));

        // get_http_api_enabled (l. 7661), SRS_HTTP_API_ENABLED; get_http_api_listen
        // (l. 7679), SRS_HTTP_API_LISTEN, default 1985.
        let api_block = root.get("http_api");
        let http_api = if read.switch_off_by_default("srs.http_api.enabled", api_block, "enabled") {
            let raw = read.string("srs.http_api.listen", api_block, "listen", "1985");
            Some(Endpoint::parse("http_api.listen", &raw)?)
        } else {
            None
        };
        // get_http_stream_enabled (l. 8301), SRS_HTTP_SERVER_ENABLED; listen (l. 8319),
        // SRS_HTTP_SERVER_LISTEN, default 8080; dir (l. 8338), SRS_HTTP_SERVER_DIR.
        let server_block = root.get("http_server");
        let http_server =
            if read.switch_off_by_default("srs.http_server.enabled", server_block, "enabled") {
                let raw = read.string("srs.http_server.listen", server_block, "listen", "8080");
                Some(HttpServer {
                    listen: Endpoint::parse("http_server.listen", &raw)?,
                    dir: read.string(
                        "srs.http_server.dir",
                        server_block,
                        "dir",
                        "./objs/nginx/html",
                    ),
                })
            } else {
                None
            };

        let heartbeat = heartbeat(&root, &read)?;

        let vhost = root
            .children
            .iter()
            .find(|d| d.name == "vhost" && d.arg0() == DEFAULT_VHOST);
        // get_chunk_size (l. 5173) and get_global_chunk_size (l. 5557), SRS_VHOST_CHUNK_SIZE.
        let chunk_size = read
            .env("srs.vhost.chunk_size")
            .or_else(|| vhost.and_then(|v| v.value("chunk_size")).map(str::to_owned))
            .or_else(|| root.value("chunk_size").map(str::to_owned))
            .map(|v| atoi(&v))
            .unwrap_or(DEFAULT_CHUNK_SIZE);
        // SRS_CONSTS_RTMP_MIN_CHUNK_SIZE and _MAX_CHUNK_SIZE, checked by SRS as well.
        if !(128..=65536).contains(&chunk_size) {
            return Err(invalid(format!(
                "chunk_size={chunk_size} must be in [128, 65536]"
            )));
        }

        let hls = hls(vhost, &read)?;
        let http_remux = http_remux(vhost, &read)?;
        let edge_origins = edge_origins(vhost)?;

        Ok(Self {
            listens,
            max_connections,
            chunk_size: chunk_size as u32,
            pid_file,
            server_id,
            work_dir,
            http_api,
            http_server,
            heartbeat,
            hls,
            http_remux,
            edge_origins,
        })
    }
}

/// The heartbeat getters (l. 8716-8830).
fn heartbeat(root: &Directive, read: &Reader<'_>) -> Result<Heartbeat, ConfError> {
    let block = root.get("heartbeat");
    // get_heartbeat_interval (l. 8735): SRS_HEARTBEAT_INTERVAL and the file both through
    // atoi, default 10 s; check_normal_config (l. 2475) refuses <= 0 even when disabled.
    let interval = read
        .env("srs.heartbeat.interval")
        .or_else(|| block.and_then(|b| b.value("interval")).map(str::to_owned))
        .map(|v| atoi(&v))
        .unwrap_or(10);
    let interval = u64::try_from(interval)
        .ok()
        .filter(|&s| s > 0)
        .ok_or_else(|| {
            // SRS prints the microseconds.
            invalid(format!(
                "invalid heartbeat.interval={}",
                interval.saturating_mul(1_000_000)
            ))
        })?;
    let heartbeat = Heartbeat {
        enabled: read.switch_off_by_default("srs.heartbeat.enabled", block, "enabled"),
        interval: Duration::from_secs(interval),
        url: read.string(
            "srs.heartbeat.url",
            block,
            "url",
            "http://127.0.0.1:8085/api/v1/servers",
        ),
        device_id: read.string("srs.heartbeat.device_id", block, "device_id", ""),
        summaries: read.switch_off_by_default("srs.heartbeat.summaries", block, "summaries"),
        ports: read.switch_off_by_default("srs.heartbeat.ports", block, "ports"),
    };
    if heartbeat.enabled && !heartbeat.url.starts_with("http://") {
        // SRS also posts over https; the heartbeat client used here speaks plain HTTP.
        return Err(unsupported(format!(
            "heartbeat.url {} (only http:// URLs)",
            heartbeat.url
        )));
    }
    Ok(heartbeat)
}

/// The HLS getters (l. 6905-7242).
fn hls(vhost: Option<&Directive>, read: &Reader<'_>) -> Result<Hls, ConfError> {
    let block = vhost.and_then(|v| v.get("hls"));
    // get_hls_fragment (l. 7034) and get_hls_window (l. 7091): seconds through atof,
    // SRS_VHOST_HLS_HLS_FRAGMENT and SRS_VHOST_HLS_HLS_WINDOW.
    let seconds = |key: &str, name: &str, default: f64| -> Result<Duration, ConfError> {
        let value = read
            .env(key)
            .or_else(|| block.and_then(|b| b.value(name)).map(str::to_owned))
            .map(|v| atof(&v))
            .unwrap_or(default);
        if !(value.is_finite() && value > 0.0) {
            return Err(unsupported(format!("hls.{name}={value} (must be > 0)")));
        }
        Ok(Duration::from_secs_f64(value))
    };
    let hls = Hls {
        // get_hls_enabled (l. 6905/6919), SRS_VHOST_HLS_ENABLED.
        enabled: read.switch_off_by_default("srs.vhost.hls.enabled", block, "enabled"),
        fragment: seconds("srs.vhost.hls.hls_fragment", "hls_fragment", 10.0)?,
        window: seconds("srs.vhost.hls.hls_window", "hls_window", 60.0)?,
        // get_hls_path (l. 6958), SRS_VHOST_HLS_HLS_PATH.
        path: read.string(
            "srs.vhost.hls.hls_path",
            block,
            "hls_path",
            "./objs/nginx/html",
        ),
        // get_hls_ctx_enabled (l. 7206) and get_hls_ts_ctx_enabled (l. 7225), default on.
        ctx: read.switch_on_by_default("srs.vhost.hls.hls_ctx", block, "hls_ctx"),
        ts_ctx: read.switch_on_by_default("srs.vhost.hls.hls_ts_ctx", block, "hls_ts_ctx"),
    };
    if !hls.enabled {
        return Ok(hls);
    }
    // The file names SRS writes by default, which nginx-rtmp writes too. Other names would
    // change the URLs players use.
    // get_hls_m3u8_file (l. 6977), get_hls_ts_file (l. 6996), get_hls_entry_prefix (l. 6939).
    for (key, name, default) in [
        (
            "srs.vhost.hls.hls_m3u8_file",
            "hls_m3u8_file",
            "[app]/[stream].m3u8",
        ),
        (
            "srs.vhost.hls.hls_ts_file",
            "hls_ts_file",
            "[app]/[stream]-[seq].ts",
        ),
        ("srs.vhost.hls.hls_entry_prefix", "hls_entry_prefix", ""),
    ] {
        let value = read.string(key, block, name, default);
        if value != default {
            return Err(unsupported(format!(
                "hls.{name} {value} (only the default {default:?})"
            )));
        }
    }
    // get_hls_keys (l. 7301), SRS_VHOST_HLS_HLS_KEYS: encrypted segments.
    if read.switch_off_by_default("srs.vhost.hls.hls_keys", block, "hls_keys") {
        return Err(unsupported("hls.hls_keys on (encrypted HLS)"));
    }
    Ok(hls)
}

/// The HTTP remux getters (l. 8534-8712); the mount when enabled.
fn http_remux(vhost: Option<&Directive>, read: &Reader<'_>) -> Result<Option<String>, ConfError> {
    let block = vhost.and_then(|v| v.get("http_remux"));
    // get_vhost_http_remux_enabled (l. 8534/8548): PREFER_TRUE once `enabled` is written,
    // off when absent; SRS_VHOST_HTTP_REMUX_ENABLED through PREFER_FALSE.
    let enabled = match read.env("srs.vhost.http_remux.enabled") {
        Some(value) => prefer_false(&value),
        None => block
            .and_then(|b| b.value("enabled"))
            .is_some_and(prefer_true),
    };
    if !enabled {
        return Ok(None);
    }
    // get_vhost_http_remux_mount (l. 8687), SRS_VHOST_HTTP_REMUX_MOUNT. SRS mounts
    // [vhost]/[app]/[stream].flv at /app/stream.flv for the default vhost.
    let mount = read.string(
        "srs.vhost.http_remux.mount",
        block,
        "mount",
        "[vhost]/[app]/[stream].flv",
    );
    let normalized = mount.replacen("[vhost]/", "/", 1);
    if normalized != "/[app]/[stream].flv" {
        return Err(unsupported(format!(
            "http_remux.mount {mount} (only [vhost]/[app]/[stream].flv, HTTP-FLV)"
        )));
    }
    Ok(Some(mount))
}

/// `cluster` (get_vhost_is_edge l. 5784, get_vhost_edge_origin l. 5806): the origins of an
/// edge, `None` for an origin. SRS has no variable for these.
fn edge_origins(vhost: Option<&Directive>) -> Result<Option<Vec<String>>, ConfError> {
    let Some(cluster) = vhost.and_then(|v| v.get("cluster")) else {
        return Ok(None);
    };
    if cluster.value("mode") != Some("remote") {
        return Ok(None);
    }
    let origins = cluster
        .get("origin")
        .map(|d| d.args.clone())
        .unwrap_or_default();
    if origins.is_empty() {
        return Err(invalid("vhost.cluster.origin is empty in remote mode"));
    }
    for origin in &origins {
        // srs_parse_hostport: HOST or HOST:PORT, 1935 by default.
        let port = origin.rsplit_once(':').map(|(_, p)| p);
        if origin.is_empty() || port.is_some_and(|p| !(1..=65535).contains(&atoi(p))) {
            return Err(invalid(format!("vhost.cluster.origin {origin} is invalid")));
        }
    }
    Ok(Some(origins))
}

/// `enabled` of a feature block that SRS turns on only with `enabled on`, or its variable.
fn feature_on(read: &Reader<'_>, key: Option<&str>, block: &Directive) -> bool {
    match key.and_then(|k| read.env(k)) {
        Some(value) => prefer_false(&value),
        None => block.value("enabled").is_some_and(prefer_false),
    }
}

/// Every directive SRS knows is either honoured, harmless or refused here; the names SRS
/// itself refuses are refused with SRS's words (check_normal_config, l. 2337-2790).
fn check_root(root: &Directive, read: &Reader<'_>) -> Result<(), ConfError> {
    // SRS_ENV_ONLY (parse_options, l. 1937): configuration from variables alone.
    if (read.env)("SRS_ENV_ONLY").is_some() {
        return Err(unsupported("SRS_ENV_ONLY"));
    }
    for directive in &root.children {
        let name = directive.name.as_str();
        match name {
            // Honoured.
            "listen" | "max_connections" | "chunk_size" | "pid" | "server_id" | "work_dir"
            | "http_api" | "http_server" | "heartbeat" | "vhost" => {}
            // Logging, process and tuning knobs: the stand-in logs to stderr in the
            // foreground whatever they say, which changes nothing a client sees.
            "ff_log_dir"
            | "ff_log_level"
            | "srs_log_tank"
            | "srs_log_level"
            | "srs_log_level_v2"
            | "srs_log_file"
            | "daemon"
            | "pithy_print_ms"
            | "utc_time"
            | "asprocess"
            | "grace_final_wait"
            | "force_grace_quit"
            | "grace_start_wait"
            | "empty_ip_ok"
            | "disable_daemon_for_docker"
            | "inotify_auto_reload"
            | "auto_reload_for_docker"
            | "tcmalloc_release_rate"
            | "query_latest_version"
            | "first_wait_for_qlv"
            | "threads"
            | "circuit_breaker"
            | "is_full"
            | "in_docker" => {}
            "stats" => {
                for child in &directive.children {
                    match child.name.as_str() {
                        // SRS picks the heartbeat's address by this index; the stand-in takes
                        // the first, SRS's default.
                        "network" if atoi(child.arg0()) != 0 => {
                            return Err(unsupported(format!(
                                "stats.network {} (only 0)",
                                child.arg0()
                            )));
                        }
                        "enabled" | "network" | "disk" => {}
                        other => return Err(invalid(format!("illegal stats.{other}"))),
                    }
                }
            }
            "rtc_server" | "srt_server" | "exporter" | "tencentcloud_cls" | "tencentcloud_apm" => {
                let key = format!("srs.{name}.enabled");
                if feature_on(read, Some(&key), directive) {
                    return Err(unsupported(format!("{name} enabled")));
                }
            }
            "stream_caster" => {
                if feature_on(read, None, directive) {
                    return Err(unsupported("stream_caster enabled"));
                }
            }
            other => return Err(invalid(format!("illegal directive {other}"))),
        }
    }
    // The same features switched on by variable alone (they apply to the default vhost
    // even when the file has no vhost block).
    for key in [
        "srs.vhost.dvr.enabled",
        "srs.vhost.dash.enabled",
        "srs.vhost.hds.enabled",
        "srs.vhost.http_hooks.enabled",
        "srs.vhost.http_static.enabled",
        "srs.rtc_server.enabled",
        "srs.srt_server.enabled",
        "srs.exporter.enabled",
        "srs.tencentcloud_cls.enabled",
        "srs.tencentcloud_apm.enabled",
    ] {
        if read.env(key).as_deref() == Some("on") {
            return Err(unsupported(format!("{} on", env_name(key))));
        }
    }

    check_http(root, read)?;
    check_heartbeat_names(root)?;
    let mut default_vhost = false;
    for vhost in root.children.iter().filter(|d| d.name == "vhost") {
        if vhost.arg0() != DEFAULT_VHOST {
            return Err(unsupported(format!(
                "vhost {} (only {DEFAULT_VHOST})",
                vhost.arg0()
            )));
        }
        if default_vhost {
            // SRS would use the first; a second is almost surely a mistake here.
            return Err(unsupported(format!("a second vhost {DEFAULT_VHOST}")));
        }
        default_vhost = true;
        check_vhost(vhost, read)?;
    }
    Ok(())
}

fn check_http(root: &Directive, read: &Reader<'_>) -> Result<(), ConfError> {
    if let Some(api) = root.get("http_api") {
        for child in &api.children {
            match child.name.as_str() {
                "enabled" | "listen" | "crossdomain" => {}
                "raw_api" | "auth" | "https" => {
                    let key = format!("srs.http_api.{}.enabled", child.name);
                    if feature_on(read, Some(&key), child) {
                        return Err(unsupported(format!("http_api.{} enabled", child.name)));
                    }
                }
                other => return Err(invalid(format!("illegal http_api.{other}"))),
            }
        }
    }
    if let Some(server) = root.get("http_server") {
        for child in &server.children {
            match child.name.as_str() {
                "enabled" | "listen" | "dir" | "crossdomain" => {}
                "https" => {
                    if feature_on(read, Some("srs.http_server.https.enabled"), child) {
                        return Err(unsupported("http_server.https enabled"));
                    }
                }
                // SRS's message says http_stream, the directive's old name.
                other => return Err(invalid(format!("illegal http_stream.{other}"))),
            }
        }
    }
    for key in [
        "srs.http_api.raw_api.enabled",
        "srs.http_api.auth.enabled",
        "srs.http_api.https.enabled",
        "srs.http_server.https.enabled",
    ] {
        if read.env(key).as_deref() == Some("on") {
            return Err(unsupported(format!("{} on", env_name(key))));
        }
    }
    Ok(())
}

fn check_heartbeat_names(root: &Directive) -> Result<(), ConfError> {
    if let Some(heartbeat) = root.get("heartbeat") {
        for child in &heartbeat.children {
            match child.name.as_str() {
                "enabled" | "interval" | "url" | "device_id" | "summaries" | "ports" => {}
                other => return Err(invalid(format!("illegal heartbeat.{other}"))),
            }
        }
    }
    Ok(())
}

/// The sub-directives of each vhost section SRS accepts (check_normal_config l. 2585-2750).
const HLS_NAMES: &[&str] = &[
    "enabled",
    "hls_entry_prefix",
    "hls_path",
    "hls_fragment",
    "hls_window",
    "hls_on_error",
    "hls_storage",
    "hls_mount",
    "hls_td_ratio",
    "hls_aof_ratio",
    "hls_acodec",
    "hls_vcodec",
    "hls_m3u8_file",
    "hls_ts_file",
    "hls_ts_floor",
    "hls_cleanup",
    "hls_nb_notify",
    "hls_wait_keyframe",
    "hls_dispose",
    "hls_keys",
    "hls_fragments_per_key",
    "hls_key_file",
    "hls_key_file_path",
    "hls_key_url",
    "hls_dts_directly",
    "hls_ctx",
    "hls_ts_ctx",
];
const HTTP_REMUX_NAMES: &[&str] = &[
    "enabled",
    "mount",
    "fast_cache",
    "drop_if_not_match",
    "has_audio",
    "has_video",
    "guess_has_av",
];
const CLUSTER_NAMES: &[&str] = &[
    "mode",
    "origin",
    "token_traverse",
    "vhost",
    "debug_srs_upnode",
    "coworkers",
    "origin_cluster",
    "protocol",
    "follow_client",
];

fn check_names(section: &Directive, allowed: &[&str]) -> Result<(), ConfError> {
    for child in &section.children {
        if !allowed.contains(&child.name.as_str()) {
            return Err(invalid(format!(
                "illegal vhost.{}.{} of {DEFAULT_VHOST}",
                section.name, child.name
            )));
        }
    }
    Ok(())
}

fn check_vhost(vhost: &Directive, read: &Reader<'_>) -> Result<(), ConfError> {
    // get_vhost_enabled (l. 4852): a vhost written `enabled off` refuses every client.
    if vhost.value("enabled").is_some_and(|v| !prefer_true(v)) {
        return Err(unsupported(format!("vhost {DEFAULT_VHOST} enabled off")));
    }
    for section in &vhost.children {
        let name = section.name.as_str();
        match name {
            "enabled" | "chunk_size" => {}
            "hls" => check_names(section, HLS_NAMES)?,
            "http_remux" => check_names(section, HTTP_REMUX_NAMES)?,
            "cluster" => {
                check_names(section, CLUSTER_NAMES)?;
                check_cluster(section)?;
            }
            // Latency and buffering knobs of SRS's own RTMP stack: nginx-rtmp has its own.
            "min_latency" | "tcp_nodelay" | "in_ack_size" | "out_ack_size" | "play" | "publish" => {
            }
            // Served by rtc_server and srt_server, refused above when those are enabled.
            "rtc" | "srt" => {}
            // Features the stand-in does not have: refused when switched on.
            "dvr" | "ingest" | "forward" | "transcode" | "exec" | "http_hooks" | "security"
            | "refer" | "dash" | "hds" | "http_static" | "bandcheck" => {
                let key = match name {
                    "dvr" | "dash" | "hds" | "http_hooks" | "http_static" => {
                        Some(format!("srs.vhost.{name}.enabled"))
                    }
                    _ => None,
                };
                if feature_on(read, key.as_deref(), section) {
                    return Err(unsupported(format!("vhost.{name} enabled")));
                }
            }
            other => {
                return Err(invalid(format!("illegal vhost.{other}")));
            }
        }
    }
    Ok(())
}

/// Edge options that change how an SRS edge talks to its origin, beyond pulling and pushing
/// RTMP (srs_app_edge.cpp).
fn check_cluster(cluster: &Directive) -> Result<(), ConfError> {
    let mode = cluster.value("mode").unwrap_or("local");
    if mode != "local" && mode != "remote" {
        return Err(invalid(format!("vhost.cluster.mode {mode} is invalid")));
    }
    let on = |name: &str| cluster.value(name).is_some_and(prefer_false);
    for name in ["token_traverse", "origin_cluster", "follow_client"] {
        if on(name) {
            return Err(unsupported(format!("vhost.cluster.{name} on")));
        }
    }
    if cluster.get("coworkers").is_some_and(|d| !d.args.is_empty()) {
        return Err(unsupported("vhost.cluster.coworkers"));
    }
    if let Some(protocol) = cluster.value("protocol")
        && protocol != "rtmp"
    {
        return Err(unsupported(format!(
            "vhost.cluster.protocol {protocol} (only rtmp)"
        )));
    }
    if let Some(vhost) = cluster.value("vhost")
        && vhost != "[vhost]"
    {
        return Err(unsupported(format!("vhost.cluster.vhost {vhost}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// The srs.conf the operator generates for examples/minimal.yaml.
    const MINIMAL: &str = r#"# srs.conf of OriginCluster default/live, generated by originstack-operator: edits here are overwritten.

listen              1935;
max_connections     1000;
daemon              off;
srs_log_tank        console;

http_api {
    enabled         on;
    listen          1985;
}
http_server {
    enabled         on;
    listen          8080;
    dir             ./objs/nginx/html;
}
heartbeat {
    enabled         on;
    interval        9;
    url             http://live-proxy-system.default.svc:12025/api/v1/srs/register;
    device_id       "live-origin";
    ports           on;
    summaries       on;
}
vhost __defaultVhost__ {
    http_remux {
        enabled         on;
        mount           [vhost]/[app]/[stream].flv;
    }
    hls {
        enabled         on;
        hls_fragment    2;
        hls_window      10;
    }
}
"#;

    fn no_files(name: &str) -> Result<String, ConfError> {
        Err(ConfError::Io(format!("no file {name}")))
    }

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_text(text, &mut no_files, &|name| env.get(name).cloned())
    }

    #[test]
    fn the_operators_config_reads_as_srs_reads_it() {
        let config = load(MINIMAL, &[]).unwrap();
        assert_eq!(config.listens, [Endpoint::parse("listen", "1935").unwrap()]);
        assert_eq!(config.listens[0].ip, None);
        assert_eq!(config.max_connections, 1000);
        assert_eq!(config.chunk_size, 60000);
        assert_eq!(config.http_api.as_ref().unwrap().port, 1985);
        let server = config.http_server.as_ref().unwrap();
        assert_eq!(
            (server.listen.port, server.dir.as_str()),
            (8080, "./objs/nginx/html")
        );
        let heartbeat = &config.heartbeat;
        assert!(heartbeat.enabled && heartbeat.ports && heartbeat.summaries);
        assert_eq!(heartbeat.interval, Duration::from_secs(9));
        assert_eq!(heartbeat.device_id, "live-origin", "quotes are removed");
        let hls = &config.hls;
        assert!(hls.enabled);
        assert_eq!(hls.fragment, Duration::from_secs(2));
        assert_eq!(hls.window, Duration::from_secs(10));
        assert_eq!(hls.path, "./objs/nginx/html");
        assert!(hls.ctx && hls.ts_ctx, "on by default in SRS 7");
        assert_eq!(
            config.http_remux.as_deref(),
            Some("[vhost]/[app]/[stream].flv")
        );
        assert_eq!(config.edge_origins, None);
        assert_eq!(config.server_id, None);
    }

    #[test]
    fn non_empty_variables_win_over_the_file() {
        let config = load(
            MINIMAL,
            &[
                ("SRS_LISTEN", "19350 127.0.0.1:19351"),
                ("SRS_HTTP_API_LISTEN", "127.0.0.1:19850"),
                ("SRS_HTTP_SERVER_LISTEN", "18080"),
                (
                    "SRS_HEARTBEAT_URL",
                    "http://proxy:12025/api/v1/srs/register/t0k",
                ),
                ("SRS_HEARTBEAT_INTERVAL", "3.9"),
                ("SRS_HEARTBEAT_DEVICE_ID", "pod-1"),
                ("SRS_HEARTBEAT_SUMMARIES", "off"),
                ("SRS_SERVER_ID", "pod-1"),
                ("SRS_VHOST_HLS_HLS_FRAGMENT", "0.5"),
                ("SRS_VHOST_HLS_HLS_CTX", "off"),
                // Empty: the file counts.
                ("SRS_HEARTBEAT_PORTS", ""),
                ("SRS_MAX_CONNECTIONS", "50"),
            ],
        )
        .unwrap();
        let listens: Vec<_> = config.listens.iter().map(|l| l.raw.as_str()).collect();
        assert_eq!(listens, ["19350", "127.0.0.1:19351"]);
        assert_eq!(config.listens[1].ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(config.http_api.unwrap().raw, "127.0.0.1:19850");
        assert_eq!(config.http_server.unwrap().listen.port, 18080);
        assert_eq!(
            config.heartbeat.url,
            "http://proxy:12025/api/v1/srs/register/t0k"
        );
        assert_eq!(config.heartbeat.interval, Duration::from_secs(3), "atoi");
        assert_eq!(config.heartbeat.device_id, "pod-1");
        assert!(!config.heartbeat.summaries && config.heartbeat.ports);
        assert_eq!(config.server_id.as_deref(), Some("pod-1"));
        let hls = config.hls;
        assert_eq!(hls.fragment, Duration::from_millis(500), "atof");
        assert!(!hls.ctx && hls.ts_ctx);
        assert_eq!(config.max_connections, 50);
    }

    #[test]
    fn switches_follow_srs_prefer_rules() {
        // SRS_CONF_PREFER_FALSE: only "on" enables.
        let off = load(MINIMAL, &[("SRS_VHOST_HLS_ENABLED", "yes")]).unwrap();
        assert!(!off.hls.enabled);
        let off = load(MINIMAL, &[("SRS_HTTP_API_ENABLED", "true")]).unwrap();
        assert!(off.http_api.is_none());
        // http_remux written `enabled` is PREFER_TRUE; its variable is PREFER_FALSE.
        let text = MINIMAL.replace(
            "enabled         on;\n        mount",
            "enabled yes;\n        mount",
        );
        assert!(load(&text, &[]).unwrap().http_remux.is_some());
        assert!(
            load(&text, &[("SRS_VHOST_HTTP_REMUX_ENABLED", "yes")])
                .unwrap()
                .http_remux
                .is_none()
        );
        // Nothing written: SRS's defaults.
        let bare = load("listen 1935;", &[]).unwrap();
        assert!(bare.http_api.is_none() && bare.http_server.is_none() && !bare.hls.enabled);
        assert_eq!(bare.hls.window, Duration::from_secs(60));
        assert!(bare.hls.ctx);
        assert!(!bare.heartbeat.enabled);
        assert_eq!(bare.heartbeat.interval, Duration::from_secs(10));
        assert_eq!(bare.heartbeat.url, "http://127.0.0.1:8085/api/v1/servers");
        let on = load("listen 1935;", &[("SRS_HTTP_API_ENABLED", "on")]).unwrap();
        assert_eq!(on.http_api.unwrap().raw, "1985");
    }

    #[test]
    fn the_first_directive_of_a_name_counts() {
        let config = load(&format!("{MINIMAL}\nmax_connections 3000;\n"), &[]).unwrap();
        assert_eq!(config.max_connections, 1000);
    }

    #[test]
    fn syntax_follows_srs_tokenizer() {
        let root = parse(
            "a 'x y' \"z;w\" v#not-a-comment; # comment\nb { c 1; }\n",
            &mut no_files,
        )
        .unwrap();
        assert_eq!(root[0].args, ["x y", "z;w", "v#not-a-comment"]);
        assert_eq!(root[1].children[0].args, ["1"]);
        assert_eq!(root[1].line, 2);
        let err = |text: &str| parse(text, &mut no_files).unwrap_err().to_string();
        assert_eq!(
            err("listen 1935"),
            "line 1: unexpected end of file, expecting ; or \"}\""
        );
        assert_eq!(
            err("listen\n1935;"),
            "line 1: unexpected end of line to parse token listen"
        );
        assert_eq!(
            err("a {\n b 1;\n"),
            "line 3: unexpected end of file, expecting \"}\""
        );
        assert_eq!(err("}"), "line 1: unexpected \"}\"");
        assert_eq!(err(";"), "line 1: unexpected ';'");
        assert_eq!(err("a \"b\"c;"), "line 1: unexpected 'c'");
    }

    #[test]
    fn include_reads_other_files() {
        let mut files = |name: &str| match name {
            "more.conf" => Ok("http_api { enabled on; }".to_owned()),
            other => Err(ConfError::Io(format!("no file {other}"))),
        };
        let config =
            Config::from_text("listen 1935; include more.conf;", &mut files, &|_| None).unwrap();
        assert!(config.http_api.is_some());
        let loop_ = |name: &str| -> Result<String, ConfError> { Ok(format!("include {name};")) };
        let err = Config::from_text("include a;", &mut { loop_ }, &|_| None).unwrap_err();
        assert!(err.to_string().contains("nested"), "{err}");
    }

    #[test]
    fn what_srs_refuses_is_refused_with_its_words() {
        let err = |text: &str, env: &[(&str, &str)]| load(text, env).unwrap_err().to_string();
        assert_eq!(err("", &[]), "conf is empty");
        assert_eq!(err("daemon off;", &[]), "listen requires params");
        assert_eq!(err("listen 1935; bogus 1;", &[]), "illegal directive bogus");
        assert_eq!(err("listen 0;", &[]), "listen.port=0 is invalid");
        assert_eq!(err("listen nope:1935;", &[]), "listen.ip=nope is invalid");
        assert_eq!(
            err("listen 1935; heartbeat { interval 0.5; }", &[]),
            "invalid heartbeat.interval=0"
        );
        assert_eq!(
            err("listen 1935;", &[("SRS_HEARTBEAT_INTERVAL", "-1")]),
            "invalid heartbeat.interval=-1000000"
        );
        assert_eq!(
            err("listen 1935; heartbeat { token x; }", &[]),
            "illegal heartbeat.token"
        );
        assert_eq!(
            err(
                "listen 1935; vhost __defaultVhost__ { hls { fragment 2; } }",
                &[]
            ),
            "illegal vhost.hls.fragment of __defaultVhost__"
        );
        assert_eq!(
            err("listen 1935; http_server { root x; }", &[]),
            "illegal http_stream.root"
        );
    }

    #[test]
    fn what_the_standin_cannot_honour_is_refused_by_name() {
        let err = |text: &str, env: &[(&str, &str)]| load(text, env).unwrap_err().to_string();
        let vhost = |body: &str| format!("listen 1935; vhost __defaultVhost__ {{ {body} }}");
        for (text, env, names) in [
            (vhost("dvr { enabled on; }"), vec![], "vhost.dvr"),
            (
                vhost("http_hooks { enabled on; }"),
                vec![],
                "vhost.http_hooks",
            ),
            (
                "listen 1935;".into(),
                vec![("SRS_VHOST_DVR_ENABLED", "on")],
                "SRS_VHOST_DVR_ENABLED",
            ),
            (
                "listen 1935; srt_server { enabled on; }".into(),
                vec![],
                "srt_server",
            ),
            (
                "listen 1935;".into(),
                vec![("SRS_RTC_SERVER_ENABLED", "on")],
                "SRS_RTC_SERVER_ENABLED",
            ),
            (
                "listen 1935; vhost other.com { }".into(),
                vec![],
                "vhost other.com",
            ),
            (
                vhost("http_remux { enabled on; mount [vhost]/[app]/[stream].ts; }"),
                vec![],
                "http_remux.mount",
            ),
            (
                vhost("hls { enabled on; hls_ts_file [stream]-[seq].ts; }"),
                vec![],
                "hls.hls_ts_file",
            ),
            (
                vhost("cluster { mode remote; origin a; token_traverse on; }"),
                vec![],
                "token_traverse",
            ),
            (
                vhost("cluster { mode remote; origin a; protocol flv; }"),
                vec![],
                "protocol",
            ),
            (
                "listen 1935; stats { network 1; }".into(),
                vec![],
                "stats.network",
            ),
            (
                "listen 1935; heartbeat { enabled on; url https://x/y; }".into(),
                vec![],
                "heartbeat.url",
            ),
        ] {
            let message = err(&text, &env);
            assert!(
                message.starts_with("not supported by srs-standin") && message.contains(names),
                "{text} {env:?}: {message}"
            );
        }
        // Switched off, the same sections are harmless.
        load(
            &vhost("dvr { enabled off; } http_hooks { on_publish http://x; }"),
            &[],
        )
        .unwrap();
        load(
            "listen 1935; srt_server { enabled off; listen 10080; }",
            &[],
        )
        .unwrap();
    }

    #[test]
    fn edge_mode_lists_its_origins() {
        let text = "listen 1935; vhost __defaultVhost__ { cluster { mode remote; origin 10.0.0.1:19350 origin-b; } }";
        let config = load(text, &[]).unwrap();
        assert_eq!(
            config.edge_origins.unwrap(),
            ["10.0.0.1:19350".to_owned(), "origin-b".to_owned()]
        );
        let local = "listen 1935; vhost __defaultVhost__ { cluster { mode local; } }";
        assert_eq!(load(local, &[]).unwrap().edge_origins, None);
        let empty = "listen 1935; vhost __defaultVhost__ { cluster { mode remote; } }";
        assert!(load(empty, &[]).is_err());
    }

    #[test]
    fn c_number_parsing() {
        assert_eq!(atoi(" 42abc"), 42);
        assert_eq!(atoi("-7"), -7);
        assert_eq!(atoi("x"), 0);
        assert_eq!(atof("2.5s"), 2.5);
        assert_eq!(atof(".5"), 0.5);
        assert_eq!(atof("1e1x"), 10.0);
        assert_eq!(atof("abc"), 0.0);
        assert_eq!(env_name("srs.vhost.hls.hls_ctx"), "SRS_VHOST_HLS_HLS_CTX");
        assert_eq!(env_name("$CANDIDATE"), "CANDIDATE");
    }
}
