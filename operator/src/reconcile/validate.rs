//! Validation: turns the spec and what was read into a [`Plan`] the build stage cannot get
//! wrong, or a [`ValidationError`] a user can act on.
//!
//! The schema's defaults and CEL rules already hold on anything the API server accepted; this
//! checks what the schema cannot: referenced Secrets, the extra SRS config, reserved variables.

use std::collections::BTreeSet;

use k8s_openapi::{
    api::core::v1::{EnvVar, Secret},
    apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::Resource;

use super::{
    digest::fingerprint,
    error::ValidationError,
    names::{MAX_NAME_LEN, Names},
    read::Observed,
};
use crate::crd::{ManagedRedis, MonitoringSpec, OriginCluster, RedisMode, SecretKeyRef};

/// Key of the token in the generated register-token Secret.
pub const GENERATED_TOKEN_KEY: &str = "token";

/// Key of the proxies' read token (system API listings) in the generated Secret.
pub const GENERATED_READ_TOKEN_KEY: &str = "api-token";

/// Variables the operator sets on the origin container.
pub const ORIGIN_RESERVED_ENV: &[&str] = &[
    "ORIGINSTACK_REGISTER_TOKEN",
    "ORIGINSTACK_POD_IP",
    "SRS_HEARTBEAT_URL",
    "SRS_HEARTBEAT_DEVICE_ID",
    "SRS_SERVER_ID",
    "SRS_DEVICE_IP",
    "CANDIDATE",
];

/// Variables the operator sets on the proxy container.
pub const PROXY_RESERVED_ENV: &[&str] = &[
    "PROXY_RTMP_SERVER",
    "PROXY_HTTP_SERVER",
    "PROXY_HTTP_API",
    "PROXY_WEBRTC_SERVER",
    "PROXY_SRT_SERVER",
    "PROXY_SYSTEM_API",
    "PROXY_K8S_DISCOVERY",
    "PROXY_K8S_ORIGIN_SERVICE",
    "PROXY_K8S_NAMESPACE",
    "PROXY_REGISTER_TOKEN",
    "PROXY_LOAD_BALANCER_TYPE",
    "PROXY_REDIS_URL",
    "PROXY_REDIS_HOST",
    "PROXY_REDIS_PORT",
    "PROXY_REDIS_PASSWORD",
    "PROXY_REDIS_DB",
    "PROXY_WEBRTC_CANDIDATE",
    "PROXY_VHOSTS",
];

/// Prefix of the SRS variables of the heartbeat, refused on edges: an edge that heartbeats would
/// be taken by the proxies for an origin and handed streams to own.
pub const EDGE_REFUSED_ENV_PREFIX: &str = "SRS_HEARTBEAT_";

/// Top-level srs.conf directives the operator generates; repeating them in `spec.origin.config`
/// would be silently ignored by SRS (it reads the first), so they are refused instead.
const GENERATED_DIRECTIVES: &[&str] = &[
    "listen",
    "daemon",
    "srs_log_tank",
    "http_api",
    "http_server",
    "rtc_server",
    "srt_server",
    "heartbeat",
];

/// A validated OriginCluster: everything the build stage needs, already resolved.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    pub cluster: &'a OriginCluster,
    pub name: String,
    pub namespace: String,
    pub owner: OwnerReference,
    pub token: RegisterToken,
    pub redis: RedisPlan,
    /// Top-level directive names of `spec.origin.config`: the build stage leaves out a default
    /// of its own the user sets there (SRS reads the first of a name, so the user's must be it).
    pub origin_config_directives: BTreeSet<String>,
    /// Vhosts `spec.origin.config` adds (`vhost NAME { }`): the proxies own their streams apart
    /// from the default vhost's.
    pub origin_vhosts: BTreeSet<String>,
    pub monitors: Monitors,
}

/// What `spec.monitoring` asks for and the API server allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Monitors {
    /// Monitoring absent or not enabled.
    Off,
    /// Enabled, but the API server serves no PodMonitors: none are built, and the status says
    /// why (the rest of the cluster is reconciled as usual).
    CrdMissing,
    /// Enabled and served: the PodMonitors are built.
    Build,
}

/// Where origins and proxies read the register token from.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterToken {
    pub secret: SecretKeyRef,
    /// Set when the operator owns the Secret: the value it must hold.
    pub generated: Option<String>,
    /// Hash of the value, so a token change rolls the pods (env from a Secret does not).
    pub fingerprint: String,
    /// The proxies' read token, kept beside the register token when the operator owns the
    /// Secret. With a user's register Secret there is none: the register token then guards the
    /// listings too, unless `spec.proxy.env` sets PROXY_API_TOKEN.
    pub read: Option<ReadToken>,
}

/// The generated read token of the proxies' system API listings.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadToken {
    pub secret: SecretKeyRef,
    pub value: String,
    pub fingerprint: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RedisPlan {
    /// Ownership in the single proxy's memory.
    Memory,
    Managed(ManagedRedis),
    /// A URL the proxy takes as is (no separate password).
    ExternalUrl(String),
    /// The URL split so the password can come from a Secret through its own variable.
    ExternalWithPassword {
        host: String,
        port: u16,
        db: i64,
        password: SecretKeyRef,
        fingerprint: String,
    },
}

pub fn validate<'a>(
    cluster: &'a OriginCluster,
    observed: &Observed,
) -> Result<Plan<'a>, ValidationError> {
    let name = cluster
        .metadata
        .name
        .clone()
        .ok_or(ValidationError::MissingMetadata("name"))?;
    let namespace = cluster
        .metadata
        .namespace
        .clone()
        .ok_or(ValidationError::MissingMetadata("namespace"))?;
    if cluster.meta().uid.is_none() {
        return Err(ValidationError::MissingMetadata("uid"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(ValidationError::NameTooLong {
            len: name.len(),
            name,
        });
    }
    let owner = cluster
        .controller_owner_ref(&())
        .ok_or(ValidationError::MissingMetadata("uid"))?;
    let spec = &cluster.spec;

    check_reserved_env("spec.origin.env", &spec.origin.env, ORIGIN_RESERVED_ENV)?;
    check_reserved_env("spec.proxy.env", &spec.proxy.env, PROXY_RESERVED_ENV)?;
    let OriginConfig {
        directives: origin_config_directives,
        vhosts: origin_vhosts,
    } = check_origin_config(&spec.origin.config)?;
    if let Some(edge) = &spec.edge {
        // The edges' only origin is the proxies' RTMP listener, which exists only when the
        // origins serve RTMP.
        if !spec.origin.protocols.rtmp {
            return Err(ValidationError::EdgeWithoutRtmp);
        }
        if let Some(var) = edge
            .env
            .iter()
            .find(|var| var.name.starts_with(EDGE_REFUSED_ENV_PREFIX))
        {
            return Err(ValidationError::EdgeHeartbeatEnv {
                name: var.name.clone(),
            });
        }
    }

    let exporter_on = MonitoringSpec::origin_exporter_on(spec.monitoring.as_ref());
    if exporter_on && origin_config_directives.contains("exporter") {
        return Err(ValidationError::ExporterTwice);
    }
    let monitors = match &spec.monitoring {
        Some(monitoring) if monitoring.enabled && observed.podmonitors_served => Monitors::Build,
        Some(monitoring) if monitoring.enabled => Monitors::CrdMissing,
        _ => Monitors::Off,
    };

    let token = register_token(cluster, &name, &namespace, observed)?;
    let redis = redis_plan(cluster, &namespace, observed)?;

    Ok(Plan {
        cluster,
        name,
        namespace,
        owner,
        token,
        redis,
        origin_config_directives,
        origin_vhosts,
        monitors,
    })
}

fn register_token(
    cluster: &OriginCluster,
    name: &str,
    namespace: &str,
    observed: &Observed,
) -> Result<RegisterToken, ValidationError> {
    match &cluster.spec.proxy.register_token_secret_ref {
        Some(reference) => {
            const FIELD: &str = "spec.proxy.registerTokenSecretRef";
            let value = secret_value(FIELD, reference, namespace, observed.token_secret.as_ref())?;
            if !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
            {
                return Err(ValidationError::TokenNotUrlSafe {
                    name: reference.name.clone(),
                });
            }
            Ok(RegisterToken {
                secret: reference.clone(),
                generated: None,
                fingerprint: fingerprint(&value),
                read: None,
            })
        }
        None => {
            // Keep the tokens already generated; only a missing or unusable one is replaced.
            let existing = |key: &str| {
                observed
                    .token_secret
                    .as_ref()
                    .and_then(|secret| secret_key(secret, key))
                    .filter(|value| !value.is_empty())
            };
            let value =
                existing(GENERATED_TOKEN_KEY).unwrap_or_else(|| observed.fresh_token.clone());
            let read = existing(GENERATED_READ_TOKEN_KEY)
                .unwrap_or_else(|| observed.fresh_read_token.clone());
            let secret_name = Names::new(name).token_secret();
            Ok(RegisterToken {
                secret: SecretKeyRef {
                    name: secret_name.clone(),
                    key: GENERATED_TOKEN_KEY.into(),
                },
                fingerprint: fingerprint(&value),
                generated: Some(value),
                read: Some(ReadToken {
                    secret: SecretKeyRef {
                        name: secret_name,
                        key: GENERATED_READ_TOKEN_KEY.into(),
                    },
                    fingerprint: fingerprint(&read),
                    value: read,
                }),
            })
        }
    }
}

fn redis_plan(
    cluster: &OriginCluster,
    namespace: &str,
    observed: &Observed,
) -> Result<RedisPlan, ValidationError> {
    let redis = &cluster.spec.redis;
    match redis.mode {
        RedisMode::None if cluster.spec.proxy.replicas > 1 => {
            Err(ValidationError::MemoryWithReplicas {
                replicas: cluster.spec.proxy.replicas,
            })
        }
        RedisMode::None => Ok(RedisPlan::Memory),
        RedisMode::Managed => Ok(RedisPlan::Managed(
            redis.managed.clone().unwrap_or_default(),
        )),
        RedisMode::External => {
            let external = redis
                .external
                .as_ref()
                .ok_or(ValidationError::ExternalRedisMissing)?;
            let url =
                RedisUrl::parse(&external.url).map_err(|problem| ValidationError::RedisUrl {
                    url: external.url.clone(),
                    problem,
                })?;
            let Some(reference) = &external.password_secret_ref else {
                return Ok(RedisPlan::ExternalUrl(external.url.clone()));
            };
            let redis_url_error = |problem: &str| ValidationError::RedisUrl {
                url: external.url.clone(),
                problem: problem.into(),
            };
            if url.tls {
                return Err(redis_url_error(
                    "passwordSecretRef works with redis:// only; for rediss:// put the password in the URL",
                ));
            }
            if url.has_credentials {
                return Err(redis_url_error(
                    "the URL carries credentials and passwordSecretRef is set; keep one",
                ));
            }
            const FIELD: &str = "spec.redis.external.passwordSecretRef";
            let value = secret_value(
                FIELD,
                reference,
                namespace,
                observed.redis_password_secret.as_ref(),
            )?;
            Ok(RedisPlan::ExternalWithPassword {
                host: url.host,
                port: url.port,
                db: url.db,
                password: reference.clone(),
                fingerprint: fingerprint(&value),
            })
        }
    }
}

fn secret_value(
    field: &'static str,
    reference: &SecretKeyRef,
    namespace: &str,
    secret: Option<&Secret>,
) -> Result<String, ValidationError> {
    let secret = secret.ok_or_else(|| ValidationError::SecretNotFound {
        field,
        name: reference.name.clone(),
        namespace: namespace.into(),
    })?;
    secret_key(secret, &reference.key)
        .filter(|value| !value.is_empty())
        .ok_or_else(|| ValidationError::SecretKeyMissing {
            field,
            name: reference.name.clone(),
            key: reference.key.clone(),
        })
}

/// A Secret key's value as text (`stringData` only appears on objects not yet stored).
fn secret_key(secret: &Secret, key: &str) -> Option<String> {
    if let Some(bytes) = secret.data.as_ref().and_then(|data| data.get(key)) {
        return String::from_utf8(bytes.0.clone()).ok();
    }
    secret
        .string_data
        .as_ref()
        .and_then(|data| data.get(key))
        .cloned()
}

/// A short, stable hash of a secret value (never the value itself) for pod annotations.
fn check_reserved_env(
    field: &'static str,
    env: &[EnvVar],
    reserved: &[&str],
) -> Result<(), ValidationError> {
    match env.iter().find(|var| reserved.contains(&var.name.as_str())) {
        Some(var) => Err(ValidationError::ReservedEnv {
            field,
            name: var.name.clone(),
        }),
        None => Ok(()),
    }
}

/// Parts of a Redis URL the proxy variables need.
#[derive(Debug, PartialEq)]
struct RedisUrl {
    tls: bool,
    has_credentials: bool,
    host: String,
    port: u16,
    db: i64,
}

impl RedisUrl {
    fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("rediss://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("redis://") {
            (false, rest)
        } else {
            return Err("must start with redis:// or rediss://".into());
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (has_credentials, host_port) = match authority.rsplit_once('@') {
            Some((_, host_port)) => (true, host_port),
            None => (false, authority),
        };
        let (host, port) = split_host_port(host_port)?;
        let db_text = path.split(['?', '#']).next().unwrap_or("");
        let db = if db_text.is_empty() {
            0
        } else {
            db_text
                .parse::<i64>()
                .map_err(|_| format!("database {db_text:?} is not a number"))?
        };
        Ok(RedisUrl {
            tls,
            has_credentials,
            host,
            port,
            db,
        })
    }
}

fn split_host_port(host_port: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = host_port.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or("unclosed '[' in the host")?;
        (host, after.strip_prefix(':'))
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    let port = match port {
        Some(port) => port
            .parse::<u16>()
            .map_err(|_| format!("port {port:?} is not a number from 1 to 65535"))?,
        None => 6379,
    };
    if port == 0 {
        return Err("port 0".into());
    }
    Ok((host.to_string(), port))
}

/// What the build stage needs to know of the user's extra srs.conf.
struct OriginConfig {
    /// Names of its top-level directives.
    directives: BTreeSet<String>,
    /// Names of its `vhost NAME { }` blocks.
    vhosts: BTreeSet<String>,
}

/// Checks the user's extra srs.conf: balanced braces and quotes, every directive terminated,
/// and none of the top-level directives the operator generates.
fn check_origin_config(config: &str) -> Result<OriginConfig, ValidationError> {
    let mut top_level = BTreeSet::new();
    let mut vhosts = BTreeSet::new();
    let error = |line: usize, problem: String| Err(ValidationError::OriginConfig { line, problem });
    let mut depth = 0usize;
    // Words of the directive being read, and the line it started on.
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut directive_line = 0;
    for (index, text) in config.lines().enumerate() {
        let line = index + 1;
        let mut quote: Option<char> = None;
        for ch in text.chars() {
            if let Some(q) = quote {
                if ch == q {
                    quote = None;
                } else {
                    word.push(ch);
                }
                continue;
            }
            match ch {
                '#' => break,
                '"' | '\'' => quote = Some(ch),
                ' ' | '\t' | '\r' => flush(&mut word, &mut words),
                ';' | '{' | '}' => {
                    flush(&mut word, &mut words);
                    match ch {
                        ';' if words.is_empty() => {
                            return error(line, "';' without a directive".into());
                        }
                        '{' if words.is_empty() => {
                            return error(line, "'{' without a directive name".into());
                        }
                        '}' if !words.is_empty() => {
                            return error(
                                line,
                                format!("directive {:?} is missing its ';'", words[0]),
                            );
                        }
                        '}' if depth == 0 => return error(line, "unexpected '}'".into()),
                        _ => {}
                    }
                    if depth == 0
                        && let Some(name) = words.first()
                        && GENERATED_DIRECTIVES.contains(&name.as_str())
                    {
                        return error(
                            directive_line,
                            format!(
                                "{name:?} is generated by the operator from the spec; it cannot be set here"
                            ),
                        );
                    }
                    if depth == 0
                        && ch != '}'
                        && let Some(name) = words.first()
                    {
                        top_level.insert(name.clone());
                        if ch == '{'
                            && name == "vhost"
                            && let Some(vhost) = words.get(1)
                        {
                            vhosts.insert(vhost.clone());
                        }
                    }
                    match ch {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    words.clear();
                }
                _ => {
                    if words.is_empty() && word.is_empty() {
                        directive_line = line;
                    }
                    word.push(ch);
                }
            }
        }
        if quote.is_some() {
            return error(line, "unterminated quote".into());
        }
        flush(&mut word, &mut words);
    }
    if !words.is_empty() {
        return error(
            directive_line,
            format!("directive {:?} is missing its ';'", words[0]),
        );
    }
    if depth > 0 {
        return error(
            config.lines().count(),
            format!("{depth} block(s) not closed with '}}'"),
        );
    }
    Ok(OriginConfig {
        directives: top_level,
        vhosts,
    })
}

fn flush(word: &mut String, words: &mut Vec<String>) {
    if !word.is_empty() {
        words.push(std::mem::take(word));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_error(config: &str) -> Option<(usize, String)> {
        match check_origin_config(config) {
            Ok(_) => None,
            Err(ValidationError::OriginConfig { line, problem }) => Some((line, problem)),
            Err(other) => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn lists_the_top_level_directives_and_vhosts() {
        let config = check_origin_config(
            "max_connections 3000; # more\nvhost example.com {\n    max_connections 1;\n}\nsrs_log_level warn;\nvhost \"b.example.com\" { }\n",
        )
        .unwrap();
        assert_eq!(
            config.directives.into_iter().collect::<Vec<_>>(),
            ["max_connections", "srs_log_level", "vhost"]
        );
        assert_eq!(
            config.vhosts.into_iter().collect::<Vec<_>>(),
            ["b.example.com", "example.com"]
        );
    }

    #[test]
    fn accepts_well_formed_extra_config() {
        let config = "max_connections 3000; # more\nvhost example.com {\n    hls { enabled on; hls_path \"/tmp/a b\"; }\n}\n";
        assert_eq!(config_error(config), None);
        assert_eq!(config_error(""), None);
    }

    #[test]
    fn reports_the_line_of_a_config_mistake() {
        assert_eq!(
            config_error("vhost a {\n hls { enabled on; }\n").unwrap().0,
            2
        );
        assert!(
            config_error("vhost a {\n}\n}")
                .unwrap()
                .1
                .contains("unexpected '}'")
        );
        assert!(
            config_error("max_connections 3000")
                .unwrap()
                .1
                .contains("missing its ';'")
        );
        assert!(
            config_error("vhost a { hls { enabled on } }")
                .unwrap()
                .1
                .contains("missing its ';'")
        );
        assert!(
            config_error("vhost \"a {")
                .unwrap()
                .1
                .contains("unterminated quote")
        );
        let (line, problem) = config_error("# ok\nheartbeat {\n enabled off;\n}").unwrap();
        assert_eq!(line, 2);
        assert!(problem.contains("generated by the operator"), "{problem}");
        // Inside a block the same names are the user's business (e.g. vhost-level settings).
        assert_eq!(config_error("vhost a { listen 1; }"), None);
    }

    #[test]
    fn parses_redis_urls() {
        let parts = |text: &str| {
            let url = RedisUrl::parse(text).unwrap();
            (url.tls, url.has_credentials, url.host, url.port, url.db)
        };
        assert_eq!(
            parts("redis://redis.example:6380/2"),
            (false, false, "redis.example".into(), 6380, 2)
        );
        assert_eq!(
            parts("rediss://:pw@[fd00::1]"),
            (true, true, "fd00::1".into(), 6379, 0)
        );
        assert!(RedisUrl::parse("http://x").is_err());
        assert!(RedisUrl::parse("redis://:1/0").is_err());
        assert!(RedisUrl::parse("redis://h:99999").is_err());
        assert!(RedisUrl::parse("redis://h/x").is_err());
    }
}
